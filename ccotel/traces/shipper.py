"""Delivery: read, build, export a batch, and only then move the trace cursors.

The transcripts are the durable queue. Each batch of spans is one export
request; when the collector confirms it, the trace cursors of the files read
and the state of the sessions touched are committed together, with the counts.
When it fails, the in-memory state goes back to the last commit and the same
lines are read again later, building the same spans with the same ids: nothing
is lost, and the spans a failed pass had already delivered (the halves of a
split batch, a batch whose commit failed) are remembered and not sent again.
Only a crash between a confirmed request and its commit sends spans twice.

A span is dropped only when the collector calls it malformed: HTTP 400 or gRPC
INVALID_ARGUMENT for a request holding it alone (after an empty request was
accepted, so a collector that refuses everything is not mistaken for a bad
span), or a partial success that rejects some. A collector that refuses the
credentials or the endpoint (401, 403, 404...) holds every span back instead.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgspec.structs import astuple

from ccotel.batch import FileCursor, Response
from ccotel.log import get_logger
from ccotel.otlp import MALFORMED, REFUSED, TOO_LARGE, TRANSIENT, ExportError
from ccotel.records import decode
from ccotel.sources import agent_of, marker_at, parse_path, read_head, read_lines, session_of
from ccotel.state import TraceState
from ccotel.traces import model
from ccotel.traces.builder import Builder, FileInfo, Options
from ccotel.traces.export import SpanSink

log = get_logger()

DROP_STREAK_MAX = 64  # a collector refusing this many spans in a row, and none accepted, is broken
_SESSION_RE = re.compile(rb'"sessionId":"([^"]+)"')
_LAST_PROMPT = b'"type":"last-prompt"'


@dataclass
class Stats:
    spans_exported: int = 0  # spans the collector accepted, counted when their cursors commit
    batches: int = 0
    errors: int = 0  # failed passes
    dropped: int = 0  # spans the collector refused as malformed, counted likewise
    queue: int = 0  # spans built and not yet confirmed
    backlog_bytes: int = 0  # transcript bytes counted by metrics and not yet traced
    sessions_open: int = 0
    last_error: str = ""


def _group_key(path: str) -> tuple[str, str]:
    """(project folder, session): a session's files are read together."""
    return parse_path(path).project, session_of(path)


def file_info(path: str) -> FileInfo:
    """What a transcript's path (and a subagent's .meta.json beside it) says of its lines."""
    t = parse_path(path)
    fi = FileInfo(path, session_of(path), t.agent)
    if t.agent is not None:
        p = Path(path)
        meta = p.with_name(p.stem + ".meta.json")
        try:
            data = json.loads(read_head(str(meta), 1 << 20) or b"null")
        except ValueError:
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
        self.state = TraceState(db_path)
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
        self.builder = Builder(opts, self._row, self._chat_sent, self._load)
        for sid, blob in self.state.open_sessions():
            self.builder.sessions[sid] = model.load(blob)
        self.pending: dict[str, FileCursor] = {}
        self.skipped: dict[str, int] = {}
        self._infos: dict[str, FileInfo] = {}
        self.stats = Stats(
            spans_exported=int(self.state.meta("spans_exported") or 0),
            dropped=int(self.state.meta("spans_dropped") or 0),
        )
        # Outcome of each span delivered and not yet committed (True: accepted, False:
        # dropped), so that a pass rolled back after a partial delivery resends none.
        self._settled: dict[tuple[int, int], bool] = {}
        self._accepted = False  # the last request (or probe) was accepted
        self.requests = 0  # requests accepted in this pass (0: the collector was not asked)
        self.failure: ExportError | None = None  # why the last pass failed
        self._drop_logs = 0
        self._drop_streak = 0  # spans dropped in a row since the collector last accepted one
        self._streak: list[tuple[int, int]] = []  # their ids
        self.stats.sessions_open = len(self.builder.sessions)
        self._last_flush = time.monotonic()

    # --- the state ---------------------------------------------------------------

    def _row(self, key: int) -> Response | None:
        return self.state.response(key)

    def _chat_sent(self, key: int) -> model.Sent | None:
        row = self.state.chat_sent(key)
        if row is None:
            return None
        if row[0] is None:  # sent by a ccotel that kept only the key: never corrected
            return model.Sent(0)
        return model.Sent(row[0] & _U64, *row[1:])

    def _load(self, sid: str) -> model.Session | None:
        blob = self.state.session(sid)
        return model.load(blob) if blob is not None else None

    def _trace_cursor(
        self, path: str, dev: int | None, ino: int | None, off: int | None,
        line_no: int | None, marker: bytes | None,
    ) -> FileCursor | None:  # fmt: skip
        c = self.pending.get(path)
        if c is not None:
            return c
        if dev is None or ino is None or off is None or line_no is None:
            return None  # no trace_files row: not traced yet
        return FileCursor(dev, ino, off, line_no, marker or b"")

    def close(self) -> None:
        self.state.close()

    # --- a pass --------------------------------------------------------------

    def candidates(self) -> list[tuple[str, tuple[int, int, int], FileCursor | None]]:
        out = []
        backlog = 0
        for path, dev, ino, off, tdev, tino, toff, tline, tmarker in self.state.candidates():
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
        """Read everything available, deliver it. False when it failed (``failure`` says why;
        the state went back to the last commit, and the same lines are read again later)."""
        self.failure, self.requests, self._accepted = None, 0, False
        try:
            self._pass()
            return True
        except _Stopped:
            self.rollback()
            return False
        except ExportError as exc:
            fail = exc
        except sqlite3.Error as exc:  # the state is busy or broken: retried like an export
            fail = ExportError("state", TRANSIENT, str(exc), local=True)
        except Exception as exc:  # a bug: keep the cursors where they are, retry later
            log.exception("trace pass failed", error=str(exc))
            fail = ExportError(
                "internal error", TRANSIENT, f"{type(exc).__name__}: {exc}", local=True
            )
        self.stats.errors += 1
        self.stats.last_error = str(fail)
        self.failure = fail
        self.rollback()
        return False

    def _pass(self) -> None:
        groups: dict[tuple[str, str], list[Any]] = {}
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
                    self.pending[path] = FileCursor(dev, ino, end, line_no)
                    if len(b.out) >= self.batch:
                        self._flush()
            for sid in list(b.touched):
                b.settle(sid)
            self._close_due()
            if len(b.out) >= self.batch:
                self._flush()
        self._close_due()
        self._flush()

    def next_pass_in(self) -> float | None:
        """Seconds until a pass has something to do without new lines (an open session to
        close); None: nothing until the daemon reads new lines (and calls notify)."""
        due = self.builder.next_due(self.idle)
        return None if due is None else max(0.0, due - self.clock())

    def _close_due(self) -> None:
        for sid in self.builder.due(self.clock(), self.idle):
            self.builder.close(sid)

    def _info(self, path: str) -> FileInfo:
        fi = self._infos.get(path)
        if fi is None:
            if len(self._infos) > 20000:
                self._infos.clear()
            fi = self._infos[path] = file_info(path)
        return fi

    # --- commit / rollback ---------------------------------------------------------

    def _flush(self) -> None:
        b = self.builder
        spans = b.take()
        self.stats.queue = len(spans)
        exported = dropped = 0
        if spans:
            if self.stop.is_set():  # shutting down: leave them to the next start
                raise _Stopped
            self._throttle(len(spans))
            exported, dropped = self._deliver(spans)
        if not (spans or self.pending or b.touched):
            return
        sessions = []
        for sid in b.touched:
            s = b.sessions.get(sid)
            if s is not None:
                sessions.append((sid, int(s.closed), s.last, model.dump(s)))
        meta = {}
        if spans:
            meta["spans_exported"] = str(self.stats.spans_exported + exported)
            meta["spans_dropped"] = str(self.stats.dropped + dropped)
        self.state.commit(
            [
                (p, c.dev, c.ino, c.offset, c.line_no, marker_at(p, c.offset))
                for p, c in self.pending.items()
            ],
            sessions,
            [(k, _signed(sent.span), *astuple(sent)[1:]) for k, sent in b.new_chats.items()],
            meta,
        )
        self.stats.spans_exported += exported
        self.stats.dropped += dropped
        for sp in spans:  # committed: settled for good (a batch rebuilt after a rollback may
            self._settled.pop((sp.trace_id, sp.span_id), None)  # hold other spans than before)
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

    def _deliver(self, spans: list[Any]) -> tuple[int, int]:
        """Deliver the spans not yet settled since the last commit; (accepted, dropped) of all."""
        settled = self._settled
        if len(settled) > 200_000:  # only after very many failed commits: resend at worst
            settled.clear()
        todo = [s for s in spans if (s.trace_id, s.span_id) not in settled]
        if todo:
            self._send(todo)
        accepted = sum(1 for s in spans if settled.get((s.trace_id, s.span_id)))
        return accepted, len(spans) - accepted

    def _send(self, spans: list[Any]) -> None:
        """One request; a batch the collector finds too large or malformed is halved, and a
        span it refuses alone as malformed is dropped (settled as False)."""
        try:
            reply = self.sink.export(spans)
        except ExportError as exc:
            last_ok, self._accepted = self._accepted, False
            if exc.kind in (TOO_LARGE, MALFORMED) and len(spans) > 1:
                mid = len(spans) // 2
                self._send(spans[:mid])
                self._send(spans[mid:])
                return
            if exc.kind == TOO_LARGE:  # one span, and still too large: the collector's limit
                raise ExportError(exc.status, REFUSED, f"a single span is too large for the collector "
                                  f"(raise its request size limit): {exc.detail}"[:300],
                                  answered=exc.answered) from None  # fmt: skip
            if exc.kind != MALFORMED:
                raise
            if self._drop_streak >= DROP_STREAK_MAX:
                self._unsettle_streak()
                raise ExportError(exc.status, REFUSED, f"the collector refused the last {DROP_STREAK_MAX} "
                                  f"spans one by one and accepted none: no more are dropped: {exc.detail}"[:300],
                                  answered=True) from None  # fmt: skip
            if not last_ok:  # the request before was refused too: is it this span?
                self._probe(exc)
            self._drop_streak += 1
            self._streak.append((spans[0].trace_id, spans[0].span_id))
            self._settle(spans, accepted=0, why=str(exc))
            return
        self.requests += 1
        self._accepted = True
        rejected = min(max(getattr(reply, "rejected", 0) or 0, 0), len(spans))
        message = getattr(reply, "message", "") or ""
        if spans and rejected == len(spans):  # all of them: as suspicious as 400 to each
            if self._drop_streak + rejected > DROP_STREAK_MAX:
                self._unsettle_streak()
                raise ExportError("partial success", REFUSED, f"the collector rejected all {rejected} "
                                  f"spans of a request: none is dropped: {message}"[:300],
                                  answered=True)  # fmt: skip
            self._drop_streak += rejected
            self._streak.extend((x.trace_id, x.span_id) for x in spans)
        else:
            self._drop_streak = 0
            self._streak.clear()
        self._settle(spans, len(spans) - rejected, message or "partial success")
        if message and not rejected:
            log.info("the collector accepted the spans with a warning", message=message[:300])

    def _unsettle_streak(self) -> None:
        """The streak was the collector's fault after all: the drops not yet committed are
        undone (those spans are sent again later); committed ones stay counted."""
        for k in self._streak:
            if self._settled.get(k) is False:
                del self._settled[k]
        self._streak.clear()

    def _probe(self, exc: ExportError) -> None:
        """Before dropping a span as malformed: does the collector accept a request holding
        no span? If not, it refuses everything (a proxy, a wrong port), not this span."""
        try:
            self.sink.probe()
        except ExportError as probe:
            if probe.kind in (MALFORMED, TOO_LARGE):
                raise ExportError(exc.status, REFUSED, "the collector refuses even an empty "
                                  f"request, so no span is dropped: {exc.detail}"[:300],
                                  answered=True) from None  # fmt: skip
            raise
        self._accepted = True

    def _settle(self, spans: list[Any], accepted: int, why: str) -> None:
        """The first ``accepted`` spans were accepted, the rest refused (a partial success
        says how many, not which: the count is what is exact)."""
        for i, s in enumerate(spans):
            self._settled[(s.trace_id, s.span_id)] = i < accepted
        refused = spans[accepted:]
        if refused:
            self._drop_logs += 1
            if self._drop_logs <= 20:
                s = refused[0]
                log.warning("the collector refused spans; dropped them", spans=len(refused),
                            trace_id=f"{s.trace_id:032x}", span_id=f"{s.span_id:016x}", name=s.name,
                            error=why[:300])  # fmt: skip

    def _throttle(self, n: int) -> None:
        if self.rate > 0:
            wait = n / self.rate - (time.monotonic() - self._last_flush)
            if wait > 0:
                self.stop.wait(wait)
        self._last_flush = time.monotonic()

    def rollback(self) -> None:
        """Back to the last commit (what was delivered since stays settled: not sent again)."""
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


_U64 = (1 << 64) - 1


def _signed(u64: int) -> int:
    """An unsigned 64-bit span id as SQLite's signed INTEGER (``& _U64`` maps it back)."""
    return u64 - (1 << 64) if u64 >= 1 << 63 else u64


class _Stopped(Exception):
    """The daemon is stopping: the pass ends without delivering (nothing is lost)."""
