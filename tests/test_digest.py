"""Reducing a chunk's records to a Digest: what the accountant receives from a worker."""

from __future__ import annotations

from ccotel.digest import digest
from ccotel.records import decode, parse_ts
from tests.lines import SID, assistant, prompt

OTHER = "99999999-2222-3333-4444-555555555555"


def _ts(minute: int) -> str:
    return f"2026-11-20T10:{minute:02d}:00.000Z"


def test_sessions_and_places_when_lines_go_back_and_forth():
    """Two sessions and two directories interleaved in one chunk, times out of order: each
    session's and each (session, directory)'s first and last time are over all its lines,
    not over the last run of consecutive lines."""
    lines = [
        prompt(ts=_ts(10), cwd="/a"),
        assistant("m1", ts=_ts(11), cwd="/a"),
        assistant("m2", ts=_ts(5), cwd="/b"),
        prompt(ts=_ts(20), session=OTHER, cwd="/b"),
        assistant("m3", ts=_ts(2), cwd="/a"),  # earlier than /a's first
        assistant("m4", ts=_ts(30), cwd="/a"),
        prompt(ts=_ts(1), session=OTHER, cwd="/b"),
        assistant("m5", ts=_ts(7), cwd="/b"),
        assistant("m6", ts=_ts(40), cwd="/b"),
        prompt(ts=_ts(3), cwd="/b"),
    ]
    recs = [decode(raw.encode(), n) for n, raw in enumerate(lines, 1)]
    d = digest([r for r in recs if r], len(lines), SID, None)
    t = {m: parse_ts(_ts(m)) for m in range(60)}
    assert {s: (i.cwd, i.first, i.last) for s, i in d.sessions.items()} == {
        SID: ("/a", t[2], t[40]),
        OTHER: ("/b", t[1], t[20]),
    }
    assert sorted(d.places) == sorted(
        [
            (SID, "/a", t[2], t[30]),
            (SID, "/b", t[3], t[40]),
            (OTHER, "/b", t[1], t[20]),
        ]
    )
