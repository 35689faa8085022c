"""The latest status-line report of each session, in memory (see the package docstring)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ccotel.statusline.plan import number

MAX_SESSIONS = 500
KEEP_SECONDS = 24 * 3600.0
MAX_ID = 200  # characters of a session id


class BadReport(ValueError):
    """What the daemon refuses to keep: the message says why (it goes back to the client)."""


def check(d: object) -> dict[str, Any]:
    """A parsed status-line JSON that names its session, or BadReport."""
    if not isinstance(d, dict):
        raise BadReport("not a JSON object")
    sid = d.get("session_id")
    if not isinstance(sid, str) or not sid or len(sid) > MAX_ID or not sid.isprintable():
        raise BadReport("no session_id")
    return d


def context_of(d: dict[str, Any]) -> tuple[float, int] | None:
    """(used ratio 0..1, window tokens) of a report's ``context_window``, or None."""
    cw = d.get("context_window")
    if not isinstance(cw, dict):
        return None
    size = number(cw.get("context_window_size"))
    if size is None or size <= 0:
        return None
    pct = number(cw.get("used_percentage"))
    if pct is not None and 0 <= pct <= 1000:
        return pct / 100.0, int(size)
    cu = cw.get("current_usage")
    if not isinstance(cu, dict):
        return None
    parts = [
        number(cu.get(k))
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if any(p is None or p < 0 for p in parts):
        return None
    ratio = sum(parts) / size  # type: ignore[arg-type]
    return (ratio, int(size)) if math.isfinite(ratio) else None


class Reports:
    """The latest report per session. ``put`` is the daemon's; the rest is for readers."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._by_session: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, d: dict[str, Any]) -> None:
        d = check(d)
        d["received_at"] = self.clock()
        with self._lock:
            self._by_session[d["session_id"]] = d
            self._by_session.move_to_end(d["session_id"])
            while len(self._by_session) > MAX_SESSIONS:
                self._by_session.popitem(last=False)

    def report(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            d = self._by_session.get(session_id)
            if d is None:
                return None
            if self.clock() - d["received_at"] > KEEP_SECONDS:
                del self._by_session[session_id]
                return None
            return dict(d)  # the caller's copy

    def context(self, session_id: str) -> tuple[float, int] | None:
        d = self.report(session_id)
        return context_of(d) if d is not None else None

    def sessions(self) -> list[str]:
        now = self.clock()
        with self._lock:
            return [
                sid
                for sid, d in reversed(self._by_session.items())
                if now - d["received_at"] <= KEEP_SECONDS
            ]
