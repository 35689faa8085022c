"""Outside review (branch review1): each test reproduces one finding and fails on ca2edcb.

Scratch for the lead to cherry-pick from; the report says what each one shows.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from tests.conftest import free_port
from tests.corpus import Usage, append_lines, assistant_record
from tests.test_cli_mistakes import clean_env
from tests.test_traces_receiver import Receiver

CLOCK = lambda: 1_800_000_000.0  # noqa: E731


@pytest.mark.timeout(120)
def test_a_chat_span_carries_the_usage_the_metrics_kept(tmp_path):
    """A response whose lines straddle a session close (session_idle = 0 here; with the
    default 600 s, a gap of 10 minutes between two lines of one response) is sent with the
    usage of its first line; the later, larger copy the metrics keep never reaches the trace."""
    root, sid = tmp_path / "claude", "22222222-2222-2222-2222-222222222222"
    path = root / "projects" / "-home-u-split" / f"{sid}.jsonl"
    path.parent.mkdir(parents=True)
    now = datetime.now(UTC)
    user = {"parentUuid": None, "isSidechain": False, "type": "user", "uuid": "u0",
            "message": {"role": "user", "content": "hi"}, "cwd": "/home/u/split",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "sessionId": sid}  # fmt: skip
    a1 = assistant_record(session_id=sid, cwd="/home/u/split", usage=Usage(5, 10, 100, 0, 1000),
                          message_id="msg_s1", request_id="req_s1", timestamp=now, parent_uuid="u0")  # fmt: skip
    a1["message"]["stop_reason"] = None
    a2 = copy.deepcopy(a1)
    a2["uuid"], a2["message"]["stop_reason"] = "u2", "end_turn"
    a2["message"]["usage"]["output_tokens"] = 900
    append_lines(path, [user, a1])
    port = free_port()
    with Receiver() as r:
        env = clean_env(tmp_path, CCOTEL_TRACES="true", CCOTEL_SESSION_IDLE="0",
                        CCOTEL_METRICS_PUSH_INTERVAL="0")  # fmt: skip
        args = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(root), "--state-dir",
                str(tmp_path / "s"), "--metrics-addr", f"127.0.0.1:{port}", "--otlp-endpoint", r.url]  # fmt: skip
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r.wait(lambda: any(s.name.startswith("chat") for s in r.spans()), 30)
            append_lines(path, [a2])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                if 'type="output"} 900.0' in m:
                    break
                time.sleep(0.5)
            time.sleep(7)  # a trace pass after the metrics took the second line
        finally:
            p.terminate()
            p.wait()
        chats = [
            s.attrs["gen_ai.usage.output_tokens"] for s in r.spans() if s.name.startswith("chat")
        ]
    assert 'type="output"} 900.0' in m
    assert chats == [900], chats
