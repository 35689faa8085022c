"""Wiring and lifecycle: the daemon's loop and the one-shot backfill."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from ccotel import __version__
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.server.httpd import HttpServer
from ccotel.sinks.prometheus import TotalsCollector, project_labeler
from ccotel.sources.discovery import claude_roots
from ccotel.sources.watch import RESCAN, Watcher
from ccotel.state.store import Store
from ccotel.traces import Exporters, backfill_traces

log = structlog.get_logger()

_STOP = "<stop>"
BACKFILL_PARALLEL_BYTES = 32 << 20  # below this, one process is faster than a pool


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


def catch_up(ingest: Ingest, workers: int, progress=None, on_total=None) -> int:
    todo = ingest.scan()
    if on_total:
        on_total(len(todo))
    big = ingest.totals.pending_bytes >= BACKFILL_PARALLEL_BYTES
    return ingest.backfill(todo, workers if big else 1, progress)


def backfill(
    cfg: Config, clock: Callable[[], float] = time.time, progress=None, on_total=None,
    traces: bool = False, since: float | None = None,
) -> dict:  # fmt: skip
    """Metrics first; with traces, then the spans of files changed since ``since`` (epoch s)."""
    store = Store(cfg.resolved_state_dir())
    try:
        ingest = Ingest(cfg, store, roots_of(cfg), clock)
        t0 = time.perf_counter()
        lines = catch_up(ingest, workers_of(cfg), progress, on_total)
        out = {
            "lines": lines,
            "files": ingest.totals.files_tracked,
            "seconds": round(time.perf_counter() - t0, 3),
            "parse_errors": int(ingest.totals.counters.get("parse_errors", 0)),
        }
        if traces:
            out["traces"] = backfill_traces(
                cfg, store.path, clock() - 7 * 86400 if since is None else since, clock
            )
        return out
    finally:
        store.close()


class Daemon:
    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time):
        self.cfg, self.clock = cfg, clock
        self.roots = roots_of(cfg)
        self.store = Store(cfg.resolved_state_dir())
        self.ingest = Ingest(cfg, self.store, self.roots, clock)
        self.exporters = Exporters(cfg, self.store.path, clock)
        self.q: queue.Queue[str] = queue.Queue()
        self.watcher = Watcher(self.roots, self.q)
        self.started = clock()
        self.last_wake = clock()
        self.ready = threading.Event()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            TotalsCollector(
                self.ingest.totals,
                project_labeler(cfg.project_label),
                budgets_of(cfg),
                clock,
                extra=self.exporters.metrics,
                max_projects=cfg.max_projects,
            )
        )
        self.exporters.attach_registry(registry)
        host, port = cfg.metrics_host_port()
        self.web = None
        if cfg.web:
            from ccotel.traces.service import options
            from ccotel.web import Web

            # The page names projects as `ccotel report` does (project_label "off" hides them
            # from metric labels only).
            label = project_labeler(cfg.project_label if cfg.project_label != "off" else "name")
            self.web = Web(cfg, self.store.dir, self.ingest.totals, self.health, budgets_of(cfg),
                           label, options(cfg), clock)  # fmt: skip
        self.server = HttpServer(
            host, port, registry, self.health, web=self.web.handle if self.web else None,
            tls=(cfg.http_tls_cert, cfg.http_tls_key) if cfg.http_tls_cert else None,
            auth=(cfg.http_basic_auth_user, cfg.http_basic_auth_password_hash) if cfg.http_basic_auth_user else None,
            allowed_hosts=cfg.http_allowed_hosts,
            allow_unauthenticated=cfg.allow_unauthenticated_network_access,
        )  # fmt: skip

    def health(self) -> dict:
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

    def stop(self, *_args) -> None:
        self.q.put(_STOP)

    def run(self) -> None:
        self.server.start()
        base = self.server.url
        log.info(
            "ccotel running",
            page=f"{base}/" if self.web else None,
            metrics=f"{base}/metrics",
            roots=[str(r) for r in self.roots],
            state=str(self.store.dir),
        )
        self.watcher.start()
        try:
            lines = catch_up(self.ingest, workers_of(self.cfg))
            log.info("caught up", lines=lines, files=self.ingest.totals.files_tracked)
            self.ready.set()
            self.exporters.start()
            self._loop()
        finally:
            self.ingest.flush()
            self.exporters.stop()
            self.watcher.stop()
            self.server.stop()
            self.store.close()
            log.info("ccotel stopped")

    def _loop(self) -> None:
        interval = self.cfg.rescan_interval
        next_scan = time.monotonic() + interval
        while True:
            timeout = max(0.0, next_scan - time.monotonic())
            try:
                first = self.q.get(timeout=timeout)
            except queue.Empty:
                first = RESCAN
            paths = {first}
            while True:
                try:
                    paths.add(self.q.get_nowait())
                except queue.Empty:
                    break
            if _STOP in paths:
                return
            if RESCAN in paths or time.monotonic() >= next_scan:
                paths.discard(RESCAN)
                for _ in range(8):
                    if not self.watcher.refresh():
                        break
                paths.update(self.ingest.scan())
                self.ingest.totals.prune(self.clock())
                next_scan = time.monotonic() + interval
            for p in sorted(paths):
                self.ingest.ingest(p)
            self.ingest.flush()
            self.exporters.notify()


def run(cfg: Config, clock: Callable[[], float] = time.time) -> None:
    d = Daemon(cfg, clock)
    signal.signal(signal.SIGTERM, d.stop)
    signal.signal(signal.SIGINT, d.stop)
    d.run()
