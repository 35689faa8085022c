"""What a new user reads first is true: the README's two commands work from a clone, the config
reference is the code's, and the metrics table is what a running daemon serves."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccotel.config import Config
from tests.conftest import FIXTURES, daemon_port, free_port
from tests.test_live import start

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
GEN_DOCS = REPO / "scripts" / "gen-docs"
BIN = Path(sys.executable).parent


def gen_docs():
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(GEN_DOCS))
    spec = importlib.util.spec_from_loader("gen_docs", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


# ------------------------------------------------------------------------------ config reference


def test_config_reference_is_generated_from_the_config_definition():
    proc = subprocess.run(
        [sys.executable, str(GEN_DOCS), "--check"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_config_reference_lists_every_key_with_its_default():
    g = gen_docs()
    table = g.DOC.read_text().split(g.BEGIN, 1)[1].split(g.END, 1)[0]
    keys = re.findall(r"^\| `([\w.]+)` \|", table, re.M)
    fields = [f for f in Config.__struct_fields__ if f != "budget"]
    assert set(keys) == {*fields, "budget.hourly_usd", "budget.daily_usd"}
    row = next(line for line in table.splitlines() if line.startswith("| `http_addr` |"))
    assert '`"127.0.0.1:9470"`' in row and "`CCOTEL_HTTP_ADDR`" in row
    assert "`CCOTEL_METRICS_ADDR`" in row and "`--metrics-addr`" in row  # the old names
    budget = next(line for line in table.splitlines() if line.startswith("| `budget.daily_usd`"))
    assert "| none |" in budget  # no budget by default


def test_gen_docs_notices_a_stale_table_and_an_undescribed_key(tmp_path):
    g = gen_docs()
    text = g.DOC.read_text()
    stale = re.sub(r"^\| `trace_rate` \|.*\n", "", text, flags=re.M)
    assert stale != text
    fixed, missing = g.render(stale)
    assert fixed != stale and missing == []  # back, described by its comment in config.py...
    assert "spans per second" in fixed
    no_hint = re.sub(r"^\| `state_dir` \|.*\n", "", text, flags=re.M)
    _, missing = g.render(no_hint)
    assert missing == ["state_dir"]  # ...or flagged when the code has none
    assert g.render(text) == (text, [])


# ------------------------------------------------------------------------------ metrics table


def documented_metrics() -> dict[str, str]:
    """metric name -> its labels cell, from the README's Metrics table."""
    out = {}
    for line in section(README.read_text(), "Metrics").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`\w+`", cells[0]):
            out[cells[0].strip("`")] = cells[2]
    return out


def scrape(port: int) -> dict[str, set[str]]:
    """Exposed name (with _total for counters) -> label names seen."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        labels = out.setdefault(name, set())
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
    return out


def test_readme_metrics_table_is_what_a_running_daemon_serves(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    # Everything on that ccotel can turn on, so every family has samples to show its labels.
    env.update(
        CCOTEL_BUDGET_HOURLY_USD="5",
        CCOTEL_BUDGET_DAILY_USD="40",
        CCOTEL_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nobody there: export errors
    )
    optional = {"native_metrics": "true"}  # metric sets behind a switch, once the key exists
    env.update(
        {f"CCOTEL_{k.upper()}": v for k, v in optional.items() if k in Config.__struct_fields__}
    )
    daemon = start(FIXTURES / "claude-2.1.197", tmp_path / "state", env=env)
    try:
        served = scrape(daemon.port)
    finally:
        daemon.terminate()
        daemon.wait(15)
    documented = documented_metrics()
    assert len(served) > 20
    assert set(served) - set(documented) == set(), "served but not in the README's table"
    assert set(documented) - set(served) == set(), "in the README's table but not served"
    for name, labels in served.items():
        cell = set(re.findall(r"`(\w+)`", documented[name].split("(")[0]))
        assert labels <= cell, (name, labels - cell)


# ------------------------------------------------------------------------------ the first commands


def test_readme_starts_with_the_install_and_the_test_commands():
    text = README.read_text()
    install, *_ = code_blocks(section(text, "Install and run it"))
    lines = [ln.split("#")[0].strip() for ln in install.strip().splitlines()]
    assert lines[0].startswith("uv tool install ") and "git+" in lines[0]
    assert "pipx install" in install
    assert lines[1] == "ccotel service install"
    (tests,) = code_blocks(section(text, "Run the tests"))
    assert tests.strip() == "./scripts/test"
    assert text.index("## Install and run it") < text.index("## Run the tests") < text.index("---")
    steps = ("bash scripts/setup", "bash scripts/check", ".venv/bin/python -m pytest -n auto")
    for script in (REPO / ".ci" / "run", REPO / "scripts" / "test"):  # CI does what README says
        text = script.read_text()
        at = [text.index(step) for step in steps]
        assert at == sorted(at), script  # the checks before the tests
    assert "exec </dev/null" in (REPO / ".ci" / "run").read_text()
    check = (REPO / "scripts" / "check").read_text()
    for step in ("ruff check ccotel tests", "ruff format --check ccotel tests", "mypy"):
        assert f".venv/bin/{step}" in check, step


def test_test_script_installs_what_it_says_without_stdin():
    script = (REPO / "scripts" / "install-test-deps").read_text()
    header = script.split("set -euo pipefail", 1)[0]
    for tool in ("prometheus", "alertmanager", "systemd", "chromium", "chromium-driver", "npm"):
        assert tool in header.lower(), tool
    assert "exec </dev/null" in script
    setup = (REPO / "scripts" / "setup").read_text()
    assert "bash scripts/install-test-deps" in setup and "-c constraints.txt" in setup


def clone(dst: Path) -> Path:
    """The repository as a user's clone has it: the tracked files of this work tree."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / f.decode()
        if src.is_file():
            (dst / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f.decode())
    return dst


@pytest.mark.timeout(600)
@pytest.mark.parametrize("installer", ["uv", "pipx"])
def test_install_from_a_clone_then_run_with_no_configuration(tmp_path, installer):
    """README's first command, in its local-clone form, into an empty HOME; then the daemon on
    real transcripts in ~/.claude with no config file, and the service step's unit."""
    src = clone(tmp_path / "ccotel")
    home = tmp_path / "home"
    shutil.copytree(FIXTURES / "claude-2.1.197", home / ".claude")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CCOTEL_", "OTEL_", "CLAUDE_", "XDG_", "VIRTUAL_ENV", "UV_", "PIPX_"))
    }
    env.update(HOME=str(home), PATH=f"{home / '.local' / 'bin'}:/usr/bin:/bin")
    if installer == "uv":
        env.update(UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(tmp_path / "uv-cache"))
        argv = [str(BIN / "uv"), "tool", "install", "--python", sys.executable, "./ccotel"]
    else:
        argv = [str(BIN / "pipx"), "install", "--python", sys.executable, "./ccotel"]
    proc = subprocess.run(
        argv, cwd=src.parent, env=env, capture_output=True, text=True, timeout=500
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ccotel = home / ".local" / "bin" / "ccotel"
    assert ccotel.exists(), proc.stdout + proc.stderr
    assert not str(ccotel.resolve()).startswith(str(src))  # its own environment, not the clone

    daemon = subprocess.Popen(
        [str(ccotel), "run", "--http-addr", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = daemon_port(home / ".local" / "state" / "ccotel", daemon)
        cost = 0.0
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                cost = sum(
                    s.value
                    for fam in text_string_to_metric_families(text)
                    for s in fam.samples
                    if s.name == "ccotel_cost_usd_total"
                )
                if cost > 0:
                    break
            except OSError:
                pass
            assert daemon.poll() is None, daemon.stdout.read()
            subprocess.run(["sleep", "0.1"])
        assert cost > 0, "the installed ccotel counted nothing in ~/.claude"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"<html" in r.read().lower()
    finally:
        daemon.terminate()
        daemon.wait(15)
    # Its state went where the defaults say, inside HOME.
    assert list((home / ".local" / "state" / "ccotel").iterdir())

    unit = subprocess.run(
        [str(ccotel), "service", "install", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert f"ExecStart={ccotel} run" in unit.stdout


# ------------------------------------------------------------------------------ deploy.md sizing


def test_deploy_md_has_no_placeholder_left_and_sizes_the_team_profile_under_500():
    """docs/deploy.md's team figures come from bench/team.py: none of the placeholders it was
    written with (FULL_TYPICAL, BENCH_TABLE, ...) is left in its prose, and the typical laptop
    (20 projects, 4 models) pushes under 500 series in the team profile, as issue 14 asks."""
    text = (REPO / "docs" / "deploy.md").read_text()
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
    words = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", prose))
    assert words <= {"AF_UNIX", "AF_INET"}, words  # real names, written without backticks
    assert not re.search(r"\b(TODO|TBD|XXX)\b", prose)
    team = text.split("\n### The team profile\n", 1)[1].split("\n### ", 1)[0]
    full, folded = (
        int(n.replace(",", "")) for n in re.findall(r"about ([\d,]+)\s+series", team)[:2]
    )
    assert folded < 500 < full
    sizing = text.split("\n### 1,000 laptops: what the stack needs\n", 1)[1].split("\n## ", 1)[0]
    for figure in ("active series", "samples/s", "per month", "spans/s", "requests/s"):
        assert figure in sizing, figure
