"""Wiring and lifecycle: the daemon's loop and the one-shot backfill."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from ccotel import __version__
from ccotel.backfill import backfill as backfill  # the one-shot, beside the daemon
from ccotel.backfill import catch_up, roots_of, stop_on_signals, workers_of
from ccotel.config import Config
from ccotel.live import LiveCollector, Stream, board_for
from ccotel.log import get_logger
from ccotel.otlp import push_identity
from ccotel.pipeline import Ingest
from ccotel.projects import project_labeler, shown_labeler
from ccotel.server import HttpServer
from ccotel.sinks import NativeCollector, OutcomeCollector, TotalsCollector
from ccotel.sources import FULL_RESCAN, RESCAN, Watcher
from ccotel.state import (
    Store,
    clear_running,
    write_running,
)
from ccotel.statusline import Hub
from ccotel.traces import Exporters
from ccotel.wakeup import Wakeup

log = get_logger()

RETRY_FIRST = 1.0  # seconds before the daemon reads again what a failed commit threw away
SWITCH_INTERVAL = 0.001  # seconds (sys.setswitchinterval) once caught up
FULL_RESCAN_EVERY = 10  # rescans: every this many, one stats every transcript (the others,
# while file events cover every root, only the folders and the new files)


def budgets_of(cfg: Config) -> dict[str, float]:
    out = {}
    if cfg.budget.hourly_usd is not None:
        out["1h"] = cfg.budget.hourly_usd
    if cfg.budget.daily_usd is not None:
        out["24h"] = cfg.budget.daily_usd
    return out


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
        label = shown_labeler(cfg.project_label)
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
        self.ingest.acct.warm()  # a first catch-up's rows, kept whole: to the caches' size
        self.live.rebuild(self.ingest.cursors, self.cfg.max_line_bytes)
        self.ingest.live = self.live
        # What the catch-up left (caches, key sets) lives as long as the daemon: out of the
        # collector's sight, a full collection no longer walks it (a pause on an append).
        gc.collect()
        gc.freeze()
        # A thread that wakes (a scrape after a commit) waits at most this long for the GIL
        # held by another (the trace or live threads), not Python's default 5 ms.
        self._stack.callback(sys.setswitchinterval, sys.getswitchinterval())
        sys.setswitchinterval(SWITCH_INTERVAL)
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
        next_full = time.monotonic() + interval * FULL_RESCAN_EVERY
        backoff = RETRY_FIRST
        retry_at = time.monotonic()
        while not self.stopping:
            deadline = min(next_scan, retry_at) if self.ingest.retry else next_scan
            paths = self.wake.wait(deadline - time.monotonic())
            if self.stopping:
                return
            now = time.monotonic()
            if RESCAN in paths or FULL_RESCAN in paths or now >= next_scan:
                for _ in range(8):
                    if self.watcher is None or not self.watcher.refresh():
                        break
                # While file events cover every root, a rescan looks for new files only (a
                # stat per folder); every FULL_RESCAN_EVERY rescans, after events were lost,
                # or without a complete watch, it stats every transcript.
                full = (FULL_RESCAN in paths or now >= next_full or self.watcher is None
                        or not self.watcher.complete
                        or not self.watcher.covers(self.ingest.folders))  # fmt: skip
                paths -= {RESCAN, FULL_RESCAN}
                paths.update(self.ingest.scan(full))
                self.ingest.prune()
                next_scan = time.monotonic() + interval
                if full:
                    next_full = time.monotonic() + interval * FULL_RESCAN_EVERY
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
