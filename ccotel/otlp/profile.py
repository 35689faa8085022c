"""What the metrics push keeps across restarts, and the team profile of the push.

``PushState`` (``push_state.json`` beside the state database, written by the push thread
alone): the projects the team profile names, and with delta temporality what the collector
has accepted. A file that cannot be read starts empty, with one warning.

``TeamProfile`` (``metrics_push_profile = "team"``) folds what one laptop pushes for a collector
shared by a team, so that a laptop with 20 projects and 4 models stays well under 500 series:

- projects beyond the ``metrics_push_projects`` biggest spenders (of those seen at the first
  push; later, the first ones while there is room) are pushed as ``project="other"``; a project
  once named keeps its name and one folded stays folded, so no pushed counter ever goes down
  (the choice is kept in PushState across restarts);
- ``ccotel_tool_calls_total`` loses its project label (calls per tool and status);
- ``ccotel_tool_duration_seconds`` (17 series per tool) is not pushed.

What it gives up, in the stack only (/metrics and the page keep everything): per-project
numbers for the smaller projects, tool calls per project, tool latency distributions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import Metric

from ccotel.log import get_logger

log = get_logger()

PUSH_STATE = "push_state.json"
OTHER = "other"
DROPPED = frozenset({"ccotel_tool_duration_seconds"})
UNPROJECTED = frozenset({"ccotel_tool_calls"})
SPEND = "ccotel_cost_usd"


class PushState:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.named: list[str] = []  # the team profile's projects pushed by name
        self.folded: list[str] = []  # and those pushed as "other", for good
        self.baseline: dict[str, Any] = {}  # delta temporality: series -> (value accepted, when)
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            self.named = [str(p) for p in data.get("named", [])]
            self.folded = [str(p) for p in data.get("folded", [])]
            self.baseline = {k: tuple(v) for k, v in data.get("baseline", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("the metrics push's state cannot be read; it starts over",
                        path=str(path), error=str(exc)[:200])  # fmt: skip
            self.named, self.folded, self.baseline = [], [], {}

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(
                json.dumps({"named": self.named, "folded": self.folded, "baseline": self.baseline})
            )
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:  # the next push tries again
            log.warning("cannot save the metrics push's state", path=str(self.path),
                        error=str(exc)[:200])  # fmt: skip


def _fold(fam: Metric, relabel: Callable[[dict[str, str]], dict[str, str] | None]) -> Metric:
    """The family with each sample's labels passed through ``relabel`` (None: drop the
    sample), samples that meet summed (counts, sums and buckets all add)."""
    out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
    for attr in ("otlp_name", "otlp_unit"):
        if hasattr(fam, attr):
            setattr(out, attr, getattr(fam, attr))
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
    for s in fam.samples:
        labels = relabel(s.labels)
        if labels is None:
            continue
        key = (s.name, tuple(sorted(labels.items())))
        cur = merged.get(key)
        if cur is None:
            merged[key] = [s.name, labels, s.value, s.exemplar]
            continue
        cur[2] += s.value
        ex = s.exemplar
        if ex is not None and (
            cur[3] is None or float(ex.timestamp or 0) > float(cur[3].timestamp or 0)
        ):  # the newest (a timestamp is a float or a prometheus_client Timestamp)
            cur[3] = ex
    for name, labels, value, ex in merged.values():
        out.add_sample(name, labels, value, exemplar=ex)
    return out


class TeamProfile:
    def __init__(self, projects: int, state: PushState) -> None:
        self.projects, self.state = projects, state
        self.named, self.folded = set(state.named), set(state.folded)

    def _admit(self, families: list[Metric]) -> None:
        """Projects seen for the first time: the biggest spenders are named while there is
        room, the rest folded for good (a project moved out of "other" would make it go down)."""
        spend: dict[str, float] = {}
        for f in families:
            for s in f.samples:
                p = s.labels.get("project")
                if p is None or p == OTHER or p in self.named or p in self.folded:
                    continue
                spend.setdefault(p, 0.0)
                if f.name == SPEND and s.name.endswith("_total"):
                    spend[p] += s.value
        if not spend:
            return
        new = sorted(spend, key=lambda p: (-spend[p], p))
        room = max(0, self.projects - len(self.named))
        self.named.update(new[:room])
        self.folded.update(new[room:])
        self.state.named, self.state.folded = sorted(self.named), sorted(self.folded)
        self.state.save()

    def apply(self, families: Iterable[Metric]) -> list[Metric]:
        families = list(families)
        self._admit(families)
        named = self.named

        def project(labels: dict[str, str]) -> dict[str, str]:
            p = labels.get("project")
            if p is None or p in named:
                return labels
            return {**labels, "project": OTHER}

        def unprojected(labels: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in labels.items() if k != "project"}

        out = []
        for f in families:
            if f.name in DROPPED:
                continue
            if f.name in UNPROJECTED:
                out.append(_fold(f, unprojected))
            elif any("project" in s.labels for s in f.samples):
                out.append(_fold(f, project))
            else:
                out.append(f)
        return out
