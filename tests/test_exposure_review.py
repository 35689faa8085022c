"""Outside review 2a (exposure and tracebacks of the status line, the live stream and the
outcomes): each test is a fault it found (now fixed) or a guard no other test noticed removed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ccotel.state.store import Store
from ccotel.statusline.daemon import Hub
from ccotel.totals import Totals

T0 = 1_800_000_000.0
CFG = SimpleNamespace(statusline_segments=["model", "context", "plan"], statusline_separator=" | ",
                      statusline_color=False)  # fmt: skip


@pytest.fixture
def hub(tmp_path):
    store = Store(tmp_path)
    h = Hub(CFG, tmp_path, Totals(), {}, clock=lambda: T0, restore=store.db)
    yield h, store
    h.stop()
    store.close()


def _post(h: Hub, d: dict) -> tuple[int, str]:
    return h.handle("POST", "/statusline", json.dumps(d).encode())


def test_context_tokens_that_overflow_to_inf_are_not_a_500(hub):
    """reports.context_of sums finite token counts to inf; render.pct then raises
    OverflowError (math.floor(inf)): the socket answers 500 and log.exception writes a
    traceback, on every status-line refresh of that session."""
    h, _ = hub
    d = {"session_id": "s", "context_window": {"context_window_size": 200000, "current_usage": {
        "input_tokens": 1e308, "cache_creation_input_tokens": 1e308, "cache_read_input_tokens": 0}}}  # fmt: skip
    status, text = _post(h, d)  # raises OverflowError today (500 through the socket)
    assert status == 200, text


def test_a_resets_at_far_in_the_future_does_not_freeze_the_plan(hub):
    """plan.parse_rate_limits takes any resets_at below 1e11 (year 5138). One such report
    (a buggy client, a stale or hand-made JSON on the socket) opens a 'later window' that
    wins; every true report after it names an 'earlier window' and is ignored, for ever
    (the row is written to the state and read back at each start)."""
    h, _ = hub
    rl = {"five_hour": {"used_percentage": 1.0, "resets_at": 9e10}}
    assert _post(h, {"session_id": "s", "rate_limits": rl})[0] == 200
    rl = {"five_hour": {"used_percentage": 55.0, "resets_at": T0 + 3600}}
    assert _post(h, {"session_id": "s", "rate_limits": rl})[0] == 200
    assert h.plan.windows()["5h"].used_ratio == pytest.approx(0.55)


def test_a_long_bash_command_does_not_stall_the_reader():
    """outcomes._GIT backtracks: every '--git' is a new start of \\bgit and each start
    walks the rest of the options, so call_kind is quadratic (worse) in the command. It
    runs on every Bash tool_use as the transcript is read, approved or not: a 48 KB
    command (below) takes ~14 s here, a few hundred KB stop the pipeline for an hour."""
    code = (
        "import json, sys; from msgspec import Raw; from ccotel.outcomes import call_kind; "
        "cmd = 'echo commit; git' + ' --git' * 8000; "
        "sys.exit(call_kind('Bash', Raw(json.dumps({'command': cmd}).encode())))"
    )
    # a subprocess: the regex holds the GIL, a thread's join could not time out
    try:
        r = subprocess.run([sys.executable, "-c", code], timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("call_kind still running after 5 s on a 48 KB command")
    assert r.returncode == 0


# --- guards that no test held (each survived a mutation that removed it); these pass today ---


def test_guard_turn_duration_out_of_range_is_not_counted():
    """outcomes.turn_ms's `0 <= ms < 1e12`: deleting it left tests/test_outcomes.py green."""
    from msgspec import Raw

    from ccotel.outcomes import turn_ms

    sub = Raw(b'"turn_duration"')
    assert turn_ms(sub, Raw(b"1500")) == 1500
    assert turn_ms(sub, Raw(b"-5")) is None
    assert turn_ms(sub, Raw(b"1e15")) is None


def test_guard_refs_kept_are_a_hash_or_a_short_pr_url_only():
    """outcomes.commit_hash's `_SHA.fullmatch` and pr_url's MAX_REF: deleting either left
    test_outcomes.py and test_realcli_outcomes.py green; without them any text Claude
    Code's gitOperation carries is stored in the ledger's `ref` column."""
    from ccotel.outcomes import _GitCommit, _GitOperation, _GitPr, commit_hash, pr_url

    op = _GitOperation(commit=_GitCommit(sha="fix: the secret commit message"))
    assert commit_hash(op, "") is None
    long = "https://github.com/o/r/pull/1" + "0" * 400
    assert pr_url(_GitOperation(pr=_GitPr(url=long)), "") is None


def _raw_request(path, data: bytes) -> bytes:
    import socket as s

    c = s.socket(s.AF_UNIX, s.SOCK_STREAM)
    c.settimeout(5)
    c.connect(str(path))
    buf = b""
    try:
        with contextlib.suppress(OSError):  # the server may answer and close before it all
            c.sendall(data)
        with contextlib.suppress(OSError):
            while chunk := c.recv(65536):
                buf += chunk
        return buf
    finally:
        c.close()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST /statusline HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b" 413 "),
        (b"POST /statusline HTTP/1.1\r\nX: " + b"a" * (20 << 10), b" 413 "),
        (b"POST /statusline HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b" 400 "),
    ],
    ids=["body-over-max", "head-over-max", "chunked"],
)
def test_guard_statusline_socket_request_limits(tmp_path, data, status):
    """server._read_request's MAX_BODY, MAX_HEAD and Transfer-Encoding checks: deleting any
    one left test_statusline_daemon.py and test_statusline_faults.py green."""
    from ccotel.statusline.server import SocketServer

    calls = []
    srv = SocketServer(tmp_path, lambda *a: (calls.append(a), (200, "ok\n"))[1])
    srv.start()
    try:
        got = _raw_request(srv.path, data)
    finally:
        srv.stop()
    assert got.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1" + status), got[:80]
    assert calls == []


def test_a_thread_that_cannot_start_does_not_end_the_status_line(tmp_path, monkeypatch):
    """server.SocketServer._serve starts a thread per connection outside any try: one
    RuntimeError ("can't start new thread": a process or memory limit reached for a moment)
    ends the accept thread with a traceback on stderr, and the status line is down for the
    daemon's life (the slot it took is never given back either)."""
    import threading as real

    from ccotel.statusline import server as servermod

    srv = servermod.SocketServer(tmp_path, lambda *a: (200, "ok\n"))
    srv.start()
    fails = {"n": 1}

    class Thread(real.Thread):
        def start(self):
            if fails["n"]:
                fails["n"] -= 1
                raise RuntimeError("can't start new thread")
            super().start()

    monkeypatch.setattr(
        servermod, "threading", SimpleNamespace(Thread=Thread, current_thread=real.current_thread)
    )
    req = b"POST /statusline HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    try:
        _raw_request(srv.path, req)  # the one whose thread cannot start: closed, fine
        got = _raw_request(srv.path, req)
    finally:
        srv.stop()
    assert got.startswith(b"HTTP/1.1 200"), got[:80]


def test_a_slow_reader_is_not_kept_past_the_streams_lifetime(monkeypatch):
    """live/stream.py closes a stream at LIFETIME only `if not c.out`, and _write takes the
    next event as soon as the current one is sent. A client that reads steadily but slower
    than the board changes (a phone on a bad link, or on purpose) never has an empty
    buffer at the check, never stalls (it moves), and holds its slot for ever: 32 such
    clients take every stream for good, however short LIFETIME is."""
    import socket
    import time

    from ccotel.live import stream as stream_mod

    monkeypatch.setattr(stream_mod, "LIFETIME", 0.5)
    monkeypatch.setattr(stream_mod, "TICK", 0.2)
    n = {"i": 0}

    def board():  # changes at every look, 60 KB an event
        n["i"] += 1
        data = json.dumps({"n": n["i"], "pad": "x" * 60000}).encode()
        return data, data

    s = stream_mod.Stream(board)
    s.start()
    srv, cli = socket.socketpair()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    closed = False
    try:
        assert s.adopt(srv)
        cli.settimeout(2)
        end = time.monotonic() + 8  # 16 lifetimes; an event takes ~1 s to read here
        while time.monotonic() < end:
            if not cli.recv(4096):
                closed = True
                break
            time.sleep(0.05)
    finally:
        s.stop()
        cli.close()
    assert closed, "a slow but steady reader was still streamed to after 16 lifetimes"


def test_guard_a_chatty_stream_client_is_closed():
    """stream._read's MAX_INPUT: deleting it left test_live_stream.py green (its chatty
    client is closed by the LIFETIME it also shortens, either way)."""
    import socket

    from ccotel.live import stream as stream_mod

    s = stream_mod.Stream(lambda: (b"{}", b"{}"))
    s.start()
    srv, cli = socket.socketpair()
    try:
        assert s.adopt(srv)
        cli.sendall(b"x" * (stream_mod.MAX_INPUT + 1))
        cli.settimeout(10)
        buf = b""
        while chunk := cli.recv(65536):
            buf += chunk
        assert buf.startswith(b"retry:")  # closed well before LIFETIME (600 s)
    finally:
        s.stop()
        cli.close()


BIG = 10**400  # valid JSON, and json.loads reads it (under 4300 digits)


@pytest.mark.parametrize(
    "extra",
    [
        {"rate_limits": {"five_hour": {"used_percentage": BIG, "resets_at": T0 + 3600}}},
        {"rate_limits": {"seven_day": {"used_percentage": 5, "resets_at": BIG}}},
        {"context_window": {"context_window_size": BIG, "used_percentage": 5}},
        {"context_window": {"context_window_size": 1000, "current_usage": {"input_tokens": BIG}}},
    ],
    ids=["pct", "resets_at", "window_size", "tokens"],
)
def test_a_huge_json_integer_is_refused_not_a_500(hub, extra):
    """plan.parse_rate_limits and reports._num call math.isfinite on any int: an integer
    past float range raises OverflowError, the socket answers 500 and log.exception writes
    a traceback (for the plan fields after the report was already kept)."""
    h, _ = hub
    status, text = _post(h, {"session_id": "s", **extra})
    assert status in (200, 400), text
