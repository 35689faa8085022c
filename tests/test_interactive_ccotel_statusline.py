"""The real Claude Code 2.1.197, interactive in tmux, runs `ccotel statusline` as its
statusLine command against a running daemon: the daemon gets the JSON, the pane shows
ccotel's line, and with an OAuth login the plan percentages the stand-in sent reach
/metrics."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ccotel, free_port
from tests.fakeapi import Step, ratelimit_headers
from tests.interactive import interactive_claude_fixture, wait_for  # noqa: F401
from tests.realcli import SONNET
from tests.test_live import start

RESET_5H, RESET_7D = int(time.time()) + 3 * 3600, int(time.time()) + 4 * 86400


def socket_get(path: str, target: str) -> tuple[int, str]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while chunk := s.recv(65536):
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def plan_gauges(port: int) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        f"{s.name}{{{s.labels.get('window')}}}": s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
        if s.name.startswith("ccotel_plan_")
    }


def _session_cost(state, sid: str) -> float | None:
    rows = json.loads(
        ccotel("report", "--by", "session", "--json", "--state-dir", str(state)).stdout
    )["rows"]
    return next((r["cost_usd"] for r in rows if r["session"] == sid), None)


def test_claude_code_shows_ccotel_line_and_the_plan_reaches_metrics(interactive_claude, tmp_path):
    api = interactive_claude.api
    api.extra_headers.update(
        ratelimit_headers(0.425, 0.17, five_hour_reset=RESET_5H, seven_day_reset=RESET_7D)
    )
    state, port = tmp_path / "state", free_port()
    cmd = shlex.join([sys.executable, "-m", "ccotel", "statusline", "--state-dir", str(state)])
    s = interactive_claude([Step(text="First."), Step(text="Second.")], model=SONNET,
                           auth="oauth", statusline=cmd)  # fmt: skip
    daemon = start(s.config_dir, state, port)
    try:
        s.submit("One")
        s.wait_idle()
        d = s.wait_statusline(lambda d: "rate_limits" in d, "rate_limits")
        sid = d["session_id"]
        # the plan percentages the stand-in sent, on /metrics
        g = wait_for(lambda: (x := plan_gauges(port)) and "ccotel_plan_used_ratio{5h}" in x and x,
                     "the plan gauges")  # fmt: skip
        assert g["ccotel_plan_used_ratio{5h}"] == 0.425
        assert g["ccotel_plan_used_ratio{7d}"] == 0.17
        assert g["ccotel_plan_resets_at_seconds{5h}"] == RESET_5H
        assert g["ccotel_plan_resets_at_seconds{7d}"] == RESET_7D
        # what the daemon holds of the session: the JSON Claude Code sent
        status, body = socket_get(str(state / "statusline.sock"), f"/report?session_id={sid}")
        assert status == 200
        got = json.loads(body)
        assert got["session_id"] == sid
        assert got["model"] == {"id": SONNET, "display_name": "Sonnet 4.5"}
        assert got["cost"]["total_cost_usd"] > 0
        # the pane shows ccotel's line, with the session's cost from ccotel's accounting
        cost = wait_for(lambda: _session_cost(state, sid), "the session in the state")
        s.submit("Two")  # a new render after the state has the session
        s.wait_idle()
        want = f"Sonnet 4.5 | ${cost:,.2f} session"
        plan = re.compile(r"5h 43% ↻\d\d:\d\d · 7d 17%")
        shown = wait_for(  # a render after the daemon has the plan (the pane may lag a render)
            lambda: (
                ((x := s.statusline_shown() or "").startswith("Sonnet 4.5 | $") and plan.search(x))
                and x
            ),
            "ccotel's line with the plan in the pane",
        )
        cost2 = _session_cost(state, sid)
        assert shown.startswith(want) or shown.startswith(f"Sonnet 4.5 | ${cost2:,.2f} session"), (
            shown,
            want,
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
