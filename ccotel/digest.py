"""A chunk of one file's records reduced to what accounting needs, where the file is read.

Backfill reads files in worker processes; reducing there leaves the single
accounting process one entry per response, tool call and session instead of
one per line. Reducing within a file never changes a result:

- copies of one response (same message.id and requestId) collapse to the first
  copy of the best kind, which is the one the global rule would keep;
- a tool call and its result in the same chunk travel as one entry;
- a session's lines become its first and last time, cwd, branch and version, and its
  first and last time in each working directory it had activity in.
"""

from __future__ import annotations

from msgspec import Struct

from ccotel import outcomes
from ccotel.batch import Interval, SessionInfo
from ccotel.keys import h64
from ccotel.outcomes import OutcomeEntry
from ccotel.records import Record, Usage, message_key, response_key, strict_error


class UsageEntry(Struct, array_like=True, gc=False):
    usage: Usage
    ts: float
    session: str
    cwd: str  # "" when the file has not named it yet
    key: int  # records.response_key
    mkey: int  # records.message_key


class ToolEntry(Struct, array_like=True, gc=False):
    id: str
    name: str | None  # None: only the result is in this chunk
    session: str
    cwd: str
    start: float | None
    end: float | None = None  # None: no result yet
    is_error: bool = False
    key: int = 0  # records.h64 of the id: the state's key for the call


class Digest(Struct, array_like=True, gc=False):
    lines: int = 0
    errors: list[tuple[int, str]] = []
    usage: list[UsageEntry] = []
    tools: list[ToolEntry] = []
    sessions: dict[str, SessionInfo] = {}
    places: list[tuple[str, str, float, float]] = []  # (session, cwd, first_ts, last_ts)
    last_ts: float | None = None
    cwd: str | None = None  # the file's cwd after this chunk
    marks: dict[int, float] = {}  # zero-usage API-error lines: records.mark_key -> ts
    outcomes: list[OutcomeEntry] = []  # lines, commits, pull requests, turns (ccotel.outcomes)


def rank(u: Usage) -> tuple[bool, int, bool]:
    """ccusage's preference among copies of a response (should_replace_deduped_entry):
    main thread over sidechain, then more tokens, then one with a speed field."""
    return (not u.sidechain, u.total, u.has_speed)


def digest(
    recs: list[Record], lines: int, file_session: str, cwd: str | None, strict: bool = False
) -> Digest:
    """Reduce a chunk's records. The kept copy of each response is then checked the way
    ccusage refuses lines (records.strict_error); if one fails, the chunk is reduced again
    checking every copy that would be kept (``strict``), so the best valid copy wins."""
    d = Digest(
        lines=lines, errors=[], usage=[], tools=[], sessions={}, places=[], marks={}, outcomes=[]
    )
    best: dict[int, int] = {}
    raws: list[bytes | None] = []
    tools: dict[str, ToolEntry] = {}
    places: dict[tuple[str, str], Interval] = {}
    start_cwd = cwd
    last = None
    for rec in recs:
        if rec.error:
            d.errors.append((rec.line_no, rec.error))
        ts = rec.ts
        if ts is None:
            continue
        if last is None or ts > last:
            last = ts
        if rec.cwd:
            cwd = rec.cwd
        session = rec.session or file_session
        here = cwd or ""
        if rec.type in ("user", "assistant", "system"):
            s = d.sessions.get(session)
            if s is None:
                d.sessions[session] = SessionInfo(cwd, rec.branch, rec.version, ts, ts)
            else:
                s.update(cwd, rec.branch, rec.version, ts, ts)
            p = places.get((session, here))
            if p is None:
                places[(session, here)] = Interval(ts, ts)
            elif ts < p.first:
                p.first = ts
            elif ts > p.last:
                p.last = ts
        if rec.mark is not None and rec.mark not in d.marks:
            d.marks[rec.mark] = ts
        u = rec.usage
        if u is not None:
            key = response_key(u, session, ts, rec.line_no)
            i = best.get(key)
            if i is None or rank(u) > rank(d.usage[i].usage):
                if strict and rec.raw is not None and (bad := strict_error(rec.raw)):
                    if not rec.error:
                        d.errors.append((rec.line_no, bad))
                elif i is None:
                    best[key] = len(d.usage)
                    d.usage.append(
                        UsageEntry(u, ts, session, here, key, message_key(u, key, session))
                    )
                    raws.append(rec.raw)
                else:
                    d.usage[i] = UsageEntry(u, ts, session, here, key, d.usage[i].mkey)
                    raws[i] = rec.raw
        for t in rec.tool_uses or ():
            if t.id not in tools:
                tools[t.id] = ToolEntry(t.id, t.name, session, here, ts, key=h64(t.id))
        for r in rec.tool_results or ():
            e = tools.get(r.tool_use_id)
            if e is None:
                tools[r.tool_use_id] = ToolEntry(
                    r.tool_use_id, None, session, here, None, ts, r.is_error, h64(r.tool_use_id)
                )
            elif e.end is None:
                e.end, e.is_error = ts, r.is_error
        if rec.outcome:
            outcomes.take(rec, session, here, ts, d.outcomes)
    if not strict and any(raw is not None and strict_error(raw) for raw in raws):
        return digest(recs, lines, file_session, start_cwd, strict=True)
    d.tools = list(tools.values())
    d.places = [(s, c, p.first, p.last) for (s, c), p in places.items()]
    d.last_ts, d.cwd = last, cwd
    return d
