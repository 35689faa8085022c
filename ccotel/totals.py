"""The all-time totals that the sinks show, restored from the state and moved on by batches."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

from ccotel.batch import Batch, ToolAgg, UsageSums
from ccotel.state import Store

ACTIVE_SECONDS = 300
SPEND_WINDOWS = {"1h": 3600, "5h": 5 * 3600, "24h": 24 * 3600}
BURN_WINDOW = 900  # the burn rate: spend of the last 15 minutes, per hour
KEEP_SPEND = 25 * 3600  # per-minute spend feeds windows up to 24 h: older minutes are pruned


class CostExemplar(NamedTuple):
    """The last cost added to a series: which session, how much, when."""

    session: str
    usd: float
    ts: float


@dataclass
class Totals:
    usage: dict[tuple[str, str], UsageSums] = field(default_factory=dict)  # (model, cwd)
    tool_agg: dict[tuple[str, str, str], ToolAgg] = field(default_factory=dict)  # tool, cwd, status
    sessions: int = 0  # distinct sessions
    # Sessions with activity in each working directory: a session that changed directory
    # counts in each (so these may sum to more than `sessions`).
    sessions_by_cwd: dict[str, int] = field(default_factory=dict)
    recent: dict[tuple[str, str], float] = field(default_factory=dict)  # (session, cwd) -> last
    spend: dict[int, float] = field(default_factory=dict)  # minute -> USD
    counters: dict[str, float] = field(default_factory=dict)
    files_tracked: int = 0
    pending_bytes: int = 0
    last_event_ts: float | None = None
    read_lag: float = 0.0  # read time minus event time of the last line read
    exemplars: dict[tuple[str, str], CostExemplar] = field(default_factory=dict)  # (model, cwd)
    version: int = 0  # moves with each batch merged in (what the collector's cache is keyed on)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, store: Store, now: float) -> Totals:
        t = cls()
        t.usage = store.usage_by_labels()
        t.tool_agg = store.tool_agg()
        t.sessions = store.session_count()
        t.sessions_by_cwd = store.sessions_by_cwd()
        t.recent = {(sid, cwd): last for sid, cwd, last in store.places_since(now - 3600)}
        t.spend = store.spend_since(int(now - KEEP_SPEND) // 60)
        t.counters = store.counters()
        return t

    def merge(
        self, b: Batch, new_sessions: int, new_places: set[tuple[str, str]], now: float
    ) -> None:
        """Fold a committed batch in: new_sessions and new_places (session, cwd) are the
        sessions and the session-directory pairs the state did not hold before b."""
        with self.lock:
            self.version += 1
            for (session, hour, model, cwd), sums in b.usage.items():
                row = self.usage.get((model, cwd))
                if row is None:
                    row = self.usage[(model, cwd)] = UsageSums()
                row.add(sums)
                if sums.cost > 0 and session:
                    self.exemplars[(model, cwd)] = CostExemplar(
                        session, sums.cost, min(now, hour * 3600 + 3599)
                    )
            self.tool_agg.update(b.tool_agg)
            self.sessions += new_sessions
            for _sid, cwd in new_places:
                self.sessions_by_cwd[cwd] = self.sessions_by_cwd.get(cwd, 0) + 1
            for place, span in b.places.items():
                if span.last >= now - 3600 and span.last > self.recent.get(place, -1e18):
                    self.recent[place] = span.last
            for minute, cost in b.spend.items():
                if minute * 60 >= now - KEEP_SPEND:
                    self.spend[minute] = self.spend.get(minute, 0.0) + cost
            for name, v in b.counters.items():
                self.counters[name] = self.counters.get(name, 0) + v
            if b.last_event_ts is not None:
                self.last_event_ts = b.last_event_ts
                self.read_lag = max(0.0, now - b.last_event_ts)

    @property
    def lag(self) -> float:
        """How far behind ingest is: 0 when nothing waits to be read (after a backfill of old
        history the last line read is old, but nothing is late)."""
        return self.read_lag if self.pending_bytes else 0.0

    def spend_in(self, seconds: int, now: float) -> float:
        start = (now - seconds) / 60
        return sum(c for m, c in self.spend.items() if m >= start and m * 60 <= now + 300)

    def burn_rate(self, now: float) -> float:
        """USD per hour at the pace of the last BURN_WINDOW seconds: the one burn rate of the
        page, the API, the status line and ccotel_burn_rate_usd_per_hour{window="15m"}."""
        with self.lock:
            return self.spend_in(BURN_WINDOW, now) * 3600 / BURN_WINDOW

    def active_by_cwd(self, now: float) -> dict[str, int]:
        """Sessions with activity in the last 5 minutes, by the directory of that activity."""
        out: dict[str, int] = {}
        for (_sid, cwd), last in self.recent.items():
            if now - ACTIVE_SECONDS <= last <= now + 60:
                out[cwd] = out.get(cwd, 0) + 1
        return out

    def active_sessions(self, now: float) -> int:
        """Distinct sessions with activity in the last 5 minutes."""
        return len(
            {
                sid
                for (sid, _), last in self.recent.items()
                if now - ACTIVE_SECONDS <= last <= now + 60
            }
        )

    def prune(self, now: float) -> None:
        with self.lock:
            self.recent = {k: last for k, last in self.recent.items() if last >= now - 3600}
            floor = (now - KEEP_SPEND) // 60
            self.spend = {m: c for m, c in self.spend.items() if m >= floor}
