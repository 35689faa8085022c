"""`backfill --rebuild`: a new state from the transcripts, swapped in only when complete.

1. The state dir's lock first: with a daemon running, nothing is touched; a state written
   by a newer ccotel is refused like everywhere else (upgrade instead).
2. The new state is built beside the old one (state.db.rebuild, same folder, so the swap is
   one rename).
3. Before replacing, the old state is compared with the new: the sessions it holds that the
   transcripts no longer do (Claude Code deletes transcripts after 30 days), and their
   dollars. If there are any, the old state is kept unless ``force``.
4. The swap: the old state's WAL is folded into it and removed (a WAL left beside the new
   file would be replayed into it), then the new file is renamed over the old one.

The trace shipper's progress (trace_* tables) is carried over from a readable old state,
so spans already delivered are not sent again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccotel.log import get_logger
from ccotel.state.readonly import DB_NAME, refuse_newer
from ccotel.state.store import Store, open_lock

if TYPE_CHECKING:
    from ccotel.config import Config

log = get_logger()

NEW_NAME = DB_NAME + ".rebuild"
_SIDE = ("-wal", "-shm", "-journal")
_TRACE_TABLES = ("trace_files", "trace_sessions", "trace_chats", "trace_meta")


def rebuild_state(
    cfg: Config, fill: Callable[[Store], dict[str, Any]], force: bool = False
) -> dict[str, Any]:
    """Build a new state with ``fill(store)`` (which reads the transcripts into it) and swap
    it in. Returns fill's result with ``lost_sessions``, ``lost_usd`` (what the old state
    held that the new one does not), ``kept`` (True: the old state stays, nothing changed)
    and ``old`` ("replaced", "kept", "none", or the path an unreadable old state was moved to).
    """
    state_dir = cfg.resolved_state_dir()
    lock = open_lock(state_dir)  # refused while a daemon holds it, before anything is touched
    try:
        old, new = state_dir / DB_NAME, state_dir / NEW_NAME
        if old.exists():  # a newer ccotel's state is not ours to replace
            refuse_newer(old)
        _remove(new)  # from a rebuild that did not finish
        store = Store(state_dir, db_name=NEW_NAME, lock=lock)
        try:
            out = fill(store)
            lost = _lost(old, store.db) if old.exists() else (0, 0.0)
            if lost is not None and old.exists():
                _carry_traces(old, store.db)
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            store.close()
        out["lost_sessions"], out["lost_usd"] = lost or (None, None)
        if out.get("interrupted") or (lost and (lost[0] or lost[1] > 1e-9) and not force):
            _remove(new)
            out["kept"], out["old"] = True, "kept"
            return out
        out["kept"] = False
        out["old"] = _swap(old, new, readable=lost is not None)
        return out
    except BaseException:
        _remove(state_dir / NEW_NAME)
        raise
    finally:
        lock.release()


def _lost(old: Path, new: sqlite3.Connection) -> tuple[int, float] | None:
    """Sessions (and dollars) of the old state missing from the new; None: unreadable."""
    try:
        db = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
        try:
            (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            old_cost = dict(db.execute("SELECT session, SUM(cost) FROM usage GROUP BY session"))
            old_ids = {sid for (sid,) in db.execute("SELECT id FROM sessions")} | set(old_cost)
        finally:
            db.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        log.warning("the old state is unreadable; it is moved aside", path=str(old), error=str(exc))
        return None
    new_cost = dict(new.execute("SELECT session, SUM(cost) FROM usage GROUP BY session"))
    new_ids = {sid for (sid,) in new.execute("SELECT id FROM sessions")} | set(new_cost)
    sessions = len(old_ids - new_ids - {""})
    usd = sum(max(0.0, c - new_cost.get(s, 0.0)) for s, c in old_cost.items())
    return sessions, usd


def _carry_traces(old: Path, new: sqlite3.Connection) -> None:
    try:
        new.execute("ATTACH DATABASE ? AS old", (str(old),))  # read only below
    except sqlite3.Error:
        return
    try:
        have = {n for (n,) in new.execute("SELECT name FROM old.sqlite_master WHERE type='table'")}
        new.execute("BEGIN IMMEDIATE")
        for t in _TRACE_TABLES:
            if t in have:  # the columns both have (an older state may lack some)
                cols = {r[1] for r in new.execute(f"PRAGMA old.table_info({t})")}
                both = ", ".join(
                    r[1] for r in new.execute(f"PRAGMA main.table_info({t})") if r[1] in cols
                )
                new.execute(f"INSERT OR REPLACE INTO main.{t}({both}) SELECT {both} FROM old.{t}")
        new.execute("COMMIT")
    except sqlite3.Error as exc:
        if new.in_transaction:
            new.execute("ROLLBACK")
        log.warning("trace progress not carried over; spans may be sent again", error=str(exc))
    finally:
        new.execute("DETACH DATABASE old")


def _swap(old: Path, new: Path, readable: bool) -> str:
    """Put ``new`` in place of ``old`` (one rename); returns what became of the old."""
    outcome = "none"
    if old.exists():
        if readable:
            with contextlib.suppress(sqlite3.Error):  # fold the WAL into the file
                db = sqlite3.connect(old)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.close()
            outcome = "replaced"
        else:  # keep what is left of it for whoever wants to look
            aside = old.with_name(f"{DB_NAME}.unreadable-{int(time.time())}")
            for sfx in ("", *_SIDE):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{old}{sfx}", f"{aside}{sfx}")
            outcome = str(aside)
    for sfx in _SIDE:  # the old state's: they must not outlive it
        Path(f"{old}{sfx}").unlink(missing_ok=True)
    for sfx in _SIDE:  # the new state's, empty after its checkpoint and close
        Path(f"{new}{sfx}").unlink(missing_ok=True)
    os.replace(new, old)
    fd = os.open(old.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return outcome


def _remove(db: Path) -> None:
    for sfx in ("", *_SIDE):
        Path(f"{db}{sfx}").unlink(missing_ok=True)
