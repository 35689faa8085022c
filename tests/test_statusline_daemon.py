"""`ccotel statusline` against a running daemon: the line, the plan gauges, the blocks, and
every door the plan data must not come through."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ccotel, free_port
from tests.corpus import SONNET46, Usage, append_lines, assistant_record
from tests.oracle import ccusage_json
from tests.test_live import start

SID = "00000000-0000-4000-8000-00000000c0de"
OTHER = "00000000-0000-4000-8000-00000000beef"
U1, U2 = Usage(3, 120, 2000, 0, 15000), Usage(5, 40, 0, 500, 9000)


def _iso(ts: float) -> str:
    ms = round(ts * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def write_session(
    root: Path, sid: str, minutes_ago: list[float], cwd: str = "/home/u/proj"
) -> None:
    now = time.time()
    rng = random.Random(sid)
    path = root / "projects" / cwd.replace("/", "-") / f"{sid}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    append_lines(
        path,
        [
            assistant_record(
                session_id=sid,
                cwd=cwd,
                usage=U1 if i % 2 else U2,
                model=SONNET46,
                timestamp=_iso(now - m * 60),
                rng=rng,
            )
            for i, m in enumerate(minutes_ago)
        ],
    )


def status_json(sid: str = SID, five: float | None = 42.5, seven: float | None = 17.0,
                reset5: float | None = None, reset7: float | None = None) -> dict:  # fmt: skip
    now = time.time()
    d = {
        "session_id": sid,
        "transcript_path": f"/tmp/{sid}.jsonl",
        "model": {"id": "claude-sonnet-4-5-20250929", "display_name": "Sonnet 4.5"},
        "context_window": {"context_window_size": 200_000, "used_percentage": 38},
        "cost": {"total_cost_usd": 0.5},
    }
    rl = {}
    if five is not None:
        rl["five_hour"] = {"used_percentage": five, "resets_at": reset5 or int(now + 3 * 3600)}
    if seven is not None:
        rl["seven_day"] = {"used_percentage": seven, "resets_at": reset7 or int(now + 3 * 86400)}
    if rl:
        d["rate_limits"] = rl
    return d


def statusline(state: Path, stdin: bytes | str | dict, *args: str, env: dict | None = None,
               user: int | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    if isinstance(stdin, dict):
        stdin = json.dumps(stdin)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    e = (
        dict(env)
        if env is not None
        else {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ccotel", "statusline", "--state-dir", str(state), *args],
        input=stdin, capture_output=True, env=e, timeout=10, user=user,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def gauges(port: int) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name.startswith(("ccotel_plan_", "ccotel_block_", "ccotel_burn_rate")):
                key = s.name + "".join(f"{{{v}}}" for v in s.labels.values())
                out[key] = s.value
    return out


def wait_for(cond, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path):
    root = tmp_path / "claude"
    write_session(root, SID, [47, 31, 12, 2])
    write_session(root, OTHER, [20, 5], cwd="/home/u/other")
    state, port = tmp_path / "state", free_port()
    proc = start(root, state, port)
    box = {"proc": proc, "root": root, "state": state, "port": port}
    yield box
    for p in (box["proc"],):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(15)


def _cost(state: Path, by: str, key: str) -> float:
    rows = json.loads(ccotel("report", "--by", by, "--json", "--state-dir", str(state)).stdout)[
        "rows"
    ]
    return next(r["cost_usd"] for r in rows if r[by] == key)


def test_the_line_is_built_from_the_daemon_and_the_plan_reaches_metrics(daemon):
    state, port = daemon["state"], daemon["port"]
    # the blocks are computed on the daemon's worker right after its catch-up
    wait_for(lambda: "ccotel_block_ends_at_seconds" in gauges(port), "the active block")
    line = statusline(state, status_json(), "--metrics-addr", f"127.0.0.1:{port}").stdout.decode()
    assert line.count("\n") == 1
    session = _cost(state, "session", SID)
    today = _cost(state, "day", date.today().isoformat())
    assert line.startswith(f"Sonnet 4.5 | ${session:,.2f} session · ${today:,.2f} today | "), line
    assert "ctx 38%" in line and "5h 43%" in line and "7d 17%" in line
    # the active block, as ccusage blocks computes it
    (active,) = [b for b in ccusage_json(daemon["root"], "blocks")["blocks"] if b["isActive"]]
    g = wait_for(
        lambda: (x := gauges(port)) and "ccotel_block_ends_at_seconds" in x and x, "the block"
    )
    assert g["ccotel_block_cost_usd"] == pytest.approx(active["costUSD"], rel=1e-9)
    end = datetime.fromisoformat(active["endTime"].replace("Z", "+00:00")).timestamp()
    assert g["ccotel_block_ends_at_seconds"] == end
    assert g["ccotel_burn_rate_usd_per_hour{block}"] == pytest.approx(
        active["burnRate"]["costPerHour"], rel=1e-9
    )
    assert abs(g["ccotel_block_projected_cost_usd"] - active["projection"]["totalCost"]) <= (
        active["burnRate"]["costPerHour"] / 60 + 0.011  # ccusage's "now" is a minute apart at most
    )
    assert f"${active['costUSD']:,.2f} block (" in line
    # the 15-minute burn rate: what the responses of the last 15 minutes cost, per hour
    assert g["ccotel_burn_rate_usd_per_hour{15m}"] > 0
    assert g["ccotel_plan_used_ratio{5h}"] == 0.425 and g["ccotel_plan_used_ratio{7d}"] == 0.17
    assert time.time() - g["ccotel_plan_report_timestamp_seconds{5h}"] < 60


def test_a_stale_session_never_lowers_the_plan_and_a_restart_keeps_it(daemon):
    state, port = daemon["state"], daemon["port"]
    reset5 = int(time.time() + 3 * 3600)
    statusline(state, status_json(SID, 40.0, 10.0, reset5=reset5))
    statusline(state, status_json(OTHER, 55.0, None, reset5=reset5))
    stamp = gauges(port)["ccotel_plan_report_timestamp_seconds{5h}"]
    statusline(state, status_json(SID, 40.0, 10.0, reset5=reset5))  # the idle session again
    g = gauges(port)
    assert g["ccotel_plan_used_ratio{5h}"] == 0.55
    assert g["ccotel_plan_report_timestamp_seconds{5h}"] == stamp
    assert g["ccotel_plan_resets_at_seconds{5h}"] == reset5
    # restart: the last reports come back from the state
    proc = daemon["proc"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    daemon["proc"] = start(daemon["root"], state, port)
    again = gauges(port)
    for key in ("ccotel_plan_used_ratio{5h}", "ccotel_plan_resets_at_seconds{5h}",
                "ccotel_plan_report_timestamp_seconds{5h}", "ccotel_plan_used_ratio{7d}"):  # fmt: skip
        assert again[key] == g[key], key
    # and the stale copy still does not win after the restart; a new window does, lower
    statusline(state, status_json(SID, 40.0, None, reset5=reset5))
    assert gauges(port)["ccotel_plan_used_ratio{5h}"] == 0.55
    statusline(state, status_json(SID, 3.0, None, reset5=reset5 + 5 * 3600))
    assert gauges(port)["ccotel_plan_used_ratio{5h}"] == 0.03
    # the history holds every change
    hist = subprocess.run(
        ["sqlite3", str(state / "state.db"), "SELECT win, used_ratio FROM plan_history ORDER BY reported_at"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert hist == ["5h|0.4", "7d|0.1", "5h|0.55", "5h|0.03"]


@pytest.mark.parametrize(
    "stdin, says",
    [
        (b"", "no status-line JSON on stdin"),
        (b"garbage \xff\xfe{", "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"model": {"display_name": "Opus 4.6"}}', "no session_id"),
        (b"{" * 100_000, "not JSON"),
        (b'{"session_id": "' + b"x" * (300 << 10) + b'"}', "over 262144 bytes"),
    ],
    ids=["empty", "garbage", "array", "no-session", "deep", "huge"],
)
def test_bad_input_gets_a_short_line_and_the_daemon_goes_on(daemon, stdin, says):
    state, _port = daemon["state"], daemon["port"]
    out = statusline(state, stdin).stdout.decode()
    assert out.startswith(("ccotel: ", "Opus 4.6 | ccotel: ")) and says in out, out
    assert daemon["proc"].poll() is None
    assert "Sonnet 4.5 |" in statusline(state, status_json()).stdout.decode()


def test_the_daemon_down_a_short_line_and_exit_0(tmp_path):
    out = statusline(tmp_path / "nowhere", status_json()).stdout.decode()
    assert out == "Sonnet 4.5 | ccotel: daemon not running (ccotel service install)\n"


def test_a_hung_daemon_does_not_hold_claude_code(tmp_path):
    """A socket that accepts connections (the kernel's backlog) but never answers."""
    state = tmp_path / "state"
    state.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(state / "statusline.sock"))
    os.chmod(state / "statusline.sock", 0o600)
    s.listen(8)
    try:
        t0 = time.monotonic()
        out = statusline(state, status_json()).stdout.decode()
        assert "daemon busy" in out
        assert time.monotonic() - t0 < 9  # bounded by the client's own deadline, not ours
    finally:
        s.close()


def test_a_socket_that_is_not_private_or_not_ours_is_refused(daemon):
    state = daemon["state"]
    sock = state / "statusline.sock"
    os.chmod(sock, 0o666)
    try:
        out = statusline(state, status_json(five=99.0)).stdout.decode()
        assert "is open to other users (0o666): refused" in out
    finally:
        os.chmod(sock, 0o600)
    os.chown(sock, 65534, -1)
    try:
        out = statusline(state, status_json(five=99.0)).stdout.decode()
        assert "belongs to uid 65534, not you: refused" in out
    finally:
        os.chown(sock, 0, -1)
    assert gauges(daemon["port"]).get("ccotel_plan_used_ratio{5h}") is None  # nothing sent


RAW_POST = """
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = json.dumps({"session_id": "intruder", "rate_limits": {"five_hour": {"used_percentage": 99, "resets_at": int(time.time()) + 3600}}}).encode()
try:  # a refused peer may be answered and closed before it has sent everything
    s.sendall(b"POST /statusline HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
except BrokenPipeError:
    pass
print(s.recv(4096).decode().split("\\r\\n")[0])
"""


def test_another_user_is_refused_by_the_daemon_even_through_an_open_socket(tmp_path):
    """The peer's uid (SO_PEERCRED) is checked, whatever the socket's permissions."""
    top = Path(tempfile.mkdtemp(prefix="ccotel-sl-"))
    try:
        os.chmod(top, 0o755)
        root = tmp_path / "claude"
        write_session(root, SID, [3, 2])
        state, port = top / "state", free_port()
        proc = start(root, state, port)
        try:
            os.chmod(state, 0o755)
            os.chmod(state / "statusline.sock", 0o666)  # as if the owner had opened it up
            python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
            out = subprocess.run([python, "-c", RAW_POST, str(state / "statusline.sock")],
                                 capture_output=True, text=True, timeout=10, user=65534)  # fmt: skip
            assert out.stdout.strip() == "HTTP/1.1 403 Forbidden", out.stdout + out.stderr
            assert "ccotel_plan_used_ratio{5h}" not in gauges(port)
            # the owner, through the same socket, is served
            own = subprocess.run([python, "-c", RAW_POST, str(state / "statusline.sock")],
                                 capture_output=True, text=True, timeout=10)  # fmt: skip
            assert own.stdout.strip() == "HTTP/1.1 200 OK"
            assert gauges(port)["ccotel_plan_used_ratio{5h}"] == 0.99
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_web_page_cannot_post_plan_data_to_the_tcp_port(daemon):
    """A cross-site POST (a browser on any page can send one to loopback): no route writes."""
    port = daemon["port"]
    body = json.dumps(status_json(five=99.0)).encode()
    for path in ("/statusline", "/api/statusline", "/api/plan", "/", "/metrics"):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=body, method="POST",
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status >= 400, path
    assert "ccotel_plan_used_ratio{5h}" not in gauges(port)


def test_curl_speaks_to_the_socket_too(daemon):
    curl = shutil.which("curl")
    assert curl, "curl is not installed (scripts/install-test-deps installs it)"
    body = json.dumps(status_json())
    out = subprocess.run(
        [curl, "-sS", "--max-time", "2", "--unix-socket", str(daemon["state"] / "statusline.sock"),
         "--data-binary", "@-", "http://ccotel/statusline"],
        input=body, capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert out.stdout == statusline(daemon["state"], body).stdout.decode()
    assert out.stdout.startswith("Sonnet 4.5 | $")


def test_the_daemon_holds_the_latest_report_per_session_for_the_live_board(tmp_path):
    """Daemon.statusline (ccotel/statusline/__init__.py): report() and context()."""
    from ccotel.app import Daemon
    from ccotel.config import load

    root = tmp_path / "claude"
    write_session(root, SID, [3, 2])
    cfg = load(flags={"claude_dirs": [str(root)], "state_dir": str(tmp_path / "state"),
                      "metrics_addr": f"127.0.0.1:{free_port()}", "traces": False})  # fmt: skip
    d = Daemon(cfg)
    try:
        assert d.statusline.report(SID) is None and d.statusline.context(SID) is None
        status, line = d.hub.handle("POST", "/statusline", json.dumps(status_json()).encode())
        assert status == 200 and line.startswith("Sonnet 4.5 | ")
        assert d.statusline.context(SID) == (0.38, 200_000)
        assert d.statusline.report(SID)["model"]["display_name"] == "Sonnet 4.5"
        assert d.statusline.sessions() == [SID]
        assert d.hub.handle("GET", "/statusline", b"")[0] == 405
        assert d.hub.handle("POST", "/other", b"{}")[0] == 404
    finally:
        d._stack.close()


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_client_that_trickles_is_cut_off_and_others_are_served(daemon, part):
    """One byte every 0.05 s: the daemon gives the whole request 2 s, not 2 s per byte."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon["state"] / "statusline.sock"))
    s.settimeout(0.05)
    head = b"POST /statusline HTTP/1.1\r\nContent-Length: 1000\r\n"
    if part == "body":
        s.sendall(head + b"\r\n")
    t0 = time.monotonic()
    answer = b""
    try:
        for b in b"X-Pad: " + b"p" * 1000 if part == "head" else b"x" * 1000:
            s.sendall(bytes([b]))
            try:
                answer = s.recv(4096)
            except TimeoutError:
                continue
            break
    except OSError:
        pass
    cut = time.monotonic() - t0
    s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert cut < 5, cut  # about 2 s; a timeout per recv would never end
    assert "Sonnet 4.5 |" in statusline(daemon["state"], status_json()).stdout.decode()


def test_the_daemon_is_found_at_metrics_addr_like_ccotel_status_finds_it(daemon, tmp_path):
    """A client whose configuration names another state dir asks the daemon's /healthz
    (at --metrics-addr, CCOTEL_METRICS_ADDR or the config's) where its socket is."""
    wrong = tmp_path / "elsewhere"
    addr = f"127.0.0.1:{daemon['port']}"
    out = statusline(wrong, status_json(), "--metrics-addr", addr).stdout.decode()
    assert out.startswith("Sonnet 4.5 | $"), out
    env = {**os.environ, "CCOTEL_METRICS_ADDR": addr}
    assert statusline(wrong, status_json(), env=env).stdout.decode().startswith("Sonnet 4.5 | $")
    # nothing at that address: the short line
    free = f"127.0.0.1:{free_port()}"
    out = statusline(wrong, status_json(), "--metrics-addr", free).stdout.decode()
    assert out == "Sonnet 4.5 | ccotel: daemon not running (ccotel service install)\n"


def test_one_burn_rate_for_metrics_page_and_status_line(daemon):
    """The spend of the last 15 minutes, per hour: the gauge, /api/summary, /api/plan and the
    line say the same (the responses are 2, 5 and 12 minutes old; the next is 20)."""
    import sqlite3

    port = daemon["port"]
    db = sqlite3.connect(f"file:{daemon['state'] / 'state.db'}?mode=ro", uri=True)
    (recent,) = db.execute(
        "SELECT SUM(cost) FROM responses WHERE ts > ?", (time.time() - 900,)
    ).fetchone()
    db.close()
    want = recent * 4
    assert want > 0
    g = gauges(port)["ccotel_burn_rate_usd_per_hour{15m}"]
    api = json.loads(
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=5).read()
    )
    plan = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/plan", timeout=5).read())
    assert g == pytest.approx(want, rel=1e-9)
    assert api["burn_rate_usd_per_hour"] == pytest.approx(want, rel=1e-6)
    assert plan["burn_rate_usd_per_hour"] == pytest.approx(want, rel=1e-6)
    assert f"| ${want:,.2f}/h |" in statusline(daemon["state"], status_json()).stdout.decode()
