"""The SQLite state: offsets, de-duplication keys and totals, one transaction per batch."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from msgspec.structs import astuple

from ccotel.batch import Batch, FileCursor, Response, ToolAgg, ToolCall, UsageSums
from ccotel.keys import h64
from ccotel.state import ledger as outcome_ledger
from ccotel.state import schema as sql
from ccotel.state.readonly import (
    DB_NAME,
    StateError,
    StateLocked,
    check_version,
    connect_readonly,
    db_error_message,
)

LOCK_NAME = "daemon.lock"
_NAMES_CACHED = 8192
READ_PAUSES = (0.01, 0.1)  # a lookup that fails is tried again after these pauses
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _retried(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A lookup made while accounting, tried again when it fails (busy, a transient I/O
    error): a read has no effect to undo. A failure that lasts is raised, and the caller
    treats it like a failed commit (pipeline.Ingest._read_failed)."""

    @functools.wraps(fn)
    def lookup(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        for pause in READ_PAUSES:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError:
                time.sleep(pause)
        return fn(*args, **kwargs)

    return lookup


_STATUS = {None: None, "ok": 0, "error": 1}


class StateLock:
    """The one writer's lock on a state dir (flock: released by the kernel when the process
    dies, however it dies). Holds the owner's pid for the message of the one refused."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.fd: int | None = None
        lock = state_dir / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateLocked(
                f"another ccotel (pid {other}) is using the state in {state_dir}; "
                "stop it first, or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_lock(state_dir: Path) -> StateLock:
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return StateLock(state_dir)
    except OSError as exc:  # read-only filesystem, no permission, disk full
        hint = ""
        if exc.errno == errno.EROFS and os.environ.get("INVOCATION_ID"):  # run by systemd
            hint = (
                " (the service may write only to the state folder it was installed with: "
                "after changing state_dir, run `ccotel service install` again)"
            )
        raise StateError(
            f"cannot write the state in {state_dir}: {exc.strerror or exc}{hint}"
        ) from None


class Store:
    """One state database. ``lock``: a StateLock the caller already holds (the store then
    does not take or release one); by default the store takes the state dir's lock.
    ``cache_mib``: SQLite's page cache, instead of the writer's (schema.PRAGMAS)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        readonly: bool = False,
        db_name: str = DB_NAME,
        lock: StateLock | None = None,
        cache_mib: int | None = None,
    ):
        self.dir = state_dir
        self.path = state_dir / db_name
        self.readonly = readonly
        self._own_lock: StateLock | None = None
        self._lock = lock  # held by the caller, or taken below
        self._names: dict[str, int] = {}
        self.db: sqlite3.Connection
        self._open = False  # self.db is open
        self.indexes_missing = False  # deferred indexes the open could not build
        if readonly:
            self.db = connect_readonly(self.path, cache_mib)
            self._open = True
            (self.version,) = self.db.execute("PRAGMA user_version").fetchone()
            return
        if lock is None:
            self._lock = self._own_lock = open_lock(state_dir)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._open = True
            os.chmod(self.path, 0o600)
        except OSError as exc:
            self.close()
            raise StateError(
                f"cannot write the state in {state_dir}: {exc.strerror or exc}"
            ) from None
        try:
            self.db.create_function("ccotel_h64", 1, h64, deterministic=True)
            for p in sql.PRAGMAS:
                self.db.execute(p)
            if cache_mib is not None:
                self.db.execute(sql.CACHE_SIZE.format(kib=cache_mib * 1024))
            (self.version,) = self.db.execute("PRAGMA user_version").fetchone()
            check_version(self.path, self.version)
            (check,) = self.db.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":  # damage SQLite sees: refuse it before writing over it
                raise sqlite3.DatabaseError(f"quick_check: {check.splitlines()[0]}")
            self._migrate()
            try:  # a first backfill stopped before it built them
                self.restore_indexes()
            except sqlite3.OperationalError:  # a full disk: the next backfill (they only speed
                self.indexes_missing = True  # lookups up; the state is whole)
        except (
            sqlite3.DatabaseError,
            UnicodeDecodeError,
        ) as exc:  # a corrupt file fails either way
            self.close()
            raise StateError(db_error_message(self.path, exc)) from exc
        except BaseException:
            self.close()
            raise

    # --- lifecycle -----------------------------------------------------------

    def _migrate(self) -> None:
        if self.version == sql.VERSION:
            return
        upgraded = self.version > 0
        with self.tx():
            for stmts in sql.MIGRATIONS[self.version :]:
                for stmt in stmts:
                    self.db.execute(stmt)
            self.db.execute(f"PRAGMA user_version={sql.VERSION}")
        self.version = sql.VERSION
        if upgraded:  # give back the pages of the tables a migration replaced
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: reused later
                self.db.execute("VACUUM")

    def close(self) -> None:
        if self._open:
            self.db.close()
            self._open = False
        if self._own_lock is not None:
            self._own_lock.release()
            self._own_lock = None

    @property
    def lock_fd(self) -> int | None:
        """The lock's descriptor, which forked decode workers close (pipeline._worker_init)."""
        return self._lock.fd if self._lock else None

    def tx(self) -> Transaction:
        return Transaction(self.db)

    # --- reads ---------------------------------------------------------------

    def files(self) -> dict[str, FileCursor]:
        return {
            path if isinstance(path, str) else _path_from_db(path): FileCursor(
                dev, ino, offset, line_no, marker or b""
            )
            for path, dev, ino, offset, line_no, marker in self.db.execute(sql.FILES_ALL)
        }

    @_retried
    def response(self, key: int) -> Response | None:
        return response_row(self.db, key)

    @_retried
    def responses_by_mkey(self, mkey: int) -> list[Response]:
        return [Response(*r) for r in self.db.execute(sql.RESPONSE_BY_MKEY, (mkey,))]

    def response_keys(self) -> Iterator[tuple[int, int | None]]:
        yield from self.db.execute(sql.RESPONSE_KEYS)
        for (key,) in self.db.execute(sql.ALIAS_KEYS):
            yield key, None

    def tool_keys(self) -> Iterator[int]:
        for (key,) in self.db.execute(sql.TOOL_KEYS):
            yield key

    def session_ids(self) -> Iterator[str]:
        for (sid,) in self.db.execute(sql.SESSION_IDS):
            yield sid

    def places(self) -> Iterator[tuple[str, str]]:
        """(session, cwd): each working directory a session had activity in."""
        yield from self.db.execute(sql.PLACES_ALL)

    @_retried
    def session_cwd(self, sid: str) -> str | None:
        """The session's first working directory ("" if none); None: no such session."""
        row = self.db.execute(sql.SESSION_CWD, (sid,)).fetchone()
        return None if row is None else row[0] or ""

    @_retried
    def has_place(self, sid: str, cwd: str) -> bool:
        return self.db.execute(sql.PLACE_GET, (sid, cwd)).fetchone() is not None

    @_retried
    def tool(self, key: int) -> ToolCall | None:
        row = self.db.execute(sql.TOOL_GET, (key,)).fetchone()
        return None if row is None else ToolCall(*row)

    def usage_by_labels(self) -> dict[tuple[str, str], UsageSums]:
        """The usage sums of each (model, cwd)."""
        return {
            (model, cwd): UsageSums(*sums)
            for model, cwd, *sums in self.db.execute(sql.USAGE_BY_LABELS)
        }

    def tool_agg(self) -> dict[tuple[str, str, str], ToolAgg]:
        return {
            (tool, cwd, status): ToolAgg(count, dur, json.loads(buckets))
            for tool, cwd, status, count, dur, buckets in self.db.execute(sql.TOOL_AGG_ALL)
        }

    def session_count(self) -> int:
        return int(self.db.execute(sql.SESSION_COUNT).fetchone()[0])

    def sessions_by_cwd(self) -> dict[str, int]:
        """Sessions with activity in each working directory (a session may count in several)."""
        return dict(self.db.execute(sql.PLACES_BY_CWD).fetchall())

    def places_since(self, ts: float) -> list[tuple[str, str, float]]:
        return self.db.execute(sql.PLACES_SINCE, (ts,)).fetchall()

    def spend_since(self, minute: int) -> dict[int, float]:
        return dict(self.db.execute(sql.SPEND_SINCE, (minute,)).fetchall())

    def counters(self) -> dict[str, float]:
        return dict(self.db.execute(sql.COUNTERS_ALL).fetchall())

    @_retried
    def meta(self, key: str) -> str | None:
        row = self.db.execute(sql.META_GET, (key,)).fetchone()
        return row[0] if row else None

    def query(self, q: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Any read-only SQL (tests and debugging; ccotel's own reads are named methods)."""
        return self.db.execute(q, args).fetchall()

    # --- the one write path --------------------------------------------------

    def commit(self, b: Batch) -> None:
        """Write everything a batch changed, offsets included, atomically."""
        db = self.db
        added: list[str] = []
        try:
            with self.tx():
                texts = {t for r in b.responses.values() for t in (r.session, r.cwd, r.model) if t}
                texts |= {t for c in b.tools.values() for t in (c.name, c.session, c.cwd) if t}
                nid = self._name_ids(texts, added)
                db.executemany(
                    sql.FILE_UPSERT,
                    [
                        (_path_to_db(p), c.dev, c.ino, c.offset, c.line_no, c.marker)
                        for p, c in b.files.items()
                    ],
                )
                db.executemany(sql.FILE_DELETE, [(_path_to_db(p),) for p in b.forgotten])
                # in key order: B-tree inserts at neighbouring pages, not at random ones
                db.executemany(
                    sql.RESPONSE_PUT, sorted(_response_row(r, nid) for r in b.responses.values())
                )
                db.executemany(sql.ALIAS_PUT, b.aliases.items())
                db.executemany(sql.USAGE_ADD, [(*k, *astuple(v)) for k, v in b.usage.items()])
                db.executemany(
                    sql.SESSION_UPSERT, [(k, *astuple(v)) for k, v in b.sessions.items()]
                )
                db.executemany(
                    sql.PLACE_UPSERT, [(*k, v.first, v.last) for k, v in b.places.items()]
                )
                db.executemany(
                    sql.TOOL_PUT,
                    sorted(_tool_row(c, nid) for c in b.tools.values()),
                )
                db.executemany(
                    sql.TOOL_AGG_PUT,
                    [
                        (*k, a.count, a.dur_sum, json.dumps(a.buckets))
                        for k, a in b.tool_agg.items()
                    ],
                )
                db.executemany(sql.SPEND_ADD, b.spend.items())
                db.executemany(sql.MARK_PUT, b.marks.items())
                db.executemany(sql.COUNTER_ADD, b.counters.items())
                if b.outcomes:
                    outcome_ledger.write(db, b.outcomes)
        except BaseException:
            for name in added:  # their rows were rolled back with the rest
                self._names.pop(name, None)
            raise

    def _name_ids(self, names: set[str], added: list[str]) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for name in names:
            i = self._names.get(name)
            if i is None:
                row = self._name_get(name)
                if row is None:
                    i = self.db.execute(sql.NAME_ADD, (name,)).lastrowid
                    assert i is not None  # an insert into a rowid table
                    added.append(name)
                else:
                    i = row[0]
                if len(self._names) >= _NAMES_CACHED:
                    self._names.clear()
                self._names[name] = i
            out[name] = i
        return out

    @_retried
    def _name_get(self, name: str) -> tuple[int] | None:
        row: tuple[int] | None = self.db.execute(sql.NAME_GET, (name,)).fetchone()
        return row

    def defer_indexes(self) -> bool:
        """Drop the indexes a first backfill is faster to build once at its end (the caller
        then calls restore_indexes; a state opened without them gets them back). Only on a
        state whose tables they index are empty: nothing looks them up meanwhile."""
        try:
            with self.tx():
                if self.db.execute("SELECT 1 FROM response UNION ALL SELECT 1 FROM tool_call "
                                   "LIMIT 1").fetchone():  # fmt: skip
                    return False
                for name in sql.DEFERRABLE_INDEXES:
                    self.db.execute(f"DROP INDEX IF EXISTS {name}")
            return True
        except sqlite3.Error:
            return False  # built row by row then

    def restore_indexes(self) -> None:
        """Build the deferred indexes that are missing."""
        have = {name for (name,) in self.db.execute(sql.INDEXES_PRESENT)}
        missing = [stmt for name, stmt in sql.DEFERRABLE_INDEXES.items() if name not in have]
        if missing:
            with self.tx():
                for stmt in missing:
                    self.db.execute(stmt)
        self.indexes_missing = False

    def end_failed(self) -> None:
        """End the transaction a failed COMMIT and ROLLBACK left open: until then this
        connection's reads see the batch that failed, and lines read again would look counted
        already. Raises when it still cannot (the caller reads again later)."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def checkpoint(self) -> None:
        """Fold the WAL into the file now (after a catch-up), not in the next small commit."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def prune_spend(self, before_minute: int) -> None:
        with self.tx():
            self.db.execute(sql.SPEND_PRUNE, (before_minute,))

    def set_meta(self, key: str, value: str) -> None:
        with self.tx():
            self.db.execute(sql.META_PUT, (key, value))

    def del_meta(self, key: str) -> None:
        with self.tx():
            self.db.execute(sql.META_DEL, (key,))


def response_row(db: sqlite3.Connection, key: int) -> Response | None:
    """A kept response by its key, or by the key of a copy that is its alias."""
    row = db.execute(sql.RESPONSE_GET, (key,)).fetchone()
    if row is None:
        target = db.execute(sql.ALIAS_GET, (key,)).fetchone()
        if target is not None:
            row = db.execute(sql.RESPONSE_GET, (target[0],)).fetchone()
    return None if row is None else Response(*row)


def _tool_row(c: ToolCall, nid: dict[str | None, int]) -> tuple[Any, ...]:
    return (c.key, nid[c.name], nid.get(c.session), nid.get(c.cwd), c.start, c.end,
            _STATUS[c.status])  # fmt: skip


def _response_row(r: Response, nid: dict[str | None, int]) -> tuple[Any, ...]:
    """A response as the response table keeps it (texts by id, flags in one integer)."""
    flags = (1 if r.sidechain else 0) | (2 if r.has_speed else 0) | (4 if r.priced else 0)
    return (r.key, r.mkey, nid.get(r.session), nid.get(r.cwd), nid.get(r.model), r.ts, r.input,
            r.output, r.cache_read, r.cw5m, r.cw1h, r.web_search, flags, r.cost)  # fmt: skip


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


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, and a ROLLBACK whenever the commit did not happen: a
    COMMIT that fails (SQLITE_BUSY, a full disk) can leave the transaction open, and the
    next BEGIN would then fail for ever."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        if self.db.in_transaction:  # a ROLLBACK that failed left one open: end it first
            self.db.execute("ROLLBACK")
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite rolled back already (SQLITE_FULL)
                self.db.execute("ROLLBACK")


def open_readonly(state_dir: Path) -> Store:
    return Store(state_dir, readonly=True)
