"""Public Grafana dashboards made for Claude Code's own (native) telemetry, and what each of their
Prometheus panels asks of the series: the metric, the label matchers, the labels it groups by,
and the shape of the query. The queries are rebuilt from that description here, not copied.

Sources (fetched and read for issue 14; not vendored: this workplace keeps files fetched from
public repositories out of the project's commits, so they are described, not copied):
- ColeMurray/claude-code-otel, commit 43263654a369c28e01733fe71f0204084f08eec3,
  claude-code-dashboard.json ("Claude Code Observability"), MIT licence, Copyright (c) 2024
  Claude Code Observability Stack. 10 Prometheus targets in 9 panels; its 7 Loki panels read
  Claude Code's log events, which ccotel does not produce.
- anthropics/claude-code-monitoring-guide, commit 02777441f2a3fa38a187b57872ca9dc5e0411b48,
  grafana/dashboards/working-dashboard.json ("Claude Code - Working Dashboard"). The repository
  carries no licence: only the facts of what its 8 panels query are recorded here.

`python -m tests.native_dashboards DASHBOARD.json` prints, for a real copy of one of them, the
Prometheus queries it holds and whether each is one of the recorded ones.

`extract_queries()` takes any Grafana dashboard JSON and returns its Prometheus targets.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

COLE = "ColeMurray/claude-code-otel@43263654a369c28e01733fe71f0204084f08eec3"
ANTHROPIC = "anthropics/claude-code-monitoring-guide@02777441f2a3fa38a187b57872ca9dc5e0411b48"

# Query shapes, {m} the metric with its matchers, {by} the grouping labels, {r} the range.
SHAPES = {
    "sum_increase": "sum(increase({m}[{r}]))",
    "sum_increase_or_0": "sum(increase({m}[{r}])) or vector(0)",
    "sum_by_increase": "sum by ({by}) (increase({m}[{r}]))",
    "sum_by_rate_per_min": "sum by ({by}) (rate({m}[{r}]) * 60)",
    "sum_by_changes": "sum by ({by}) (changes({m}[{r}]))",
    "count_of_nonzero": "count(count by ({by}) (increase({m}[{r}]) > 0))",
}


@dataclass(frozen=True)
class Panel:
    source: str
    title: str
    shape: str
    metric: str
    by: tuple[str, ...] = ()
    matchers: tuple[tuple[str, str], ...] = ()
    range: str = "$__range"

    def query(self) -> str:
        sel = ", ".join(f'{k}="{v}"' for k, v in self.matchers)
        m = f"{self.metric}{{{sel}}}" if sel else self.metric
        return SHAPES[self.shape].format(m=m, by=", ".join(self.by), r=self.range)

    def labels(self) -> set[str]:
        """The label names the panel needs on the series."""
        return set(self.by) | {k for k, _ in self.matchers}


JOB = (("job", "otel-collector"),)
COST = "claude_code_cost_usage_USD_total"
TOKENS = "claude_code_token_usage_tokens_total"
LINES = "claude_code_lines_of_code_count_total"

PANELS = [
    Panel(
        COLE,
        "Active Sessions (1h)",
        "sum_increase",
        "claude_code_session_count_total",
        (),
        JOB,
        "1h",
    ),
    Panel(COLE, "Cost (Last Hour)", "sum_increase", COST, (), JOB, "1h"),
    Panel(COLE, "Token Usage (1h)", "sum_increase", TOKENS, (), JOB, "1h"),
    Panel(COLE, "Lines of Code (1h)", "sum_increase", LINES, (), JOB, "1h"),
    Panel(COLE, "Cost by Model (Hourly)", "sum_by_increase", COST, ("model",), JOB, "1h"),
    Panel(COLE, "Token Usage Rate by Type", "sum_by_rate_per_min", TOKENS, ("type",), JOB, "5m"),
    Panel(COLE, "API Requests by Model (5min rate)", "sum_by_changes", COST, ("model",), JOB, "5m"),
    Panel(COLE, "Code Changes Rate", "sum_by_rate_per_min", LINES, ("type",), JOB, "5m"),
    Panel(
        COLE,
        "Development Activity (Hourly)",
        "sum_increase_or_0",
        "claude_code_commit_count_total",
        (),
        JOB,
        "1h",
    ),
    Panel(
        COLE,
        "Development Activity (Hourly)",
        "sum_increase_or_0",
        "claude_code_pull_request_count_total",
        (),
        JOB,
        "1h",
    ),
    Panel(ANTHROPIC, "Total Cost", "sum_increase", COST),
    Panel(ANTHROPIC, "Active Users", "count_of_nonzero", COST, ("user_id",)),
    Panel(ANTHROPIC, "Total Tokens", "sum_increase", TOKENS),
    Panel(ANTHROPIC, "Lines of Code", "sum_increase", LINES),
    Panel(ANTHROPIC, "Cost by Model", "sum_by_increase", COST, ("model",)),
    Panel(ANTHROPIC, "Token Usage by Type", "sum_by_increase", TOKENS, ("type",)),
    Panel(ANTHROPIC, "Cost by User", "sum_by_increase", COST, ("user_id",)),
    Panel(ANTHROPIC, "Lines of Code by Type", "sum_by_increase", LINES, ("type",)),
]

# Grafana's built-in variables, as a test evaluates a panel (the range of a 1-hour dashboard).
GRAFANA_VARIABLES = {
    "$__range": "1h",
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "${__range}": "1h",
    "${__rate_interval}": "1m",
    "${__interval}": "1m",
}


def substitute(expr: str) -> str:
    for key in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(key, GRAFANA_VARIABLES[key])
    return expr


def _panels(nodes: list[dict]):
    for p in nodes:
        yield p
        yield from _panels(p.get("panels", []))  # rows keep collapsed panels inside


def _is_prometheus(ds, variables: dict[str, str]) -> bool:
    if isinstance(ds, dict):
        kind = ds.get("type")
        if kind is None and isinstance(ds.get("uid"), str):
            kind = variables.get(ds["uid"].strip("${}"))
        return kind == "prometheus"
    if isinstance(ds, str):  # older dashboards name the data source, or a variable of it
        name = ds.strip("${}")
        return variables.get(name) == "prometheus" or "prometheus" in ds.lower()
    return False


def extract_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) for every Prometheus target of a Grafana dashboard: the
    target's own data source, else its panel's; data source variables resolved by their type.
    A target with no data source anywhere is left out (it could be anything)."""
    variables = {
        v["name"]: v.get("query")
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "datasource"
    }
    out = []
    for p in _panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource")
            if isinstance(ds, dict) and ds.get("uid") == "-- Mixed --":
                ds = t.get("datasource")
            if _is_prometheus(ds, variables) and t.get("expr"):
                out.append((p.get("title", ""), t.get("refId", ""), t["expr"]))
    return out


def normalize(expr: str) -> str:
    """Spacing aside, the same query (`sum by (model)(x)` and `sum by (model) (x)`)."""
    return re.sub(r"\s+", "", expr)


def main(argv: list[str]) -> int:
    recorded = {normalize(p.query()) for p in PANELS}
    missing = 0
    for path in argv:
        for title, ref, expr in extract_queries(json.loads(Path(path).read_text())):
            known = normalize(expr) in recorded
            missing += not known
            print(f"{'recorded' if known else 'NOT RECORDED'}  {title} [{ref}]: {expr}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
