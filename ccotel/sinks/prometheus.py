"""Prometheus exposition of the totals: a custom collector (served by ccotel.server).

The values are computed elsewhere and restored from the state, so the
collector builds fresh metric families on every scrape (client_python's
custom-collector model) from a private registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from copy import copy
from typing import Any, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ccotel import __version__
from ccotel.accounting import TOOL_BUCKETS
from ccotel.batch import ToolAgg, UsageSums
from ccotel.totals import SPEND_WINDOWS, CostExemplar, Totals
from ccotel.traces import ids

OTHER_PROJECT = "other"
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")


class TotalsCollector:
    def __init__(
        self,
        totals: Totals,
        project: Callable[[str], str],
        budgets: dict[str, float],
        clock: Callable[[], float],
        extra: Callable[[], list[Metric]] | None = None,
        max_projects: int = 0,
    ):
        self.t, self.budgets, self.clock = totals, budgets, clock
        self.extra = extra
        self._labeler = project
        self.max_projects = max_projects  # 0: no cap
        self._admitted: set[str] = set()
        self._folded: set[str] = set()
        self._admit_lock = threading.Lock()
        self._admitted_from: tuple[frozenset[Any], ...] = ()  # the keys of the last admission
        # the tool families of the last scrape, and what they were made from (tool calls
        # change less often than tokens: most scrapes after an append reuse them)
        self._tools_made: tuple[object, list[Metric]] | None = None
        # the usage families (most of a scrape) of the last Totals.version collected
        self._usage_made: tuple[int, list[Metric]] | None = None
        self._usage_rows: dict[
            tuple[str, str], tuple[UsageSums, CostExemplar | None, list[list[Any]]]
        ] = {}

    def project(self, cwd: str) -> str:
        """The project label, or "other" for a project beyond max_projects."""
        p = self._labeler(cwd)
        if not self.max_projects or p in self._admitted:
            return p
        return OTHER_PROJECT

    def _admit(
        self,
        usage: dict[tuple[str, str], UsageSums],
        tools: dict[tuple[str, str, str], ToolAgg],
        sessions: dict[str, int],
    ) -> None:
        """Admit projects up to max_projects, biggest spend first; once admitted, a project
        keeps its own series (so no counter moves between series and goes down)."""
        if not self.max_projects:
            return
        keys = (frozenset(usage), frozenset(tools), frozenset(sessions))
        if keys == self._admitted_from:  # no new directory: no project to admit or fold
            return
        spend: dict[str, float] = {}
        for (_, cwd), v in usage.items():
            p = self._labeler(cwd)
            spend[p] = spend.get(p, 0.0) + v.cost
        for _tool, cwd, _status in tools:
            spend.setdefault(self._labeler(cwd), 0.0)
        for cwd in sessions:
            spend.setdefault(self._labeler(cwd or ""), 0.0)
        with self._admit_lock:
            new = sorted(
                (p for p in spend if p not in self._admitted), key=lambda p: (-spend[p], p)
            )
            room = self.max_projects - len(self._admitted)
            self._admitted.update(new[: max(room, 0)])
            self._folded = {p for p in spend if p not in self._admitted}
            self._admitted_from = keys

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        t = self.t
        made = self._usage_made
        with t.lock:
            fresh = made is None or made[0] != t.version  # usage changes only with a merge
            if fresh:
                version = t.version
                usage = {k: copy(v) for k, v in t.usage.items()}
                exemplars = dict(t.exemplars)
            tools = dict(t.tool_agg)  # replaced, never changed in place
            sessions = dict(t.sessions_by_cwd)
            active = t.active_by_cwd(now)
            spend = {w: t.spend_in(s, now) for w, s in SPEND_WINDOWS.items()}
            counters = dict(t.counters)
            files, lag, pending = t.files_tracked, t.lag, t.pending_bytes
        if made is None or fresh:
            self._admit(usage, tools, sessions)
            made = self._usage_made = (version, list(self._usage(usage, exemplars)))
        yield from made[1]
        yield from self._tool_families(tools)

        yield _by_label(
            CounterMetricFamily("ccotel_sessions", "Sessions seen", labels=["project"]),
            self._by_project(sessions),
        )
        yield _by_label(
            GaugeMetricFamily(
                "ccotel_active_sessions",
                "Sessions with activity in the last 5 minutes",
                labels=["project"],
            ),
            self._by_project(active),
        )
        yield _by_label(
            GaugeMetricFamily(
                "ccotel_spend_usd",
                "Spend whose event time falls in the trailing window, USD",
                labels=["window"],
            ),
            spend,
        )
        yield _by_label(GaugeMetricFamily("ccotel_budget_usd", "Configured budget per window, USD",
                                          labels=["window"]), self.budgets)  # fmt: skip

        yield CounterMetricFamily(
            "ccotel_lines", "Transcript lines read", value=counters.get("lines", 0)
        )
        yield CounterMetricFamily(
            "ccotel_parse_errors", "Malformed lines skipped", value=counters.get("parse_errors", 0)
        )
        yield GaugeMetricFamily(
            "ccotel_ingest_lag_seconds",
            "How late ingest is: read time minus event time of the last line read, 0 when nothing waits to be read",
            value=lag,
        )
        yield GaugeMetricFamily("ccotel_files_tracked", "Transcript files tracked", value=files)
        yield GaugeMetricFamily(
            "ccotel_pending_bytes",
            "Bytes written to transcripts and not read yet (last rescan)",
            value=pending,
        )
        yield GaugeMetricFamily(
            "ccotel_projects_folded",
            f'Projects beyond max_projects ({self.max_projects}) counted under project="{OTHER_PROJECT}"',
            value=len(self._folded),
        )
        info = GaugeMetricFamily("ccotel_build_info", "ccotel version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self.extra:
            yield from self.extra()

    def _by_project(self, by_cwd: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for cwd, n in by_cwd.items():
            p = self.project(cwd or "")
            out[p] = out.get(p, 0) + n
        return out

    def _usage(
        self,
        usage: dict[tuple[str, str], UsageSums],
        exemplars: dict[tuple[str, str], CostExemplar],
    ) -> Iterator[Metric]:
        merged: dict[tuple[str, str], UsageSums] = {}
        unp: dict[str, float] = {}
        for (model, cwd), v in usage.items():
            row = merged.get((model, self.project(cwd)))
            if row is None:
                row = merged[(model, self.project(cwd))] = UsageSums()
            row.add(v)
            if v.unpriced:
                unp[model] = unp.get(model, 0) + v.unpriced
        latest: dict[tuple[str, str], CostExemplar] = {}
        for (model, cwd), ex in exemplars.items():
            key = (model, self.project(cwd))
            if key not in latest or ex.ts > latest[key].ts:
                latest[key] = ex
        # A row (model, project) whose sums and exemplar are as last time keeps its sample
        # objects: an append makes the samples of the rows it moved, and the exposition
        # formats only those again (ccotel.server.exposition).
        rows: dict[tuple[str, str], tuple[UsageSums, CostExemplar | None, list[list[Any]]]] = {}
        for key, v in sorted(merged.items()):
            last = latest.get(key)
            hit = self._usage_rows.get(key)
            if hit is None or hit[0] != v or hit[1] != last:
                fams = _usage_families()
                _usage_row(fams, key, v, last)
                hit = (v, last, [f.samples for f in fams[:4]])
            rows[key] = hit
        self._usage_rows = rows
        families = _usage_families()
        for i, family in enumerate(families[:4]):
            chunks = [samples[i] for _v, _last, samples in rows.values()]
            family.samples = [s for chunk in chunks for s in chunk]
            family.chunks = chunks  # type: ignore[attr-defined]  # rows, for the exposition
        for model, n in sorted(unp.items()):
            families[4].add_metric([model], n)
        yield from families

    def _tool_families(self, tools: dict[tuple[str, str, str], ToolAgg]) -> list[Metric]:
        # ToolAgg values are replaced, never changed in place, and compare by value
        made_from = (len(self._admitted), tuple(tools.items()))
        if self._tools_made is None or self._tools_made[0] != made_from:
            self._tools_made = (made_from, list(self._tools(tools)))
        return self._tools_made[1]

    def _tools(self, tools: dict[tuple[str, str, str], ToolAgg]) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "ccotel_tool_calls", "Tool calls with a result", labels=["tool", "project", "status"]
        )
        hist = HistogramMetricFamily(
            "ccotel_tool_duration_seconds",
            "Tool call duration: tool_use to tool_result",
            labels=["tool"],
        )
        by_tool: dict[str, ToolAgg] = {}  # summed over directories and statuses
        merged: dict[tuple[str, str, str], float] = {}
        for (tool, cwd, status), a in tools.items():
            key = (tool, self.project(cwd), status)
            merged[key] = merged.get(key, 0) + a.count
            agg = by_tool.setdefault(tool, ToolAgg(0, 0.0, [0] * len(a.buckets)))
            agg.dur_sum += a.dur_sum
            agg.buckets = [x + y for x, y in zip(agg.buckets, a.buckets, strict=True)]
        for key, n in sorted(merged.items()):
            calls.add_metric(list(key), n)
        for tool, agg in sorted(by_tool.items()):
            dur, buckets = agg.dur_sum, agg.buckets
            cum, acc = [], 0
            for bound, n in zip((*TOOL_BUCKETS, float("inf")), buckets, strict=True):
                acc += n
                cum.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
            hist.add_metric([tool], cum, dur)
        yield calls
        yield hist


def _usage_families() -> tuple[CounterMetricFamily, ...]:
    """The usage families, empty: tokens, cost, requests, web searches, unpriced tokens."""
    return (
        CounterMetricFamily("ccotel_tokens", "Tokens of de-duplicated API responses",
                            labels=["model", "type", "project"]),
        CounterMetricFamily("ccotel_cost_usd", "Cost of de-duplicated API responses, USD",
                            labels=["model", "project"]),
        CounterMetricFamily("ccotel_requests", "De-duplicated API responses",
                            labels=["model", "project"]),
        CounterMetricFamily("ccotel_web_search_requests", "Web search requests",
                            labels=["model", "project"]),
        CounterMetricFamily("ccotel_unpriced_tokens", "Tokens of models without a price",
                            labels=["model"]),
    )  # fmt: skip


def _usage_row(fams: tuple[CounterMetricFamily, ...], key: tuple[str, str], v: UsageSums,
               last: CostExemplar | None) -> None:  # fmt: skip
    """One (model, project)'s samples, added to the usage families."""
    tokens, cost, reqs, web = fams[:4]
    model, proj = key
    for typ, n in zip(TOKEN_TYPES, (v.input, v.output, v.cache_read, v.cw5m, v.cw1h), strict=True):
        tokens.add_metric([model, typ, proj], n)
    cost.add_metric([model, proj], v.cost, exemplar=exemplar(last) if last else None)
    reqs.add_metric([model, proj], v.requests)
    web.add_metric([model, proj], v.web_search)


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)


def _by_label(family: _Family, values: Mapping[str, float]) -> _Family:
    """The family with a sample per value, labelled by its key."""
    for label, v in values.items():
        family.add_metric([label], v)
    return family


def exemplar(ex: CostExemplar) -> Exemplar:
    """The session's trace (the id its spans carry), on the cost it added last."""
    return Exemplar({"trace_id": ids.hex_trace(ids.trace_id(ex.session))}, ex.usd, ex.ts)
