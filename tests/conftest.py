"""Shared fixtures: the real-CLI harness plugin and small helpers to drive ccotel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.realcli"]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "real-transcripts"
if not FIXTURES.exists():  # CI clones main with shared/ beside it
    FIXTURES = Path(os.environ.get("CCOTEL_FIXTURES", "/work/shared/fixtures/real-transcripts"))


def ccotel(
    *args: str, env: dict | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would."""
    e = dict(os.environ if env is None else env)
    e.pop("CCOTEL_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "ccotel", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ccotel {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def report_totals(state: Path) -> dict:
    return json.loads(ccotel("report", "--json", "--state-dir", str(state)).stdout)["totals"]


def as_ccusage(t: dict) -> dict:
    """ccotel report totals in ccusage's vocabulary."""
    return {
        "inputTokens": t["input_tokens"],
        "outputTokens": t["output_tokens"],
        "cacheCreationTokens": t["cache_write_tokens"],
        "cacheReadTokens": t["cache_read_tokens"],
        "totalCost": t["cost_usd"],
    }


def assert_equal_totals(ours: dict, oracle: dict) -> None:
    for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"):
        assert ours[k] == oracle[k], f"{k}: ccotel {ours[k]} != ccusage {oracle[k]}"
    assert ours["totalCost"] == pytest.approx(oracle["totalCost"], rel=1e-6, abs=1e-9)


def free_port() -> int:
    """A port free now, for a server a test runs itself (a fake collector, Prometheus).

    Not for a ccotel daemon: between this and the daemon's bind another test may take it.
    Start the daemon on port 0 and ask it which port it got (``daemon_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_port(
    state: Path, proc: subprocess.Popen | None = None, timeout: float = 60, old: int | None = None
) -> int:
    """The port a daemon started with http_addr port 0 got: it writes it to daemon.json in
    its state dir once it listens. ``proc``: that daemon (the file must be its own);
    ``old``: a port a previous daemon on this state had (not taken as this one's)."""
    import time

    from ccotel.state import read_running

    deadline = time.monotonic() + timeout
    while True:
        running = read_running(state)
        if running is not None and (proc is None or running.pid == proc.pid):
            port = int(running.url.rsplit(":", 1)[1])
            if port != old:
                return port
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else b""
            raise AssertionError(f"the daemon exited {proc.returncode} before listening: {out!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no daemon wrote its port to {state}/daemon.json")
        time.sleep(0.05)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "serial: runs alone even under pytest-xdist (no other test at the same time): "
        "tests whose timing a busy machine would break (a browser, a terminal UI)",
    )


@pytest.fixture(autouse=True)
def _serial_or_shared(request, tmp_path_factory):
    """Under pytest-xdist, a `serial` test takes a lock every other test shares: it waits
    for the running tests to end, and the others wait for it."""
    import fcntl

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        yield
        return
    lock = tmp_path_factory.getbasetemp().parent / "serial.lock"  # one for all the workers
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        serial = request.node.get_closest_marker("serial") is not None
        fcntl.flock(fd, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # the lock goes with the descriptor


@pytest.fixture
def fixtures_dir() -> Path:
    assert FIXTURES.exists(), f"real transcripts not found at {FIXTURES}"
    return FIXTURES
