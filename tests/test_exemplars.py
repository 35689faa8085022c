"""A cost exemplar links to the trace its session's spans are in (review 1, finding 10): the
trace id the spans carry (32 hex digits; a session id that is not a UUID is hashed, as the
spans' is), checked against the spans a collector received from the same daemon."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.test_cli_mistakes import clean_env
from tests.test_traces import T
from tests.test_traces_receiver import Receiver


def exemplar_ids(port: int) -> set[str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept": "application/openmetrics-text"})  # fmt: skip
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    out = set()
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "ccotel_cost_usd_total" and s.exemplar is not None:
                out.add(s.exemplar.labels["trace_id"])
    return out


@pytest.mark.timeout(120)
def test_exemplars_name_the_traces_the_spans_are_in(tmp_path):
    root = tmp_path / "claude"
    for sid, cwd in (
        ("0a1b2c3d-0000-4000-8000-00000000abcd", "/home/u/a"),
        ("not-a-uuid", "/home/u/b"),
    ):
        t = T(root, session=sid, cwd=cwd)
        t.dir = root / "projects" / cwd.replace("/", "-")
        t.dir.mkdir(parents=True, exist_ok=True)
        t.path = t.dir / f"{sid}.jsonl"
        t.write([t.prompt(0), t.assistant(1, f"m-{sid}", [{"type": "text", "text": "x"}], stop="end_turn")])  # fmt: skip
    port = free_port()
    with Receiver() as r:
        env = clean_env(tmp_path, CCOTEL_TRACES="true", CCOTEL_SESSION_IDLE="0",
                        CCOTEL_METRICS_PUSH_INTERVAL="0", CCOTEL_TRACE_LOOKBACK=str(10 * 365 * 86400))  # fmt: skip
        args = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(root), "--state-dir",
                str(tmp_path / "s"), "--metrics-addr", f"127.0.0.1:{port}", "--otlp-endpoint", r.url]  # fmt: skip
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r.wait(lambda: len({s.trace_id for s in r.spans()}) == 2, 60)
            deadline = time.monotonic() + 30
            while len(got := exemplar_ids(port)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            p.terminate()
            p.wait()
        traces = {s.trace_id for s in r.spans()}
    assert len(got) == 2 and got == traces, (got, traces)
    assert all(len(t) == 32 and int(t, 16) for t in got)
