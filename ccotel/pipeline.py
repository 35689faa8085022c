"""The ingest pipeline: files -> records -> digests -> accounting -> one commit -> totals.

Used by the daemon (live, one batch per wake-up) and by backfill (many files a
batch, decoded by worker processes). Offsets move only with the commit that
holds what they produced.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec
import structlog

from ccotel.accounting import Accountant, FileContext
from ccotel.batch import Batch, FileCursor
from ccotel.config import Config
from ccotel.digest import Digest, digest
from ccotel.pricing import PriceTable
from ccotel.records import decode
from ccotel.sources.discovery import session_of, transcript_files
from ccotel.sources.tail import Chunk, read_new
from ccotel.state.store import Store
from ccotel.totals import Totals

log = structlog.get_logger()

_ERRORS_LOGGED_PER_FILE = 5
BATCH_LINES = 50_000


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Digest)


def _digest_chunks(
    path: str, cursor: FileCursor | None, max_line: int, cwd: str | None
) -> Iterator[tuple[Chunk, Digest]]:
    """Read a file's new lines and reduce them, chunk by chunk."""
    session = session_of(path)
    for ch in read_new(path, cursor, max_line):
        recs = [r for n, raw in ch.lines if (r := decode(raw, n)) is not None]
        d = digest(recs, len(ch.lines), session, cwd)
        cwd = d.cwd
        yield ch, d


def _digest_file(
    args: tuple,
) -> tuple[list[tuple[tuple | None, list[int], bool, bytes]], str | None]:
    """Worker: one file's new lines as digests (msgpack); or the error that stopped reading it."""
    path, cursor, max_line, cwd = args
    out = []
    try:
        for ch, d in _digest_chunks(path, FileCursor(*cursor) if cursor else None, max_line, cwd):
            c = ch.cursor
            cur_args = (c.dev, c.ino, c.offset, c.line_no, c.marker) if c else None
            out.append((cur_args, ch.oversized, ch.restarted, _encoder.encode(d)))
    except FileNotFoundError:
        return out, ""
    except OSError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


class Ingest:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        roots: list[Path],
        clock: Callable[[], float],
    ):
        self.cfg, self.store, self.roots, self.clock = cfg, store, roots, clock
        self.prices = PriceTable(
            Path(cfg.pricing_file).expanduser() if cfg.pricing_file else None,
            cfg.pricing_rules,
            cfg.price_web_search,
        )
        self.acct = Accountant(store, self.prices, clock)
        self.totals = Totals.load(store, clock())
        self.cursors = store.files()
        self.totals.files_tracked = len(self.cursors)
        self.unreadable: set[str] = set()  # paths already warned about
        self._walk_failed: set[str] = set()  # folders the last walk could not read
        self._ctx: dict[str, FileContext] = {}
        self._errors_logged: dict[str, int] = {}
        self._commit_failed = False
        self._pending: dict[str, int] = {}

    # --- discovery -----------------------------------------------------------

    def all_files(self) -> list[str]:
        files: list[str] = []
        failed, self._walk_failed = self._walk_failed, set()
        for root in self.roots:
            files.extend(transcript_files(root, on_error=self._walk_error))
        self.unreadable -= failed - self._walk_failed  # readable again (or gone)
        return sorted(files)

    def _walk_error(self, exc: OSError) -> None:
        if exc.filename and not isinstance(exc, FileNotFoundError):  # absent is not unreadable
            self._walk_failed.add(exc.filename)
            if exc.filename not in self.unreadable:
                self.unreadable.add(exc.filename)
                log.warning("cannot read folder", path=exc.filename, error=exc.strerror)

    def scan(self) -> list[str]:
        """Stat every transcript: the ones with bytes to read; forget the deleted."""
        present = self.all_files()
        todo, self._pending = [], {}
        for path in present:
            try:
                st = os.stat(path)
            except OSError:
                continue
            cur = self._cursor(path)
            if (
                cur is None
                or (st.st_dev, st.st_ino) != (cur.dev, cur.ino)
                or st.st_size != cur.offset
            ):
                todo.append(path)
                self._pending[path] = max(0, st.st_size - (cur.offset if cur else 0))
        for path in set(self.cursors) - set(present):
            if not os.path.exists(path):
                self.acct.batch.forgotten.add(path)
        self.totals.pending_bytes = sum(self._pending.values())
        return todo

    # --- reading -------------------------------------------------------------

    def context(self, path: str) -> FileContext:
        ctx = self._ctx.get(path)
        if ctx is None:
            ctx = self._ctx[path] = FileContext(path, session_of(path))
        return ctx

    def _cursor(self, path: str) -> FileCursor | None:
        return self.acct.batch.files.get(path) or self.cursors.get(path)

    def ingest(self, path: str) -> int:
        """Read one file's new lines into the current batch. Returns lines read."""
        n = 0
        ctx = self.context(path)
        try:
            for ch, d in _digest_chunks(path, self._cursor(path), self.cfg.max_line_bytes, ctx.cwd):
                n += self._account(path, ch.cursor, ch.oversized, ch.restarted, d)
                if ch.cursor is not None:
                    self._pending[path] = max(0, ch.size - ch.cursor.offset)
                if self.acct.batch.lines >= BATCH_LINES:
                    self.flush()
            self.unreadable.discard(path)
        except FileNotFoundError:
            self.unreadable.discard(path)
            if path in self.cursors:
                self.acct.batch.forgotten.add(path)
        except OSError as exc:
            if path not in self.unreadable:
                self.unreadable.add(path)
                log.warning("cannot read transcript", path=path, error=str(exc))
        return n

    def _account(
        self,
        path: str,
        cursor: FileCursor | None,
        oversized: list[int],
        restarted: bool,
        d: Digest,
    ) -> int:
        ctx = self.context(path)
        if restarted:
            log.info(
                "transcript changed under its cursor; reading it again from the start", path=path
            )
        for ln in oversized:
            self._parse_error(
                path, ln, f"line longer than max_line_bytes ({self.cfg.max_line_bytes})"
            )
            self.acct.batch.count("parse_errors")
        for line_no, reason in d.errors:
            self._parse_error(path, line_no, reason)
        self.acct.apply(d, ctx)
        if cursor is not None:
            self.acct.batch.files[path] = cursor
        return d.lines

    def _parse_error(self, path: str, line_no: int, reason: str) -> None:
        seen = self._errors_logged.get(path, 0)
        self._errors_logged[path] = seen + 1
        if seen < _ERRORS_LOGGED_PER_FILE:
            log.warning("skipped a malformed line", path=path, line=line_no, reason=reason[:200])
        elif seen == _ERRORS_LOGGED_PER_FILE:
            log.warning("more malformed lines in this file; counting them quietly", path=path)

    # --- committing ----------------------------------------------------------

    def flush(self) -> bool:
        """Commit the current batch; on failure nothing moves and it is retried later."""
        b: Batch = self.acct.finish()
        if not b and not b.lines:
            return True
        b.count("lines", b.lines)
        try:
            self.store.commit(b)
        except sqlite3.Error as exc:
            if not self._commit_failed:
                log.error(
                    "cannot write the state; will retry", path=str(self.store.path), error=str(exc)
                )
            self._commit_failed = True
            self.acct.begin()
            return False
        if self._commit_failed:
            log.info("state writable again")
            self._commit_failed = False
        self.acct.committed()
        self.cursors.update(b.files)
        for p in b.forgotten:
            self.cursors.pop(p, None)
            self._ctx.pop(p, None)
        self.totals.files_tracked = len(self.cursors)
        self.totals.pending_bytes = sum(self._pending.values())
        self.totals.merge(b, self.acct.new_sessions, self.clock())
        self.acct.begin()
        return True

    # --- backfill ------------------------------------------------------------

    def backfill(
        self, paths: list[str], workers: int, progress: Callable[[int], None] | None = None
    ) -> int:
        """Decode files in worker processes, account them here in path order."""
        if workers <= 1 or len(paths) < 8:
            total = 0
            for p in paths:
                total += self.ingest(p)
                if progress:
                    progress(1)
            self.flush()
            return total
        total = 0
        ml = self.cfg.max_line_bytes
        jobs = [(p, _cursor_args(self._cursor(p)), ml, self.context(p).cwd) for p in paths]
        lock_fd = getattr(self.store, "_lock_fd", None)
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_worker_init, initargs=(lock_fd, os.getpid())
        ) as pool:
            for path, (chunks, error) in zip(
                paths, pool.map(_digest_file, jobs, chunksize=4), strict=True
            ):
                total += self._take(path, chunks, error)
                if progress:
                    progress(1)
                self._pending.pop(path, None)
                if self.acct.batch.lines >= BATCH_LINES:
                    self.flush()
        self.flush()
        return total

    def _take(self, path: str, chunks: list, error: str | None) -> int:
        n = 0
        for cursor, oversized, restarted, blob in chunks:
            n += self._account(
                path,
                FileCursor(*cursor) if cursor else None,
                oversized,
                restarted,
                _decoder.decode(blob),
            )
        if not error:
            self.unreadable.discard(path)
        if error == "" and path in self.cursors:
            self.acct.batch.forgotten.add(path)
        elif error and path not in self.unreadable:
            self.unreadable.add(path)
            log.warning("cannot read transcript", path=path, error=error)
        return n


def _worker_init(lock_fd: int | None, parent: int) -> None:
    """A forked decode worker lets go of the state lock and dies with its parent: after a
    kill -9 of the backfill, the next ccotel must not find the state locked by orphans."""
    if lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(lock_fd)  # the flock lives while any copy of the descriptor is open
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl
                os._exit(1)
        except (OSError, AttributeError):
            pass


def _cursor_args(c: FileCursor | None) -> tuple | None:
    return (c.dev, c.ino, c.offset, c.line_no, c.marker) if c else None
