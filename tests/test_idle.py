"""What lets an idle daemon sleep: the trace exporter knows when the next session is due to
close (and sleeps until then, or until new lines), and the HTTP server has no timer."""

from __future__ import annotations

import math

from ccotel.traces.builder import Builder, Options
from ccotel.traces.model import Session


def test_next_due_is_the_first_time_due_returns_a_session():
    b = Builder(Options(), lambda key: None, lambda key: False)
    assert b.next_due(600) is None  # nothing open: nothing is due until a line arrives
    b.sessions["a"] = Session("a", first=100.0, last=1000.0)
    b.sessions["b"] = Session("b", first=100.0, last=400.0)
    b.sessions["c"] = Session("c", last=10.0, closed=True)
    # a finished -p run closes after the grace period instead of the idle time
    b.sessions["d"] = Session("d", last=900.0, finished=True, sdk=True, main_last="assistant")
    due = b.next_due(600)
    assert due == 905.0
    assert b.due(due - 0.001, 600) == [] and b.due(due, 600) == ["d"]
    assert b.due(1000.0, 600) == ["b", "d"] and b.due(1600.0, 600) == ["a", "b", "d"]
    del b.sessions["d"]
    assert b.next_due(600) == 1000.0
    b.sessions["e"] = Session("e")  # no time at all: due at once
    assert b.next_due(600) == -math.inf and "e" in b.due(0.0, 600)
    assert b.next_due(0) == -math.inf  # session_idle 0: every open session is due
