"""The daemon's side of the status line: what ``Daemon`` holds and starts (``Hub``).

- ``reports``: the latest report per session (the public ``Daemon.statusline``);
- ``plan``: the plan windows (ccotel.statusline.plan), restored from the state at start and
  written back by the hub's worker thread (never by a request: a status line never waits
  on the database's writer);
- ``blocks``: the live billing blocks (ccotel.blocks_live), fed by every commit;
- the Unix socket (ccotel.statusline.server) and the line (ccotel.statusline.render);
- ``metrics()``: the plan, block and burn-rate gauges for /metrics and the OTLP push.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily

from ccotel.blocks_live import LiveBlocks
from ccotel.log import get_logger
from ccotel.state import limits as sql
from ccotel.state import queries
from ccotel.statusline.plan import (
    HISTORY_DAYS,
    HISTORY_ROWS,
    WINDOW_SECONDS,
    Plan,
    Window,
    parse_rate_limits,
    plausible_reset,
)
from ccotel.statusline.render import Facts, render
from ccotel.statusline.reports import BadReport, Reports, check, context_of
from ccotel.statusline.server import SocketServer

if TYPE_CHECKING:
    from ccotel.batch import Batch
    from ccotel.config import Config
    from ccotel.totals import Totals

log = get_logger()

HISTORY_POINTS = 2000
WORK_EVERY = 1.0  # seconds between the worker's rounds (plan writes, block recomputation)


def _model_name(d: dict[str, Any]) -> str | None:
    m = d.get("model")
    name = m.get("display_name") or m.get("id") if isinstance(m, dict) else None
    if not isinstance(name, str):
        return None
    return "".join(c for c in name[:40] if c.isprintable())


class Hub:
    def __init__(self, cfg: Config, state_dir: Path, totals: Totals, budgets: dict[str, float],
                 clock: Callable[[], float] = time.time, restore: sqlite3.Connection | None = None):  # fmt: skip
        self.cfg, self.state_dir, self.totals, self.budgets = cfg, state_dir, totals, budgets
        self.clock = clock
        self.db_path = state_dir / "state.db"
        self.reports = Reports(clock)
        held = []
        if restore is not None:
            now = clock()
            held = [
                Window(w, r, reset, at, at)
                for w, r, reset, at in sql.plan_latest(restore)
                if w in WINDOW_SECONDS and plausible_reset(w, reset, now)
            ]
        self.plan = Plan(held)
        self.blocks = LiveBlocks(self._read_entries, clock)
        self.server = SocketServer(state_dir, self.handle)
        self.ready = threading.Event()  # catch-up done: the blocks may be computed in full
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._worker: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None
        self._worker_db: sqlite3.Connection | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.server.start()
        except OSError as exc:  # the daemon runs on without its status line
            log.error("statusline: cannot listen; the status line is off",
                      path=str(self.server.path), error=str(exc))  # fmt: skip
        self._worker = threading.Thread(target=self._work, name="ccotel-plan", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self.server.stop()
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=10)
        self._write_plan()  # what the worker had not written yet
        for conn in (self._reader, self._writer, self._worker_db):
            if conn is not None:
                conn.close()
        self._reader = self._writer = self._worker_db = None

    def set_ready(self) -> None:
        """Catch-up is done: compute the blocks in full now (on the worker)."""
        self.ready.set()
        self._wake.set()

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        uri = f"file:{self.db_path}?mode=ro" if readonly else str(self.db_path)
        conn = sqlite3.connect(uri, uri=readonly, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def committed(self, b: Batch) -> None:
        """After each commit (the ingest thread): the blocks take its entries, and a full
        recomputation it made due wakes the worker."""
        self.blocks.committed(b)
        if self.ready.is_set() and self.blocks.pending:
            self._wake.set()

    def _next_round(self) -> float | None:
        """Seconds until the worker has something to do unasked: plan rows a failed write
        kept, or a full block recomputation due; None: until woken (idle: no timer)."""
        if self.plan.has_changes():
            return WORK_EVERY
        if self.ready.is_set() and self.blocks.pending:
            return max(WORK_EVERY, self.blocks.full_in())
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_round())
            self._wake.clear()  # (a wake-up during this round is kept for the next)
            if self._stop.is_set():
                return
            try:
                self._write_plan()
                if self.ready.is_set():
                    self.blocks.refresh()
            except sqlite3.Error as exc:
                log.warning("blocks: cannot read the state", error=str(exc)[:200])
            except Exception:  # a bug here must not end the plan writes or the blocks
                log.exception("plan/blocks worker")

    def _read_entries(self, since: float) -> list[sql.BlockEntry]:
        if self._worker_db is None:
            self._worker_db = self._connect(readonly=True)
        return sql.block_entries(self._worker_db, since)

    def _write_plan(self) -> None:
        changes = self.plan.take_changes()
        if not changes:
            return
        try:
            if self._writer is None:
                self._writer = self._connect(readonly=False)
            rows = [(w.window, w.reported_at, w.used_ratio, w.resets_at) for w in changes]
            sql.plan_write(self._writer, rows, self.clock() - HISTORY_DAYS * 86400, HISTORY_ROWS)
        except sqlite3.Error as exc:
            self.plan.put_back(changes)
            log.warning("plan: cannot write the state; kept for the next try", error=str(exc)[:200])

    # --- the socket's one route --------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes, query: str = "") -> tuple[int, str]:
        if path == "/report" and method == "GET":  # what the daemon holds of a session
            from urllib.parse import parse_qs

            sid = (parse_qs(query).get("session_id") or [""])[-1]
            d = self.reports.report(sid)
            if d is None:
                return 404, "ccotel: no status-line report of that session\n"
            return 200, json.dumps(d) + "\n"
        if path != "/statusline":
            return 404, "ccotel: POST the status-line JSON to /statusline\n"
        if method != "POST":
            return 405, "ccotel: POST the status-line JSON to /statusline\n"
        try:
            d = check(json.loads(body))
        except (ValueError, RecursionError, BadReport) as exc:
            return 400, f"ccotel: {exc if isinstance(exc, BadReport) else 'not JSON'}\n"
        self.take(d)
        return 200, self.line(d) + "\n"

    def take(self, d: dict[str, Any]) -> None:
        """Keep a report and offer its plan figures."""
        self.reports.put(d)
        now = self.clock()
        changed = False
        for window, (ratio, resets_at) in parse_rate_limits(d.get("rate_limits"), now).items():
            changed |= self.plan.offer(window, ratio, resets_at, now)
        if changed:
            self._wake.set()

    # --- the line ------------------------------------------------------------------------------

    def facts(self, d: dict[str, Any]) -> Facts:
        now = self.clock()
        f = Facts(model=_model_name(d), now=now, context=context_of(d))
        with contextlib.suppress(sqlite3.Error):
            f.session_usd, f.today_usd = self._costs(d["session_id"], now)
        b = self.blocks.summary(now)
        if b is not None:
            f.block_usd, f.block_left_s = b["cost_usd"], b["seconds_left"]
        f.burn_usd_per_hour = self.totals.burn_rate(now)
        f.plan = {w: (x.used_ratio, x.resets_at) for w, x in self.plan.windows().items()}
        f.budget_ratio = self.budget_ratio(now)
        return f

    def line(self, d: dict[str, Any]) -> str:
        cfg = self.cfg
        return render(self.facts(d), cfg.statusline_segments, cfg.statusline_separator,
                      cfg.statusline_color)  # fmt: skip

    def _costs(self, session: str, now: float) -> tuple[float, float]:
        from ccotel.web import first_hour

        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect(readonly=True)
            return sql.session_cost(self._reader, session), queries.cost_since(
                self._reader, first_hour(date.fromtimestamp(now))
            )

    def budget_ratio(self, now: float) -> float | None:
        """The highest share of a budget spent (the page's bars: last hour and last 24 h)."""
        spans = {"1h": 3600, "24h": 86400}
        ratios = []
        with self.totals.lock:
            for window, budget in self.budgets.items():
                if budget > 0 and window in spans:
                    ratios.append(self.totals.spend_in(spans[window], now) / budget)
        return max(ratios) if ratios else None

    # --- metrics ---------------------------------------------------------------------------------

    def metrics(self) -> list[GaugeMetricFamily]:
        now = self.clock()
        used = GaugeMetricFamily("ccotel_plan_used_ratio",
            "Plan use per window as Claude Code's status line last reported it, 0-1", labels=["window"])  # fmt: skip
        resets = GaugeMetricFamily("ccotel_plan_resets_at_seconds",
            "When the plan window resets, epoch seconds", labels=["window"])  # fmt: skip
        at = GaugeMetricFamily("ccotel_plan_report_timestamp_seconds",
            "When the plan figure last changed (a report with news), epoch seconds", labels=["window"])  # fmt: skip
        for w, x in sorted(self.plan.windows().items()):
            used.add_metric([w], x.used_ratio)
            at.add_metric([w], x.reported_at)
            if x.resets_at is not None:
                resets.add_metric([w], x.resets_at)
        out = [used, resets, at]
        b = self.blocks.summary(now)
        cost = GaugeMetricFamily("ccotel_block_cost_usd",
            "Cost of the active billing block (as ccusage blocks), USD; 0 when none is active")  # fmt: skip
        ends = GaugeMetricFamily("ccotel_block_ends_at_seconds",
            "When the active billing block ends, epoch seconds (absent when none is active)")  # fmt: skip
        proj = GaugeMetricFamily("ccotel_block_projected_cost_usd",
            "The active block's cost at its end at its burn rate (ccusage's projection), USD")  # fmt: skip
        cost.add_metric([], b["cost_usd"] if b else 0.0)
        if b is not None:
            ends.add_metric([], b["end"])
            proj.add_metric(
                [],
                b["projected_cost_usd"] if b["projected_cost_usd"] is not None else b["cost_usd"],
            )
        burn = GaugeMetricFamily("ccotel_burn_rate_usd_per_hour",
            'Spend per hour: window="15m" the last 15 minutes (page, API, status line); '
            'window="block" the active block\'s, as ccusage computes it', labels=["window"])  # fmt: skip
        burn.add_metric(["15m"], self.totals.burn_rate(now))
        if b is not None and b["burn_rate_usd_per_hour"] is not None:
            burn.add_metric(["block"], b["burn_rate_usd_per_hour"])
        return [*out, cost, ends, proj, burn]

    def page(self) -> dict[str, Any]:
        """/api/plan: the plan windows, their history (the last 7 days, at most HISTORY_POINTS
        per window), the active block and the burn rate."""
        now = self.clock()
        windows = {
            w: {"used_ratio": x.used_ratio, "resets_at": x.resets_at, "reported_at": x.reported_at,
                "seen_at": x.seen_at, "reset": x.resets_at is not None and x.resets_at <= now}
            for w, x in self.plan.windows().items()
        }  # fmt: skip
        history: dict[str, list[list[float | None]]] = {}
        with contextlib.suppress(sqlite3.Error):
            for w, at, ratio, resets_at in self.history(now - 7 * 86400):
                history.setdefault(w, []).append([at, ratio, resets_at])
        return {
            "now": now,
            "windows": windows,
            "history": {w: pts[-HISTORY_POINTS:] for w, pts in history.items()},
            "block": self.blocks.summary(now),
            "burn_rate_usd_per_hour": self.totals.burn_rate(now),
        }

    def history(self, since: float) -> list[tuple[str, float, float, float | None]]:
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect(readonly=True)
            return sql.plan_history(self._reader, since)
