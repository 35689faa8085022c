"""The daemon live: real Claude Code sessions written while it runs, kill -9, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_equal_totals, daemon_port
from tests.oracle import ccusage_totals
from tests.realcli import append_sessions, make_transcripts

TYPE_TO_ORACLE = {"input": "inputTokens", "output": "outputTokens", "cache_read": "cacheReadTokens"}


def scrape(port: int) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {
        "inputTokens": 0,
        "outputTokens": 0,
        "cacheCreationTokens": 0,
        "cacheReadTokens": 0,
        "totalCost": 0.0,
        "tool_calls": {},
        "sessions": 0,
        "lines": 0,
    }
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "ccotel_tokens_total":
                t = s.labels["type"]
                out[TYPE_TO_ORACLE.get(t, "cacheCreationTokens")] += int(s.value)
            elif s.name == "ccotel_cost_usd_total":
                out["totalCost"] += s.value
            elif s.name == "ccotel_tool_calls_total":
                k = (s.labels["tool"], s.labels["status"])
                out["tool_calls"][k] = out["tool_calls"].get(k, 0) + int(s.value)
            elif s.name == "ccotel_sessions_total":
                out["sessions"] += int(s.value)
            elif s.name == "ccotel_lines_total":
                out["lines"] = int(s.value)
    return out


def start(
    config_dir: Path,
    state: Path,
    port: int = 0,
    env: dict | None = None,
    *args: str,
    timeout: float = 15,
) -> subprocess.Popen:
    """`ccotel run` (extra flags in args), returned once /healthz says it is ready, with
    ``.port``: the port it listens on (by default any free one, which it reports itself)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccotel",
            "run",
            "--claude-dir",
            str(config_dir),
            "--state-dir",
            str(state),
            "--http-addr",
            f"127.0.0.1:{port}",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    if port == 0:
        port = daemon_port(state, proc, timeout=timeout + 45)
    proc.port = port
    for _ in range(int(timeout / 0.05)):
        try:
            h = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            )
            if h["ok"]:
                return proc
        except OSError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    raise AssertionError("daemon did not become ready")


def wait_equal(port: int, config_dir: Path, timeout: float = 30) -> dict:
    want = ccusage_totals(config_dir)
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(port)
        try:
            assert_equal_totals(got, want)
            return got
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.timeout(300)
def test_live_kill9_restart_equals_oracle(tmp_path):
    home = tmp_path / "home"
    make_transcripts(home, ["bash"])  # the harness HOME exists before the daemon starts
    config_dir = home / ".claude"
    state = tmp_path / "state"
    proc = start(config_dir, state)
    port = proc.port
    try:
        first = wait_equal(port, config_dir)
        append_sessions(home, ["parallel", "error", "agent"])  # written while it runs
        got = wait_equal(port, config_dir)
        assert got["tool_calls"].get(("Bash", "error"), 0) >= 1
        assert got["tool_calls"].get(("Agent", "ok"), 0) == 1
        assert got["sessions"] == 4 and got["lines"] > first["lines"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # Its daemon.json outlives it: `ccotel status` finds nobody at the port it names.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
        env |= {"CCOTEL_HTTP_ADDR": "127.0.0.1:0", "CCOTEL_STATE_DIR": str(state)}
        down = subprocess.run([sys.executable, "-m", "ccotel", "status", "--json"], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert down.returncode == 3 and json.loads(down.stdout)["running"] is False, down.stderr
        assert f"127.0.0.1:{port}/healthz" in down.stderr
        append_sessions(home, ["bash", "agent-haiku"])  # while it is down
        proc = start(config_dir, state)
        after = wait_equal(proc.port, config_dir)
        assert after["sessions"] == 6
        up = subprocess.run([sys.executable, "-m", "ccotel", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert json.loads(up.stdout)["pid"] == proc.pid, up.stderr  # the new one's port
        # Graceful stop on SIGTERM.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert b"ccotel stopped" in proc.stdout.read()
        assert not (state / "daemon.json").exists()  # a clean stop takes it away
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.timeout(120)
def test_root_that_does_not_exist_yet_is_waited_for(tmp_path, fixtures_dir):
    import shutil

    config_dir = tmp_path / "later" / ".claude"  # neither exists when the daemon starts
    proc = start(config_dir, tmp_path / "state")
    port = proc.port
    try:
        assert scrape(port)["lines"] == 0
        shutil.copytree(fixtures_dir / "claude-2.1.197", config_dir)
        got = wait_equal(port, config_dir, timeout=20)
        assert got["tool_calls"][("Bash", "error")] == 1 and got["sessions"] == 4
    finally:
        proc.kill()
        proc.wait(10)
