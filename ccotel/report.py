"""Reports from the state, readable while the daemon runs (SQLite WAL readers).

``build`` sums the ``usage`` table by session, day, model or project; ``render`` prints it as a
table that fits the terminal (80 columns and up). Days and sessions are in time order (the
latest next to the total); models and projects by cost, the largest first.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ccotel.state import queries

_COLS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")
COST_DECIMALS = 10  # per-token prices go down to ~1e-8 USD; beyond this is float noise


BY = ("session", "day", "model", "project", "block")
EXIT_CONFIG = 2


def parse_since(value: str) -> float:
    """A point in time: YYYY-MM-DD or YYYYMMDD (local midnight), or a duration ago (90m, 12h,
    7d, 2w), as epoch seconds: the one parser of every --since. ValueError says what is
    wrong."""
    import re
    import time

    v = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", v)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    if re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", v):
        try:
            return datetime.strptime(v.replace("-", ""), "%Y%m%d").timestamp()
        except ValueError:
            raise ValueError(f"{value!r} is not a date") from None
    raise ValueError(f"expected YYYY-MM-DD, YYYYMMDD or a duration like 12h or 7d, got {value!r}")


def run(config: str | None, by: str, since: float | None, as_json: bool,
        state_dir: str | None) -> int:  # fmt: skip
    """`ccotel report`: the command's whole body, without click (ccotel.entry runs it
    directly for a plain command line; ccotel.cli for the rest). Returns the exit code."""
    from pathlib import Path

    from ccotel.config import ConfigError, load
    from ccotel.projects import shown_labeler
    from ccotel.state import DB_NAME, StateError, connect_readonly, db_error_message

    try:
        cfg = load(Path(config) if config else None,
                   flags={"state_dir": state_dir} if state_dir is not None else {})  # fmt: skip
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", EXIT_CONFIG)
    path = cfg.resolved_state_dir() / DB_NAME
    try:
        db = connect_readonly(path)
    except StateError as exc:
        return _fail(str(exc))
    except sqlite3.DatabaseError as exc:  # corruption found past the open: same advice
        return _fail(db_error_message(path, exc))
    try:
        label = shown_labeler(cfg.project_label)
        data = build(db, by, since, label)
    except sqlite3.DatabaseError as exc:
        return _fail(db_error_message(path, exc))
    finally:
        db.close()
    if as_json:
        import json

        sys.stdout.write(json.dumps(rounded(data), indent=2) + "\n")
        sys.stdout.flush()
        return 0
    render(data)
    if not data["rows"]:
        _say(
            f"warning: no usage in {cfg.resolved_state_dir()}"
            + (" in that time" if since else " yet")
        )
    return 0


def _say(msg: str) -> None:
    sys.stderr.write(f"ccotel: {msg}\n")
    sys.stderr.flush()


def _fail(msg: str, code: int = 1) -> int:
    _say(msg)
    return code


def _empty() -> dict[str, Any]:
    return {c: 0 for c in _COLS} | {
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "requests": 0,
    }


def _add(acc: dict[str, Any], inp: int, out: int, cr: int, w5: int, w1: int, reqs: int,
         cost: float) -> None:  # fmt: skip
    acc["input_tokens"] += inp
    acc["output_tokens"] += out
    acc["cache_read_tokens"] += cr
    acc["cache_write_tokens"] += w5 + w1
    acc["cache_write_5m_tokens"] += w5
    acc["cache_write_1h_tokens"] += w1
    acc["requests"] += reqs
    acc["cost_usd"] += cost


def _session_times(db: sqlite3.Connection) -> dict[str, tuple[float, float]]:
    """First and last activity of each session, to the second (usage rows are hourly)."""
    try:
        rows = queries.session_times(db)
    except sqlite3.OperationalError:  # a state without the table: hours will do
        return {}
    return {s: (f, t) for s, f, t in rows if f is not None and t is not None}


class _HasDb(Protocol):
    db: sqlite3.Connection


def _db(state: sqlite3.Connection | _HasDb) -> sqlite3.Connection:
    """The database of a state (``connect_readonly``'s connection, or a ``Store``)."""
    return state if isinstance(state, sqlite3.Connection) else state.db


def build(
    state: sqlite3.Connection | _HasDb, by: str, since: float | None, project: Callable[[str], str]
) -> dict[str, Any]:
    """Usage grouped ``by`` from a state database (``connect_readonly``, or a ``Store``);
    ``since`` (epoch seconds) keeps the hours from the one holding it."""
    db = _db(state)
    if by == "block":
        return build_blocks(db, since)
    since_hour = int(since // 3600) if since is not None else None
    totals = _empty()
    groups: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}  # cwd -> its project
    for k, model, cwd, first_h, last_h, *vals in queries.usage_grouped(db, by, since_hour):
        proj = names.get(cwd)
        if proj is None:
            proj = names[cwd] = project(cwd)
        key = model if by == "model" else proj if by == "project" else k
        if by == "day" and isinstance(k, int):  # an hour SQLite's localtime gets wrong
            key = datetime.fromtimestamp(k * 3600).date().isoformat()
        first, last = first_h * 3600.0, last_h * 3600.0 + 3599
        g = groups.get(key)
        if g is None:
            g = groups[key] = _empty() | {"models": set(), "projects": {}, "first": first,
                                          "last": last}  # fmt: skip
        _add(g, *vals)
        _add(totals, *vals)
        g["models"].add(model)
        g["projects"][proj] = g["projects"].get(proj, 0.0) + vals[-1]
        g["first"], g["last"] = min(first, g["first"]), max(last, g["last"])
    times = _session_times(db) if by == "session" else {}
    for key, g in groups.items():
        first, last = times.get(key, (g["first"], g["last"]))
        g["first"], g["last"] = max(first, g["first"]), min(last, g["last"])
    if by in ("session", "day"):
        order = sorted(groups, key=lambda k: (groups[k]["last"], k))
    else:
        order = sorted(groups, key=lambda k: (-groups[k]["cost_usd"], k))
    out = []
    for key in order:
        g = groups[key]
        g[by] = key
        g["models"] = sorted(g["models"])
        cost: dict[str, float] = g["projects"]
        g["projects"] = sorted(cost, key=lambda p: (-cost[p], p))
        g["first_active"], g["last_active"] = _iso(g.pop("first")), _iso(g.pop("last"))
        out.append(g)
    return {"by": by, "totals": totals, "rows": out}


def utc_ms(ts: float) -> str:
    """ccusage's time format: ISO 8601 UTC to the millisecond (2026-01-05T10:00:00.000Z)."""
    ms = round(ts * 1000)
    return (
        datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    )


def build_blocks(
    state: sqlite3.Connection | _HasDb, since: float | None, now: float | None = None
) -> dict[str, Any]:
    """One row per 5-hour billing block with usage, as `ccusage blocks` (ccotel.blocks);
    ``since`` keeps the blocks with activity from then on."""
    from ccotel.blocks import blocks_from_db, burn_rate, projection

    totals = _empty()
    del totals["cache_write_5m_tokens"], totals["cache_write_1h_tokens"], totals["requests"]
    totals["entries"] = 0
    rows = []
    for b in blocks_from_db(_db(state), now=now):
        if since is not None and b.last_activity < since:
            continue
        row = {
            "block": utc_ms(b.start),
            "start": utc_ms(b.start),
            "end": utc_ms(b.end),
            "last_activity": utc_ms(b.last_activity),
            "active": b.active,
            "entries": b.entries,
            "input_tokens": b.input,
            "output_tokens": b.output,
            "cache_read_tokens": b.cache_read,
            "cache_write_tokens": b.cache_write,
            "total_tokens": b.total_tokens,
            "cost_usd": b.cost,
        }
        if b.active:
            rate, proj = burn_rate(b), projection(b, now=now)
            row["burn_rate_usd_per_hour"] = rate.cost_per_hour if rate else None
            row["projected_cost_usd"] = proj.total_cost if proj else None
        rows.append(row)
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "entries"):  # fmt: skip
            totals[k] += row[k]
    return {"by": "block", "totals": totals, "rows": rows}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def rounded(data: dict[str, Any]) -> dict[str, Any]:
    """Costs to COST_DECIMALS places, for JSON (12.225731199999997 -> 12.2257312)."""
    for item in (data["totals"], *data["rows"]):
        item["cost_usd"] = round(item["cost_usd"], COST_DECIMALS)
    return data


# ------------------------------------------------------------------------------------ the table


def short_model(model: str) -> str:
    """claude-sonnet-4-5-20250929 -> sonnet-4-5: what a narrow table can hold."""
    name = model.removeprefix("claude-")
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() and len(tail) == 8 else name


def compact(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


_TOKEN_COLS = (
    ("Input", "input_tokens"),
    ("Output", "output_tokens"),
    ("Cache write", "cache_write_tokens"),
    ("Cache read", "cache_read_tokens"),
)
WIDE = 120  # full token counts and a models column need about this many columns


def render(data: dict[str, Any], width: int | None = None) -> None:
    """Print the table on stdout, one line per row at any width from 80 columns: numbers keep
    their width; a long project or session name is cut with an ellipsis."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width) if width else Console()
    by = data["by"]
    wide = console.width >= WIDE
    num = (lambda n: f"{n:,}") if wide else compact
    # Columns: (header, footer, cells, right-aligned, may shrink)
    cols: list[tuple[str, str, list[str], bool, bool]] = []
    rows, tot = data["rows"], data["totals"]
    label = {"session": "Session", "day": "Day", "model": "Model", "project": "Project",
             "block": "Block (5 h from)"}[by]  # fmt: skip
    if by == "block":
        start = [_local(r["start"]) + (" (active)" if r["active"] else "") for r in rows]
        cols.append((label, "Total", start, False, False))
        cols.append(("Last", "", [_local(r["last_activity"])[11:] for r in rows], False, False))
    elif by == "session":
        last = [r["last_active"].replace("T", " ")[: 16 if wide else 10] for r in rows]
        cols.append(("Last active", "Total", last, False, False))
        cols.append((label, "", [r[by] if wide else r[by][:8] for r in rows], False, False))
        cols.append(("Project", "", [_projects(r["projects"]) for r in rows], False, True))
    else:
        cells = [short_model(r[by]) if by == "model" else str(r[by]) for r in rows]
        cols.append((label, "Total", cells, False, by == "project"))
    if wide and by not in ("model", "block"):
        models = [", ".join(short_model(m) for m in r["models"]) for r in rows]
        cols.append(("Models", "", models, False, True))
    for title, key in _TOKEN_COLS:
        head = title if wide else title.replace(" ", "\n")
        cols.append((head, num(tot[key]), [num(r[key]) for r in rows], True, False))
    cost = "Cost (USD)" if wide else "Cost\n(USD)"
    cols.append((cost, f"${tot['cost_usd']:,.2f}", [f"${r['cost_usd']:,.2f}" for r in rows],
                 True, False))  # fmt: skip

    def natural(col: tuple[str, str, list[str], bool, bool]) -> int:
        head, foot, cells, *_ = col
        return max(len(x) for x in [*head.split("\n"), foot, *cells])

    gaps = 2 * (len(cols) - 1)
    fixed = sum(natural(c) for c in cols if not c[4])
    flex = [c for c in cols if c[4]]
    room = max(8, (console.width - gaps - fixed) // max(1, len(flex)))
    t = Table(title=f"Claude Code usage by {by}", show_footer=True, box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, collapse_padding=True)  # fmt: skip
    for head, foot, _cells, right, shrinks in cols:
        t.add_column(head, footer=foot, justify="right" if right else "left", no_wrap=True,
                     overflow="ellipsis", max_width=room if shrinks else None)  # fmt: skip
    for i in range(len(rows)):
        t.add_row(*(c[2][i] for c in cols))
    console.print(t)


def _local(iso_utc: str) -> str:
    """2026-01-05T10:00:00.000Z -> the local 2026-01-05 11:00."""
    t = datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).astimezone()
    return t.strftime("%Y-%m-%d %H:%M")


def _projects(names: list[str]) -> str:
    """The project with the most cost, and how many more the session worked in."""
    return (names[0] if names else "") + (f" +{len(names) - 1}" if len(names) > 1 else "")
