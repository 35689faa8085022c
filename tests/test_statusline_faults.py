"""Faults on the daemon's side of the status line: the state refuses the plan's writes, the
handler has a bug, the socket's path is taken. The daemon goes on; nothing is lost."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from ccotel.state import limits
from ccotel.state.store import Store
from ccotel.statusline import daemon as hubmod
from ccotel.statusline.daemon import Hub
from ccotel.statusline.server import SocketServer
from ccotel.totals import Totals

T0 = 1_800_000_000.0
CFG = SimpleNamespace(statusline_segments=["model", "plan"], statusline_separator=" | ",
                      statusline_color=False)  # fmt: skip


def report(pct: float, reset: float = T0 + 3600) -> bytes:
    return json.dumps({"session_id": "s", "model": {"display_name": "Opus 4.6"},
                       "rate_limits": {"five_hour": {"used_percentage": pct, "resets_at": reset}}}).encode()  # fmt: skip


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def hub(tmp_path):
    store = Store(tmp_path)
    h = Hub(CFG, tmp_path, Totals(), {}, clock=Clock(), restore=store.db)
    yield h, store
    h.stop()
    store.close()


@pytest.mark.parametrize("failures", [1, 2, 5])
def test_plan_writes_refused_are_kept_and_written_later(hub, monkeypatch, failures):
    h, store = hub
    real = limits.plan_write
    calls = {"n": 0}

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] <= failures:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*a, **kw)

    monkeypatch.setattr(limits, "plan_write", flaky)
    for i, pct in enumerate((10.0, 20.0, 30.0)):
        assert h.handle("POST", "/statusline", report(pct))[0] == 200
        h._write_plan()  # the worker's round, failing the first `failures` times
        assert h.plan.windows()["5h"].used_ratio == pct / 100  # served from memory meanwhile
        assert calls["n"] == i + 1
    for _ in range(failures):
        h._write_plan()
    rows = store.query("SELECT used_ratio FROM plan_history ORDER BY reported_at, used_ratio")
    assert [r[0] for r in rows] == [0.1, 0.2, 0.3]  # each change once, in order
    # a restart reads the newest back
    again = Hub(CFG, h.state_dir, Totals(), {}, clock=lambda: T0, restore=store.db)
    assert again.plan.windows()["5h"].used_ratio == 0.3


def test_a_bug_in_the_handler_is_a_500_and_the_socket_goes_on(tmp_path):
    calls = []

    def handle(method, path, body, query):
        calls.append(path)
        if path == "/boom":
            raise KeyError("bug")
        return 200, "fine\n"

    srv = SocketServer(tmp_path, handle)
    srv.start()
    try:
        for path, want in (("/boom", "500"), ("/ok", "200"), ("/boom", "500"), ("/ok", "200")):
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                 "--unix-socket", str(srv.path), f"http://x{path}"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            assert out == want, (path, out)
    finally:
        srv.stop()
    assert not srv.path.exists()  # removed on stop
    assert calls == ["/boom", "/ok", "/boom", "/ok"]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_path_taken_by_something_else_leaves_the_daemon_without_a_status_line(
    hub, tmp_path, kind
):
    h, _ = hub
    if kind == "folder":
        h.server.path.mkdir()  # not a socket: not ccotel's to delete
    else:
        h.server.path.write_text("someone's notes")
    h.start()  # logs, goes on
    assert h.server.sock is None
    assert (
        h.server.path.is_dir()
        if kind == "folder"
        else h.server.path.read_text() == "someone's notes"
    )
    # the client says what is wrong, in its one line
    out = subprocess.run([sys.executable, "-m", "ccotel", "statusline", "--state-dir", str(tmp_path)],
                         input=report(5), capture_output=True, timeout=30).stdout.decode()  # fmt: skip
    assert out == f"Opus 4.6 | ccotel: {h.server.path} is not a socket\n"


def test_a_stale_socket_of_a_dead_daemon_is_replaced(hub):
    import socket

    h, _ = hub
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(h.server.path))
    old.close()  # the file stays: a daemon killed with -9
    h.start()
    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline and "5h" not in out:
        out = subprocess.run([sys.executable, "-m", "ccotel", "statusline", "--state-dir", str(h.state_dir)],
                             input=report(5), capture_output=True, timeout=30).stdout.decode()  # fmt: skip
    assert out == "Opus 4.6 | 5h 5% ↻" + time.strftime("%H:%M", time.localtime(T0 + 3600)) + "\n", (
        out
    )


def test_worker_survives_a_bug(hub, monkeypatch):
    h, _ = hub
    boom = {"n": 0}

    def refresh(force=False):
        boom["n"] += 1
        raise ValueError("bug")

    monkeypatch.setattr(h.blocks, "refresh", refresh)
    monkeypatch.setattr(hubmod, "WORK_EVERY", 0.01)
    h.start()
    h.set_ready()
    deadline = time.monotonic() + 5
    while boom["n"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert boom["n"] >= 3 and h._worker.is_alive()


FULL = {
    "session_id": "s-full", "session_name": "fix the thing", "prompt_id": "p-1",
    "transcript_path": "/tmp/s-full.jsonl", "cwd": "/w",
    "model": {"id": "claude-opus-4-6", "display_name": "Opus 4.6"},
    "workspace": {"current_dir": "/w", "project_dir": "/w", "added_dirs": ["/x"], "git_worktree": "wt",
                  "repo": {"host": "github.com", "owner": "o", "name": "n"}},
    "version": "2.1.197", "output_style": {"name": "default"},
    "cost": {"total_cost_usd": 1.5, "total_duration_ms": 1, "total_api_duration_ms": 1,
             "total_lines_added": 1, "total_lines_removed": 0},
    "context_window": {"total_input_tokens": 1, "total_output_tokens": 1, "context_window_size": 200000,
                       "current_usage": {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 0,
                                         "cache_read_input_tokens": 0},
                       "used_percentage": 12, "remaining_percentage": 88},
    "effort": {"level": "high"}, "thinking": {"enabled": True},
    "rate_limits": {"five_hour": {"used_percentage": 42.5, "resets_at": T0 + 3600},
                    "seven_day": {"used_percentage": 17, "resets_at": T0 + 86400 * 3}},
    "vim": {"mode": "NORMAL"}, "agent": {"name": "a", "type": "t"},
    "pr": {"number": 1, "url": "u", "review_state": "open"},
    "worktree": {"name": "w", "path": "/w", "branch": "b", "original_cwd": "/", "original_branch": "main"},
    "exceeds_200k_tokens": False, "fast_mode": False,
}  # fmt: skip
OPTIONAL = [k for k in FULL if k != "session_id"]


@pytest.mark.parametrize(
    "drop", [[], OPTIONAL, *[[k] for k in OPTIONAL]], ids=lambda d: "-".join(d) or "all"
)
def test_every_optional_block_absent_or_present(hub, drop):
    h, _ = hub
    d = {k: v for k, v in FULL.items() if k not in drop}
    status, line = h.handle("POST", "/statusline", json.dumps(d).encode())
    assert status == 200 and line.endswith("\n") and "\n" not in line[:-1]
    assert ("Opus 4.6" in line) == ("model" not in drop)
    assert ("5h 43%" in line) == ("rate_limits" not in drop)
    assert h.reports.report("s-full")["session_id"] == "s-full"
    assert (h.reports.context("s-full") is None) == ("context_window" in drop)
