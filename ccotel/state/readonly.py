"""Reading a state without writing it (``ccotel report``, the page): SQLite alone, no msgspec
or hashing loaded, so a report starts fast; and the errors every state user shares."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ccotel.state import schema as sql

DB_NAME = "state.db"


class StateError(RuntimeError):
    """The state cannot be used; the message says what to do."""


class StateLocked(StateError):
    pass


def newer_message(path: Path, version: int) -> str:
    return (
        f"state {path} was written by a newer ccotel (schema {version}; "
        f"this one reads up to {sql.VERSION}): upgrade ccotel, or use another --state-dir"
    )


def refuse_newer(path: Path) -> None:
    """StateError when the state file at ``path`` was written by a newer ccotel (a file that
    cannot be read says nothing: whoever opens it next reports that)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error:
        return
    finally:
        db.close()
    if version > sql.VERSION:
        raise StateError(newer_message(path, version))


_NOT_DAMAGE = {
    5: "is locked by another process (busy)",
    8: "is read-only",
    10: "could not be read or written (I/O error)",
    13: "is on a full disk",
    14: "cannot be opened",
}


def db_error_message(path: Path, exc: BaseException) -> str:
    """What to do about an SQLite error: free space or fix permissions when the disk is
    the problem (the state is intact, nothing to rebuild), rebuild when the file is damaged."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _NOT_DAMAGE:
        return (
            f"state database {path} {_NOT_DAMAGE[code & 0xFF]} ({exc}); nothing was lost: "
            "free space or fix the permissions, then start ccotel again"
        )
    return f"state database {path} is unreadable ({exc}); rebuild it from the transcripts with `ccotel backfill --rebuild`"


def check_version(path: Path, version: int) -> None:
    if version > sql.VERSION:
        raise StateError(newer_message(path, version))


def connect_readonly(path: Path, cache_mib: int | None = None) -> sqlite3.Connection:
    """The state database at ``path``, opened read-only (a WAL reader beside the writer)."""
    if not path.exists():
        raise StateError(f"no state at {path}: run `ccotel backfill` or `ccotel run` first")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                         check_same_thread=False)  # fmt: skip
    try:
        for p in sql.PRAGMAS[3:]:
            db.execute(p)
        if cache_mib is not None:
            db.execute(sql.CACHE_SIZE.format(kib=cache_mib * 1024))
        check_version(path, db.execute("PRAGMA user_version").fetchone()[0])
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a corrupt file fails either way
        db.close()
        raise StateError(db_error_message(path, exc)) from exc
    except BaseException:
        db.close()
        raise
    return db
