"""The routes under / and /api/: parameters in, JSON out (docs/web.md).

Every number comes from the tables ``ccotel report`` reads (through ``ccotel.state.queries``),
or from the daemon's live totals; a session's waterfall is the traces builder's span tree
(``ccotel.web.waterfall``). Projects follow the rule of every view: cost and tokens belong to
the project of the working directory each response was made in, and a session belongs to
every project it had activity in.
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from copy import copy
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote

from ccotel.log import get_logger
from ccotel.state import DB_NAME, OutcomeTotals, StateError, Store
from ccotel.state import queries as Q
from ccotel.traces import Options, ids
from ccotel.web import shape
from ccotel.web.waterfall import Waterfalls

if TYPE_CHECKING:
    from ccotel.live import LiveBoard, Stream

log = get_logger()

DEFAULT_TRACE_UI = (
    "http://localhost:3000/explore?left="
    + quote(
        '{"datasource":"tempo","queries":[{"refId":"A","queryType":"traceql","query":"TRACE_ID"}]}',
        safe="",
    )
).replace("TRACE_ID", "{trace_id}")
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SORTS = ("last", "start", "active", "cost", "tokens")  # "duration": the old name of "active"
JSON = "application/json"
ACTIVE_REFRESH = 30.0  # seconds a live session's active time may lag
Response = tuple[int, str, bytes]
# a stream: its head, and what takes the connection once the head is sent (ccotel.server)
StreamResponse = tuple[int, str, bytes, Callable[[socket.socket], bool]]


class _Held(NamedTuple):
    """A thread's read-only store, and the inode of the file it opened."""

    store: Store
    ino: int | None


class _Active(NamedTuple):
    """A session's active seconds, as of its last activity ``last_ts``, computed ``when``."""

    last_ts: float | None
    seconds: float
    when: float


class BadParam(ValueError):
    """A query parameter the API cannot use: 400 with this message."""


class NotFound(LookupError):
    """404 with this message."""


def day_start(d: date) -> float:
    """Local midnight that begins ``d``."""
    return datetime(d.year, d.month, d.day).timestamp()


def first_hour(d: date) -> int:
    """The first usage hour counted in day ``d``: an hour belongs to the local day its start is
    in (as in `ccotel report --by day`), also where midnight is not on the hour."""
    return math.ceil(day_start(d) / 3600)


class Web:
    """``handle(path, query)``: the response for a route of the page, or None."""

    def __init__(self, cfg: Any, state_dir: Path, totals: Any, health: Callable[[], dict[str, Any]],
                 budgets: dict[str, float], project: Callable[[str], str], opts: Options,
                 clock: Callable[[], float] = time.time):  # fmt: skip
        self.cfg, self.state_dir, self.totals, self.health = cfg, state_dir, totals, health
        self.budgets, self.project, self.opts, self.clock = budgets, project, opts, clock
        self.trace_ui = getattr(cfg, "trace_ui_url", "") or DEFAULT_TRACE_UI
        self.idle = float(getattr(cfg, "session_idle", 600.0)) or 600.0
        self.waterfalls = Waterfalls(opts, getattr(cfg, "max_line_bytes", 64 << 20))
        self._local = threading.local()
        self._active: dict[str, _Active] = {}  # session id -> its active time
        self._active_lock = threading.Lock()
        self._state_warned = -3600.0
        self.plan: Callable[[], dict[str, Any]] | None = None  # /api/plan, set by the daemon
        self.live: LiveBoard | None = None  # the live board, set by the daemon
        self.live_stream: Stream | None = None  # its server-sent events

    # --- plumbing ------------------------------------------------------------------------

    def store(self) -> Store:
        """This thread's read-only view of the state, reopened when the file is replaced."""
        try:
            ino = os.stat(self.state_dir / DB_NAME).st_ino
        except OSError:
            ino = None
        held: _Held | None = getattr(self._local, "store", None)
        if held is not None and held.ino == ino:
            return held.store
        if held is not None:
            held.store.close()
            self._local.store = None
        s = Store(self.state_dir, readonly=True, cache_mib=4)  # a worker's, not the writer's 16
        self._local.store = _Held(s, ino)
        return s

    def handle(self, path: str, query: str) -> Response | StreamResponse | None:
        if path in ASSETS:
            name, ctype = ASSETS[path]
            return 200, ctype, resources.files("ccotel.web").joinpath(name).read_bytes()
        if path != "/api" and not path.startswith("/api/"):
            return None
        route = path.rstrip("/")
        try:
            q = {k: v[-1] for k, v in parse_qs(query, max_num_fields=32).items()}
        except ValueError:
            return _error(400, "too many query parameters")
        try:
            if route == "/api/summary":
                body = self.summary()
            elif route == "/api/plan" and self.plan is not None:  # ccotel.statusline.daemon
                body = self.plan()
            elif route == "/api/spend":
                body = self.spend(q.get("by", "model"), q.get("bucket", "hour"))
            elif route == "/api/sessions":
                body = self.sessions(q)
            elif route == "/api/live" and self.live is not None:
                return 200, JSON, self.live.payload()[1]
            elif route == "/api/live/events" and self.live_stream is not None:
                if not self.live_stream.room():
                    return _error(503, "too many live streams open: poll /api/live")
                return 200, "text/event-stream", b"", self.live_stream.adopt
            elif route.startswith("/api/sessions/") and "/" not in route[14:]:
                info, spans = self.session(unquote(route[14:]))
                return 200, JSON, shape.encode_with(info, "spans", spans)
            else:
                return _error(404, "no such endpoint: see docs/web.md")
        except BadParam as exc:
            return _error(400, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except (StateError, sqlite3.Error) as exc:  # gone, replaced, locked past the timeout
            held = getattr(self._local, "store", None)
            if held is not None:
                held.store.close()
                self._local.store = None
            if time.monotonic() - self._state_warned > 60:  # once a minute, however often polled
                self._state_warned = time.monotonic()
                log.warning("web: the state cannot be read", error=str(exc)[:200])
            return _error(503, f"the state cannot be read: {exc}")
        return 200, JSON, shape.encode(body)

    # --- /api/summary ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        now = self.clock()
        t = self.totals
        with t.lock:
            rows = [copy(v) for v in t.usage.values()]
            rows_by_cwd: dict[str, float] = {}
            for (_model, cwd), v in t.usage.items():
                rows_by_cwd[cwd] = rows_by_cwd.get(cwd, 0.0) + v.cost
            hour_spend = t.spend_in(3600, now)
            day_spend = t.spend_in(86400, now)
            active = t.active_sessions(now)
            sessions = t.sessions
        all_time = Q.Usage()
        for v in rows:
            all_time = all_time.plus(
                Q.Usage(int(v.input), int(v.output), int(v.cache_read), int(v.cw5m + v.cw1h),
                        int(v.requests), v.cost)
            )  # fmt: skip
        db = self.store().db
        today = date.fromtimestamp(now)
        month = today.replace(day=1)
        by_model = sorted(
            (
                {"model": m, **shape.usage(u)}
                for m, u in Q.usage_by_model_since(db, first_hour(today))
            ),
            key=lambda r: (-r["cost_usd"], r["model"]),
        )
        top = Q.top_session_since(db, first_hour(today))
        return {
            "now": now,
            "today": {"cost_usd": sum(r["cost_usd"] for r in by_model), "by_model": by_model,
                      "since": day_start(today)},
            "this_hour_usd": hour_spend,
            "last_24h_usd": day_spend,
            "this_month_usd": Q.cost_since(db, first_hour(month)),
            "month_since": day_start(month),
            "burn_rate_usd_per_hour": t.burn_rate(now),
            "budgets": {"hourly_usd": self.budgets.get("1h"), "daily_usd": self.budgets.get("24h")},
            "active_sessions": active,
            "top_session_today": {"id": top[0], "cost_usd": top[1]} if top else None,
            "all_time": {**shape.usage(all_time), "sessions": sessions},
            "bought_by_project": self._bought_by_project(rows_by_cwd, db),
            "health": shape.health(self.health(), self.cfg),
        }  # fmt: skip

    def _bought_by_project(
        self, cost_by_cwd: dict[str, float], db: sqlite3.Connection
    ) -> list[dict[str, Any]]:
        """All time, per project: cost, lines, commits, pull requests, cost per commit and per
        100 changed lines; the 20 biggest spenders."""
        per: dict[str, list[float]] = {}
        for cwd, cost in cost_by_cwd.items():
            per.setdefault(self.project(cwd or ""), [0.0] * 5)[0] += cost
        for cwd, v in OutcomeTotals.load(db).by_cwd.items():
            row = per.setdefault(self.project(cwd or ""), [0.0] * 5)
            for i in range(4):  # lines added, removed, commits, pull requests
                row[i + 1] += v[i]
        ranked = sorted(per.items(), key=lambda kv: (-kv[1][0], kv[0]))[:20]
        return [{"project": p, "cost_usd": v[0], **shape.bought(*v)} for p, v in ranked]

    # --- /api/spend ------------------------------------------------------------------------

    def spend(self, by: str, bucket: str) -> dict[str, Any]:
        if by not in ("model", "project"):
            raise BadParam("by: model or project")
        if bucket not in ("hour", "day"):
            raise BadParam("bucket: hour or day")
        now = self.clock()
        keys: list[Any]
        if bucket == "hour":
            cur = int(now // 3600)
            keys = list(range(cur - 47, cur + 1))
            start = keys[0]
        else:
            today = date.fromtimestamp(now)
            keys = [today - timedelta(days=i) for i in range(29, -1, -1)]
            start = first_hour(keys[0])
        idx = {k: i for i, k in enumerate(keys)}
        series: dict[str, list[float]] = {}
        for hour, label, cost in Q.cost_by_hour(self.store().db, start, by):
            i = idx.get(hour if bucket == "hour" else date.fromtimestamp(hour * 3600))
            if i is not None:
                name = label if by == "model" else self.project(label or "")
                series.setdefault(name, [0.0] * len(keys))[i] += cost
        ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        return {
            "by": by,
            "bucket": bucket,
            "buckets": [k * 3600 for k in keys]
            if bucket == "hour"
            else [d.isoformat() for d in keys],
            "series": [{"name": n, "cost_usd": v} for n, v in ordered],
            "budget_usd": self.budgets.get("1h" if bucket == "hour" else "24h"),
        }

    # --- /api/sessions ---------------------------------------------------------------------

    def sessions(self, q: dict[str, str]) -> dict[str, Any]:
        try:
            limit = int(q.get("limit", 50))
        except ValueError:
            raise BadParam("limit: a whole number from 1 to 1000") from None
        limit = min(max(limit, 1), 1000)
        sort = q.get("sort", "last")
        desc = not sort.startswith("-")
        sort = {"duration": "active"}.get(sort.lstrip("-"), sort.lstrip("-"))
        if sort not in SORTS:
            raise BadParam(f"sort: one of {', '.join(SORTS)}, with a leading - for ascending")
        db = self.store().db
        f = Q.Filter(
            cwds=self._cwds_named(q["project"]) if q.get("project") else None,
            day=_day(q["day"]) if q.get("day") else None,
            prefix=q.get("q", "").strip(),
        )
        if sort == "active":
            keys = Q.session_keys(db, f)
            act = self._active_times(db, keys)
            keys.sort(key=lambda k: (act.get(k[0], 0.0), k[0]), reverse=desc)
            order = [k[0] for k in keys[:limit]]
            by_id = {r.id: r for r in Q.sessions_by_id(db, order)}
            rows = [by_id[i] for i in order if i in by_id]
            total = len(keys)
        else:
            rows = Q.sessions(db, f, sort, desc, limit)
            total = Q.count_sessions(db, f)
        return {"total": total, "sessions": self._enrich(db, rows)}

    def _cwds_named(self, text: str) -> list[str]:
        """The working directories whose project name contains ``text`` (any case)."""
        t = text.strip().lower()
        return [c for c in Q.cwds(self.store().db) if t in self.project(c or "").lower()]

    def _active_times(
        self, db: sqlite3.Connection, keys: list[tuple[Any, ...]]
    ) -> dict[str, float]:
        """Active seconds per session. Computing them reads all of ``responses``, so a result
        is kept until the session has new activity, and a live session's is recomputed at
        most every ACTIVE_REFRESH seconds."""
        out: dict[str, float] = {}
        todo = []
        now = time.monotonic()
        with self._active_lock:
            for sid, first, last in keys:
                if first is not None and last is not None and last - first <= self.idle:
                    out[sid] = last - first  # no pause can be longer than the idle gap
                    continue
                hit = self._active.get(sid)
                if hit is not None and (hit.last_ts == last or now - hit.when < ACTIVE_REFRESH):
                    out[sid] = hit.seconds
                else:
                    todo.append((sid, last))
        if todo:
            got = Q.active_seconds(db, [sid for sid, _ in todo], self.idle)
            with self._active_lock:
                if len(self._active) > 200_000:
                    self._active.clear()
                for sid, last in todo:
                    out[sid] = got.get(sid, 0.0)
                    self._active[sid] = _Active(last, out[sid], now)
        return out

    def _enrich(self, db: sqlite3.Connection, rows: list[Q.SessionRow]) -> list[dict[str, Any]]:
        ids_ = [r.id for r in rows]
        total: dict[str, Q.Usage] = {}
        models: dict[str, dict[str, float]] = {}
        projects: dict[str, dict[str, float]] = {}
        for sid, model, cwd, u in Q.usage_by_session(db, ids_):
            total[sid] = total.get(sid, Q.Usage()).plus(u)
            m = models.setdefault(sid, {})
            m[model] = m.get(model, 0.0) + u.cost
            p = projects.setdefault(sid, {})
            name = self.project(cwd or "")
            p[name] = p.get(name, 0.0) + u.cost
        tools = Q.tool_counts(db, ids_)
        bought = Q.outcomes_by_session(db, ids_)
        active = self._active_times(db, [(r.id, r.first_ts, r.last_ts) for r in rows])
        out = []
        for r in rows:
            proj = projects.get(r.id) or {}
            start_project = self.project(r.cwd or "")
            proj.setdefault(start_project, 0.0)
            ranked = sorted(proj.items(), key=lambda kv: (-kv[1], kv[0] != start_project, kv[0]))
            n, err = tools.get(r.id, (0, 0))
            out.append({
                "id": r.id, "project": ranked[0][0], "projects": [{"name": k, "cost_usd": v} for k, v in ranked],
                "branch": r.branch, "start": r.first_ts, "end": r.last_ts,
                "active_s": active.get(r.id, 0.0),
                "wall_s": (r.last_ts - r.first_ts) if r.first_ts is not None and r.last_ts is not None else None,
                "models": [m for m, _ in sorted((models.get(r.id) or {}).items(), key=lambda kv: (-kv[1], kv[0]))],
                "tool_calls": n, "tool_errors": err,
                **shape.usage(total.get(r.id, Q.Usage())),
                **shape.bought(total.get(r.id, Q.Usage()).cost, *bought.get(r.id, (0, 0, 0, 0))),
            })  # fmt: skip
        return out

    # --- /api/sessions/<id> ------------------------------------------------------------------

    def session(self, sid: str) -> tuple[dict[str, Any], bytes]:
        """The session, and its span tree as JSON."""
        st = self.store()
        rows = Q.sessions_by_id(st.db, [sid])
        if not rows and sid:
            matches = Q.ids_with_prefix(st.db, sid, 6)
            if len(matches) > 1:
                raise NotFound(
                    f"{'more than 5' if len(matches) > 5 else len(matches)} sessions start with {sid!r}: give more of the id"
                )
            rows = Q.sessions_by_id(st.db, matches)
        if not rows:
            raise NotFound("no such session")
        (info,) = self._enrich(st.db, rows)
        sid = info["id"]
        trace = ids.hex_trace(ids.trace_id(sid))
        info |= {
            "trace_id": trace,
            "trace_url": self.trace_ui.replace("{trace_id}", trace),
            "content_captured": bool(self.opts.capture_content or self.opts.tool_details),
            "idle_gap_s": self.idle,
        }
        return info, self.waterfalls.tree(sid, Q.files_of(st.db, sid), st.response)


def _day(value: str) -> tuple[float, float]:
    try:
        d = date.fromisoformat(value.strip())
        return day_start(d), day_start(d + timedelta(days=1))
    except (ValueError, OverflowError, OSError):
        raise BadParam(f"day: expected YYYY-MM-DD, got {value[:40]!r}") from None


def _error(code: int, msg: str) -> Response:
    return code, JSON, shape.encode({"error": msg})
