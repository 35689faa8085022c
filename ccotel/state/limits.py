"""The SQL of plan limits and billing blocks (read by ccotel.statusline and ccotel.blocks)."""

from __future__ import annotations

import sqlite3

# Block entries: every de-duplicated response (the `responses` view, or the table of a
# state not migrated yet), and the zero-usage API-error lines ccusage
# counts too (block_marks).
BLOCK_ENTRIES = """SELECT 0, key, ts, input, output, cw5m + cw1h, cache_read, cost FROM responses
    WHERE ts >= ?
    UNION ALL SELECT 1, key, ts, 0, 0, 0, 0, 0.0 FROM block_marks WHERE ts >= ?"""

# (kind, key, ts, input, output, cache_write, cache_read, cost)
BlockEntry = tuple[int, int, float, int, int, int, int, float]

HAS_MARKS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'block_marks'"
SESSION_COST = "SELECT COALESCE(SUM(cost), 0) FROM usage WHERE session = ?"

PLAN_PUT = """INSERT OR REPLACE INTO plan_history(win, reported_at, used_ratio, resets_at)
    VALUES(?,?,?,?)"""
PLAN_LATEST = """SELECT win, used_ratio, resets_at, reported_at FROM plan_history p
    WHERE reported_at = (SELECT MAX(reported_at) FROM plan_history WHERE win = p.win)"""
PLAN_SINCE = """SELECT win, reported_at, used_ratio, resets_at FROM plan_history
    WHERE reported_at >= ? ORDER BY win, reported_at"""
PLAN_PRUNE_AGE = "DELETE FROM plan_history WHERE reported_at < ?"
PLAN_PRUNE_ROWS = """DELETE FROM plan_history WHERE win = ? AND reported_at <
    (SELECT reported_at FROM plan_history WHERE win = ? ORDER BY reported_at DESC
     LIMIT 1 OFFSET ?)"""


def block_entries(db: sqlite3.Connection, since: float = float("-inf")) -> list[BlockEntry]:
    """(kind, key, ts, input, output, cache_write, cache_read, cost) of every block entry
    since: kind 0 a response, 1 a zero-usage API-error line (the two keys are apart). A
    state from before block_marks (read-only, not migrated) has responses only."""
    if db.execute(HAS_MARKS).fetchone() is None:
        return db.execute(BLOCK_ENTRIES.split(" UNION ALL ")[0], (since,)).fetchall()
    return db.execute(BLOCK_ENTRIES, (since, since)).fetchall()


def session_cost(db: sqlite3.Connection, session: str) -> float:
    """A session's cost as `ccotel report --by session` counts it."""
    cost: float = db.execute(SESSION_COST, (session,)).fetchone()[0]
    return cost


def plan_latest(db: sqlite3.Connection) -> list[tuple[str, float, float | None, float]]:
    """(window, used_ratio, resets_at, reported_at): the newest report of each window."""
    return db.execute(PLAN_LATEST).fetchall()


def plan_history(
    db: sqlite3.Connection, since: float
) -> list[tuple[str, float, float, float | None]]:
    """(window, reported_at, used_ratio, resets_at) since, oldest first per window."""
    return db.execute(PLAN_SINCE, (since,)).fetchall()


def plan_write(
    db: sqlite3.Connection,
    rows: list[tuple[str, float, float, float | None]],
    keep_after: float,
    keep_rows: int,
) -> None:
    """Append (window, reported_at, used_ratio, resets_at) rows and prune, in one transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(PLAN_PUT, rows)
        db.execute(PLAN_PRUNE_AGE, (keep_after,))
        for win in {r[0] for r in rows}:
            db.execute(PLAN_PRUNE_ROWS, (win, win, keep_rows))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
