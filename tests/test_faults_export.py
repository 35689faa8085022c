"""Exporter faults (issue 5): the collector answers errors (503, 429, 500), then is slow
(each answer later than the exporter's timeout), then well. The daemon keeps counting,
retries with backoff, and in the end the collector holds every span once: the same
spans as a clean run, none lost, none twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from tests.corpus import generate
from tests.test_live import start, wait_equal
from tests.test_traces_receiver import Receiver
from tests.test_traces_wire import _health, _reference, clean_env


@pytest.mark.timeout(600)
def test_errors_then_slow_then_well_nothing_lost_nothing_twice(tmp_path):
    config = tmp_path / "claude"
    generate(config, files=12, seed=31)
    ref = _reference(config, tmp_path / "ref")
    assert len(ref) > 50
    with Receiver() as r:
        mode = {"delay": 0.0}
        late: list[set[str]] = []  # span ids of each request the collector kept but answered late

        def answer(n, spans):
            if mode["delay"]:
                late.append({s.span_id for s in spans})
                time.sleep(mode["delay"])

        r.answer = answer
        r.fail_status = 503
        env = clean_env(CCOTEL_OTLP_RETRY_MAX="1", CCOTEL_OTLP_TIMEOUT="1", CCOTEL_TRACE_BATCH_SPANS="16",
                        CCOTEL_METRICS_PUSH_INTERVAL="0", CCOTEL_TRACE_LOOKBACK=str(10 * 365 * 86400))  # fmt: skip
        proc = start(
            config,
            tmp_path / "state",
            0,
            env,
            "--otlp-endpoint",
            r.url,
            "--log-format",
            "json",
            timeout=60,
        )
        port = proc.port
        try:
            wait_equal(port, config, timeout=60)  # metrics do not wait for the collector
            for status in (503, 429, 500):
                r.fail_status = status
                before = r.got.refused
                r.wait(lambda b=before: r.got.refused >= b + 2, timeout=60)  # retried
            h = _health(port)["traces"]
            assert h["state"] == "failing" and h["spans_exported"] == 0, h
            assert "HTTP 500" in h["error"] and r.url in h["error"], h
            # slow: every answer comes after the exporter gave up waiting
            r.fail_status = None
            mode["delay"] = 2.5
            time.sleep(6)
            mode["delay"] = 0.0
            r.wait(lambda: len({s.span_id for s in r.spans()}) >= len(ref), timeout=180)
            time.sleep(3)  # a few more passes: nothing else may arrive
            spans = r.spans()
            h = _health(port)["traces"]
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0].decode()
    ids = Counter(s.span_id for s in spans)
    got = {s.span_id: (s.parent_id, s.name, s.start, s.end) for s in spans}
    assert got == ref, "nothing lost: the same spans as a clean run"
    # a request the collector stored but answered too late is sent again (at-least-once);
    # every other span arrives exactly once
    twice = {i for i, n in ids.items() if n > 1}
    assert late, "the slow phase happened: requests were kept but answered too late"
    assert twice <= set().union(*late), "only spans of late-answered requests came twice"
    assert all(n <= 1 + sum(i in req for req in late) for i, n in ids.items())
    assert (h["spans_dropped"], h["spans_exported"], h["state"]) == (0, len(ref), "ok"), h
    assert "traces export works again" in out, out[-3000:]
