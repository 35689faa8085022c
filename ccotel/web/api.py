"""Read-only JSON API over the SQLite state, and the static page that reads it.

Every number comes from the same tables as `ccotel report` (``usage``, ``sessions``,
``tools``); a session's waterfall is the span tree the traces builder makes for its
transcripts (the same spans, ids and attributes that go to the trace backend).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, quote

from ccotel.records import decode
from ccotel.sources.discovery import agent_of
from ccotel.state.schema import RESPONSE_COLS
from ccotel.traces import ids
from ccotel.traces.builder import Builder
from ccotel.traces.reader import read_lines
from ccotel.traces.shipper import _file_info

DEFAULT_TRACE_UI = (
    "http://localhost:3000/explore?left="
    + quote(
        '{"datasource":"tempo","queries":[{"refId":"A","queryType":"traceql","query":"TRACE_ID"}]}',
        safe="",
    )
).replace("TRACE_ID", "{trace_id}")
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
USAGE_SUMS = (
    "SUM(input), SUM(output), SUM(cache_read), SUM(cw5m), SUM(cw1h), SUM(requests), SUM(cost)"
)
SORTS = {
    "last": "last_ts",
    "start": "first_ts",
    "cost": "cost",
    "duration": "duration",
    "tokens": "tokens",
}


def _tokens(inp, out, cr, w5, w1, reqs, cost) -> dict:
    return {
        "input_tokens": inp or 0,
        "output_tokens": out or 0,
        "cache_read_tokens": cr or 0,
        "cache_write_tokens": (w5 or 0) + (w1 or 0),
        "requests": reqs or 0,
        "cost_usd": cost or 0.0,
    }


def _local_midnight(now: float) -> float:
    d = datetime.fromtimestamp(now)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _month_start(now: float) -> float:
    d = datetime.fromtimestamp(now)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class Web:
    """The routes under / and /api/. ``health`` and ``totals`` are the daemon's live views."""

    def __init__(self, cfg, db_path: Path, totals, health: Callable[[], dict], budgets: dict[str, float],
                 project: Callable[[str], str], opts, clock: Callable[[], float] = time.time):  # fmt: skip
        self.cfg, self.db_path, self.totals, self.health = cfg, db_path, totals, health
        self.budgets, self.project, self.opts, self.clock = budgets, project, opts, clock
        self.trace_ui = getattr(cfg, "trace_ui_url", "") or DEFAULT_TRACE_UI
        self._local = threading.local()
        self._spans_cache: dict[str, tuple[tuple, dict]] = {}
        self._cache_lock = threading.Lock()

    # --- plumbing ----------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        c = getattr(self._local, "db", None)
        if c is None:
            c = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)
            c.execute("PRAGMA busy_timeout=5000")
            self._local.db = c
        return c

    def handle(self, path: str, query: str) -> tuple[int, str, bytes] | None:
        """(status, content type, body) for a route of the page, or None when it is not one."""
        if path in ASSETS:
            name, ctype = ASSETS[path]
            return 200, ctype, resources.files("ccotel.web").joinpath(name).read_bytes()
        if not path.startswith("/api/"):
            return None
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if path == "/api/summary":
                body = self.summary()
            elif path == "/api/spend":
                body = self.spend(q.get("by", "model"), q.get("bucket", "hour"))
            elif path == "/api/sessions":
                body = self.sessions(q)
            elif path.startswith("/api/sessions/"):
                body = self.session(path.removeprefix("/api/sessions/"))
                if body is None:
                    return 404, "application/json", b'{"error":"no such session"}'
            else:
                return 404, "application/json", b'{"error":"no such endpoint"}'
        except ValueError as exc:
            return 400, "application/json", json.dumps({"error": str(exc)}).encode()
        return 200, "application/json", json.dumps(body, separators=(",", ":")).encode()

    # --- /api/summary --------------------------------------------------------------

    def summary(self) -> dict:
        now = self.clock()
        t = self.totals
        with t.lock:
            usage = [list(v) for v in t.usage.values()]
            hour_spend = t.spend_in(3600, now)
            day_spend = t.spend_in(86400, now)
            active = t.active_sessions(now)
            sessions = t.sessions
        tot = [0.0] * 9
        for v in usage:
            for i, x in enumerate(v[:9]):
                tot[i] += x
        db = self.db()
        today_h, month_h = int(_local_midnight(now) // 3600), int(_month_start(now) // 3600)
        rows = db.execute(
            f"SELECT model, {USAGE_SUMS} FROM usage WHERE hour >= ? GROUP BY model", (today_h,)
        ).fetchall()
        today_by_model = sorted(
            ({"model": m, **_tokens(*v)} for m, *v in rows), key=lambda r: -r["cost_usd"]
        )
        (month,) = db.execute(
            "SELECT COALESCE(SUM(cost), 0) FROM usage WHERE hour >= ?", (month_h,)
        ).fetchone()
        top = db.execute(
            "SELECT session, SUM(cost) AS c FROM usage WHERE hour >= ? GROUP BY session ORDER BY c DESC LIMIT 1",
            (today_h,),
        ).fetchone()
        h = self.health()
        return {
            "now": now,
            "today": {
                "cost_usd": sum(r["cost_usd"] for r in today_by_model),
                "by_model": today_by_model,
                "since": _local_midnight(now),
            },
            "this_hour_usd": hour_spend,
            "last_24h_usd": day_spend,
            "this_month_usd": month,
            "burn_rate_usd_per_hour": hour_spend,
            "budgets": {"hourly_usd": self.budgets.get("1h"), "daily_usd": self.budgets.get("24h")},
            "active_sessions": active,
            "top_session_today": {"id": top[0], "cost_usd": top[1]} if top and top[0] else None,
            "all_time": {
                "input_tokens": int(tot[0]),
                "output_tokens": int(tot[1]),
                "cache_read_tokens": int(tot[2]),
                "cache_write_tokens": int(tot[3] + tot[4]),
                "requests": int(tot[6]),
                "cost_usd": tot[7],
                "sessions": sessions,
            },
            "health": {
                "ok": h.get("ok"),
                "files": h.get("files_tracked"),
                "lag_seconds": h.get("lag_seconds"),
                "parse_errors": h.get("parse_errors"),
                "pending_bytes": h.get("pending_bytes"),
                "lines": h.get("lines"),
                "version": h.get("version"),
                "traces": (h.get("traces") or {}).get("failing"),
            },
        }

    # --- /api/spend ----------------------------------------------------------------

    def spend(self, by: str, bucket: str) -> dict:
        if by not in ("model", "project"):
            raise ValueError("by: model or project")
        if bucket not in ("hour", "day"):
            raise ValueError("bucket: hour or day")
        now = self.clock()
        if bucket == "hour":
            cur = int(now // 3600)
            keys = [cur - i for i in range(47, -1, -1)]
            start = keys[0]
        else:
            mid = _local_midnight(now)
            days = [
                datetime.fromtimestamp(mid - i * 86400 + 7200).date() for i in range(29, -1, -1)
            ]
            keys = [d.isoformat() for d in days]
            start = int(datetime(days[0].year, days[0].month, days[0].day).timestamp() // 3600)
        rows = (
            self.db()
            .execute(
                f"SELECT hour, {'model' if by == 'model' else 'cwd'}, SUM(cost) FROM usage WHERE hour >= ? GROUP BY 1, 2",
                (start,),
            )
            .fetchall()
        )
        series: dict[str, list[float]] = {}
        idx = {k: i for i, k in enumerate(keys)}
        for hour, label, cost in rows:
            k = hour if bucket == "hour" else datetime.fromtimestamp(hour * 3600).date().isoformat()
            i = idx.get(k)
            if i is None:
                continue
            name = label if by == "model" else self.project(label)
            series.setdefault(name, [0.0] * len(keys))[i] += cost
        ordered = sorted(series.items(), key=lambda kv: -sum(kv[1]))
        return {
            "by": by,
            "bucket": bucket,
            "buckets": [k * 3600 for k in keys] if bucket == "hour" else keys,
            "series": [{"name": n, "cost_usd": v} for n, v in ordered],
            "budget_usd": self.budgets.get("1h" if bucket == "hour" else "24h"),
        }

    # --- /api/sessions -------------------------------------------------------------

    def sessions(self, q: dict) -> dict:
        limit = min(max(int(q.get("limit", 50)), 1), 1000)
        sort = q.get("sort", "last")
        desc = not sort.startswith("-") if sort not in SORTS else True
        sort = sort.lstrip("-")
        if sort not in SORTS:
            raise ValueError(f"sort: one of {', '.join(SORTS)}")
        where, args = [], []
        if q.get("project"):
            where.append("(s.cwd = ? OR s.cwd LIKE ?)")
            args += [q["project"], "%/" + q["project"].replace("%", "").replace("_", "\\_") + ""]
            where[-1] = "(s.cwd = ? OR s.cwd LIKE ? ESCAPE '\\')"
        if q.get("day"):
            d = datetime.fromisoformat(q["day"])
            a = d.timestamp()
            where.append("s.last_ts >= ? AND s.first_ts < ?")
            args += [a, a + 86400]
        if q.get("q"):
            where.append("s.id LIKE ?")
            args.append(q["q"].replace("%", "") + "%")
        w = ("WHERE " + " AND ".join(where)) if where else ""
        db = self.db()
        order = {
            "last": "s.last_ts",
            "start": "s.first_ts",
            "duration": "(s.last_ts - s.first_ts)",
            "cost": "(SELECT SUM(cost) FROM usage u WHERE u.session = s.id)",
            "tokens": "(SELECT SUM(input + output + cache_read + cw5m + cw1h) FROM usage u WHERE u.session = s.id)",
        }[sort]
        rows = db.execute(
            f"SELECT s.id, s.cwd, s.branch, s.first_ts, s.last_ts FROM sessions s {w}"
            f" ORDER BY COALESCE({order}, 0) {'DESC' if desc else 'ASC'}, s.id LIMIT ?",
            (*args, limit),
        ).fetchall()
        (total,) = db.execute(f"SELECT COUNT(*) FROM sessions s {w}", args).fetchone()
        out = self._enrich(rows)
        return {"total": total, "sessions": out}

    def _enrich(self, rows: list[tuple]) -> list[dict]:
        db = self.db()
        ids_ = [r[0] for r in rows]
        usage: dict[str, dict] = {}
        tools: dict[str, tuple[int, int]] = {}
        for i in range(0, len(ids_), 500):
            chunk = ids_[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for sid, model, *v in db.execute(
                f"SELECT session, model, {USAGE_SUMS} FROM usage WHERE session IN ({marks}) GROUP BY session, model",
                chunk,
            ):
                u = usage.setdefault(sid, {"models": {}, **_tokens(0, 0, 0, 0, 0, 0, 0.0)})
                t = _tokens(*v)
                for k in (
                    "input_tokens",
                    "output_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "requests",
                    "cost_usd",
                ):
                    u[k] += t[k]
                u["models"][model] = u["models"].get(model, 0.0) + t["cost_usd"]
            for sid, n, err in db.execute(
                f"SELECT session, COUNT(*), SUM(status = 'error') FROM tools WHERE session IN ({marks}) GROUP BY session",
                chunk,
            ):
                tools[sid] = (n, err or 0)
        out = []
        for sid, cwd, branch, first, last in rows:
            u = usage.get(sid) or {"models": {}, **_tokens(0, 0, 0, 0, 0, 0, 0.0)}
            n, err = tools.get(sid, (0, 0))
            models = [m for m, _ in sorted(u.pop("models").items(), key=lambda kv: -kv[1])]
            out.append({
                "id": sid, "project": self.project(cwd or ""), "branch": branch, "start": first, "end": last,
                "duration_s": (last - first) if first is not None and last is not None else None,
                "models": models, "tool_calls": n, "tool_errors": err,
                "tokens": u["input_tokens"] + u["output_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"],
                **u,
            })  # fmt: skip
        return out

    # --- /api/sessions/<id> ----------------------------------------------------------

    def session(self, sid: str) -> dict | None:
        db = self.db()
        rows = db.execute(
            "SELECT id, cwd, branch, first_ts, last_ts FROM sessions WHERE id = ?", (sid,)
        ).fetchall()
        if not rows:
            return None
        (info,) = self._enrich(rows)
        tid = ids.trace_id(sid)
        info["trace_id"] = ids.hex_trace(tid)
        info["trace_url"] = self.trace_ui.replace("{trace_id}", info["trace_id"])
        info["content_captured"] = bool(self.opts.capture_content or self.opts.tool_details)
        info["spans"] = self.spans(sid)
        return info

    def _files_of(self, sid: str) -> list[tuple[str, int, int, int]]:
        return (
            self.db()
            .execute(
                "SELECT path, dev, ino, offset FROM files WHERE path LIKE ? OR path LIKE ?",
                (f"%/{sid}.jsonl", f"%/{sid}/subagents/%"),
            )
            .fetchall()
        )

    def spans(self, sid: str) -> list[dict]:
        """The session's span tree, depth first, each child after its parent (by start)."""
        files = sorted(self._files_of(sid), key=lambda f: (agent_of(f[0]) is None, f[0]))
        sig = tuple((p, o) for p, _, _, o in files)
        with self._cache_lock:
            hit = self._spans_cache.get(sid)
            if hit and hit[0] == sig:
                return hit[1]
        db = self.db()

        def row(key: int):
            r = db.execute(f"SELECT {RESPONSE_COLS} FROM responses WHERE key=?", (key,)).fetchone()
            if r is None:
                t = db.execute("SELECT target FROM response_alias WHERE key=?", (key,)).fetchone()
                if t is not None:
                    r = db.execute(
                        f"SELECT {RESPONSE_COLS} FROM responses WHERE key=?", (t[0],)
                    ).fetchone()
            return r

        b = Builder(self.opts, row, lambda key: False)
        keep = self.opts.capture_content or self.opts.tool_details
        max_line = getattr(self.cfg, "max_line_bytes", 64 << 20)
        for path, dev, ino, off in files:
            fi = _file_info(path)
            for line_no, raw, _end in read_lines(path, None, dev, ino, off, max_line):
                rec = decode(raw, line_no, keep or (b'"subagent_type"' in raw))
                if rec is not None:
                    b.feed(fi, rec, raw)
            for s in list(b.touched):
                b.settle(s)
        for s in list(b.sessions):
            b.close(s)
        tid = ids.trace_id(sid)
        spans = [s for s in b.take() if s.trace_id == tid]
        out = _tree(spans)
        with self._cache_lock:
            if len(self._spans_cache) > 64:
                self._spans_cache.clear()
            self._spans_cache[sid] = (sig, out)
        return out


def _kind(sp) -> str:
    op = sp.attrs.get("gen_ai.operation.name")
    if sp.parent_id == 0:
        return "session"
    return {"chat": "model", "execute_tool": "tool", "invoke_agent": "agent"}.get(op, "turn")


def _tree(spans: list) -> list[dict]:
    by_id = {s.span_id: s for s in spans}
    children: dict[int, list] = {}
    roots = []
    for s in spans:
        if s.parent_id and s.parent_id in by_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            roots.append(s)
    out: list[dict] = []

    def walk(s, depth: int) -> None:
        a = s.attrs
        out.append({
            "id": f"{s.span_id:016x}", "parent": f"{s.parent_id:016x}" if s.parent_id else None, "depth": depth,
            "kind": _kind(s), "name": s.name, "start": s.start / 1e9, "end": s.end / 1e9,
            "duration_s": (s.end - s.start) / 1e9, "error": s.error,
            "model": a.get("gen_ai.response.model"), "tool": a.get("gen_ai.tool.name"),
            "input_tokens": a.get("gen_ai.usage.input_tokens"), "output_tokens": a.get("gen_ai.usage.output_tokens"),
            "cache_read_tokens": a.get("gen_ai.usage.cache_read.input_tokens"),
            "cache_write_tokens": a.get("gen_ai.usage.cache_creation.input_tokens"),
            "cost_usd": a.get("ccotel.cost_usd"),
            "attrs": {k: v for k, v in a.items() if isinstance(v, (str, int, float, bool))},
        })  # fmt: skip
        for c in sorted(children.get(s.span_id, []), key=lambda c: (c.start, c.end)):
            walk(c, depth + 1)

    for r in sorted(roots, key=lambda s: (s.parent_id != 0, s.start)):
        walk(r, 0)
    return out
