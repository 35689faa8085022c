"""Wiring and lifecycle: the daemon's loop and the one-shot backfill."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from ccotel import __version__
from ccotel.config import Config
from ccotel.live import LiveCollector, Stream, board_for
from ccotel.otlp import push_identity
from ccotel.pipeline import Ingest, Progress, read_history
from ccotel.projects import project_labeler
from ccotel.server import HttpServer
from ccotel.sinks import NativeCollector, OutcomeCollector, TotalsCollector
from ccotel.sources import RESCAN, Watcher, claude_roots
from ccotel.state import (
    DB_NAME,
    StateError,
    Store,
    clear_running,
    rebuild_state,
    write_running,
)
from ccotel.statusline import Hub
from ccotel.traces import Exporters, backfill_traces
from ccotel.wakeup import Wakeup

log = structlog.get_logger()

BACKFILL_PARALLEL_BYTES = 32 << 20  # below this, one process is faster than a pool
RETRY_FIRST = 1.0  # seconds before the daemon reads again what a failed commit threw away


def roots_of(cfg: Config) -> list[Path]:
    if cfg.claude_dirs:
        return [Path(d).expanduser() for d in cfg.claude_dirs]
    return claude_roots(os.environ, Path.home())


def budgets_of(cfg: Config) -> dict[str, float]:
    out = {}
    if cfg.budget.hourly_usd is not None:
        out["1h"] = cfg.budget.hourly_usd
    if cfg.budget.daily_usd is not None:
        out["24h"] = cfg.budget.daily_usd
    return out


def workers_of(cfg: Config) -> int:
    return cfg.workers or os.cpu_count() or 1


def catch_up(
    ingest: Ingest,
    workers: int,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    read_history(ingest)  # once, after the upgrade that brought outcomes
    todo = ingest.scan()
    if on_total:
        on_total(len(todo))
    big = ingest.totals.pending_bytes >= BACKFILL_PARALLEL_BYTES
    lines = ingest.backfill(todo, workers if big else 1, progress, sleep)
    ingest.prune()
    ingest.store.checkpoint()
    return lines


@contextlib.contextmanager
def stop_on_signals(wake: Wakeup, restore: bool = True) -> Iterator[None]:
    """SIGTERM and SIGINT request a stop (in the main thread; elsewhere signals are not ours).

    ``restore=False`` for a process that exits right after: signals that arrive while it
    winds down are ignored (at exit Python resets its handlers to the default action, which
    would kill it with 143 or 130 after a clean stop).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, wake.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if restore else signal.SIG_IGN)


def backfill(
    cfg: Config, clock: Callable[[], float] = time.time, progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    traces: bool = False, since: float | None = None, rebuild: bool = False, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Metrics first; with traces, then the spans of files changed since ``since`` (epoch s).

    ``rebuild``: build a new state from the transcripts beside the old one and swap it in
    (state/rebuild.py). A stop request (SIGINT, SIGTERM) ends it early, with what was
    read so far committed; running it again continues.
    """
    wake = Wakeup()
    try:
        with stop_on_signals(wake):
            if rebuild:
                fill = functools.partial(
                    _catch_up_into,
                    cfg,
                    clock=clock,
                    wake=wake,
                    progress=progress,
                    on_total=on_total,
                )
                out = rebuild_state(cfg, fill, force)
                state_path = cfg.resolved_state_dir() / DB_NAME
                if out.get("kept"):
                    return out
            else:
                store = Store(cfg.resolved_state_dir())
                try:
                    out = _catch_up_into(
                        cfg, store, clock=clock, wake=wake, progress=progress, on_total=on_total
                    )
                finally:
                    store.close()
                state_path = store.path
            if traces and not wake.stop_requested:
                out["traces"] = backfill_traces(
                    cfg, state_path, clock() - 7 * 86400 if since is None else since, clock
                )
            return out
    finally:
        wake.close()


def _catch_up_into(
    cfg: Config,
    store: Store,
    *,
    clock: Callable[[], float],
    wake: Wakeup,
    progress: Progress | None,
    on_total: Callable[[int], None] | None,
) -> dict[str, Any]:
    ingest = Ingest(cfg, store, roots_of(cfg), clock, sleep=wake.sleep)
    ingest.stopping = lambda: wake.stop_requested
    t0 = time.perf_counter()
    lines = catch_up(ingest, workers_of(cfg), progress, on_total, wake.sleep)
    if ingest.retry and not wake.stop_requested:
        raise StateError(ingest.state_error())
    return {
        "lines": lines,
        "files": ingest.totals.files_tracked,
        "seconds": round(time.perf_counter() - t0, 3),
        "parse_errors": int(ingest.totals.counters.get("parse_errors", 0)),
        "interrupted": wake.stop_requested,
    }


class Daemon:
    """The daemon. Everything it opens or starts is closed or stopped, in reverse order, by
    ``run`` (or by a failing constructor), whatever the phase it ends in: a stop request
    (``wake.request_stop``, what the signal handlers call) is honoured between phases, and
    between files while catching up."""

    def __init__(
        self, cfg: Config, clock: Callable[[], float] = time.time, wake: Wakeup | None = None
    ):
        self.cfg, self.clock = cfg, clock
        self.roots = roots_of(cfg)
        self.started = clock()
        self.ready = threading.Event()
        self.watcher: Watcher | None = None
        self._stack = contextlib.ExitStack()
        self.wake = wake if wake is not None else Wakeup()
        if wake is None:  # its own: closed with the rest
            self._stack.callback(self.wake.close)
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> None:
        cfg, clock, stack = self.cfg, self.clock, self._stack
        self.store = Store(cfg.resolved_state_dir())
        stack.callback(self.store.close)
        self.ingest = Ingest(cfg, self.store, self.roots, clock, sleep=self.wake.sleep)
        self.ingest.stopping = lambda: self.wake.stop_requested
        stack.callback(self._last_flush)
        self.exporters = Exporters(cfg, self.store.path, clock)
        stack.callback(_close_exporters, self.exporters)
        # The status line, plan limits and billing blocks (ccotel.statusline.daemon).
        self.hub = Hub(cfg, self.store.dir, self.ingest.totals, budgets_of(cfg), clock,
                       restore=self.store.db)  # fmt: skip
        self.statusline = self.hub.reports  # the public interface: ccotel/statusline/__init__.py
        self.ingest.on_commit.append(self.hub.committed)
        stack.callback(self.hub.stop)
        registry = CollectorRegistry(auto_describe=False)
        totals_collector = TotalsCollector(
            self.ingest.totals,
            project_labeler(cfg.project_label),
            budgets_of(cfg),
            clock,
            extra=lambda: self.exporters.metrics() + self.hub.metrics(),
            max_projects=cfg.max_projects,
        )
        registry.register(totals_collector)
        outcomes = self.ingest.acct.outcomes.totals  # what the spend bought
        registry.register(OutcomeCollector(outcomes, self.ingest.totals, totals_collector.project))
        if cfg.native_metrics:
            registry.register(NativeCollector(self.ingest.totals, outcomes))
        # The page names projects as `ccotel report` does (project_label "off" hides them
        # from metric labels only).
        label = project_labeler(cfg.project_label if cfg.project_label != "off" else "name")
        self.live = board_for(cfg, self.ingest, clock, label, lambda: self.statusline)
        self.live_stream = Stream(self.live.payload)
        self.live.on_change = self.live_stream.changed
        stack.callback(self.live_stream.stop)
        registry.register(LiveCollector(self.live))
        self.exporters.attach_registry(registry, push_identity(self.store), self.store.dir)
        host, port = cfg.http_host_port()
        self.web = None
        if cfg.web:
            from ccotel.traces import options
            from ccotel.web import Web

            self.web = Web(cfg, self.store.dir, self.ingest.totals, self.health, budgets_of(cfg),
                           label, options(cfg), clock)  # fmt: skip
            self.web.live, self.web.live_stream = self.live, self.live_stream
            self.web.plan = self.hub.page
        self.server = HttpServer(
            host, port, registry, self.health, web=self.web.handle if self.web else None,
            tls=(cfg.http_tls_cert, cfg.http_tls_key) if cfg.http_tls_cert else None,
            auth=(cfg.http_basic_auth_user, cfg.http_basic_auth_password_hash) if cfg.http_basic_auth_user else None,
            allowed_hosts=cfg.http_allowed_hosts,
            allow_unauthenticated=cfg.allow_unauthenticated_network_access,
        )  # fmt: skip
        stack.callback(self.server.stop)  # bound, not serving yet

    def health(self) -> dict[str, Any]:
        t = self.ingest.totals
        return {
            "ok": self.ready.is_set(),
            "version": __version__,
            "pid": os.getpid(),
            "roots": [str(r) for r in self.roots],
            "state_dir": str(self.store.dir),
            "files_tracked": t.files_tracked,
            "pending_bytes": t.pending_bytes,
            "last_event_time": t.last_event_ts,
            "lag_seconds": round(t.lag, 3),
            "lines": int(t.counters.get("lines", 0)),
            "parse_errors": int(t.counters.get("parse_errors", 0)),
            "unreadable": sorted(self.ingest.unreadable)[:20],
            "uptime_seconds": round(self.clock() - self.started, 1),
            **self.exporters.health(),  # "traces" and "metrics_push"
        }

    def stop(self, *_args: object) -> None:
        """Ask the loop to stop: safe from a signal handler (sets a flag, writes a byte)."""
        self.wake.request_stop()

    @property
    def stopping(self) -> bool:
        return self.wake.stop_requested

    def run(self) -> None:
        try:
            with self._stack:
                self._start()
        finally:
            log.info("ccotel stopped")

    def _start(self) -> None:
        if self.stopping:
            return
        self.server.start()
        self.live_stream.start()
        base = self.server.url
        write_running(self.store.dir, base)  # the port it got, when http_addr asked for 0
        self._stack.callback(clear_running, self.store.dir)
        log.info(
            "ccotel running",
            page=f"{base}/" if self.web else None,
            metrics=f"{base}/metrics",
            roots=[str(r) for r in self.roots],
            state=str(self.store.dir),
        )
        if self.stopping:
            return
        self.hub.start()
        if self.stopping:
            return
        self.watcher = Watcher(self.roots, self.wake.add)
        self._stack.callback(self.watcher.stop)
        self.watcher.start()
        if self.stopping:
            return
        lines = catch_up(self.ingest, workers_of(self.cfg), sleep=self.wake.sleep)
        if self.stopping:
            return
        log.info("caught up", lines=lines, files=self.ingest.totals.files_tracked)
        self.live.rebuild(self.ingest.cursors, self.cfg.max_line_bytes)
        self.ingest.live = self.live
        # What the catch-up left (caches, key sets) lives as long as the daemon: out of the
        # collector's sight, a full collection no longer walks it (a pause on an append).
        gc.collect()
        gc.freeze()
        self.ready.set()
        self.hub.set_ready()
        self.exporters.start()
        self._loop()

    def _last_flush(self) -> None:
        if not self.ingest.flush():
            log.warning("the last lines read were not committed; they are read again at start")

    def _loop(self) -> None:
        interval = self.cfg.rescan_interval
        next_scan = time.monotonic() + interval
        backoff = RETRY_FIRST
        retry_at = time.monotonic()
        while not self.stopping:
            deadline = min(next_scan, retry_at) if self.ingest.retry else next_scan
            paths = self.wake.wait(deadline - time.monotonic())
            if self.stopping:
                return
            now = time.monotonic()
            if RESCAN in paths or now >= next_scan:
                paths.discard(RESCAN)
                for _ in range(8):
                    if self.watcher is None or not self.watcher.refresh():
                        break
                paths.update(self.ingest.scan())
                self.ingest.prune()
                next_scan = time.monotonic() + interval
            waiting = bool(self.ingest.retry)  # files a failed commit (or read) threw away
            retried = waiting and now >= retry_at
            if retried:
                paths |= self.ingest.retry
            for p in sorted(paths):
                if self.stopping:
                    break
                self.ingest.ingest(p)
            flushed = self.ingest.flush()
            self.live.published()
            if flushed and not self.ingest.retry:
                backoff = RETRY_FIRST
            elif self.ingest.retry and (retried or not waiting):
                # a retry that failed again waits longer each time; a wake-up for other
                # files does not put it off (a file with no new lines has only this timer)
                retry_at = time.monotonic() + backoff
                backoff = min(backoff * 2, interval)
            if paths:  # new lines for the traces; an idle wake-up leaves them asleep
                self.exporters.notify()


def _close_exporters(exporters: Exporters) -> None:
    """Exporters.stop, for exporters that may have started only in part (or not at all):
    a thread that never started is not joined, only its connections let go of."""
    tr, pusher = exporters.traces, exporters.pusher
    if tr:
        if tr.thread.ident is not None:
            tr.stop()
        tr.shipper.sink.shutdown()
        tr.shipper.close()
    if pusher:
        if pusher.thread.ident is not None:
            pusher.stop()
        else:
            pusher.sender.shutdown()


def run(cfg: Config, clock: Callable[[], float] = time.time) -> None:
    """The daemon in the foreground until SIGTERM or SIGINT (the handlers are in place
    before anything opens, so a signal at any point of the start stops it cleanly)."""
    wake = Wakeup()
    try:
        with stop_on_signals(wake, restore=False):
            Daemon(cfg, clock, wake).run()
    finally:
        wake.close()
