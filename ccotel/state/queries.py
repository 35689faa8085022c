"""The read-only queries of the views: the web page, `ccotel report` and billing blocks.

They read ``usage``, ``sessions``, ``tools``, ``responses`` and ``files`` through a connection
(a read-only ``Store``'s ``db``) and write nothing; the tables and every write belong to
``schema`` and ``store`` (a response and its alias are looked up through ``Store.response``).
Hours are ``usage.hour`` (epoch hour).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

USAGE_SUMS = "SUM(input), SUM(output), SUM(cache_read), SUM(cw5m + cw1h), SUM(requests), SUM(cost)"
CHUNK = 500  # ids per IN (...) list


class Usage(NamedTuple):
    uncached_input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    requests: int = 0
    cost: float = 0.0

    def plus(self, o: Usage) -> Usage:
        return Usage(
            self.uncached_input + (o.uncached_input or 0),
            self.output + (o.output or 0),
            self.cache_read + (o.cache_read or 0),
            self.cache_write + (o.cache_write or 0),
            self.requests + (o.requests or 0),
            self.cost + (o.cost or 0),
        )


class SessionRow(NamedTuple):
    id: str
    cwd: str | None
    branch: str | None
    first_ts: float | None
    last_ts: float | None


class Filter(NamedTuple):
    """Which sessions: with activity in one of ``cwds`` (None: any), touching [day_start,
    day_end), whose id starts with ``prefix``."""

    cwds: Sequence[str] | None = None
    day: tuple[float, float] | None = None
    prefix: str = ""

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if self.cwds is not None:  # one JSON parameter, however many directories match
            where.append(
                "(s.cwd IN (SELECT value FROM json_each(?)) OR s.id IN (SELECT session FROM usage"
                " WHERE cwd IN (SELECT value FROM json_each(?))))"
            )
            args += [json.dumps(list(self.cwds))] * 2
        if self.day is not None:
            where.append("s.last_ts >= ? AND s.first_ts < ?")
            args += list(self.day)
        if self.prefix:
            where.append("substr(s.id, 1, ?) = ?")
            args += [len(self.prefix), self.prefix]
        return ("WHERE " + " AND ".join(where)) if where else "", args


ORDER = {
    "last": "s.last_ts",
    "start": "s.first_ts",
    "cost": "(SELECT SUM(cost) FROM usage u WHERE u.session = s.id)",
    "tokens": "(SELECT SUM(input + output + cache_read + cw5m + cw1h) FROM usage u WHERE u.session = s.id)",
}
SESSION_COLS = "s.id, s.cwd, s.branch, s.first_ts, s.last_ts"


def _chunks(ids: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        yield chunk, ",".join("?" * len(chunk))


# --- ccotel report -----------------------------------------------------------------------


# SQLite's localtime is the C library's, as Python's datetime.fromtimestamp is, but only for
# years 1971-2037: outside, SQLite takes 2000-01-01's offset (no DST, 2100-02-29). Those hours
# keep their hour as the key; the caller takes Python's local day of it.
_LOCAL_HOURS = (8760 + 24, 596088 - 24)  # 1971-01-02 .. 2037-12-31 UTC, in hours

_GROUPS = {  # the report's grouping key (a local day)
    "day": f"CASE WHEN hour BETWEEN {_LOCAL_HOURS[0]} AND {_LOCAL_HOURS[1]}"
    " THEN date(hour * 3600, 'unixepoch', 'localtime') ELSE hour END",
    "session": "session",
    "model": "''",
    "project": "''",
}


def usage_grouped(db: sqlite3.Connection, by: str, since_hour: int | None) -> list[tuple[Any, ...]]:
    """(key, model, cwd, first hour, last hour, input, output, cache_read, cw5m, cw1h,
    requests, cost) summed by ``by`` ("day": a local date, or the int hour outside 1971-2037;
    "session"; "model" and "project" give an empty key: they are told apart by model and
    cwd), model and cwd, from ``since_hour`` on."""
    key = _GROUPS[by]
    where = "WHERE hour >= ?" if since_hour is not None else ""
    return db.execute(
        f"SELECT {key} AS k, model, cwd, MIN(hour), MAX(hour), SUM(input), SUM(output),"
        " SUM(cache_read), SUM(cw5m), SUM(cw1h), SUM(requests), SUM(cost)"
        f" FROM usage {where} GROUP BY k, model, cwd",
        () if since_hour is None else (since_hour,),
    ).fetchall()


def session_times(db: sqlite3.Connection) -> list[tuple[str, float | None, float | None]]:
    """(id, first_ts, last_ts) of every session."""
    return db.execute("SELECT id, first_ts, last_ts FROM sessions").fetchall()


# --- billing blocks ----------------------------------------------------------------------


# --- /api/summary and /api/spend --------------------------------------------------------


def usage_by_model_since(db: sqlite3.Connection, hour: int) -> list[tuple[str, Usage]]:
    rows = db.execute(
        f"SELECT model, {USAGE_SUMS} FROM usage WHERE hour >= ? GROUP BY model", (hour,)
    )
    return [(m, Usage(*v)) for m, *v in rows]


def cost_since(db: sqlite3.Connection, hour: int) -> float:
    (c,) = db.execute(
        "SELECT COALESCE(SUM(cost), 0) FROM usage WHERE hour >= ?", (hour,)
    ).fetchone()
    return float(c)


def top_session_since(db: sqlite3.Connection, hour: int) -> tuple[str, float] | None:
    row = db.execute(
        "SELECT session, SUM(cost) AS c FROM usage WHERE hour >= ? GROUP BY session"
        " ORDER BY c DESC, session LIMIT 1",
        (hour,),
    ).fetchone()
    return (row[0], row[1]) if row and row[0] else None


def cost_by_hour(db: sqlite3.Connection, hour: int, by: str) -> list[tuple[int, str, float]]:
    """(hour, model or cwd, cost) since ``hour``."""
    col = {"model": "model", "project": "cwd"}[by]
    return db.execute(
        f"SELECT hour, {col}, SUM(cost) FROM usage WHERE hour >= ? GROUP BY 1, 2", (hour,)
    ).fetchall()


def cwds(db: sqlite3.Connection) -> list[str]:
    """Every working directory with activity: where responses were made, where sessions began."""
    return [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT cwd FROM usage UNION SELECT cwd FROM sessions WHERE cwd IS NOT NULL"
        )
    ]


# --- /api/sessions ----------------------------------------------------------------------


def sessions(
    db: sqlite3.Connection, f: Filter, sort: str, desc: bool, limit: int
) -> list[SessionRow]:
    where, args = f.sql()
    rows = db.execute(
        f"SELECT {SESSION_COLS} FROM sessions s {where}"
        f" ORDER BY COALESCE({ORDER[sort]}, 0) {'DESC' if desc else 'ASC'}, s.id LIMIT ?",
        (*args, limit),
    )
    return [SessionRow(*r) for r in rows]


def session_keys(db: sqlite3.Connection, f: Filter) -> list[tuple[str, float | None, float | None]]:
    """(id, first_ts, last_ts) of every matching session."""
    where, args = f.sql()
    return db.execute(
        f"SELECT s.id, s.first_ts, s.last_ts FROM sessions s {where}", args
    ).fetchall()


def sessions_by_id(db: sqlite3.Connection, ids: Sequence[str]) -> list[SessionRow]:
    out: list[SessionRow] = []
    for chunk, marks in _chunks(ids):
        out += [
            SessionRow(*r)
            for r in db.execute(
                f"SELECT {SESSION_COLS} FROM sessions s WHERE s.id IN ({marks})", chunk
            )
        ]
    return out


def count_sessions(db: sqlite3.Connection, f: Filter) -> int:
    where, args = f.sql()
    (n,) = db.execute(f"SELECT COUNT(*) FROM sessions s {where}", args).fetchone()
    return int(n)


def ids_with_prefix(db: sqlite3.Connection, prefix: str, limit: int) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT id FROM sessions WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
            (len(prefix), prefix, limit),
        )
    ]


def usage_by_session(
    db: sqlite3.Connection, ids: Sequence[str]
) -> list[tuple[str, str, str, Usage]]:
    """(session, model, cwd, usage) of each session."""
    out = []
    for chunk, marks in _chunks(ids):
        for sid, model, cwd, *v in db.execute(
            f"SELECT session, model, cwd, {USAGE_SUMS} FROM usage WHERE session IN ({marks})"
            " GROUP BY session, model, cwd",
            chunk,
        ):
            out.append((sid, model, cwd, Usage(*v)))
    return out


def tool_counts(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """session -> (tool calls, failed tool calls)."""
    out = {}
    for chunk, marks in _chunks(ids):
        for sid, n, err in db.execute(
            f"SELECT session, COUNT(*), SUM(status = 'error') FROM tools WHERE session IN ({marks})"
            " GROUP BY session",
            chunk,
        ):
            out[sid] = (n, err or 0)
    return out


def active_seconds(db: sqlite3.Connection, ids: Sequence[str], idle: float) -> dict[str, float]:
    """session -> the sum of the gaps of at most ``idle`` seconds between its events (each
    response, each tool call's start and end, its first and last record). One pass over
    ``responses`` (it has no index by session), whatever the number of sessions."""
    want = json.dumps(list(ids))
    rows = db.execute(
        """WITH ids(s) AS (SELECT value FROM json_each(?)),
        ev(s, t) AS (
            SELECT session, ts FROM responses WHERE session IN ids
            UNION ALL SELECT session, start_ts FROM tools WHERE session IN ids
            UNION ALL SELECT session, end_ts FROM tools WHERE session IN ids
            UNION ALL SELECT id, first_ts FROM sessions WHERE id IN ids
            UNION ALL SELECT id, last_ts FROM sessions WHERE id IN ids),
        g AS (SELECT s, t - LAG(t) OVER (PARTITION BY s ORDER BY t) AS gap FROM ev WHERE t IS NOT NULL)
        SELECT s, SUM(CASE WHEN gap <= ? THEN gap ELSE 0 END) FROM g GROUP BY s""",
        (want, idle),
    )
    return {sid: a or 0.0 for sid, a in rows}


def outcomes_by_session(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[int]]:
    """session -> [lines added, lines removed, commits, pull requests] (ccotel.state.ledger)."""
    out: dict[str, list[int]] = {}
    for chunk, marks in _chunks(ids):
        for sid, kind, n, added, removed in db.execute(
            f"SELECT session, kind, COUNT(*), SUM(added), SUM(removed) FROM outcome"
            f" WHERE session IN ({marks}) AND kind IN (1, 2, 3) GROUP BY session, kind",
            chunk,
        ):
            row = out.setdefault(sid, [0, 0, 0, 0])
            if kind == 1:
                row[0], row[1] = added or 0, removed or 0
            else:
                row[kind] = n  # 2: commits, 3: pull requests
    return out


# --- /api/sessions/<id> -----------------------------------------------------------------


def files_of(db: sqlite3.Connection, sid: str) -> list[tuple[str, int, int, int]]:
    """(path, dev, ino, offset read) of a session's files: its transcript, its subagents', and
    the legacy flat agent-*.jsonl beside it whose lines name it (discovery.session_of and
    discovery.flat_sessions: the answers accounting and the traces go by)."""
    from ccotel.sources import flat_sessions, is_flat_agent  # not for `ccotel report`

    rows = db.execute(
        "SELECT path, dev, ino, offset FROM files WHERE path LIKE ? ESCAPE '\\' OR path LIKE ? ESCAPE '\\'",
        (f"%/{_like(sid)}.jsonl", f"%/{_like(sid)}/subagents/%"),
    )
    out = [(p if isinstance(p, str) else os.fsdecode(p), d, i, o) for p, d, i, o in rows]
    # Flat agent files live beside the session's transcript; a session whose transcript was
    # never written (only its agents were) is looked for in every folder.
    folders = {os.path.dirname(p) for p, *_ in out if "/subagents/" not in p}
    patterns = [f"{_like(f)}/agent-%.jsonl" for f in sorted(folders)] or ["%/agent-%.jsonl"]
    for pattern in patterns:
        for p, d, i, o in db.execute(
            "SELECT path, dev, ino, offset FROM files WHERE path LIKE ? ESCAPE '\\'", (pattern,)
        ):
            p = p if isinstance(p, str) else os.fsdecode(p)
            if is_flat_agent(p) and sid in flat_sessions(p, i, o) and (p, d, i, o) not in out:
                out.append((p, d, i, o))
    return out


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- the live board ------------------------------------------------------------------------


def spend_since(db: sqlite3.Connection, since: float) -> list[tuple[str, float, float]]:
    """(session, ts, cost) of each kept response from ``since``."""
    return db.execute("SELECT session, ts, cost FROM responses WHERE ts >= ?", (since,)).fetchall()
