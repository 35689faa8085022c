"""Delivery: read, build, export a batch, and only then move the trace cursors.

The transcripts are the durable queue. Each batch of spans is one export
request; when the collector confirms it, the trace cursors of the files read
and the state of the sessions touched are committed together. When it fails,
the in-memory state goes back to the last commit and the same lines are read
again later, building the same spans with the same ids: nothing is lost and,
short of a crash between a confirmed export and its commit, nothing is sent
twice.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ccotel.otlp import ExportError
from ccotel.records import decode
from ccotel.sources.discovery import agent_of
from ccotel.state.schema import RESPONSE_COLS
from ccotel.traces import model
from ccotel.traces.builder import Builder, FileInfo, Options
from ccotel.traces.export import SpanSink
from ccotel.traces.reader import Cursor, marker_at, read_lines

log = structlog.get_logger()

CANDIDATES = """SELECT f.path, f.dev, f.ino, f.offset, t.dev, t.ino, t.offset, t.line_no, t.marker
    FROM files f LEFT JOIN trace_files t ON t.path = f.path
    WHERE t.path IS NULL OR t.offset != f.offset OR t.ino != f.ino OR t.dev != f.dev"""
RESPONSE = f"SELECT {RESPONSE_COLS} FROM responses WHERE key=?"
ALIAS = "SELECT target FROM response_alias WHERE key=?"
_SESSION_RE = re.compile(rb'"sessionId":"([^"]+)"')
_LAST_PROMPT = b'"type":"last-prompt"'


@dataclass
class Stats:
    spans_exported: int = 0
    batches: int = 0
    errors: int = 0
    dropped: int = 0  # spans the collector refused as invalid
    queue: int = 0  # spans built and not yet confirmed
    backlog_bytes: int = 0  # transcript bytes counted by metrics and not yet traced
    sessions_open: int = 0
    last_error: str = ""


def _group_key(path: str) -> tuple[str, str]:
    p = Path(path)
    if p.parent.name == "subagents":
        return str(p.parent.parent.parent), p.parent.parent.name
    if p.stem.startswith("agent-"):  # legacy flat subagent file: its lines name the session
        try:
            with open(path, "rb") as f:
                m = _SESSION_RE.search(f.read(65536))
        except OSError:
            m = None
        if m:
            return str(p.parent), m.group(1).decode("utf-8", "replace")
    return str(p.parent), p.stem


def _file_info(path: str) -> FileInfo:
    p = Path(path)
    agent = agent_of(path)
    sub = p.parent.name == "subagents"
    fi = FileInfo(path, p.parent.parent.name if sub else p.stem, agent)
    if agent is not None:
        meta = p.with_name(p.stem + ".meta.json")
        try:
            data = json.loads(meta.read_bytes())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            fi.agent_type = (
                data.get("agentType") if isinstance(data.get("agentType"), str) else None
            )
            fi.tool_use_id = (
                data.get("toolUseId") if isinstance(data.get("toolUseId"), str) else None
            )
    return fi


class Shipper:
    """Builds and delivers the spans of every file the metrics have read further than the traces."""

    def __init__(
        self,
        db_path: Path,
        sink: SpanSink,
        opts: Options,
        *,
        clock: Callable[[], float] = time.time,
        session_idle: float = 600.0,
        since: float | None = None,
        batch: int = 512,
        rate: float = 0.0,
        max_line: int = 64 << 20,
        stop: threading.Event | None = None,
    ):
        self.db = sqlite3.connect(
            db_path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.execute("PRAGMA busy_timeout=30000")
        self._tx(
            ["DELETE FROM trace_files WHERE path NOT IN (SELECT path FROM files)"]
        )  # forgotten transcripts
        self.sink, self.opts, self.clock = sink, opts, clock
        self.idle, self.since, self.batch, self.rate, self.max_line = (
            session_idle,
            since,
            max(1, batch),
            rate,
            max_line,
        )
        self.stop = stop or threading.Event()
        self.keep = opts.capture_content or opts.tool_details
        self.builder = Builder(opts, self._row, self._chat_emitted, self._load)
        for sid, blob in self.db.execute("SELECT id, blob FROM trace_sessions WHERE closed=0"):
            self.builder.sessions[sid] = model.load(blob)
        self.pending: dict[str, Cursor] = {}
        self.skipped: dict[str, int] = {}
        self._infos: dict[str, FileInfo] = {}
        self.stats = Stats(spans_exported=int(self._meta("spans_exported") or 0))
        self.stats.sessions_open = len(self.builder.sessions)
        self._last_flush = time.monotonic()

    # --- sql -----------------------------------------------------------------

    def _tx(self, stmts: Iterable[str]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for s in stmts:
                self.db.execute(s)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM trace_meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO trace_meta(key, value) VALUES(?,?)", (key, value))

    def _row(self, key: int) -> tuple | None:
        row = self.db.execute(RESPONSE, (key,)).fetchone()
        if row is None:
            t = self.db.execute(ALIAS, (key,)).fetchone()
            if t is not None:
                row = self.db.execute(RESPONSE, (t[0],)).fetchone()
        return row

    def _chat_emitted(self, key: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM trace_chats WHERE key=?", (key,)).fetchone() is not None
        )

    def _load(self, sid: str) -> model.Session | None:
        row = self.db.execute("SELECT blob FROM trace_sessions WHERE id=?", (sid,)).fetchone()
        return model.load(row[0]) if row else None

    def _trace_cursor(self, path: str, dev, ino, off, line_no, marker) -> Cursor | None:
        c = self.pending.get(path)
        if c is not None:
            return c
        return Cursor(dev, ino, off, line_no, marker or b"") if dev is not None else None

    def close(self) -> None:
        self.db.close()

    # --- a pass --------------------------------------------------------------

    def candidates(self) -> list[tuple[str, tuple[int, int, int], Cursor | None]]:
        out = []
        backlog = 0
        for path, dev, ino, off, tdev, tino, toff, tline, tmarker in self.db.execute(
            CANDIDATES
        ).fetchall():
            cur = self._trace_cursor(path, tdev, tino, toff, tline, tmarker)
            if cur is None and self.since is not None:
                if self.skipped.get(path) == off:
                    continue
                try:
                    mtime = os.stat(path).st_mtime
                except OSError:
                    continue
                if mtime < self.since:
                    self.skipped[path] = off  # left to `ccotel backfill --traces`
                    continue
                self.skipped.pop(path, None)
            if cur is not None and (cur.dev, cur.ino, cur.offset) == (dev, ino, off):
                continue
            out.append((path, (dev, ino, off), cur))
            backlog += off - (
                cur.offset if cur is not None and (cur.dev, cur.ino) == (dev, ino) else 0
            )
        self.stats.backlog_bytes = max(0, backlog)
        return out

    def run_pass(self) -> bool:
        """Read everything available, deliver it. False when the export failed (state rolled back)."""
        try:
            self._pass()
            return True
        except ExportError as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            self._rollback()
            return False
        except sqlite3.Error as exc:  # the state is busy or broken: same as a failed export
            self.stats.last_error = f"state: {exc}"
            self._rollback()
            return False

    def _pass(self) -> None:
        groups: dict[tuple[str, str], list] = {}
        for c in self.candidates():
            groups.setdefault(_group_key(c[0]), []).append(c)
        b = self.builder
        for key in sorted(groups):
            if self.stop.is_set():
                break
            # Subagent files first: their lines were written before the parent's tool result.
            files = sorted(groups[key], key=lambda c: (agent_of(c[0]) is None, c[0]))
            for path, (dev, ino, limit), cur in files:
                fi = self._info(path)
                for line_no, raw, end in read_lines(path, cur, dev, ino, limit, self.max_line):
                    rec = decode(raw, line_no, self.keep or (b'"subagent_type"' in raw))
                    if rec is not None:
                        b.feed(fi, rec, raw)
                    elif _LAST_PROMPT in raw and fi.agent is None and b'"explicit":true' not in raw:
                        m = _SESSION_RE.search(raw)
                        b.finished(m.group(1).decode("utf-8", "replace") if m else fi.session)
                    self.pending[path] = Cursor(dev, ino, end, line_no)
                    if len(b.out) >= self.batch:
                        self._flush()
            for sid in list(b.touched):
                b.settle(sid)
            self._close_due()
            if len(b.out) >= self.batch:
                self._flush()
        self._close_due()
        self._flush()

    def _close_due(self) -> None:
        for sid in self.builder.due(self.clock(), self.idle):
            self.builder.close(sid)

    def _info(self, path: str) -> FileInfo:
        fi = self._infos.get(path)
        if fi is None:
            if len(self._infos) > 20000:
                self._infos.clear()
            fi = self._infos[path] = _file_info(path)
        return fi

    # --- commit / rollback ---------------------------------------------------------

    def _flush(self) -> None:
        b = self.builder
        spans = b.take()
        self.stats.queue = len(spans)
        if spans:
            self._throttle(len(spans))
            self._deliver(spans)
        if not (spans or self.pending or b.touched):
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                """INSERT INTO trace_files(path, dev, ino, offset, line_no, marker) VALUES(?,?,?,?,?,?)
                ON CONFLICT(path) DO UPDATE SET dev=excluded.dev, ino=excluded.ino, offset=excluded.offset,
                line_no=excluded.line_no, marker=excluded.marker""",
                [
                    (p, c.dev, c.ino, c.offset, c.line_no, marker_at(p, c.offset))
                    for p, c in self.pending.items()
                ],
            )
            rows = []
            for sid in b.touched:
                s = b.sessions.get(sid)
                if s is not None:
                    rows.append((sid, int(s.closed), s.last, model.dump(s)))
            db.executemany(
                "INSERT OR REPLACE INTO trace_sessions(id, closed, last, blob) VALUES(?,?,?,?)",
                rows,
            )
            db.executemany(
                "INSERT OR IGNORE INTO trace_chats(key) VALUES(?)", [(k,) for k in b.new_chats]
            )
            self.stats.spans_exported += len(spans)
            self.set_meta("spans_exported", str(self.stats.spans_exported))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.stats.spans_exported -= len(spans)
            raise
        if spans:
            self.stats.batches += 1
        self.stats.queue = 0
        self.pending.clear()
        for sid in b.touched:
            s = b.sessions.get(sid)
            if s is not None and s.closed:
                del b.sessions[sid]
        b.touched.clear()
        b.new_chats.clear()
        self.stats.sessions_open = len(b.sessions)

    def _deliver(self, spans: list) -> None:
        """Export; a batch the collector refuses as such (too large, invalid) is halved until
        the one span it refuses is found, which is then dropped with a warning: one bad span
        must not hold every later span back forever."""
        try:
            self.sink.export(spans)
        except ExportError as exc:
            if exc.retryable:
                raise
            if len(spans) > 1:
                mid = len(spans) // 2
                self._deliver(spans[:mid])
                self._deliver(spans[mid:])
                return
            self.stats.dropped += 1
            s = spans[0]
            log.warning("the collector refused a span; dropped it", trace_id=f"{s.trace_id:032x}",
                        span_id=f"{s.span_id:016x}", name=s.name, error=str(exc)[:300])  # fmt: skip

    def _throttle(self, n: int) -> None:
        if self.rate > 0:
            wait = n / self.rate - (time.monotonic() - self._last_flush)
            if wait > 0:
                self.stop.wait(wait)
        self._last_flush = time.monotonic()

    def _rollback(self) -> None:
        b = self.builder
        b.out.clear()
        b.new_chats.clear()
        for sid in b.touched:
            s = self._load(sid)
            if s is None or s.closed:
                b.sessions.pop(sid, None)
            else:
                b.sessions[sid] = s
        b.touched.clear()
        self.pending.clear()
        self.stats.sessions_open = len(b.sessions)
