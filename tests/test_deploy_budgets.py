"""deploy/compose/prometheus/budgets.py: budgets.toml (budgets per person and per team, plan and
session alert settings) -> rules/budgets.yml, the series the rules in ccotel.yml join against.

Checked here: the shipped file and its generated rules agree; the commented examples work once
uncommented; every mistake is one line naming the key, with the rules file left as it was; and
the generated rules drive the alerts of ccotel.yml (promtool, tests/fixtures/budgets/).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_deploy import BUDGET_RULES, COMPOSE_DIR, PROMETHEUS_YML, RULES, load, tool

SCRIPT = COMPOSE_DIR / "prometheus" / "budgets.py"
BUDGETS = COMPOSE_DIR / "prometheus" / "budgets.toml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "budgets"


def generate(toml: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(toml), "-o", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_shipped_rules_are_what_budgets_py_makes_of_budgets_toml():
    proc = generate(BUDGETS, BUDGET_RULES, "--check")
    assert proc.returncode == 0, proc.stderr
    assert "rules/" + BUDGET_RULES.name in load(PROMETHEUS_YML)["rule_files"]
    proc = subprocess.run(
        [tool("promtool"), "check", "rules", str(BUDGET_RULES)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Out of the box: no budget, the plan alerts' settings, the waiting alert off.
    rules = [r for g in load(BUDGET_RULES)["groups"] for r in g["rules"]]
    assert {r["record"]: r["expr"] for r in rules} == {
        "ccotel:plan_weekly_margin_ratio": "vector(0.1)",
        "ccotel:plan_stale_seconds": "vector(1800)",
    }


def test_check_notices_an_out_of_date_rules_file(tmp_path):
    out = tmp_path / "budgets.yml"
    assert generate(BUDGETS, out).returncode == 0
    changed = tmp_path / "budgets.toml"
    changed.write_text(BUDGETS.read_text() + "\n[users.zoe]\nhourly_usd = 3\n")
    proc = generate(changed, out, "--check")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{out} is out of date: run python3 budgets.py"


def uncommented_examples() -> str:
    """The example block of budgets.toml with its leading "# " removed, as a lead would."""
    text = BUDGETS.read_text()
    block = text.split('# Examples (remove the leading "# "):\n', 1)[1].split("\n[alerts]")[0]
    return "\n".join(line.removeprefix("# ").removeprefix("#") for line in block.splitlines())


def test_the_examples_work_once_uncommented(tmp_path):
    toml = tmp_path / "budgets.toml"
    toml.write_text(uncommented_examples())
    out = tmp_path / "budgets.yml"
    proc = generate(toml, out)
    assert proc.returncode == 0, proc.stderr
    assert "2 users, 1 teams, 6 budgets" in proc.stdout
    series = {
        (r["record"], tuple(sorted(r.get("labels", {}).items()))): r["expr"]
        for g in load(out)["groups"]
        for r in g["rules"]
    }
    assert series[("ccotel:user_budget_usd", (("user", "bob.smith"), ("window", "24h")))] == (
        "vector(40)"
    )
    assert series[("ccotel:team_budget_usd", (("team", "platform"), ("window", "7d")))] == (
        "vector(1200)"
    )


def test_generated_budgets_drive_the_alerts(tmp_path):
    """two_teams.toml -> budgets.yml, beside the real ccotel.yml: the budgets are series with the
    right labels, the person and team alerts fire from them, and the optional waiting alert
    fires and stays silent where it should."""
    assert generate(FIXTURES / "two_teams.toml", tmp_path / "budgets.yml").returncode == 0
    shutil.copy(RULES, tmp_path / RULES.name)
    shutil.copy(FIXTURES / "generated_test.yml", tmp_path / "generated_test.yml")
    proc = subprocess.run(
        [tool("promtool"), "test", "rules", "generated_test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The waiting alert is there only because two_teams.toml turns it on, and is tested firing
    # and silent.
    cases = [
        c
        for t in load(FIXTURES / "generated_test.yml")["tests"]
        for c in t.get("alert_rule_test", [])
        if c["alertname"] == "CcotelSessionWaiting"
    ]
    assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases)
    alerts = [
        r["alert"]
        for g in load(tmp_path / "budgets.yml")["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert alerts == ["CcotelSessionWaiting"]


def test_names_any_label_value_can_hold_are_quoted_safely(tmp_path):
    toml = tmp_path / "budgets.toml"
    toml.write_text(
        '[users."o\'brien \\"ob\\" é"]\nhourly_usd = 1.5\n[teams."a,b}{c"]\nweekly_usd = 7\n'
    )
    out = tmp_path / "budgets.yml"
    assert generate(toml, out).returncode == 0
    proc = subprocess.run(
        [tool("promtool"), "check", "rules", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels = [r.get("labels") for g in load(out)["groups"] for r in g["rules"]]
    assert {"user": 'o\'brien "ob" é', "window": "1h"} in labels
    assert {"team": "a,b}{c", "window": "7d"} in labels


BAD = [
    ("not toml", "[users.alice\nhourly_usd = 1\n", "not valid TOML"),
    ("unknown table", "[people.alice]\nhourly_usd = 1\n", "people: unknown table"),
    ("users not a table", 'users = "alice"\n', "users: must be a table"),
    ("budget not a table", "[users]\nalice = 5\n", "users.alice: must be a table"),
    ("unknown key", "[users.alice]\ndayly_usd = 5\n", "users.alice.dayly_usd: unknown key"),
    ("a string", '[users.alice]\ndaily_usd = "forty"\n', "users.alice.daily_usd: must be a number"),
    ("a boolean", "[teams.web]\nweekly_usd = true\n", "teams.web.weekly_usd: must be a number"),
    ("negative", "[teams.web]\nhourly_usd = -1\n", "teams.web.hourly_usd: must be 0 or more"),
    ("nan", "[teams.web]\nhourly_usd = nan\n", "teams.web.hourly_usd: must be a number"),
    ("infinite", "[teams.web]\nhourly_usd = inf\n", "teams.web.hourly_usd: must be 0 or more"),
    ("empty name", '[users.""]\nhourly_usd = 1\n', "users.: a user needs a name"),
    (
        "margin over 1",
        "[alerts]\nweekly_pace_margin = 10\n",
        "alerts.weekly_pace_margin: must be between 0 and 1",
    ),
    (
        "stale of 0",
        "[alerts]\nplan_stale_minutes = 0\n",
        "alerts.plan_stale_minutes: must be more than 0",
    ),
    ("unknown setting", "[alerts]\nwaiting = 5\n", "alerts.waiting: unknown key"),
    ("alerts not a table", "alerts = 3\n", "alerts: must be a table"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_mistake_is_one_line_naming_the_key_and_keeps_the_rules(tmp_path, what, text, message):
    toml = tmp_path / "budgets.toml"
    toml.write_text(text)
    out = tmp_path / "budgets.yml"
    out.write_text("previous rules\n")
    proc = generate(toml, out)
    assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"{toml}: {message}"), proc.stderr
    assert out.read_text() == "previous rules\n"


def test_an_unreadable_file_is_one_line(tmp_path):
    out = tmp_path / "budgets.yml"
    for path, content in (
        ("missing.toml", None),
        ("latin1.toml", "[users.j\xf6rg]\n".encode("latin-1")),
    ):
        toml = tmp_path / path
        if content is not None:
            toml.write_bytes(content)
        proc = generate(toml, out)
        assert proc.returncode == 2 and proc.stderr.startswith(f"{toml}: cannot read"), proc.stderr
        assert proc.stderr.count("\n") == 1
    assert not out.exists()


def test_budgets_yml_is_yaml_prometheus_reads():
    assert yaml.safe_load(BUDGET_RULES.read_text())["groups"][0]["name"] == "ccotel-budgets"
