"""Reports from the state, readable while the daemon runs (SQLite WAL readers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

from ccotel.state.store import Store

GROUPS = ("session", "day", "model", "project")
_COLS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


def _empty() -> dict:
    return {c: 0 for c in _COLS} | {
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "requests": 0,
    }


def _add(acc: dict, inp, out, cr, w5, w1, reqs, cost) -> None:
    acc["input_tokens"] += inp
    acc["output_tokens"] += out
    acc["cache_read_tokens"] += cr
    acc["cache_write_tokens"] += w5 + w1
    acc["cache_write_5m_tokens"] += w5
    acc["cache_write_1h_tokens"] += w1
    acc["requests"] += reqs
    acc["cost_usd"] += cost


def build(store: Store, by: str, since: date | None, project: Callable[[str], str]) -> dict:
    rows = store.query(
        "SELECT session, hour, model, cwd, SUM(input), SUM(output), SUM(cache_read), SUM(cw5m),"
        " SUM(cw1h), SUM(requests), SUM(cost) FROM usage GROUP BY session, hour, model, cwd"
    )
    totals = _empty()
    groups: dict[str, dict] = {}
    for session, hour, model, cwd, *vals in rows:
        day = datetime.fromtimestamp(hour * 3600).date()
        if since and day < since:
            continue
        key = {"session": session, "day": day.isoformat(), "model": model, "project": project(cwd)}[
            by
        ]
        g = groups.setdefault(
            key, _empty() | {"models": set(), "projects": set(), "last_hour": hour}
        )
        _add(g, *vals)
        _add(totals, *vals)
        g["models"].add(model)
        g["projects"].add(project(cwd))
        g["last_hour"] = max(g["last_hour"], hour)
    out = []
    for key, g in groups.items():
        g[by] = key
        g["models"] = sorted(g["models"])
        g["projects"] = sorted(g["projects"])
        out.append(g)
    out.sort(key=lambda g: (g["last_hour"], g[by]) if by != "day" else g[by])
    for g in out:
        del g["last_hour"]
    return {"by": by, "totals": totals, "rows": out}
