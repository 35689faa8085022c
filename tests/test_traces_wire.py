"""End to end over the wire: transcripts written by the real Claude Code CLI, ccotel's
real OTLP exporter (as a user runs it), a receiver decoding ExportTraceServiceRequest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ccotel import app
from ccotel.config import load
from ccotel.traces.service import backfill_traces
from tests.conftest import assert_equal_totals, free_port
from tests.oracle import ccusage_totals
from tests.realcli import (
    Scenario,
    Step,
    ToolCall,
    append_sessions,
    clone_home,
    load_home,
    run_claude,
)
from tests.sdk_sink import SdkSpanSink
from tests.test_live import start
from tests.test_traces_receiver import GrpcReceiver, Receiver, RSpan

CONTENT_MARKERS = (
    "ccotel-bash-ok",
    "ccotel-one",
    "ccotel-from-subagent",
    "echo ",
    "Run the ccotel harness",
    "[[ccotel:",
)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env.update(extra)
    return env


def settle(config_dir: Path) -> None:
    """Wait until the newest transcript is a few seconds old: a finished -p run closes
    after a short grace (a run still writing must not look finished)."""
    from ccotel.traces.builder import FINISH_GRACE

    newest = max(f.stat().st_mtime for f in config_dir.rglob("*.jsonl"))
    time.sleep(max(0.0, newest + FINISH_GRACE + 1 - time.time()))


def ccotel(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "ccotel", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
    )
    assert p.returncode == 0, (
        f"ccotel {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    )
    return p


def transcript_tool_uses(config_dir: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in (config_dir / "projects").rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            c = (d.get("message") or {}).get("content")
            if d.get("type") == "assistant" and isinstance(c, list):
                for b in c:
                    if b.get("type") == "tool_use":
                        out.setdefault(d["sessionId"], set()).add(b["id"])
    return out


def chat_totals(spans: list[RSpan]) -> dict:
    chats = [s for s in spans if s.name.startswith("chat ")]
    a = lambda k: sum(s.attrs[k] for s in chats)  # noqa: E731
    return {
        "inputTokens": a("ccotel.usage.uncached_input_tokens"),
        "outputTokens": a("gen_ai.usage.output_tokens"),
        "cacheCreationTokens": a("gen_ai.usage.cache_creation.input_tokens"),
        "cacheReadTokens": a("gen_ai.usage.cache_read.input_tokens"),
        "totalCost": a("gen_ai.usage.cost.amount"),
    }


def assert_tree(spans: list[RSpan], config_dir: Path, session_ids: list[str]) -> None:
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "one span per span id"
    assert {s.trace_id for s in spans} == {uuid.UUID(sid).hex for sid in session_ids}, (
        "one trace per session, id = session id"
    )
    for sid in session_ids:
        tr = [s for s in spans if s.trace_id == uuid.UUID(sid).hex]
        roots = [s for s in tr if not s.parent_id]
        assert [r.name for r in roots] == ["invoke_agent claude-code"]
        assert roots[0].attrs["gen_ai.conversation.id"] == sid
        assert all(s.parent_id in by_id for s in tr if s.parent_id), "every parent arrived"
    want = transcript_tool_uses(config_dir)
    got: dict[str, set[str]] = {}
    for s in spans:
        if s.name.startswith("execute_tool "):
            got.setdefault(str(uuid.UUID(s.trace_id)), set()).add(s.attrs["gen_ai.tool.call.id"])
    assert got == want, "one tool span per tool_use"
    assert Counter(s.name.startswith("execute_tool ") for s in spans)[True] == sum(
        len(v) for v in want.values()
    )
    assert_equal_totals(chat_totals(spans), ccusage_totals(config_dir))


def subagent_chain(spans: list[RSpan]) -> list[tuple]:
    """(agent tool span, invoke_agent span, names of its children) for each subagent."""
    by_id = {s.span_id: s for s in spans}
    out = []
    for s in spans:
        if s.name.startswith("invoke_agent ") and s.parent_id:
            p = by_id[s.parent_id]
            kids = sorted(k.name for k in spans if k.parent_id == s.span_id)
            out.append((p, s, kids))
    return out


@pytest.mark.timeout(600)
def test_backfill_traces_of_real_cli_sessions(real_claude_home, tmp_path):
    home = real_claude_home
    settle(home.config_dir)
    with Receiver() as r:
        p = ccotel("backfill", "--traces", "--since", "1d", "--claude-dir", str(home.config_dir),
                   "--state-dir", str(tmp_path / "state"), "--otlp-endpoint", r.url)  # fmt: skip
        assert "traces: " in p.stderr and " spans exported" in p.stderr
        spans = r.spans()
        raw = b"".join(r.got.raw)
    assert_tree(spans, home.config_dir, home.session_ids)
    # subagents: under the Agent tool span, their Bash under them
    chains = subagent_chain(spans)
    assert len(chains) == sum(1 for run in home.runs if run.scenario.startswith("agent"))
    for tool, agent, kids in chains:
        assert tool.name == "execute_tool Agent"
        assert agent.name == "invoke_agent general-purpose" and agent.attrs["gen_ai.agent.id"]
        assert agent.attrs["gen_ai.tool.call.id"] == tool.attrs["gen_ai.tool.call.id"]
        assert "execute_tool Bash" in kids and any(k.startswith("chat ") for k in kids)
    # the failing tools: the error scenario's, and the git scenario's refused commit
    err, git = home.run("error"), home.run("git")
    errs = sorted((s.name, s.trace_id, s.attrs["error.type"]) for s in spans if s.status == 2)
    assert errs == sorted(
        ("execute_tool Bash", uuid.UUID(r.session_id).hex, "tool_error") for r in (err, git)
    )
    # two tools in one response: siblings under the same turn
    par = [
        s
        for s in spans
        if s.trace_id == uuid.UUID(home.run("parallel").session_id).hex
        and s.name == "execute_tool Bash"
    ]
    assert len(par) == 2 and par[0].parent_id == par[1].parent_id
    # models
    models = {s.attrs["gen_ai.request.model"] for s in spans if s.name.startswith("chat ")}
    assert {run.model for run in home.runs} <= models
    # nothing of the sessions' content left the machine
    for m in CONTENT_MARKERS:
        assert m.encode() not in raw, m
    res = spans[0].resource
    assert res["service.name"] == "ccotel" and res["host.name"] and res["user.name"]


SECRET_KEY = "sk-ant-api03-" + "Q" * 20 + "w" * 20 + "-9" * 10
SECRET_GH = "ghp_" + "a1B2c3D4" * 5


@pytest.mark.timeout(600)
def test_captured_content_is_masked(tmp_path, real_claude_home):
    home = clone_home(real_claude_home, tmp_path / "home")
    sc = Scenario(
        name="secret",
        model="claude-sonnet-4-5-20250929",
        steps=(
            Step(
                text="Deploying.",
                tools=(
                    ToolCall(
                        "Bash",
                        {
                            "command": f"echo deploy-{SECRET_KEY} && echo {SECRET_GH}",
                            "description": "deploy",
                        },
                    ),
                ),
            ),
            Step(text="Deployed."),
        ),
    )
    run = run_claude(home.home, prompt=f"deploy using my key {SECRET_KEY} now", scenario=sc)
    settle(home.config_dir)
    got = {}
    for mode, env in (
        ("capture", {"CCOTEL_CAPTURE_CONTENT": "true"}),
        ("details", {"CCOTEL_TOOL_DETAILS": "true"}),
    ):
        with Receiver() as r:
            ccotel("backfill", "--traces", "--claude-dir", str(home.config_dir), "--state-dir", str(tmp_path / mode),
                   "--otlp-endpoint", r.url, env=clean_env(**env))  # fmt: skip
            raw = b"".join(r.got.raw)
            got[mode] = [s for s in r.spans() if s.trace_id == uuid.UUID(run.session_id).hex]
        assert SECRET_KEY.encode() not in raw and SECRET_GH.encode() not in raw
        assert SECRET_KEY[:24].encode() not in raw
    spans = got["capture"]
    bash = next(s for s in spans if s.name == "execute_tool Bash")
    assert bash.attrs["ccotel.tool.command"] == "echo deploy-[REDACTED] && echo [REDACTED]"
    assert "[REDACTED]" in bash.attrs["gen_ai.tool.call.result"]
    assert json.loads(bash.attrs["gen_ai.tool.call.arguments"])["description"] == "deploy"
    turn = next(s for s in spans if s.name == "turn 1")
    assert "deploy using my key [REDACTED] now" in turn.attrs["gen_ai.input.messages"]
    details = got["details"]
    bash = next(s for s in details if s.name == "execute_tool Bash")
    assert bash.attrs["ccotel.tool.command"] == "echo deploy-[REDACTED] && echo [REDACTED]"
    keys = {k for s in details for k in s.attrs}
    assert not keys & {
        "gen_ai.tool.call.result",
        "gen_ai.tool.call.arguments",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
    }


@pytest.mark.timeout(600)
def test_grpc(real_claude_home, tmp_path):
    settle(real_claude_home.config_dir)
    with GrpcReceiver() as r:
        ccotel("backfill", "--traces", "--since", "2d", "--claude-dir", str(real_claude_home.config_dir), "--state-dir", str(tmp_path / "s"),
               env=clean_env(OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_ENDPOINT=r.url,
                             OTEL_EXPORTER_OTLP_HEADERS="x-team=core"))  # fmt: skip
        spans = r.spans()
        assert r.metadata and all(m.get("x-team") == "core" for m in r.metadata)
    assert_tree(spans, real_claude_home.config_dir, real_claude_home.session_ids)


def _scrape(port: int) -> dict:
    from tests.test_live import scrape

    return scrape(port)


def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.loads(r.read())


def _reference(config_dir: Path, state: Path) -> dict[str, tuple]:
    """The spans a clean run builds for the same transcripts (in memory)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    cfg = load(
        env={},
        flags={
            "claude_dirs": [str(config_dir)],
            "state_dir": str(state),
            "trace_rate": 0,
            "session_idle": 0,
        },
    )
    app.backfill(cfg)
    mem = InMemorySpanExporter()
    backfill_traces(cfg, state / "state.db", since=0, sink=SdkSpanSink(mem, {}))
    return {
        f"{s.context.span_id:016x}": (
            f"{s.parent.span_id:016x}" if s.parent else "",
            s.name,
            s.start_time,
            s.end_time,
        )
        for s in mem.get_finished_spans()
    }


@pytest.mark.timeout(900)
def test_collector_down_then_up_nothing_lost_nothing_twice(real_claude_home, tmp_path):
    home = clone_home(real_claude_home, tmp_path / "home")
    otlp_port = free_port()  # the collector comes up there later
    env = clean_env(CCOTEL_OTLP_RETRY_MAX="1", CCOTEL_METRICS_PUSH_INTERVAL="1", CCOTEL_TRACE_BATCH_SPANS="7",
                    OTEL_RESOURCE_ATTRIBUTES="team=core")  # fmt: skip
    proc = start(
        home.config_dir,
        tmp_path / "state",
        0,
        env,
        "--otlp-endpoint",
        f"http://127.0.0.1:{otlp_port}",
        "--log-format",
        "json",
        timeout=60,
    )
    metrics_port = proc.port
    try:
        # the collector is down: new real sessions are still counted
        append_sessions(home.home, ["bash", "agent", "error"])
        want = ccusage_totals(home.config_dir)
        deadline = time.monotonic() + 60
        while True:
            got = _scrape(metrics_port)
            try:
                assert_equal_totals(got, want)
                break
            except AssertionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        h = _health(metrics_port)["traces"]
        assert h["failing"] and h["spans_exported"] == 0
        # the collector comes back
        ref = _reference(home.config_dir, tmp_path / "ref")
        with Receiver(port=otlp_port) as r:
            r.wait(lambda: len(r.spans()) >= len(ref), timeout=120)
            r.wait(lambda: any(m for m in r.got.metrics), timeout=30)
            time.sleep(2.5)  # a few more passes: nothing else may arrive
            spans = r.spans()
            metrics = list(r.got.metrics)
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    ids = Counter(s.span_id for s in spans)
    assert [i for i, n in ids.items() if n > 1] == [], "nothing twice"
    got = {s.span_id: (s.parent_id, s.name, s.start, s.end) for s in spans}
    assert got == ref, "nothing lost, and the same spans as a clean run"
    assert_tree(spans, home.config_dir, load_home(home.home).session_ids)
    warnings = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and "cannot export traces" in line
    ]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning", out[-3000:]
    assert "traces export works again" in out
    # metrics pushed over OTLP: same names, cumulative, resource attributes
    last = metrics[-1].resource_metrics[0]
    res = {kv.key: kv.value.string_value for kv in last.resource.attributes}
    assert (
        res["service.name"] == "ccotel"
        and res["team"] == "core"
        and res["host.name"]
        and res["user.name"]
    )
    names = {m.name for m in last.scope_metrics[0].metrics}
    assert {
        "ccotel_tokens",
        "ccotel_cost_usd",
        "ccotel_tool_calls",
        "ccotel_spans_exported",
        "ccotel_export_errors",
    } <= names
    tokens = next(m for m in last.scope_metrics[0].metrics if m.name == "ccotel_tokens")
    assert tokens.sum.is_monotonic and tokens.sum.aggregation_temporality == 2
    assert (
        sum(
            p.as_double
            for p in tokens.sum.data_points
            if any(kv.value.string_value == "input" for kv in p.attributes)
        )
        == want["inputTokens"]
    )
    assert (
        'ccotel_export_errors_total{signal="traces"}' in body
        and "ccotel_spans_exported_total" in body
    )


def _self_signed(dirpath: Path) -> tuple[str, str]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccotel-test-collector")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    crt, k = dirpath / "collector.crt", dirpath / "collector.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(crt), str(k)


@pytest.mark.timeout(300)
def test_tls_with_a_private_ca(tmp_path):
    from tests.conftest import FIXTURES

    crt, key = _self_signed(tmp_path)
    src = FIXTURES / "claude-2.1.197"
    with Receiver(tls=(crt, key)) as r:
        # without the CA the collector is not trusted: nothing is sent, the CLI says why
        p = subprocess.run([sys.executable, "-m", "ccotel", "backfill", "--traces", "--since", "3650d", "--claude-dir", str(src),
                            "--state-dir", str(tmp_path / "s"), "--otlp-endpoint", r.url],
                           capture_output=True, text=True, env=clean_env(CCOTEL_OTLP_RETRY_MAX="0.1"), timeout=120)  # fmt: skip
        assert (
            p.returncode == 1
            and "CERTIFICATE_VERIFY_FAILED" in p.stderr
            and "run again to continue" in p.stderr
        )
        assert r.spans() == []
        ccotel("backfill", "--traces", "--since", "3650d", "--claude-dir", str(src), "--state-dir", str(tmp_path / "s"),
               "--otlp-endpoint", r.url, env=clean_env(OTEL_EXPORTER_OTLP_CERTIFICATE=crt, OTEL_EXPORTER_OTLP_COMPRESSION="gzip"))  # fmt: skip
        spans = r.spans()
    assert len({s.trace_id for s in spans}) == 4 and len(spans) == 25
