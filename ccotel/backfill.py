"""The one-shot backfill, and the catch-up the daemon starts with: what `ccotel backfill`
loads (the daemon's servers, sinks and threads stay in ccotel.app, unimported)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ccotel.config import Config
from ccotel.pipeline import Ingest, Progress, read_history
from ccotel.sources import claude_roots
from ccotel.state import DB_NAME, StateError, Store, rebuild_state
from ccotel.wakeup import Wakeup

BACKFILL_PARALLEL_BYTES = 32 << 20  # below this, one process is faster than a pool


def roots_of(cfg: Config) -> list[Path]:
    if cfg.claude_dirs:
        return [Path(d).expanduser() for d in cfg.claude_dirs]
    return claude_roots(os.environ, Path.home())


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
                from ccotel.traces import backfill_traces  # only with --traces

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
