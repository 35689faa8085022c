"""The plan's 5-hour and weekly use, as Claude Code's status line reports it.

Claude Code reads the numbers from the API's response headers and hands each session's
copy to its status line; an idle session keeps re-rendering the copy it got last. So a
report is stale when it is older news than one already held, and arrival order says
nothing about that. The rules, per window ("5h", "7d"):

* a window is identified by its reset time (``resets_at``). A report whose reset time is
  later than the held one (by more than ``SAME_WINDOW`` seconds) opens a new window and
  wins, whatever its percentage; one whose reset time is earlier belongs to a window that
  is over (or to a stale session) and is ignored;
* within one window use only grows, so a report counts only when it is higher than the
  held value: a stale session's lower copy never wins;
* ``reported_at`` is when the value last changed (new window or higher use): the
  freshness of the data, which the Prometheus rules compare across laptops
  (``ccotel_plan_report_timestamp_seconds``); ``seen_at`` is the last report of the
  window at all (the status line still reaches the daemon).

Every change is one row of history (kept ``HISTORY_DAYS``, at most ``HISTORY_ROWS`` per
window) and the latest row per window is what a restart reads back.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

WINDOWS = {"five_hour": "5h", "seven_day": "7d"}
WINDOW_SECONDS = {"5h": 5 * 3600, "7d": 7 * 86400}
SAME_WINDOW = 300.0  # reset times this close name the same window
HISTORY_DAYS = 35
HISTORY_ROWS = 20_000  # per window: a change a minute for two weeks


@dataclass(frozen=True, slots=True)
class Window:
    window: str  # "5h" | "7d"
    used_ratio: float  # 0..1
    resets_at: float | None  # epoch seconds
    reported_at: float  # when this value arrived (the daemon's clock)
    seen_at: float  # the last report of this window, changed or not


RESET_SLACK = 86400.0  # a reset time further than the window's length (and this) is bogus


def number(x: object) -> float | None:
    """A JSON number as a finite float; None for anything else (an integer too big for a
    float included)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    try:
        f = float(x)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def plausible_reset(window: str, resets_at: float | None, now: float) -> bool:
    """A window resets within its length from now: a reset far ahead would hold the plan
    figure for good (a later window wins over every true report)."""
    return resets_at is None or resets_at <= now + WINDOW_SECONDS[window] + RESET_SLACK


def parse_rate_limits(obj: object, now: float) -> dict[str, tuple[float, float | None]]:
    """``rate_limits`` of a status-line JSON -> {"5h": (ratio, resets_at), ...}; what is
    absent, malformed or out of range is left out (a reset time beyond the window's length
    from ``now`` leaves the window out)."""
    out: dict[str, tuple[float, float | None]] = {}
    if not isinstance(obj, dict):
        return out
    for key, name in WINDOWS.items():
        w = obj.get(key)
        if not isinstance(w, dict):
            continue
        pct = number(w.get("used_percentage"))
        if pct is None or not 0 <= pct <= 1000:
            continue
        reset = number(w.get("resets_at"))
        if reset is not None and not 0 < reset < 1e11:
            reset = None
        if not plausible_reset(name, reset, now):
            continue
        out[name] = (pct / 100.0, reset)
    return out


class Plan:
    """The held value per window; ``offer`` applies the rules above. Thread-safe."""

    def __init__(self, held: list[Window] | None = None):
        self._lock = threading.Lock()
        self._held: dict[str, Window] = {w.window: w for w in held or ()}
        self._changes: list[Window] = []  # not yet written to the state

    def offer(self, window: str, ratio: float, resets_at: float | None, now: float) -> bool:
        """Take one report; True when it changed the held value."""
        with self._lock:
            cur = self._held.get(window)
            new = Window(window, ratio, resets_at, now, now)
            if cur is not None:
                verdict = _compare(cur, ratio, resets_at)
                if verdict < 0:
                    return False
                if verdict == 0:  # same window, not higher: news of nothing
                    self._held[window] = Window(
                        window,
                        cur.used_ratio,
                        cur.resets_at,
                        cur.reported_at,
                        max(cur.seen_at, now),
                    )
                    return False
            self._held[window] = new
            self._changes.append(new)
            return True

    def windows(self) -> dict[str, Window]:
        with self._lock:
            return dict(self._held)

    def has_changes(self) -> bool:
        return bool(self._changes)

    def take_changes(self) -> list[Window]:
        with self._lock:
            out, self._changes = self._changes, []
            return out

    def put_back(self, changes: list[Window]) -> None:
        """Changes that could not be written: kept for the next try (oldest first)."""
        with self._lock:
            self._changes = (changes + self._changes)[-HISTORY_ROWS:]


def _compare(cur: Window, ratio: float, resets_at: float | None) -> int:
    """1: the report is news (a later window, or higher use in this one); 0: the same
    window, not higher; -1: an earlier window."""
    if resets_at is not None and cur.resets_at is not None:
        if resets_at > cur.resets_at + SAME_WINDOW:
            return 1
        if resets_at < cur.resets_at - SAME_WINDOW:
            return -1
    elif resets_at is not None:  # the held value had no reset time: this one is better
        return 1
    return 1 if ratio > cur.used_ratio else 0
