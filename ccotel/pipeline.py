"""The ingest pipeline: files -> records -> digests -> accounting -> one commit -> totals.

Used by the daemon (live, one batch per wake-up) and by backfill (many files a
batch, decoded by worker processes). Offsets move only with the commit that
holds what they produced: when a commit fails, everything read since the last
one is forgotten, the files it came from are read again from their committed
cursors (``retry``), and nothing in memory says those lines were counted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ccotel.accounting import Accountant, FileContext
from ccotel.batch import Batch, FileCursor
from ccotel.config import Config
from ccotel.digest import Digest, digest
from ccotel.log import get_logger
from ccotel.pricing import PriceTable
from ccotel.records import decode
from ccotel.sources import CHUNK, Chunk, NotAFile, TreeWalker, read_new, session_of
from ccotel.state import Store, db_error_message, ledger
from ccotel.totals import KEEP_SPEND, Totals

if TYPE_CHECKING:
    from ccotel.live import LiveBoard

log = get_logger()

_ERRORS_LOGGED_PER_FILE = 5
BATCH_LINES = 50_000  # a commit at least every this many lines
BATCH_BYTES = 32 << 20  # or this many bytes read: what a failure or kill -9 makes re-read
_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
Progress = Callable[[int], None]  # told of each file done
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)  # backfill: waits before passes that committed nothing


_NOT_A_FILE = "\0not a file: "  # a worker's error for a FIFO, socket... named *.jsonl
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Digest)


def _digest_chunks(
    path: str, cursor: FileCursor | None, max_line: int, cwd: str | None, chunk: int = CHUNK,
    live: LiveBoard | None = None,
) -> Iterator[tuple[Chunk, Digest]]:  # fmt: skip
    """Read a file's new lines and reduce them, chunk by chunk (and show them to ``live``,
    the daemon's live board)."""
    session = session_of(path)
    for ch in read_new(path, cursor, max_line, chunk):
        recs = [r for n, raw in ch.lines if (r := decode(raw, n)) is not None]
        if live is not None:
            live.lines(path, ch.lines, recs, ch.restarted)
        d = digest(recs, len(ch.lines), session, cwd)
        cwd = d.cwd
        yield ch, d


def _digest_file(
    args: tuple[Any, ...],
) -> tuple[list[tuple[tuple[Any, ...] | None, list[int], bool, bytes]], str | None, bool]:
    """Worker: one file's new lines as digests (msgpack); or the error that stopped reading
    it, and whether that error is a fault of ccotel's rather than of the file system."""
    path, cursor, max_line, cwd, chunk = args
    out = []
    try:
        for ch, d in _digest_chunks(
            path, FileCursor(*cursor) if cursor else None, max_line, cwd, chunk
        ):
            c = ch.cursor
            cur_args = (c.dev, c.ino, c.offset, c.line_no, c.marker) if c else None
            out.append((cur_args, ch.oversized, ch.restarted, _encoder.encode(d)))
    except FileNotFoundError:
        return out, "", False
    except NotAFile as exc:
        return out, _NOT_A_FILE + str(exc), False
    except OSError as exc:
        return out, f"{type(exc).__name__}: {exc}", False
    except Exception as exc:  # never lose the pool to one file: report it, go on
        return out, f"{type(exc).__name__}: {exc}", True
    return out, None, False


class Ingest:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        roots: list[Path],
        clock: Callable[[], float],
        *,
        chunk_bytes: int = CHUNK,
        batch_lines: int = BATCH_LINES,
        batch_bytes: int = BATCH_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cfg, self.store, self.roots, self.clock = cfg, store, roots, clock
        self.chunk_bytes, self.batch_lines, self.batch_bytes = chunk_bytes, batch_lines, batch_bytes
        self.prices = PriceTable(
            Path(cfg.pricing_file).expanduser() if cfg.pricing_file else None,
            cfg.pricing_rules,
            cfg.price_web_search,
        )
        self._load(sleep)
        self.unreadable: set[str] = set()  # paths already warned about
        self._walk_failed: set[str] = set()  # folders the last walk could not read
        self._walker = TreeWalker()  # lists again only the folders that changed
        self.broken: dict[str, str] = {}  # files ccotel itself failed on: not read again
        self.retry: set[str] = set()  # files whose lines a failed commit (or read) threw away
        self.last_error: BaseException | None = None  # of the last failed commit (or read)
        self._failed_op = "write"  # what last_error failed to do: "read" or "write"
        self.commits = 0
        self._isolating = False  # a value the state refused: commit file by file to find it
        self.stopping: Callable[[], bool] = lambda: False
        self.on_commit: list[Callable[[Batch], None]] = []  # called with each committed batch
        self._ctx: dict[str, FileContext] = {}
        self._in_batch: set[str] = set()  # files with lines in the uncommitted batch
        self._errors_logged: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self.live: LiveBoard | None = (
            None  # the daemon's live board (ccotel.live.LiveBoard): sees lines and spend
        )
        self._not_files: set[str] = set()  # named *.jsonl, not regular files: warned once

    def _load(self, sleep: Callable[[float], None]) -> None:
        """What the state holds, read at start; a read that fails is tried again after the
        pauses a failed commit gets (RETRY_DELAYS), then raised (a damaged file, most
        likely, which the caller's message names)."""
        for i, pause in enumerate((*RETRY_DELAYS, None)):
            try:
                self.acct = Accountant(self.store, self.prices, self.clock)
                self.totals = Totals.load(self.store, self.clock())
                self.cursors = self.store.files()
                break
            except sqlite3.OperationalError as exc:  # busy, an I/O error: not damage
                if pause is None:
                    raise
                if i == 0:
                    log.warning("cannot read the state; trying again", error=str(exc))
                sleep(pause)
        self.totals.files_tracked = len(self.cursors)

    # --- discovery -----------------------------------------------------------

    @property
    def folders(self) -> set[int]:
        """The inode numbers of every folder the last scan walked."""
        return self._walker.folders

    def all_files(self) -> list[str]:
        failed, self._walk_failed = self._walk_failed, set()
        files = self._walker.files(self.roots, self._walk_error)
        self.unreadable -= failed - self._walk_failed  # readable again (or gone)
        return sorted(files)

    def _walk_error(self, exc: OSError) -> None:
        if exc.filename and not isinstance(exc, FileNotFoundError):  # absent is not unreadable
            self._walk_failed.add(exc.filename)
            if exc.filename not in self.unreadable:
                self.unreadable.add(exc.filename)
                log.warning("cannot read folder", path=exc.filename, error=exc.strerror)

    def scan(self, full: bool = True) -> list[str]:
        """Stat every transcript: the ones with bytes to read; forget the deleted. Not
        ``full``: only the new ones, the links, and those of folders that changed (the
        daemon's rescan while file events arrive: an append to a known file is an event's to
        tell)."""
        present = self.all_files()
        walker = self._walker
        if not full and not walker.relisted and not walker.links:
            return []  # no folder changed: no file came or went, the pending bytes stay
        todo, before, self._pending = [], self._pending, {}
        stat = present
        if not full:
            changed, stat = walker.relisted, []
            for path in present:
                if (self._cursor(path) is None or path in walker.links
                        or os.path.dirname(path) in changed):  # fmt: skip
                    stat.append(path)
                elif path in before:  # as the last full scan (or a read since) left it
                    self._pending[path] = before[path]
        for path in stat:
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
                if path not in self.broken:
                    todo.append(path)
                self._pending[path] = max(0, st.st_size - (cur.offset if cur else 0))
        for path in set(self.cursors) - set(present):
            if path not in self.acct.batch.files and not os.path.exists(path):
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
        """Read one file's new lines into the current batch. Returns lines read.

        When a commit made on the way fails, reading this file stops: its lines are
        read again, from its committed cursor, by a later pass (``retry``).
        """
        self.retry.discard(path)
        if path in self.broken:
            return 0
        n = 0
        ctx = self.context(path)
        alone = self._isolating and not self._in_batch  # a failed commit would be this file's
        try:
            for ch, d in _digest_chunks(
                path, self._cursor(path), self.cfg.max_line_bytes, ctx.cwd, self.chunk_bytes,
                self.live,
            ):  # fmt: skip
                n += self._account(path, ch.cursor, ch.oversized, ch.restarted, d)
                if ch.cursor is not None:
                    self._pending[path] = max(0, ch.size - ch.cursor.offset)
                if self._full() and not self.flush():
                    self._refused(path, alone)
                    break
                if self.stopping():  # a long file: what was read so far is whole chunks
                    break
            self.unreadable.discard(path)
        except FileNotFoundError:
            self.unreadable.discard(path)
            if path in self.cursors:
                self._forget(path)
        except NotAFile as exc:
            self._not_a_file(path, str(exc))
        except OSError as exc:
            if path not in self.unreadable:
                self.unreadable.add(path)
                log.warning("cannot read transcript", path=path, error=str(exc))
        except sqlite3.Error as exc:  # a state read (a "maybe" looked up) failed
            self._read_failed(path, exc)
        except Exception as exc:  # a fault of ccotel's own: isolate it to this file
            self._discard()  # the batch may hold half of what failed
            self._broken(path, f"{type(exc).__name__}: {exc}")
        if self._isolating and path in self._in_batch and not self.flush():
            self._refused(path, alone)
        return n

    def _not_a_file(self, path: str, why: str) -> None:
        """A FIFO, socket, device or folder named *.jsonl (discovery leaves them out; the
        watcher names them, or a file was swapped for one): as if the transcript were gone."""
        self.unreadable.discard(path)
        if path in self.cursors:
            self._forget(path)
        if path not in self._not_files and len(self._not_files) < 1000:
            self._not_files.add(path)
            log.warning("skipped a transcript name that is not a file", path=path, error=why)

    def _read_failed(self, path: str, exc: sqlite3.Error) -> None:
        """A read of the state failed while accounting: like a failed commit, not the
        transcript's fault. What was read since the last commit (this file's lines
        included) is forgotten and read again from the committed cursors."""
        if self.last_error is None:
            log.error(
                "cannot read the state; what was read since the last commit is read again later",
                path=str(self.store.path),
                error=str(exc),
            )
        self.last_error, self._failed_op = exc, "read"
        self._in_batch.add(path)
        self._discard()

    def _refused(self, path: str, alone: bool) -> None:
        """A commit of this file's lines alone failed on a value, not on the state: set the
        file aside, or it would block every commit."""
        if alone and self._isolating:
            self._broken(path, f"the state refused a value read from it: {self.last_error!r}")
            self.retry.discard(path)

    def _forget(self, path: str) -> None:
        """A file that is gone: drop its cursor with the next commit (unless it is back)."""
        self.acct.batch.files.pop(path, None)
        self.acct.batch.forgotten.add(path)

    def _broken(self, path: str, error: str) -> None:
        self.broken[path] = error
        self.acct.batch.count("parse_errors")
        log.error(
            "cannot read this transcript (a fault of ccotel's; the rest goes on); "
            "it is read again after a restart",
            path=path,
            error=error[:300],
        )

    def _account(
        self,
        path: str,
        cursor: FileCursor | None,
        oversized: list[int],
        restarted: bool,
        d: Digest,
    ) -> int:
        self.store.end_failed()  # no lookup may see a batch that failed
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
        self._in_batch.add(path)
        self.acct.apply(d, ctx)
        if cursor is not None:
            b = self.acct.batch
            prev = None if restarted else self._cursor(path)
            b.bytes += cursor.offset - (prev.offset if prev is not None else 0)
            b.files[path] = cursor
            b.forgotten.discard(path)
        return d.lines

    def _full(self) -> bool:
        b = self.acct.batch
        return b.lines >= self.batch_lines or b.bytes >= self.batch_bytes

    def _parse_error(self, path: str, line_no: int, reason: str) -> None:
        seen = self._errors_logged.get(path, 0)
        self._errors_logged[path] = seen + 1
        if seen < _ERRORS_LOGGED_PER_FILE:
            log.warning("skipped a malformed line", path=path, line=line_no, reason=reason[:200])
        elif seen == _ERRORS_LOGGED_PER_FILE:
            log.warning("more malformed lines in this file; counting them quietly", path=path)

    # --- committing ----------------------------------------------------------

    def flush(self) -> bool:
        """Commit the current batch; on failure nothing moves and its files are retried."""
        b: Batch = self.acct.finish()
        if not b and not b.lines:
            self._in_batch.clear()
            return True
        b.count("lines", b.lines)
        try:
            self.store.commit(b)
        except Exception as exc:  # sqlite3.Error (busy, full, read-only), or a value it refused
            if self.last_error is None:
                log.error(
                    "cannot write the state; what was read since the last commit is read again later",
                    path=str(self.store.path),
                    error=str(exc) if isinstance(exc, sqlite3.Error) else repr(exc),
                )
            self.last_error, self._failed_op = exc, "write"
            # Not the state's fault but a value's: one file's lines block every file of the
            # batch, so from now on each file is committed on its own until it is found.
            self._isolating = not isinstance(exc, sqlite3.Error)
            self._discard()
            return False
        if self.last_error is not None:
            log.info("state writable again")
            self.last_error = None
        self.commits += 1
        self.acct.committed()
        self.cursors.update(b.files)
        for p in b.forgotten:
            self.cursors.pop(p, None)
            self._ctx.pop(p, None)
            self._errors_logged.pop(p, None)
            self.unreadable.discard(p)
        for p in self._in_batch:
            ctx = self._ctx.get(p)
            if ctx is not None:
                ctx.committed_cwd = ctx.cwd
        self._in_batch.clear()
        if not self.retry:
            self._isolating = False
        self.totals.files_tracked = len(self.cursors)
        self.totals.pending_bytes = sum(self._pending.values())
        self.totals.merge(b, len(self.acct.new_sessions), self.acct.new_places, self.clock())
        for listener in self.on_commit:
            listener(b)
        if self.live is not None:
            self.live.spent(self.acct.spend_changes())
        self.acct.begin()
        return True

    def _discard(self) -> None:
        """Forget the uncommitted batch: its files are read again from their committed
        cursors, with what they had said (their cwd) as of then."""
        for p in self._in_batch:
            ctx = self._ctx.get(p)
            if ctx is not None:
                ctx.cwd = ctx.committed_cwd
        self.retry |= self._in_batch
        self._in_batch.clear()
        self.acct.begin()

    def prune(self) -> None:
        """Drop what serves only a time window and has left it."""
        now = self.clock()
        self.totals.prune(now)
        with contextlib.suppress(sqlite3.Error):  # the next prune does it
            self.store.prune_spend(int(now - KEEP_SPEND) // 60)

    # --- backfill ------------------------------------------------------------

    def backfill(
        self,
        paths: list[str],
        workers: int,
        progress: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Read every file's new lines: decoded in worker processes when there are many,
        accounted here in path order. Files whose lines a failed commit threw away are read
        again at once while commits get through, after growing pauses while none does, and
        given up after the last pause (``retry`` then stays non-empty). Returns the lines
        committed."""
        start = self.totals.counters.get("lines", 0)
        # built once, at the end (and those an open could not build)
        deferred = (self.acct.cold and self.store.defer_indexes()) or self.store.indexes_missing
        try:
            self._pass(paths, workers, progress)
            stuck = 0
            while self.retry and not self.stopping():
                mark = self.commits
                self._pass(sorted(self.retry), 1, None)
                if self.commits > mark:
                    stuck = 0
                    continue
                if stuck == len(RETRY_DELAYS):
                    break
                sleep(RETRY_DELAYS[stuck])
                stuck += 1
        finally:
            if deferred:
                with contextlib.suppress(sqlite3.Error):  # or when the state is opened next
                    self.store.restore_indexes()
        return int(self.totals.counters.get("lines", 0) - start)

    def _pass(self, paths: list[str], workers: int, progress: Progress | None) -> None:
        if workers <= 1 or len(paths) < 8:
            for p in paths:
                if self.stopping():
                    break
                self.ingest(p)
                if progress:
                    progress(1)
        else:
            self._pass_workers(paths, workers, progress)
        self.flush()

    def _pass_workers(self, paths: list[str], workers: int, progress: Progress | None) -> None:
        ml, chunk = self.cfg.max_line_bytes, self.chunk_bytes
        todo = [p for p in paths if p not in self.broken]
        jobs = [(p, _cursor_args(self._cursor(p)), ml, self.context(p).cwd, chunk) for p in todo]
        lock_fd = self.store.lock_fd
        done = 0
        pool = ProcessPoolExecutor(
            max_workers=workers, initializer=_worker_init, initargs=(lock_fd, os.getpid())
        )
        try:
            for path, (chunks, error, bug) in zip(
                todo,
                pool.map(_digest_file, jobs, chunksize=_chunksize(len(jobs), workers)),
                strict=False,
            ):
                done += 1
                try:
                    self._take(path, chunks, error, bug)
                except sqlite3.Error as exc:
                    self._read_failed(path, exc)
                except Exception as exc:  # a fault of ccotel's own, as in ingest()
                    self._discard()
                    self._broken(path, f"{type(exc).__name__}: {exc}")
                if progress:
                    progress(1)
                self._pending.pop(path, None)
                if self._full():
                    self.flush()
                if self.stopping():
                    break
        except BrokenProcessPool as exc:  # a worker died (out of memory, killed): go on here
            log.warning("a decode worker died; reading the rest in this process", error=str(exc))
            for p in todo[done:]:
                if self.stopping():
                    break
                self.ingest(p)
                if progress:
                    progress(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _take(self, path: str, chunks: list[Any], error: str | None, bug: bool = False) -> int:
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
        if error and error.startswith(_NOT_A_FILE):
            self._not_a_file(path, error[len(_NOT_A_FILE) :])
        elif error == "" and path in self.cursors:
            self._forget(path)
        elif error and bug:
            self._broken(path, error)
        elif error and path not in self.unreadable:
            self.unreadable.add(path)
            log.warning("cannot read transcript", path=path, error=error)
        return n

    def state_error(self) -> str:
        """What to tell the user when the state stayed unwritable (a rebuild is advised only
        for a damaged file: rebuilding loses what only the state remembers)."""
        exc = self.last_error
        code = getattr(exc, "sqlite_errorcode", 0) or 0
        if exc is not None and code & 0xFF in _DAMAGED:
            return db_error_message(self.store.path, exc)
        return (
            f"cannot {self._failed_op} the state {self.store.path} ({exc}); nothing was lost: "
            "what was not committed is read again from the transcripts next time"
        )


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


def _chunksize(jobs: int, workers: int) -> int:
    """Files per task of the pool: each task costs this process a round trip (0.2 s of its
    CPU for 3,500 files 4 a task, 0.08 s 32 a task); larger tasks leave a worker idle longer
    at the end."""
    return max(1, min(32, jobs // (workers * 8)))


def _cursor_args(c: FileCursor | None) -> tuple[Any, ...] | None:
    return (c.dev, c.ino, c.offset, c.line_no, c.marker) if c else None


def read_history(ingest: Ingest) -> int:
    """Once, after an upgrade that keeps more of each line: read what the state's files said
    before it (their outcomes, and the zero-usage API-error lines billing blocks start on;
    tokens, lines and errors were counted then). Returns the files read. What lines read again
    later say counts nothing twice (keys). A state that cannot be read or written now leaves
    the rest for the next start (its markers stay in meta)."""
    try:
        return _read_history(ingest)
    except sqlite3.Error as exc:
        log.warning("cannot read the state; what earlier transcripts said waits for the next start",
                    error=str(exc))  # fmt: skip
        ingest.acct.outcomes.begin()
        return 0


def _read_history(ingest: Ingest) -> int:
    store = ingest.store
    outcomes = store.meta(ledger.HISTORY_META) is not None
    marks = store.meta(ledger.MARKS_META) is not None
    if not (outcomes or marks):
        return 0
    acct = ingest.acct
    paths = sorted(ingest.cursors)
    log.info("reading the transcripts read before this version once more, for what it adds",
             files=len(paths), outcomes=outcomes, block_marks=marks)  # fmt: skip
    for path in paths:
        acct.outcomes.begin()
        if ingest.stopping():
            return 0  # the rest next start (the meta rows stay)
        found: dict[int, float] = {}
        try:
            for _ch, d in _digest_chunks(path, None, ingest.cfg.max_line_bytes, None):
                if outcomes:
                    acct.outcomes.apply(d, acct._session_cwd)
                if marks:
                    for key, ts in d.marks.items():
                        found[key] = min(ts, found.get(key, ts))
        except OSError:
            continue  # gone or unreadable: what it said is lost with it
        w = acct.outcomes.writes() if outcomes else None
        try:
            if w or found:
                store.commit(Batch(outcomes=w or None, marks=found))
        except sqlite3.Error as exc:  # the state cannot be written: the rest next start
            log.warning("cannot write the state; what earlier transcripts said waits",
                        error=str(exc))  # fmt: skip
            acct.outcomes.begin()
            return 0
        acct.outcomes.committed()
    acct.outcomes.begin()
    with contextlib.suppress(sqlite3.Error):
        for name in (ledger.HISTORY_META, ledger.MARKS_META):
            store.del_meta(name)
    return len(paths)
