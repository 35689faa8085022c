"""Privacy (issue 5): secrets planted in transcripts (API keys, tokens, a password in a URL,
a private key, file contents, commands, prompts) never leave the machine or reach a log
unless content capture is on, and with capture on the secrets are masked.

Everything ccotel exports or writes is collected and searched: OTLP trace and metric
bodies received by a collector in the test, /metrics, /healthz, the daemon's debug log,
the backfill output, and the bytes of every file in the state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import ccotel, daemon_port
from tests.corpus import Usage, _ts, append_lines, assistant_record, encode_cwd
from tests.test_traces_receiver import Receiver

SECRETS = {
    "anthropic key": "sk-ant-api03-PrivTestQ8wV7uT6sR5qP4oN3mL2kJ1iH0gF",
    "github token": "ghp_PrivTest2c6912E7710c838347Ae178B4aXYZ",
    "aws key id": "AKIAPRIVTESTEXAMPL12",
    "url password": "PrivPassw0rdInUrl",
    "bearer token": "PrivBearerTok3nValue",
    "private key": "MIIEowIBAAKCAQEAPrivTestKeyBody0123",
    "env password": "PrivEnvPassValue99",
}
# Not secrets by shape: content that must stay home unless capture is on (then it may go).
CONTENT = {
    "prompt": "PRIVTEST-PROMPT-words",
    "command": "PRIVTEST-COMMAND-marker",
    "file contents": "PRIVTEST-FILE-CONTENT-line",
    "assistant text": "PRIVTEST-ASSISTANT-answer",
    "thinking": "PRIVTEST-THINKING-aloud",
}


def plant(config: Path) -> str:
    """One session whose prompt, tool calls, results and answers carry every secret."""
    sid = str(uuid.uuid4())
    cwd = "/home/user/privacy"
    t0 = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    s = SECRETS
    tail = {
        "userType": "external",
        "entrypoint": "cli",
        "cwd": cwd,
        "sessionId": sid,
        "version": "2.1.197",
        "gitBranch": "main",
    }
    prompt = (f"{CONTENT['prompt']} my key is {s['anthropic key']} and GITHUB_TOKEN={s['github token']}, "
              f"clone https://alice:{s['url password']}@git.example.com/r.git")  # fmt: skip
    command = (f"{CONTENT['command']}; curl -H 'Authorization: Bearer {s['bearer token']}' https://api.example.com; "
               f"AWS_ACCESS_KEY_ID={s['aws key id']} DB_PASSWORD={s['env password']} ./deploy")  # fmt: skip
    keyfile = (
        f"-----BEGIN RSA PRIVATE KEY-----\n{s['private key']}\n-----END RSA PRIVATE KEY-----\n"
    )
    recs: list[dict] = []
    u0 = str(uuid.uuid4())
    recs.append({"parentUuid": None, "isSidechain": False, "promptId": str(uuid.uuid4()), "type": "user",
                 "message": {"role": "user", "content": prompt}, "uuid": u0, "timestamp": _ts(t0), **tail})  # fmt: skip

    def assistant(i: int, parent: str, content: list[dict], stop: str) -> dict:
        r = assistant_record(session_id=sid, cwd=cwd, usage=Usage(10 + i, 20, 0, 0, 100), parent_uuid=parent,
                             timestamp=_ts(t0 + 1000 * i))  # fmt: skip
        r["message"]["content"] = content
        r["message"]["stop_reason"] = stop
        return r

    tools = [
        ("Bash", {"command": command, "description": f"run {s['github token']}"}),
        ("Read", {"file_path": "/home/user/.ssh/id_rsa"}),
        (
            "Write",
            {
                "file_path": "/home/user/.env",
                "content": f"API_KEY={s['anthropic key']}\n{CONTENT['file contents']}\n",
            },
        ),
        (
            "Agent",
            {
                "description": "look",
                "prompt": f"{CONTENT['prompt']} use {s['github token']}",
                "subagent_type": "general-purpose",
            },
        ),
    ]
    results = [
        f"{CONTENT['file contents']} deployed with {s['aws key id']}",
        keyfile + CONTENT["file contents"],
        "written",
        f"agent found remote https://bob:{s['url password']}@git.example.com/x",
    ]
    parent = u0
    for i, ((name, inp), result) in enumerate(zip(tools, results, strict=True), start=1):
        tid = f"toolu_{uuid.uuid4().hex[:24]}"
        a = assistant(i, parent, [
            {"type": "thinking", "thinking": f"{CONTENT['thinking']} {s['anthropic key']}", "signature": "x"},
            {"type": "text", "text": f"{CONTENT['assistant text']} header Authorization: Bearer {s['bearer token']}"},
            {"type": "tool_use", "id": tid, "name": name, "input": inp},
        ], "tool_use")  # fmt: skip
        u = {"parentUuid": a["uuid"], "isSidechain": False, "type": "user", "uuid": str(uuid.uuid4()),
             "timestamp": _ts(t0 + 1000 * i + 500), "toolUseResult": {"stdout": result, "stderr": ""},
             "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": result,
                                                      "is_error": False}]}, **tail}  # fmt: skip
        recs += [a, u]
        parent = u["uuid"]
    recs.append(
        assistant(
            9,
            parent,
            [
                {
                    "type": "text",
                    "text": f"{CONTENT['assistant text']} done, set DB_PASSWORD={s['env password']}",
                }
            ],
            "end_turn",
        )
    )
    path = config / "projects" / encode_cwd(cwd) / f"{sid}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    append_lines(path, recs)
    return sid


def leaks(blobs: dict[str, bytes], needles: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, b in blobs.items()
        for what, n in needles.items()
        if n.encode() in b
    ]


def state_bytes(state: Path) -> dict[str, bytes]:
    return {f"state/{f.name}": f.read_bytes() for f in state.iterdir() if f.is_file()}


def received(r: Receiver) -> dict[str, bytes]:
    with r.lock:
        return {
            "otlp traces": b"".join(r.got.raw),
            "otlp metrics": b"".join(m.SerializeToString() for m in r.got.metrics),
        }


def clean_env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env.update(kw)
    return env


def get(port: int, path: str) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()


def test_nothing_leaves_without_capture_and_secrets_masked_with_it(tmp_path):
    config = tmp_path / "claude"
    sid = plant(config)
    trace_id = sid.replace("-", "")

    # 1. backfill --traces, capture off
    with Receiver() as r:
        out = ccotel("backfill", "--traces", "--claude-dir", str(config), "--state-dir", str(tmp_path / "s1"),
                     "--otlp-endpoint", r.url, env=clean_env(CCOTEL_LOG_LEVEL="debug"))  # fmt: skip
        spans = r.spans()
        blobs = received(r)
    assert any(s.trace_id == trace_id for s in spans) and len(spans) >= 6, len(spans)
    assert {s.attrs.get("gen_ai.tool.name") for s in spans} >= {"Bash", "Read", "Write", "Agent"}
    blobs |= {"backfill output": (out.stdout + out.stderr).encode()} | state_bytes(tmp_path / "s1")
    assert leaks(blobs, SECRETS | CONTENT) == []
    n_spans = len(spans)

    # 2. the daemon, capture off, debug log, metrics pushed over OTLP too
    with Receiver() as r:
        env = clean_env(CCOTEL_LOG_LEVEL="debug", CCOTEL_LOG_FORMAT="json", CCOTEL_METRICS_PUSH_INTERVAL="1",
                        CCOTEL_OTLP_ENDPOINT=r.url)  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(config), "--state-dir", str(tmp_path / "s2"),
             "--http-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            port = daemon_port(tmp_path / "s2", proc)
            r.wait(lambda: len(r.spans()) >= n_spans and len(r.got.metrics) >= 2, timeout=120)
            blobs = {"/metrics": get(port, "/metrics"), "/healthz": get(port, "/healthz")}
            blobs |= {
                "openmetrics": urllib.request.urlopen(
                    urllib.request.Request(
                        f"http://127.0.0.1:{port}/metrics",
                        headers={"Accept": "application/openmetrics-text"},
                    ),
                    timeout=5,
                ).read()
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            log = proc.communicate(timeout=60)[0]
        blobs |= received(r)
    blobs |= {"daemon log": log} | state_bytes(tmp_path / "s2")
    assert b"ccotel stopped" in log, log[
        -2000:
    ]  # (debug level: ccotel logs no transcript line at any level)
    assert b"ccotel_tokens_total" in blobs["/metrics"]
    assert leaks(blobs, SECRETS | CONTENT) == []

    # 3. capture on: the content goes (the prompt marker arrives), the secrets do not
    with Receiver() as r:
        out = ccotel("backfill", "--traces", "--claude-dir", str(config), "--state-dir", str(tmp_path / "s3"),
                     "--otlp-endpoint", r.url, env=clean_env(CCOTEL_CAPTURE_CONTENT="true"))  # fmt: skip
        blobs = received(r)
    assert CONTENT["prompt"].encode() in blobs["otlp traces"]
    assert CONTENT["command"].encode() in blobs["otlp traces"]
    assert b"[REDACTED]" in blobs["otlp traces"]
    blobs |= {"backfill output": (out.stdout + out.stderr).encode()} | state_bytes(tmp_path / "s3")
    assert leaks(blobs, SECRETS) == []
