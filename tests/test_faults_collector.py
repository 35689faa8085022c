"""A collector that fails, refuses, or takes only part of what it gets (issue 9, silent loss 2).

Every status class, at every point of a delivery (the first request, one in the middle,
the last), over the wire: ccotel's real OTLP sink (HTTP/protobuf and gRPC) against a
receiver that decodes each request with opentelemetry-proto and answers what the test
scripts. The rule checked each time:

- a collector that refuses the credentials or the endpoint, or fails for a while, loses
  nothing: every span arrives exactly once when it accepts again, none is dropped, and
  the failed attempts are counted as errors, with one warning naming status and endpoint;
- "too large" means send less at once: everything arrives, nothing is dropped;
- only what the collector calls malformed (HTTP 400 / INVALID_ARGUMENT for a span alone,
  or a partial success) is dropped, counted in spans_dropped and never as exported;
- spans a pass delivered before it failed (a split batch, a commit that failed) are not
  sent again, and the counters only move when the cursors commit.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from ccotel import app
from ccotel.otlp import ExportHealth
from ccotel.traces.service import TraceThread, options, span_sink
from ccotel.traces.shipper import Shipper
from tests.conftest import FIXTURES
from tests.test_traces import T0, cfg_for
from tests.test_traces_receiver import Answer, GrpcReceiver, Receiver

SRC = FIXTURES / "claude-2.1.38"
BATCH = 8
HTTP_HOLD = [401, 403, 404, 408, 429, 500, 502, 503, 504]  # nothing may be dropped
GRPC_HOLD = ["UNAUTHENTICATED", "PERMISSION_DENIED", "UNIMPLEMENTED", "UNAVAILABLE", "INTERNAL"]
POINTS = ["first", "middle", "last"]


@pytest.fixture(scope="module")
def metrics_state(tmp_path_factory) -> Path:
    """The metrics state of SRC, backfilled once; each case starts from a copy."""
    d = tmp_path_factory.mktemp("metrics")
    app.backfill(cfg_for(SRC, d))
    return d


def _state(metrics_state: Path, tmp: Path) -> Path:
    d = tmp / "state"
    shutil.copytree(metrics_state, d)
    return d


class Run:
    """One delivery of SRC through the real sink: passes until one succeeds, the way the
    daemon's trace thread runs them (the backoff's sleeps left out)."""

    def __init__(self, state: Path, url: str, protocol: str = "http/protobuf"):
        self.cfg = cfg_for(
            SRC, state, otlp_endpoint=url, otlp_protocol=protocol, trace_batch_spans=BATCH
        )
        self.sink = span_sink(self.cfg)
        self.shipper = Shipper(
            self.cfg.resolved_state_dir() / "state.db", self.sink, options(self.cfg),
            clock=lambda: T0 + 10 * 86400, session_idle=0, since=0, batch=BATCH, rate=0,
        )  # fmt: skip
        self.health = ExportHealth(
            structlog.get_logger(), "traces", self.sink.target.where, True, 0.05
        )
        self.failed_passes = 0

    def deliver(self, max_passes: int = 60) -> Run:
        sh = self.shipper
        for _ in range(max_passes):
            if sh.run_pass():
                if sh.requests or self.health.last_local:
                    self.health.ok(contacted=sh.requests > 0)
                return self
            self.failed_passes += 1
            self.health.failed(sh.failure)
        raise AssertionError(f"not delivered after {max_passes} passes: {sh.stats.last_error}")

    def close(self) -> None:
        self.sink.shutdown()
        self.shipper.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture(scope="module")
def reference(metrics_state, tmp_path_factory) -> list[list[str]]:
    """The span ids of each request of a clean delivery, in order."""
    with Receiver() as r:
        run = Run(_state(metrics_state, tmp_path_factory.mktemp("ref")), r.url).deliver()
        run.close()
        spans = r.spans()
    assert run.failed_passes == 0 and r.got.refused == 0
    out, i = [], 0
    for n in r.got.sizes:
        out.append([s.span_id for s in spans[i : i + n]])
        i += n
    assert len(out) >= 10 and sum(map(len, out)) == len({s.span_id for s in spans}) > 100
    return out


def _at(reference: list, point: str) -> int:
    """The 1-based index of the request a fault starts at."""
    return {"first": 1, "middle": len(reference) // 2, "last": len(reference)}[point]


def _check(r, run: Run, want: set[str], dropped: int = 0) -> None:
    got = Counter(s.span_id for s in r.spans())
    assert [i for i, n in got.items() if n > 1] == [], "nothing twice"
    assert set(got) == want, (len(set(got) - want), len(want - set(got)))
    st = run.shipper.stats
    assert (st.spans_exported, st.dropped) == (len(want), dropped), "honest counters"
    assert run.shipper.state.meta("spans_exported") == str(len(want)), "persisted with the cursors"
    assert run.shipper.state.meta("spans_dropped") == str(dropped)


def _hold_case(r, run: Run, reference, at: int, status: str, logs: list) -> None:
    """A refusal of 3 requests from `at` on: the same spans as a clean run, none dropped."""
    run.deliver()
    _check(r, run, {i for req in reference for i in req})
    assert r.got.refused == 3 and run.failed_passes == 3
    assert run.health.errors == 3 and run.health.state == "ok"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, warnings
    assert status in warnings[0]["error"] and warnings[0]["endpoint"] == run.sink.target.where
    assert not any("dropped" in e["event"] for e in logs)
    assert r.got.requests == len(reference) + 3, "each refused request resent once, no more"


# --- HTTP -------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("status", HTTP_HOLD)
def test_http_refusal_holds_every_span(metrics_state, reference, tmp_path, status, point):
    at = _at(reference, point)
    answer = lambda n, spans: Answer(status) if at <= n < at + 3 else None  # noqa: E731
    with (
        Receiver(answer=answer) as r,
        capture_logs() as logs,
        Run(_state(metrics_state, tmp_path), r.url) as run,
    ):
        _hold_case(r, run, reference, at, f"HTTP {status}", logs)


@pytest.mark.parametrize("point", POINTS)
def test_http_400_drops_only_the_span_refused_alone(metrics_state, reference, tmp_path, point):
    poison = reference[_at(reference, point) - 1][0]
    answer = lambda n, spans: Answer(400) if any(s.span_id == poison for s in spans) else None  # noqa: E731
    with (
        Receiver(answer=answer) as r,
        capture_logs() as logs,
        Run(_state(metrics_state, tmp_path), r.url) as run,
    ):
        run.deliver()
        _check(r, run, {i for req in reference for i in req} - {poison}, dropped=1)
    assert run.failed_passes == 0 and run.health.errors == 0
    drops = [e for e in logs if "dropped" in e["event"]]
    assert len(drops) == 1 and drops[0]["span_id"] == poison and "HTTP 400" in drops[0]["error"]


@pytest.mark.parametrize("point", ["first", "middle"])
def test_http_400_to_everything_drops_nothing(metrics_state, reference, tmp_path, point):
    """A collector that says 400 to every request for a while, an empty one included (a
    proxy, a wrong port), is not a bad span: nothing is dropped, and everything arrives
    once it accepts. Also when it had accepted requests earlier in the same pass."""
    at = _at(reference, point)

    def answer(n, spans):
        return Answer(400) if at <= n < at + 12 else None

    with (
        Receiver(answer=answer) as r,
        capture_logs() as logs,
        Run(_state(metrics_state, tmp_path), r.url) as run,
    ):
        run.deliver()
        _check(r, run, {i for req in reference for i in req})
    assert run.failed_passes >= 2 and r.got.sizes[at + 3] == 0, "an empty request was asked first"
    assert not any("dropped" in e["event"] for e in logs)
    assert (
        "refuses even an empty request"
        in next(e for e in logs if e["log_level"] == "warning")["error"]
    )


@pytest.mark.parametrize("point", POINTS)
def test_http_413_sends_less_at_once(metrics_state, reference, tmp_path, point):
    at = _at(reference, point)
    answer = lambda n, spans: Answer(413) if n >= at and len(spans) > 1 else None  # noqa: E731
    with Receiver(answer=answer) as r, Run(_state(metrics_state, tmp_path), r.url) as run:
        run.deliver()
        _check(r, run, {i for req in reference for i in req})
    assert run.failed_passes == 0 and r.got.refused > 0, "the limit was hit, and split around"


def test_http_413_for_a_single_span_holds_it(metrics_state, reference, tmp_path):
    """A collector whose limit is below one span: kept and retried, never dropped."""
    answer = lambda n, spans: Answer(413) if 3 <= n < 10 else None  # noqa: E731
    with (
        Receiver(answer=answer) as r,
        capture_logs() as logs,
        Run(_state(metrics_state, tmp_path), r.url) as run,
    ):
        run.deliver()
        _check(r, run, {i for req in reference for i in req})
    assert run.failed_passes >= 1 and not any("dropped" in e["event"] for e in logs)
    assert (
        "single span is too large" in next(e for e in logs if e["log_level"] == "warning")["error"]
    )


@pytest.mark.parametrize("point", POINTS)
def test_http_partial_success_counts_the_rejected_as_dropped(
    metrics_state, reference, tmp_path, point
):
    at = _at(reference, point)
    answer = lambda n, spans: Answer(rejected=2, message="2 spans: bad") if n == at else None  # noqa: E731
    with Receiver(answer=answer) as r, Run(_state(metrics_state, tmp_path), r.url) as run:
        run.deliver()
        lost = set(reference[at - 1][-2:])  # the receiver keeps all but the last two
        _check(r, run, {i for req in reference for i in req} - lost, dropped=2)
    assert r.got.rejected == 2 and run.failed_passes == 0 and r.got.requests == len(reference)


def test_retry_after_is_honoured(metrics_state, tmp_path):
    with (
        Receiver(answer=lambda n, s: Answer(429, headers={"Retry-After": "7"})) as r,
        Run(_state(metrics_state, tmp_path), r.url) as run,
    ):
        assert not run.shipper.run_pass()
        run.health.failed(run.shipper.failure)
    assert 6 < run.health.wait_time() <= 7 and run.health.state == "failing"


# --- gRPC --------------------------------------------------------------------------


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("code", GRPC_HOLD)
def test_grpc_refusal_holds_every_span(metrics_state, reference, tmp_path, code, point):
    at = _at(reference, point)
    answer = lambda n, spans: Answer(grpc=code) if at <= n < at + 3 else None  # noqa: E731
    with (
        GrpcReceiver(answer=answer) as r,
        capture_logs() as logs,
        Run(_state(metrics_state, tmp_path), r.url, "grpc") as run,
    ):
        _hold_case(r, run, reference, at, f"gRPC {code}", logs)


@pytest.mark.parametrize("point", POINTS)
def test_grpc_invalid_argument_drops_only_the_span_refused_alone(
    metrics_state, reference, tmp_path, point
):
    poison = reference[_at(reference, point) - 1][-1]

    def answer(n, spans):
        return Answer(grpc="INVALID_ARGUMENT") if any(s.span_id == poison for s in spans) else None

    with (
        GrpcReceiver(answer=answer) as r,
        Run(_state(metrics_state, tmp_path), r.url, "grpc") as run,
    ):
        run.deliver()
        _check(r, run, {i for req in reference for i in req} - {poison}, dropped=1)


@pytest.mark.parametrize("point", POINTS)
def test_grpc_resource_exhausted_sends_less_at_once(metrics_state, reference, tmp_path, point):
    at = _at(reference, point)

    def answer(n, spans):
        return Answer(grpc="RESOURCE_EXHAUSTED") if n >= at and len(spans) > 1 else None

    with (
        GrpcReceiver(answer=answer) as r,
        Run(_state(metrics_state, tmp_path), r.url, "grpc") as run,
    ):
        run.deliver()
        _check(r, run, {i for req in reference for i in req})
    assert run.failed_passes == 0 and r.got.refused > 0


@pytest.mark.parametrize("point", POINTS)
def test_grpc_partial_success_counts_the_rejected_as_dropped(
    metrics_state, reference, tmp_path, point
):
    at = _at(reference, point)
    answer = lambda n, spans: Answer(rejected=1, message="bad span") if n == at else None  # noqa: E731
    with (
        GrpcReceiver(answer=answer) as r,
        Run(_state(metrics_state, tmp_path), r.url, "grpc") as run,
    ):
        run.deliver()
        lost = set(reference[at - 1][-1:])
        _check(r, run, {i for req in reference for i in req} - lost, dropped=1)


# --- the state, and stopping -------------------------------------------------------


@pytest.mark.parametrize("every", [1, 2, 3])
def test_a_failed_commit_after_delivery_sends_nothing_twice(
    metrics_state, reference, tmp_path, every
):
    """The collector accepted a batch, then its commit failed (every Nth commit): the pass
    rolls back, and the spans already delivered are not sent again, yet counted once."""
    with Receiver() as r:
        run = Run(_state(metrics_state, tmp_path), r.url)
        calls = {"n": 0}
        real = run.shipper.state.set_meta

        def flaky(key, value):
            if key == "spans_exported":
                calls["n"] += 1
                if calls["n"] % (every + 1) == 1:
                    raise sqlite3.OperationalError("disk I/O error")
            real(key, value)

        run.shipper.state.set_meta = flaky
        try:
            run.deliver(max_passes=200)
            _check(r, run, {i for req in reference for i in req})
        finally:
            run.close()
    assert run.failed_passes >= len(reference) // (every + 1)
    assert r.got.requests == len(reference), "no request sent twice"
    assert run.health.state == "ok" and "state" in run.shipper.stats.last_error


def test_stopping_mid_request_loses_nothing(metrics_state, reference, tmp_path):
    """Stop while a request is in flight: the thread ends the pass without another request;
    the next start delivers the rest; every span arrives, and the counters add up."""
    delay = {"s": 1.5}

    def answer(n, spans):
        time.sleep(delay["s"])

    state = _state(metrics_state, tmp_path)
    with Receiver(answer=answer) as r:
        run = Run(state, r.url)
        th = TraceThread(run.shipper, run.health, tick=0.05)
        th.start()
        r.wait(lambda: r.got.requests >= 2, timeout=30)
        assert th.stop(timeout=0.1) is False, "still in its request"
        th.thread.join(30)
        assert not th.thread.is_alive()
        sent_before = r.got.requests
        assert sent_before < len(reference), "stopped before the end"
        exported = run.shipper.stats.spans_exported
        run.close()
        assert run.health.state == "ok"
        delay["s"] = 0
        again = Run(state, r.url)
        try:
            assert again.shipper.stats.spans_exported == exported, "counted once, persisted"
            again.deliver()
            _check(r, again, {i for req in reference for i in req})
        finally:
            again.close()


# --- ccotel backfill --traces: never "N spans exported" for spans the collector refused ---


def _backfill(state: Path, url: str, *extra: str, **env: str):
    import subprocess
    import sys

    from tests.test_traces_wire import clean_env

    return subprocess.run(
        [sys.executable, "-m", "ccotel", "backfill", "--traces", "--since", "3650d", "--claude-dir", str(SRC),
         "--state-dir", str(state), "--otlp-endpoint", url, *extra],
        capture_output=True, text=True, timeout=300,
        env=clean_env(CCOTEL_TRACE_BATCH_SPANS=str(BATCH), CCOTEL_OTLP_RETRY_MAX="0.05", CCOTEL_SESSION_IDLE="0", **env),
    )  # fmt: skip


def _exported(stderr: str) -> tuple[int, int]:
    import re

    m = re.search(
        r"traces: (\d+) spans exported in \d+ batches in [\d.]+ s(?:, (\d+) refused)?", stderr
    )
    assert m, stderr[-2000:]
    return int(m.group(1)), int(m.group(2) or 0)


@pytest.mark.parametrize("start", [1, 6])
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_backfill_with_refused_credentials_then_accepted(
    metrics_state, reference, tmp_path, protocol, start
):
    """The collector refuses the credentials from request `start` on: the command fails
    naming the status and the endpoint, says how many spans were delivered (exactly those
    the collector holds), never prints "spans exported"; once the credentials work, running
    it again delivers the rest, each span once."""
    status = "UNAUTHENTICATED" if protocol == "grpc" else 401
    refuse = {"on": True}

    def answer(n, s):
        return (
            (Answer(grpc=status) if protocol == "grpc" else Answer(401))
            if refuse["on"] and n >= start
            else None
        )

    state = _state(metrics_state, tmp_path)
    recv = GrpcReceiver(answer=answer) if protocol == "grpc" else Receiver(answer=answer)
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    with recv as r:
        p = _backfill(state, r.url, **env)
        assert p.returncode == 1, p.stderr[-2000:]
        assert "spans exported" not in p.stderr
        held = len(r.spans())
        assert held == sum(len(x) for x in reference[: start - 1])
        last = p.stderr.strip().splitlines()[-1]
        assert (
            f"{'gRPC ' + status if protocol == 'grpc' else 'HTTP 401'}" in last
            and r.url.split("//")[1] in last
        )
        assert f"{held} spans were delivered before; run again to continue" in last
        assert "credentials" in last
        assert r.got.refused == 2, "refused credentials: given up after two tries"
        refuse["on"] = False
        p = _backfill(state, r.url, **env)
        assert p.returncode == 0, p.stderr[-2000:]
        n, dropped = _exported(p.stderr)
        spans = r.spans()
    assert (n, dropped) == (len(spans) - held, 0)
    ids = Counter(s.span_id for s in spans)
    assert set(ids) == {i for req in reference for i in req} and max(ids.values()) == 1


@pytest.mark.parametrize("case", ["400", "partial"])
def test_backfill_reports_what_the_collector_dropped(metrics_state, reference, tmp_path, case):
    poison = reference[3][0]
    if case == "400":
        answer = lambda n, s: Answer(400) if any(x.span_id == poison for x in s) else None  # noqa: E731
    else:
        answer = lambda n, s: Answer(rejected=3, message="3 bad") if n == 4 else None  # noqa: E731
    with Receiver(answer=answer) as r:
        p = _backfill(_state(metrics_state, tmp_path), r.url)
        spans = r.spans()
    assert p.returncode == 0, p.stderr[-2000:]
    n, dropped = _exported(p.stderr)
    total = sum(map(len, reference))
    assert (n, dropped) == (len(spans), total - len(spans)) == (n, 1 if case == "400" else 3)
    assert len({s.span_id for s in spans}) == len(spans)


# --- the live daemon ------------------------------------------------------------------


def _metric(body: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name == name and s.labels.get("signal", "traces") == "traces"
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_daemon_refused_then_accepted_then_malformed_live(tmp_path, protocol):
    """``ccotel run`` against a collector that first refuses the credentials (while new
    sessions are written), then accepts, then refuses one live span as malformed and
    rejects another in a partial success. Every other span arrives exactly once;
    /healthz and /metrics say what happened, and the log warns once per cause."""
    import json
    import signal
    import urllib.request

    from tests.corpus import Usage, append_assistant, generate, write_session
    from tests.test_live import start, wait_equal
    from tests.test_traces_wire import _health, _reference, clean_env

    grpc = protocol == "grpc"
    config = tmp_path / "claude"
    generate(config, files=6, seed=43)
    mode = {"refuse": True, "poison": None, "partial": False}
    refusals = {"auth": 0}

    def answer(n, spans):
        if mode["refuse"]:
            refusals["auth"] += 1
            return Answer(grpc="UNAUTHENTICATED") if grpc else Answer(401)
        if mode["poison"] and any(
            s.attrs.get("gen_ai.response.id") == mode["poison"] for s in spans
        ):
            return Answer(grpc="INVALID_ARGUMENT") if grpc else Answer(400)
        if mode["partial"] and spans:
            mode["partial"] = False
            return Answer(rejected=1, message="one span refused")

    recv = GrpcReceiver(answer=answer) if grpc else Receiver(answer=answer)
    env = clean_env(CCOTEL_OTLP_RETRY_MAX="0.3", CCOTEL_METRICS_PUSH_INTERVAL="0", CCOTEL_SESSION_IDLE="0",
                    CCOTEL_TRACE_LOOKBACK=str(10 * 365 * 86400), OTEL_EXPORTER_OTLP_PROTOCOL=protocol)  # fmt: skip
    with recv as r:
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
            wait_equal(port, config, timeout=60)  # the metrics do not wait for the collector
            r.wait(lambda: refusals["auth"] >= 3, timeout=60)
            h = _health(port)["traces"]
            status = "gRPC UNAUTHENTICATED" if grpc else "HTTP 401"
            assert (h["state"], h["configured"], h["spans_exported"]) == ("failing", True, 0), h
            assert status in h["error"] and h["endpoint"] in h["error"] and r.spans() == []
            # live, while refused: a new session and a new response in an old one
            old, _ = write_session(config, session_id="11111111-2222-4333-8444-555555555555")
            big = max(
                (f for f in config.rglob("*.jsonl") if "agent-" not in f.name),
                key=lambda f: f.stat().st_size,
            )
            append_assistant(big, Usage(input=3, output=4))
            time.sleep(1.5)
            assert r.spans() == [] and _health(port)["traces"]["state"] == "failing"
            mode["refuse"] = False
            ref = _reference(config, tmp_path / "ref")
            r.wait(lambda: {s.span_id for s in r.spans()} >= set(ref), timeout=120)
            r.wait(lambda: _health(port)["traces"]["state"] == "ok", timeout=30)  # answer read
            h = _health(port)["traces"]
            assert (h["state"], h["error"], h["spans_dropped"]) == ("ok", None, 0), h
            # live: one span refused alone as malformed, one rejected in a partial success
            mode["poison"] = "msg_01PoisonPoisonPoison0001"  # named before it is written
            append_assistant(old, Usage(input=5, output=6), message_id=mode["poison"])
            r.wait(lambda: _health(port)["traces"]["spans_dropped"] == 1, timeout=60)
            mode["partial"] = True
            append_assistant(old, Usage(input=7, output=8))
            r.wait(lambda: _health(port)["traces"]["spans_dropped"] == 2, timeout=60)
            ok = append_assistant(old, Usage(input=9, output=1))["message"]["id"]
            r.wait(
                lambda: any(s.attrs.get("gen_ai.response.id") == ok for s in r.spans()), timeout=60
            )
            time.sleep(1)
            spans = r.spans()
            h = _health(port)["traces"]
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0].decode()
    ids = Counter(s.span_id for s in spans)
    assert max(ids.values()) == 1, "nothing twice"
    assert set(ref) <= set(ids) and len(ids) == len(ref) + 1, (
        "all but the dropped two, and the last"
    )
    assert (h["spans_exported"], h["spans_dropped"], h["state"]) == (len(ids), 2, "ok"), h
    assert _metric(body, "ccotel_spans_exported_total") == len(ids)
    assert _metric(body, "ccotel_spans_dropped_total") == 2
    assert _metric(body, "ccotel_export_errors_total") == refusals["auth"], (
        "refusals counted, drops not"
    )
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    warnings = [e for e in logs if e["level"] in ("warning", "error")]
    assert [e["event"] for e in warnings] == [
        "cannot export traces (metrics keep counting; spans wait in the transcripts); retrying with backoff",
        "the collector refused spans; dropped them",
        "the collector refused spans; dropped them",
    ], warnings
    assert status in warnings[0]["error"] and "credentials" in warnings[0]["hint"]
    assert sum("traces export works again" in e["event"] for e in logs) == 1


# --- no collector configured: not an alarm ----------------------------------------------


def test_zero_configuration_waits_quietly_then_finds_a_collector(tmp_path, monkeypatch):
    """No endpoint named, nothing at the default one: "waiting" (spans wait in the
    transcripts), no warning, no error counted. When a collector appears there, the spans
    go out; once one has answered, its failures are failures."""
    from ccotel.otlp import settings
    from ccotel.traces.service import Exporters
    from tests.conftest import free_port
    from tests.corpus import Usage, append_assistant

    for k in list(__import__("os").environ):
        if k.startswith("OTEL_"):
            monkeypatch.delenv(k)
    port = free_port()
    monkeypatch.setattr(settings, "DEFAULT_ENDPOINT", f"http://127.0.0.1:{port}")
    src = tmp_path / "claude"
    shutil.copytree(FIXTURES / "claude-2.1.197", src)
    cfg = cfg_for(src, tmp_path / "state", otlp_retry_max=0.05)
    app.backfill(cfg)
    with capture_logs() as logs:
        ex = Exporters(cfg, cfg.resolved_state_dir() / "state.db", clock=lambda: T0 + 10 * 86400)
        ex.traces.shipper.since = 0
        h = ex.health()
        assert {k: h["traces"][k] for k in ("enabled", "configured", "state", "error")} == {
            "enabled": True, "configured": False, "state": "waiting", "error": None,
        }  # fmt: skip
        assert h["traces"]["endpoint"] == f"http://127.0.0.1:{port}/v1/traces"
        assert {k: h["metrics_push"][k] for k in ("enabled", "configured", "state", "error")} == {
            "enabled": False, "configured": False, "state": "off", "error": None,
        }  # fmt: skip
        for _ in range(3):
            ex.traces._once()
        h = ex.health()["traces"]
        assert (h["state"], h["error"], h["spans_exported"]) == ("waiting", None, 0)
        assert _errors(ex) == 0
        assert [e["log_level"] for e in logs] == ["info"] and "no OTLP collector" in logs[0][
            "event"
        ]
        with Receiver(port=port) as r:
            ex.traces._once()
            assert len(r.spans()) == 25 and ex.health()["traces"]["state"] == "ok"
        assert "OTLP collector found" in logs[-1]["event"]
        # it answered once: from now on, its absence is a failure
        append_assistant(next(src.rglob("*.jsonl")), Usage(input=1, output=1))
        app.backfill(cfg)
        time.sleep(0.06)
        ex.traces._once()
        h = ex.health()["traces"]
        assert h["state"] == "failing" and "connection refused" in h["error"] and _errors(ex) == 1
        assert [e["log_level"] for e in logs].count("warning") == 1
        ex.stop()


def _errors(ex) -> float:
    fam = next(f for f in ex.metrics() if f.name == "ccotel_export_errors")
    return next(s.value for s in fam.samples if s.labels["signal"] == "traces")


def test_settings_that_cannot_work_are_a_failure_not_off(tmp_path, monkeypatch):
    from ccotel.traces.service import Exporters

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    cfg = cfg_for(SRC, tmp_path / "state")
    with capture_logs() as logs:
        h = Exporters(cfg, tmp_path / "state" / "state.db").health()["traces"]
    assert (h["enabled"], h["state"]) == (True, "failing") and "http/json" in h["error"]
    assert logs[0]["log_level"] == "error" and "OTEL_EXPORTER_OTLP_PROTOCOL" in logs[0]["error"]


# --- the OTLP metrics push -----------------------------------------------------------


def test_metrics_push_says_what_happened(tmp_path):
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from ccotel.config import load
    from ccotel.traces.service import MetricsPusher

    class C:
        def collect(self):
            c = CounterMetricFamily("ccotel_tokens", "Tokens", labels=["type"])
            c.add_metric(["input"], 10)
            yield c
            yield GaugeMetricFamily("ccotel_spend_usd", "Spend", value=1.5)
            yield GaugeMetricFamily("ccotel_budget_usd", "Budget", value=9)

    reg = CollectorRegistry()
    reg.register(C())
    script = {"mode": "401"}

    def answer(n, req):
        metrics = req.resource_metrics[0].scope_metrics[0].metrics
        if script["mode"] == "401":
            return Answer(401, message="token tok-5ecret expired")
        if script["mode"] == "partial":
            return Answer(rejected=4, message="4 points: bad")
        if script["mode"] == "413" and len(metrics) > 1:
            return Answer(413)

    with Receiver(answer_metrics=answer) as r, capture_logs() as logs:
        cfg = load(
            env={},
            flags={
                "otlp_endpoint": r.url,
                "otlp_headers": "authorization=Bearer%20tok-5ecret",
                "otlp_retry_max": 0.05,
            },
        )
        p = MetricsPusher(cfg, lambda: list(reg.collect()), 15)
        assert not p.push() and not p.push()
        h = p.health.as_dict()
        assert (h["state"], p.health.errors, p.pushed) == ("failing", 2, 0)
        assert (
            h["error"] == f"HTTP 401 Unauthorized from {r.url}/v1/metrics: token [REDACTED] expired"
        )
        script["mode"] = "ok"
        assert p.push() and p.health.state == "ok" and p.pushed == 1
        script["mode"] = "partial"
        assert p.push() and p.push()
        assert (p.rejected_points, p.health.state) == (8, "ok")
        script["mode"] = "413"
        n = len(r.got.metrics)
        assert p.push(), "split until each request holds one metric"
        got = [
            m.name
            for req in r.got.metrics[n:]
            for m in req.resource_metrics[0].scope_metrics[0].metrics
        ]
        assert sorted(got) == ["ccotel_budget_usd", "ccotel_spend_usd", "ccotel_tokens"]
        p.sender.shutdown()
    assert [(e["log_level"], e["event"]) for e in logs if e["log_level"] != "debug"] == [
        (
            "warning",
            "cannot export metrics over OTLP (/metrics still serves them); retrying with backoff",
        ),
        ("info", "metrics export works again"),
        ("warning", "the collector refused some pushed data points"),
    ]
    assert "tok-5ecret" not in repr(logs)


def test_a_collector_that_echoes_the_token_does_not_put_it_in_the_log(tmp_path):
    from tests.conftest import FIXTURES

    secret = "s3cr3t-t0ken-value"
    with Receiver(answer=lambda n, s: Answer(403, message=f"invalid key {secret} for tenant")) as r:
        cfg = cfg_for(FIXTURES / "claude-2.1.197", tmp_path / "s", otlp_endpoint=r.url,
                      otlp_headers=f"x-api-key={secret}")  # fmt: skip
        sink = span_sink(cfg)
        from ccotel.traces.model import Span

        with pytest.raises(Exception) as e:
            sink.export([Span(1, 2, 0, "x", 0, 1, 2, {})])
        sink.shutdown()
    assert "HTTP 403" in str(e.value) and "invalid key [REDACTED] for tenant" in str(e.value)
    assert secret not in str(e.value)


def test_spans_waiting_for_weeks_are_still_due_when_a_collector_appears(tmp_path, monkeypatch):
    """A daemon that never reached a collector keeps the files it was due to trace: a
    restart weeks later (past trace_lookback) must not leave them to backfill."""
    import os

    from ccotel.otlp import settings
    from ccotel.traces.service import Exporters
    from tests.conftest import free_port

    port = free_port()
    monkeypatch.setattr(settings, "DEFAULT_ENDPOINT", f"http://127.0.0.1:{port}")
    src = tmp_path / "claude"
    shutil.copytree(FIXTURES / "claude-2.1.197", src)
    for f in src.rglob("*.jsonl"):
        os.utime(f, (T0, T0))
    cfg = cfg_for(src, tmp_path / "state", otlp_retry_max=0.05, trace_lookback=86400)
    app.backfill(cfg)
    db = cfg.resolved_state_dir() / "state.db"
    first = Exporters(cfg, db, clock=lambda: T0 + 3600)  # started an hour after the writes
    first.traces._once()
    assert first.health()["traces"]["state"] == "waiting"
    first.stop()
    later = Exporters(cfg, db, clock=lambda: T0 + 21 * 86400)  # three weeks later
    assert later.traces.shipper.since <= T0
    with Receiver(port=port) as r:
        later.traces._once()
        assert len(r.spans()) == 25
    later.stop()


def test_a_success_whose_body_is_not_protobuf_is_a_plain_success(tmp_path):
    """A proxy in front of the collector answering 200 with a body of its own (not
    application/x-protobuf): the spans were taken; that body is not read as a partial
    success, even when its bytes would parse as one."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from ccotel.traces.model import Span

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"\n\x02\x08\x05"  # parses as partial_success{rejected_spans: 5}
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = cfg_for(SRC, tmp_path, otlp_endpoint=f"http://127.0.0.1:{srv.server_address[1]}")
        sink = span_sink(cfg)
        assert sink.export([Span(1, 2, 0, "x", 0, 1, 2, {})]).rejected == 0
        sink.shutdown()
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("how", ["400 to each span", "partial success rejecting all"])
def test_a_collector_that_refuses_every_span_stops_the_drops(
    metrics_state, reference, tmp_path, how
):
    """One that accepts an empty request but refuses every span (alone with 400, or all of
    them in partial successes): at most 64 spans are dropped, then everything is held and
    the exporter is failing, naming why; once it accepts, the rest arrives."""
    mode = {"bad": True}

    def answer(n, spans):
        if not mode["bad"] or not spans:
            return None
        return (
            Answer(400)
            if how.startswith("400")
            else Answer(rejected=len(spans), message="tenant disabled")
        )

    with Receiver(answer=answer) as r, Run(_state(metrics_state, tmp_path), r.url) as run:
        assert not run.shipper.run_pass() and run.shipper.failure.kind == "refused"
        run.health.failed(run.shipper.failure)
        dropped = run.shipper._drop_streak
        assert dropped <= 64 and run.health.state == "failing"
        assert "none is dropped" in run.health.error or "no more are dropped" in run.health.error
        mode["bad"] = False
        run.deliver()
        want = {i for req in reference for i in req}
        got = {s.span_id for s in r.spans()}
        assert got <= want and len(got) == len(want) - run.shipper.stats.dropped
        assert run.shipper.stats.spans_exported == len(got) and run.shipper.stats.dropped <= 64
