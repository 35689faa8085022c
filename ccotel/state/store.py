"""The SQLite state: offsets, de-duplication keys and totals, one transaction per batch."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ccotel.batch import Batch, FileCursor
from ccotel.state import schema as sql

DB_NAME = "state.db"
LOCK_NAME = "daemon.lock"


class StateError(RuntimeError):
    """The state cannot be used; the message says what to do."""


class StateLocked(StateError):
    pass


class Store:
    def __init__(self, state_dir: Path, *, readonly: bool = False):
        self.dir = state_dir
        self.path = state_dir / DB_NAME
        self.readonly = readonly
        self._lock_fd: int | None = None
        if readonly:
            if not self.path.exists():
                raise StateError(
                    f"no state at {self.path}: run `ccotel backfill` or `ccotel run` first"
                )
            uri = f"file:{self.path}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            try:
                state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._lock()
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                os.chmod(self.path, 0o600)
            except OSError as exc:  # read-only filesystem, no permission, disk full
                raise StateError(
                    f"cannot write the state in {state_dir}: {exc.strerror or exc}"
                ) from None
        try:
            for p in sql.PRAGMAS if not readonly else sql.PRAGMAS[3:]:
                self.db.execute(p)
            if not readonly:
                self._migrate()
        except (
            sqlite3.DatabaseError,
            UnicodeDecodeError,
        ) as exc:  # a corrupt file can fail either way
            raise StateError(db_error_message(self.path, exc)) from exc

    # --- lifecycle -----------------------------------------------------------

    def _lock(self) -> None:
        lock = self.dir / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateLocked(
                f"another ccotel (pid {other}) is using the state in {self.dir}; "
                "stop it first, or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _migrate(self) -> None:
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        if version > sql.VERSION:
            raise StateError(f"state {self.path} is from a newer ccotel (schema {version})")
        with self.tx():
            for stmt in sql.CREATE:
                self.db.execute(stmt)
            self.db.execute(f"PRAGMA user_version={sql.VERSION}")

    def close(self) -> None:
        self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def tx(self) -> _Tx:
        return _Tx(self.db)

    # --- reads ---------------------------------------------------------------

    def files(self) -> dict[str, FileCursor]:
        return {
            path if isinstance(path, str) else _path_from_db(path): FileCursor(
                dev, ino, offset, line_no, marker or b""
            )
            for path, dev, ino, offset, line_no, marker in self.db.execute(sql.FILES_ALL)
        }

    def response(self, key: int) -> tuple | None:
        row = self.db.execute(sql.RESPONSE_GET, (key,)).fetchone()
        if row is None:
            target = self.db.execute(sql.ALIAS_GET, (key,)).fetchone()
            if target is not None:
                row = self.db.execute(sql.RESPONSE_GET, (target[0],)).fetchone()
        return row

    def responses_by_mkey(self, mkey: int) -> list[tuple]:
        return self.db.execute(sql.RESPONSE_BY_MKEY, (mkey,)).fetchall()

    def response_keys(self) -> Iterator[tuple[int, int]]:
        yield from self.db.execute(sql.RESPONSE_KEYS)
        for (key,) in self.db.execute(sql.ALIAS_KEYS):
            yield key, None

    def session(self, sid: str) -> tuple | None:
        return self.db.execute(sql.SESSION_GET, (sid,)).fetchone()

    def tool(self, tid: str) -> tuple | None:
        return self.db.execute(sql.TOOL_GET, (tid,)).fetchone()

    def usage_by_labels(self) -> list[tuple]:
        return self.db.execute(sql.USAGE_BY_LABELS).fetchall()

    def tool_agg(self) -> dict[tuple[str, str, str], list]:
        return {
            (tool, cwd, status): [count, dur, json.loads(buckets)]
            for tool, cwd, status, count, dur, buckets in self.db.execute(sql.TOOL_AGG_ALL)
        }

    def sessions_by_cwd(self) -> dict[str, int]:
        return dict(self.db.execute(sql.SESSIONS_BY_CWD).fetchall())

    def sessions_since(self, ts: float) -> list[tuple]:
        return self.db.execute(sql.SESSIONS_SINCE, (ts,)).fetchall()

    def spend_since(self, minute: int) -> dict[int, float]:
        return dict(self.db.execute(sql.SPEND_SINCE, (minute,)).fetchall())

    def counters(self) -> dict[str, float]:
        return dict(self.db.execute(sql.COUNTERS_ALL).fetchall())

    def meta(self, key: str) -> str | None:
        row = self.db.execute(sql.META_GET, (key,)).fetchone()
        return row[0] if row else None

    def query(self, q: str, args: tuple = ()) -> list[tuple]:
        return self.db.execute(q, args).fetchall()

    # --- the one write path --------------------------------------------------

    def commit(self, b: Batch) -> None:
        """Write everything a batch changed, offsets included, atomically."""
        db = self.db
        with self.tx():
            db.executemany(
                sql.FILE_UPSERT,
                [
                    (_path_to_db(p), c.dev, c.ino, c.offset, c.line_no, c.marker)
                    for p, c in b.files.items()
                ],
            )
            db.executemany(sql.FILE_DELETE, [(_path_to_db(p),) for p in b.forgotten])
            db.executemany(sql.RESPONSE_UPSERT, b.responses.values())
            db.executemany(sql.ALIAS_PUT, b.aliases.items())
            db.executemany(sql.USAGE_ADD, [(*k, *v) for k, v in b.usage.items()])
            db.executemany(sql.SESSION_UPSERT, [(k, *v) for k, v in b.sessions.items()])
            db.executemany(sql.TOOL_UPSERT, b.tools.values())
            db.executemany(
                sql.TOOL_AGG_PUT,
                [(*k, c, d, json.dumps(bk)) for k, (c, d, bk) in b.tool_agg.items()],
            )
            db.executemany(sql.SPEND_ADD, b.spend.items())
            db.executemany(sql.COUNTER_ADD, b.counters.items())

    def prune_spend(self, before_minute: int) -> None:
        with self.tx():
            self.db.execute(sql.SPEND_PRUNE, (before_minute,))

    def set_meta(self, key: str, value: str) -> None:
        with self.tx():
            self.db.execute(sql.META_PUT, (key, value))


_NOT_DAMAGE = {
    8: "is read-only",
    10: "could not be written (I/O error)",
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


def _path_to_db(path: str) -> str | bytes:
    """A file name that is not UTF-8 (surrogate-escaped by Python) is kept as its bytes:
    SQLite text must be UTF-8, and the name must map back to the same file."""
    try:
        path.encode()
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _path_from_db(path: bytes) -> str:
    return os.fsdecode(path)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def open_readonly(state_dir: Path) -> Store:
    return Store(state_dir, readonly=True)
