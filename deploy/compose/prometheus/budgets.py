#!/usr/bin/env python3
"""Turn budgets.toml (budgets per person and per team, alert settings) into Prometheus rules.

    python3 budgets.py                 # validate budgets.toml, write rules/budgets.yml
    python3 budgets.py --check         # validate, and fail if rules/budgets.yml is out of date
    python3 budgets.py FILE -o OUT     # other paths

Then reload Prometheus: `curl -X POST http://127.0.0.1:9090/-/reload` (or restart it).
Python 3.11 or later, standard library only; without one on the stack host:
    docker run --rm -v "$PWD:/w" -w /w python:3.13-alpine python3 budgets.py

What it writes (rules/budgets.yml, group ccotel-budgets), the series the rules in ccotel.yml
join against:
    ccotel:user_budget_usd{user, window="1h"|"24h"|"7d"}   from [users.NAME]
    ccotel:team_budget_usd{team, window}                   from [teams.NAME]
    ccotel:plan_weekly_margin_ratio, ccotel:plan_stale_seconds   from [alerts]
and, when [alerts] session_waiting_minutes > 0, the alert CcotelSessionWaiting.

A mistake is one line naming the key, exit status 2, and the rules file is left as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
WINDOWS = {"hourly_usd": "1h", "daily_usd": "24h", "weekly_usd": "7d"}
ALERTS = {
    # key: (default, what it is)
    "weekly_pace_margin": (0.10, "a share of the weekly limit, 0 to 1"),
    "plan_stale_minutes": (30, "minutes"),
    "session_waiting_minutes": (0, "minutes, 0 = off"),
}


class BudgetError(ValueError):
    pass


def _number(key: str, value, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise BudgetError(f"{key}: must be a number, got {value!r}")
    if value < 0 or math.isinf(value) or (upper is not None and value > upper):
        bound = f"between 0 and {upper:g}" if upper is not None else "0 or more"
        raise BudgetError(f"{key}: must be {bound}, got {value!r}")
    return float(value)


def parse(text: str) -> dict:
    """budgets.toml -> {"users": {name: {window: usd}}, "teams": {...}, "alerts": {...}}."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BudgetError(f"not valid TOML: {e}") from None
    unknown = set(raw) - {"users", "teams", "alerts"}
    if unknown:
        raise BudgetError(f"{sorted(unknown)[0]}: unknown table; expected users, teams, alerts")
    out: dict = {"users": {}, "teams": {}, "alerts": {}}
    for kind in ("users", "teams"):
        table = raw.get(kind, {})
        if not isinstance(table, dict):
            raise BudgetError(f"{kind}: must be a table ([{kind}.NAME])")
        for name, budget in table.items():
            where = f"{kind}.{name}"
            if not name.strip():
                raise BudgetError(f"{where}: a {kind[:-1]} needs a name")
            if not isinstance(budget, dict):
                raise BudgetError(f"{where}: must be a table of {', '.join(WINDOWS)}")
            for key in budget:
                if key not in WINDOWS:
                    raise BudgetError(f"{where}.{key}: unknown key; expected {', '.join(WINDOWS)}")
            usd = {WINDOWS[k]: _number(f"{where}.{k}", v) for k, v in budget.items()}
            out[kind][name] = {w: v for w, v in usd.items() if v > 0}  # 0: no budget
    alerts = raw.get("alerts", {})
    if not isinstance(alerts, dict):
        raise BudgetError("alerts: must be a table")
    for key in alerts:
        if key not in ALERTS:
            raise BudgetError(f"alerts.{key}: unknown key; expected {', '.join(ALERTS)}")
    for key, (default, _) in ALERTS.items():
        upper = 1.0 if key == "weekly_pace_margin" else None
        out["alerts"][key] = _number(f"alerts.{key}", alerts.get(key, default), upper=upper)
    if out["alerts"]["plan_stale_minutes"] == 0:
        raise BudgetError("alerts.plan_stale_minutes: must be more than 0")
    return out


def _series(record: str, value: float, labels: dict[str, str] | None = None) -> dict:
    rule: dict = {"record": record, "expr": f"vector({value:g})"}
    if labels:
        rule["labels"] = labels
    return rule


def waiting_alert(minutes: float) -> dict:
    """A session has waited for its user for more than `minutes`: someone was waiting at every
    sample of the window and no wait ended in it (ccotel observes each wait in
    ccotel_waiting_sessions_seconds when it ends), so a session waiting at its start still is."""
    n = f"{minutes:g}"
    expr = (
        'min by (host, user) (min_over_time(ccotel_sessions_by_state{state="waiting"}[Nm])) > 0\n'
        "  and on (host, user)\n"
        # already waiting at the window's start, not a series that appeared inside it
        'min by (host, user) (ccotel_sessions_by_state{state="waiting"} offset Nm) > 0\n'
        "  unless on (host, user)\n"
        "sum by (host, user) (increase(ccotel_waiting_sessions_seconds_count[Nm])) > 0\n"
    )
    summary = (
        "A Claude Code session on {{ $labels.host }} has waited for {{ $labels.user }}"
        " for more than N minutes"
    )
    description = (
        '{{ $value | printf "%.0f" }} Claude Code session(s) on {{ $labels.host }} have waited'
        " for {{ $labels.user }} for more than N minutes, and no other wait was answered"
        " meanwhile. Open ccotel's page or `ccotel live` on {{ $labels.host }} to see which"
        " session waits and for what. (session_waiting_minutes in budgets.toml; 0 turns this"
        " alert off.)"
    )
    return {
        "alert": "CcotelSessionWaiting",
        "expr": expr.replace("Nm", f"{round(minutes * 60)}s"),
        "labels": {"severity": "info"},
        "annotations": {
            "summary": summary.replace(" N ", f" {n} "),
            "description": description.replace(" N minutes", f" {n} minutes"),
        },
    }


def rules(budgets: dict) -> dict:
    out = []
    for kind, label in (("users", "user"), ("teams", "team")):
        for name, windows in sorted(budgets[kind].items()):
            for window, usd in sorted(windows.items()):
                out.append(
                    _series(f"ccotel:{label}_budget_usd", usd, {label: name, "window": window})
                )
    alerts = budgets["alerts"]
    out.append(_series("ccotel:plan_weekly_margin_ratio", alerts["weekly_pace_margin"]))
    out.append(_series("ccotel:plan_stale_seconds", alerts["plan_stale_minutes"] * 60))
    if alerts["session_waiting_minutes"] > 0:
        out.append(waiting_alert(alerts["session_waiting_minutes"]))
    return {"groups": [{"name": "ccotel-budgets", "rules": out}]}


def render(budgets: dict, source: str) -> str:
    # JSON is YAML: no YAML library needed here, and every name is quoted safely.
    return (
        f"# Generated by budgets.py from {source}: edit that file, not this one, then run\n"
        "# `python3 budgets.py` and reload Prometheus.\n"
        + json.dumps(rules(budgets), indent=2)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("budgets", nargs="?", type=Path, default=HERE / "budgets.toml")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "rules" / "budgets.yml")
    ap.add_argument("--check", action="store_true", help="fail if the output is out of date")
    args = ap.parse_args(argv)
    try:
        text = args.budgets.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"{args.budgets}: cannot read: {e}", file=sys.stderr)
        return 2
    try:
        budgets = parse(text)
    except BudgetError as e:
        print(f"{args.budgets}: {e}", file=sys.stderr)
        return 2
    rendered = render(budgets, args.budgets.name)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != rendered:
            print(f"{args.output} is out of date: run python3 budgets.py", file=sys.stderr)
            return 1
        return 0
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(rendered, encoding="utf-8")
    tmp.replace(args.output)
    n = sum(len(v) for v in budgets["users"].values()) + sum(
        len(v) for v in budgets["teams"].values()
    )
    print(
        f"{args.output}: {len(budgets['users'])} users, {len(budgets['teams'])} teams, "
        f"{n} budgets; reload Prometheus (curl -X POST http://127.0.0.1:9090/-/reload)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
