"""Claude Code's own metrics (``native_metrics = true``), from ccotel's exact totals.

Same names, types, units and label values as Claude Code's exporter, so that a dashboard made
for native telemetry works unchanged: on /metrics the names its Prometheus exporter gives
(``claude_code_cost_usage_USD_total``...), and in the OTLP push the native instruments
(``claude_code.cost.usage``, unit ``USD``, meter ``com.anthropic.claude_code``: each family
carries ``otlp_name`` and ``otlp_unit`` for ccotel.otlp.metrics). No session label: on native
counters it is what splits and multiplies series (resumed processes collide on it).

- token.usage{type=input|output|cacheRead|cacheCreation, model}, cost.usage{model}: the
  de-duplicated responses (cost with the exemplar of the session that spent last);
- session.count: distinct sessions (native counts each process start, resumes included);
- lines_of_code.count{type}, commit.count, pull_request.count: ccotel.outcomes' counts;
- active_time.total: the turn_duration lines' time, where transcripts have them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily

from ccotel.batch import UsageSums
from ccotel.sinks.prometheus import exemplar
from ccotel.state import ADDED, COMMITS, PRS, REMOVED, TURN_MS, OutcomeTotals
from ccotel.totals import CostExemplar, Totals


class NativeCounter(CounterMetricFamily):
    """A counter with its native OTLP identity (instrument name and unit)."""

    def __init__(self, name: str, documentation: str, otlp_name: str, unit: str = "",
                 labels: list[str] | None = None, value: float | None = None):  # fmt: skip
        super().__init__(name, documentation, value=value, labels=labels)
        self.otlp_name, self.otlp_unit = otlp_name, unit


TOKEN_TYPES: tuple[tuple[str, Callable[[UsageSums], float]], ...] = (
    ("input", lambda v: v.input),
    ("output", lambda v: v.output),
    ("cacheRead", lambda v: v.cache_read),
    ("cacheCreation", lambda v: v.cw5m + v.cw1h),
)


class NativeCollector:
    def __init__(self, totals: Totals, outcomes: OutcomeTotals) -> None:
        self.totals, self.outcomes = totals, outcomes

    def collect(self) -> Iterator[NativeCounter]:
        t = self.totals
        by_model: dict[str, UsageSums] = {}
        with t.lock:
            for (model, _cwd), v in t.usage.items():
                by_model.setdefault(model, UsageSums()).add(v)
            exemplars = dict(t.exemplars)
            sessions = t.sessions
        latest: dict[str, CostExemplar] = {}
        for (model, _cwd), ex in exemplars.items():
            if model not in latest or ex.ts > latest[model].ts:
                latest[model] = ex
        tokens = NativeCounter("claude_code_token_usage_tokens", "Number of tokens used",
                               "claude_code.token.usage", "tokens", ["type", "model"])  # fmt: skip
        cost = NativeCounter("claude_code_cost_usage_USD", "Cost of the Claude Code sessions",
                             "claude_code.cost.usage", "USD", ["model"])  # fmt: skip
        for model, v in sorted(by_model.items()):
            for typ, value in TOKEN_TYPES:
                tokens.add_metric([typ, model], value(v))
            last = latest.get(model)
            cost.add_metric([model], v.cost, exemplar=exemplar(last) if last else None)
        o = self.outcomes.total()
        lines = NativeCounter("claude_code_lines_of_code_count", "Count of lines of code modified",
                              "claude_code.lines_of_code.count", labels=["type"])  # fmt: skip
        lines.add_metric(["added"], o[ADDED])
        lines.add_metric(["removed"], o[REMOVED])
        yield tokens
        yield cost
        yield NativeCounter("claude_code_session_count", "Count of sessions",
                            "claude_code.session.count", value=sessions)  # fmt: skip
        yield lines
        yield NativeCounter("claude_code_commit_count", "Number of git commits created",
                            "claude_code.commit.count", value=o[COMMITS])  # fmt: skip
        yield NativeCounter("claude_code_pull_request_count", "Number of pull requests created",
                            "claude_code.pull_request.count", value=o[PRS])  # fmt: skip
        yield NativeCounter("claude_code_active_time_seconds", "Total active time in seconds",
                            "claude_code.active_time.total", "s", value=o[TURN_MS] / 1000)  # fmt: skip
