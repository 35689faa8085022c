"""`ccotel status`: which trace-export state the daemon is in (the `traces` health contract in
HELPERS.md), calm when nobody asked for traces; and which state it writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from ccotel.cli import export_state
from tests.conftest import FIXTURES, ccotel, daemon_port, free_port
from tests.test_cli_mistakes import _wait_health, clean_env

EP = "http://localhost:4318/v1/traces"


@pytest.mark.parametrize(
    ("health", "line"),
    [
        ({"enabled": False, "configured": False, "endpoint": "", "state": "off", "error": None},
         "off (traces = false)"),
        ({"enabled": True, "configured": False, "endpoint": EP, "state": "waiting", "error": None},
         "waiting: no collector configured yet; spans wait in the transcripts"),
        ({"enabled": True, "configured": True, "endpoint": "https://c.example:4318/v1/traces",
          "state": "failing", "error": "HTTP 401 Unauthorized"},
         "failing: https://c.example:4318/v1/traces: HTTP 401 Unauthorized"),
        ({"enabled": True, "configured": True, "endpoint": EP, "state": "ok", "error": None,
          "spans_exported": 25}, f"ok, to {EP} (25 spans exported)"),
        # a daemon older than the contract: enabled/endpoint/failing only
        ({"enabled": False}, "off (traces = false)"),
        ({"enabled": True, "endpoint": EP, "failing": True},
         f"not confirmed by {EP} yet (spans wait in the transcripts)"),
        ({"enabled": True, "endpoint": EP, "failing": False, "spans_exported": 3},
         f"ok, to {EP} (3 spans exported)"),
    ],
)  # fmt: skip
def test_each_trace_export_state_in_one_line(health, line):
    assert export_state(health) == line


def test_metrics_push_and_absent_keys():
    assert export_state({"enabled": False, "state": "off"}, "metrics_push") == "off"
    assert export_state(None) is None and export_state("weird") is None


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
def test_zero_configuration_status_is_calm(tmp_path):
    """No collector anywhere and none configured: `ccotel status` says spans wait, not that
    anything fails; --json carries the daemon's /healthz with running: true."""
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, CCOTEL_TRACES="true", CCOTEL_HTTP_ADDR="127.0.0.1:0")
    proc = subprocess.Popen([sys.executable, "-m", "ccotel", "run", "--claude-dir",
                             str(FIXTURES / "claude-2.1.197"), "--state-dir", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
        env["CCOTEL_HTTP_ADDR"] = f"127.0.0.1:{port}"  # this shell's config names its port
        _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        out = ccotel("status", env=env).stdout
        traces = next(ln for ln in out.splitlines() if ln.strip().startswith("traces"))
        if _listening(4318):  # a collector on the default port (another test's): it answers
            assert "failing" not in traces
        else:
            assert "spans wait in the transcripts" in traces and "failing" not in traces
        h = json.loads(ccotel("status", "--json", env=env).stdout)
        assert h["running"] is True and h["state_dir"] == str(tmp_path / "s")
        if "state" in h["traces"] and not _listening(4318):  # the contract: the daemon says so
            assert h["traces"]["state"] == "waiting"
            assert traces.strip().startswith("traces     waiting")
        # `report` in this shell reads the default state, not the daemon's: status says so
        assert f"`ccotel report` here reads {home}/.local/state/ccotel" in out
        out = ccotel("status", env=env | {"CCOTEL_STATE_DIR": str(tmp_path / "s")}).stdout
        assert "warning" not in out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.timeout(120)
def test_a_configured_collector_that_fails_is_named(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    dead = free_port()  # nothing listens there
    env = clean_env(home, CCOTEL_TRACES="true", CCOTEL_HTTP_ADDR="127.0.0.1:0",
                    CCOTEL_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "ccotel", "run", "--claude-dir",
                             str(FIXTURES / "claude-2.1.197"), "--state-dir", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
        env["CCOTEL_STATE_DIR"] = str(tmp_path / "s")  # status finds the port in daemon.json
        h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        deadline = time.monotonic() + 20
        while not (h["traces"].get("state") == "failing" or h["traces"].get("failing")):
            assert time.monotonic() < deadline, h["traces"]
            time.sleep(0.2)
            h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        out = ccotel("status", env=env).stdout
        traces = next(ln for ln in out.splitlines() if ln.strip().startswith("traces"))
        assert f"127.0.0.1:{dead}" in traces
        if "state" in h["traces"]:
            assert traces.split(None, 1)[1].startswith(f"failing: http://127.0.0.1:{dead}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
