"""What the spend bought, on /metrics (and so in the push): ccotel_code_lines_total{type,project},
ccotel_commits_total{project}, ccotel_pull_requests_total{project}.

Every project with a session has its series from the start, at 0, so the first commit of a
project is an increase Prometheus sees (a series that appears at 1 shows none). Project labels
are TotalsCollector's (its max_projects folding included), so cost and outcomes divide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from ccotel.state import ADDED, COMMITS, FIELDS, PRS, REMOVED, OutcomeTotals
from ccotel.totals import Totals


class OutcomeCollector:
    def __init__(
        self, outcomes: OutcomeTotals, totals: Totals, project: Callable[[str], str]
    ) -> None:
        self.outcomes, self.totals, self.project = outcomes, totals, project

    def by_project(self) -> dict[str, list[float]]:
        with self.totals.lock:
            cwds = list(self.totals.sessions_by_cwd)
        out: dict[str, list[float]] = {self.project(c or ""): [0.0] * FIELDS for c in cwds}
        for cwd, v in self.outcomes.snapshot().items():
            row = out.setdefault(self.project(cwd or ""), [0.0] * FIELDS)
            for i, x in enumerate(v):
                row[i] += x
        return out

    def collect(self) -> Iterator[Metric]:
        lines = CounterMetricFamily(
            "ccotel_code_lines",
            "Lines added and removed by Edit, MultiEdit and Write results (the patches applied)",
            labels=["type", "project"],
        )
        commits = CounterMetricFamily(
            "ccotel_commits",
            "Successful git commit calls of Claude Code's shell",
            labels=["project"],
        )
        prs = CounterMetricFamily(
            "ccotel_pull_requests", "Pull requests created (gh pr create, MCP)", labels=["project"]
        )
        for proj, v in sorted(self.by_project().items()):
            lines.add_metric(["added", proj], v[ADDED])
            lines.add_metric(["removed", proj], v[REMOVED])
            commits.add_metric([proj], v[COMMITS])
            prs.add_metric([proj], v[PRS])
        yield from (lines, commits, prs)
