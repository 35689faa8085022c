"""The span tree, built from transcripts and caught by the SDK's in-memory exporter.

Real transcripts (the 2.1.197 fixture written by the real CLI, the older
fixtures) and small hand-made ones for what real ones rarely show: tools that
never get a result, nested subagents, MCP tools, secrets, sessions that go
idle and continue, collectors that fail half-way.
"""

from __future__ import annotations

import json
import shutil
import uuid
import zlib
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ccotel import app
from ccotel.config import load
from ccotel.otlp import MALFORMED, ExportError
from ccotel.traces import ids
from ccotel.traces.service import backfill_traces, options
from ccotel.traces.shipper import Shipper
from tests.conftest import FIXTURES
from tests.oracle import ccusage_totals
from tests.sdk_sink import SdkSpanSink

SESSION = "0a1b2c3d-0000-4000-8000-00000000abcd"
T0 = 1_790_000_000.0  # 2026-09-21


# --- helpers -------------------------------------------------------------------


def cfg_for(claude_dir: Path, state: Path, **over):
    flags = {
        "claude_dirs": [str(claude_dir)],
        "state_dir": str(state),
        "session_idle": 0,
        "trace_rate": 0,
    }
    flags.update(over)
    return load(env={}, flags=flags)


class Mem:
    """In-memory exporter that can fail on chosen calls."""

    def __init__(self, fail_calls=()):
        self.mem = InMemorySpanExporter()
        self.calls = 0
        self.fail_calls = set(fail_calls)

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.calls += 1
        if self.calls in self.fail_calls:
            return SpanExportResult.FAILURE
        return self.mem.export(spans)

    def shutdown(self):
        pass

    def spans(self):
        return list(self.mem.get_finished_spans())


def shipper(cfg, exporter: Mem, clock=None, batch=None) -> Shipper:
    return Shipper(
        cfg.resolved_state_dir() / "state.db", SdkSpanSink(exporter, {"service.name": "ccotel"}), options(cfg),
        clock=clock or (lambda: T0 + 10 * 86400), session_idle=cfg.session_idle, since=0,
        batch=batch or cfg.trace_batch_spans, rate=0,
    )  # fmt: skip


def trace(claude_dir: Path, state: Path, **over) -> list:
    """Metrics backfill, then traces backfill into memory; the finished spans."""
    cfg = cfg_for(claude_dir, state, **over)
    app.backfill(cfg)
    m = Mem()
    backfill_traces(
        cfg,
        cfg.resolved_state_dir() / "state.db",
        since=0,
        sink=SdkSpanSink(m, {"service.name": "ccotel"}),
    )
    return m.spans()


def by_id(spans) -> dict:
    return {s.context.span_id: s for s in spans}


def parent(spans, s):
    return by_id(spans).get(s.parent.span_id) if s.parent else None


def children(spans, s) -> list:
    return [c for c in spans if c.parent is not None and c.parent.span_id == s.context.span_id]


def chat_totals(spans) -> dict:
    chats = [s for s in spans if s.name.startswith("chat ")]
    a = lambda k: sum(s.attributes[k] for s in chats)  # noqa: E731
    return {
        "inputTokens": a("ccotel.usage.uncached_input_tokens"),
        "outputTokens": a("gen_ai.usage.output_tokens"),
        "cacheCreationTokens": a("gen_ai.usage.cache_creation.input_tokens"),
        "cacheReadTokens": a("gen_ai.usage.cache_read.input_tokens"),
        "totalCost": a("gen_ai.usage.cost.amount"),
    }


def signature(spans) -> set:
    return {
        (s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else 0, s.name, s.start_time, s.end_time,
         tuple(sorted((k, str(v)) for k, v in s.attributes.items())), s.status.status_code)
        for s in spans
    }  # fmt: skip


def tool_uses(claude_dir: Path) -> Counter:
    """tool_use ids per session in the transcripts (each id once)."""
    seen: dict[str, str] = {}
    for f in claude_dir.rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            c = (d.get("message") or {}).get("content")
            if d.get("type") == "assistant" and isinstance(c, list):
                for b in c:
                    if b.get("type") == "tool_use":
                        seen[b["id"]] = d["sessionId"]
    return Counter(seen.values())


class T:
    """A hand-made 2.1.x transcript: lines the way Claude Code writes them."""

    def __init__(
        self, root: Path, session: str = SESSION, cwd: str = "/home/u/proj", entrypoint: str = "cli"
    ):
        self.session, self.cwd, self.entrypoint = session, cwd, entrypoint
        self.dir = root / "projects" / "-home-u-proj"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{session}.jsonl"
        self.n = 0

    def ts(self, t: float) -> str:
        from datetime import datetime

        return (
            datetime.fromtimestamp(T0 + t, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def _line(self, t: float, kind: str, agent: str | None = None, **extra) -> dict:
        self.n += 1
        d = {"parentUuid": None, "isSidechain": agent is not None, "type": kind, "uuid": str(uuid.UUID(int=self.n + zlib.crc32((agent or "").encode()) * 10_000)),
             "timestamp": self.ts(t), "sessionId": self.session, "cwd": self.cwd, "version": "2.1.197", "gitBranch": "main",
             "userType": "external", "entrypoint": self.entrypoint}  # fmt: skip
        if agent:
            d["agentId"] = agent
        d.update(extra)
        return d

    def prompt(self, t, text="do the thing", agent=None):
        return self._line(t, "user", agent, message={"role": "user", "content": text})

    def assistant(
        self,
        t,
        msg,
        content,
        inp=10,
        out=5,
        cr=100,
        w5=20,
        model="claude-sonnet-4-5-20250929",
        agent=None,
        stop=None,
    ):
        usage = {"input_tokens": inp, "cache_creation_input_tokens": w5, "cache_read_input_tokens": cr,
                 "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": 0}, "output_tokens": out}  # fmt: skip
        return self._line(t, "assistant", agent, requestId=f"req_{msg}",
                          message={"model": model, "id": msg, "type": "message", "role": "assistant", "content": content,
                                   "stop_reason": stop, "usage": usage})  # fmt: skip

    def result(self, t, tid, text="ok", is_error=False, agent=None, agent_id=None):
        d = self._line(
            t,
            "user",
            agent,
            message={
                "role": "user",
                "content": [
                    {
                        "tool_use_id": tid,
                        "type": "tool_result",
                        "content": text,
                        "is_error": is_error,
                    }
                ],
            },
        )
        if agent_id:
            d["toolUseResult"] = {"status": "completed", "agentId": agent_id}
        return d

    @staticmethod
    def use(tid, name="Bash", **inp):
        return {"type": "tool_use", "id": tid, "name": name, "input": inp}

    def write(self, lines: list[dict], agent: str | None = None, meta: dict | None = None) -> Path:
        path = self.path
        if agent:
            sub = self.dir / self.session / "subagents"
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"agent-{agent}.jsonl"
            if meta is not None:
                (sub / f"agent-{agent}.meta.json").write_text(json.dumps(meta))
        with path.open("a") as f:
            for d in lines:
                f.write(json.dumps(d, separators=(",", ":")) + "\n")
        return path

    def last_prompt(self):
        return {
            "type": "last-prompt",
            "lastPrompt": "x",
            "leafUuid": "y",
            "sessionId": self.session,
        }


# --- real transcripts -------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_spans(tmp_path_factory):
    """The 2.1.197 fixture (the real CLI: Bash, parallel Bash, failing Bash, Agent -> Bash)."""
    state = tmp_path_factory.mktemp("state")
    return trace(FIXTURES / "claude-2.1.197", state)


def test_one_trace_per_session_with_its_root(cli_spans):
    d = FIXTURES / "claude-2.1.197" / "projects" / "-home-user-work"
    sessions = sorted(p.stem for p in d.glob("*.jsonl"))
    assert sorted({f"{s.context.trace_id:032x}" for s in cli_spans}) == sorted(
        s.replace("-", "") for s in sessions
    )
    for sid in sessions:
        spans = [s for s in cli_spans if s.context.trace_id == uuid.UUID(sid).int]
        roots = [s for s in spans if s.parent is None]
        assert len(roots) == 1
        r = roots[0]
        assert r.name == "invoke_agent claude-code" and r.kind == SpanKind.INTERNAL
        assert r.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert r.attributes["gen_ai.provider.name"] == "anthropic"
        assert r.attributes["gen_ai.conversation.id"] == sid
        assert r.attributes["gen_ai.agent.version"] == "2.1.197"
        assert r.attributes["vcs.ref.head.name"] == "master"
        assert r.attributes["ccotel.project"] == "work"
        assert r.context.span_id == ids.root_id(sid)
        assert all(parent(spans, s) is not None for s in spans if s is not r), (
            "every span hangs in the tree"
        )
        assert all(r.start_time <= s.start_time and s.end_time <= r.end_time for s in spans)
        chats = [s for s in spans if s.name.startswith("chat ")]
        assert r.attributes["gen_ai.usage.input_tokens"] == sum(
            c.attributes["gen_ai.usage.input_tokens"] for c in chats
        )
        assert r.attributes["ccotel.cost_usd"] == pytest.approx(
            sum(c.attributes["ccotel.cost_usd"] for c in chats)
        )
        turns = [s for s in spans if s.name.startswith("turn ")]
        assert [t.name for t in turns] == ["turn 1"] and parent(spans, turns[0]) is r


def test_tool_spans_one_per_tool_use(cli_spans):
    want = tool_uses(FIXTURES / "claude-2.1.197")
    got = Counter(
        str(uuid.UUID(int=s.context.trace_id))
        for s in cli_spans
        if s.name.startswith("execute_tool ")
    )
    assert got == want
    ids_ = [
        s.attributes["gen_ai.tool.call.id"] for s in cli_spans if s.name.startswith("execute_tool ")
    ]
    assert len(ids_) == len(set(ids_))
    for s in cli_spans:
        if s.name.startswith("execute_tool "):
            assert s.attributes["gen_ai.operation.name"] == "execute_tool"
            assert s.attributes["gen_ai.tool.type"] == "function"
            assert s.name == f"execute_tool {s.attributes['gen_ai.tool.name']}"


def test_failing_tool_is_an_error(cli_spans):
    errs = [s for s in cli_spans if s.status.status_code == StatusCode.ERROR]
    assert [s.name for s in errs] == ["execute_tool Bash"]
    assert errs[0].attributes["error.type"] == "tool_error"
    assert f"{errs[0].context.trace_id:032x}" == "c16a9a5634994f949e09a48acc33659c"


def test_parallel_tools_share_the_turn(cli_spans):
    spans = [s for s in cli_spans if f"{s.context.trace_id:032x}".startswith("f2afd9e8")]
    tools = [s for s in spans if s.name == "execute_tool Bash"]
    assert len(tools) == 2
    assert {parent(spans, t).name for t in tools} == {"turn 1"}
    assert (
        tools[0].start_time == tools[1].start_time
        or abs(tools[0].start_time - tools[1].start_time) < 50_000_000
    )


def test_subagent_under_its_agent_tool_span(cli_spans):
    spans = [s for s in cli_spans if f"{s.context.trace_id:032x}".startswith("816adf42")]
    agent_tool = next(s for s in spans if s.name == "execute_tool Agent")
    sub = children(spans, agent_tool)
    assert [s.name for s in sub] == ["invoke_agent general-purpose"]
    a = sub[0]
    assert a.attributes["gen_ai.agent.id"] == "a90bb488a1111977a"
    assert a.attributes["gen_ai.agent.name"] == "general-purpose"
    assert a.attributes["gen_ai.tool.call.id"] == agent_tool.attributes["gen_ai.tool.call.id"]
    inner = sorted(s.name for s in children(spans, a))
    assert inner == [
        "chat claude-opus-4-1-20250805",
        "chat claude-opus-4-1-20250805",
        "execute_tool Bash",
    ]
    assert all(s.attributes["gen_ai.agent.id"] == "a90bb488a1111977a" for s in children(spans, a))
    assert a.attributes["gen_ai.usage.input_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"]
        for s in children(spans, a)
        if s.name.startswith("chat")
    )


def test_chat_spans_follow_the_conventions(cli_spans):
    chats = [s for s in cli_spans if s.name.startswith("chat ")]
    assert len(chats) == 10
    for c in chats:
        a = c.attributes
        assert c.kind == SpanKind.CLIENT
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
        assert c.name == f"chat {a['gen_ai.request.model']}" == f"chat {a['gen_ai.response.model']}"
        assert a["gen_ai.response.id"].startswith("msg_") and a["ccotel.request_id"].startswith(
            "req_"
        )
        # the Anthropic rule: input tokens include cache reads and writes
        assert a["gen_ai.usage.input_tokens"] == (
            a["ccotel.usage.uncached_input_tokens"]
            + a["gen_ai.usage.cache_read.input_tokens"]
            + a["gen_ai.usage.cache_creation.input_tokens"]
        )
        assert (
            a["gen_ai.usage.cost.currency"] == "USD"
            and a["gen_ai.usage.cost.amount"] == a["ccotel.cost_usd"] > 0
        )
        assert a["gen_ai.response.finish_reasons"] in (("tool_use",), ("end_turn",))
        assert c.end_time >= c.start_time


@pytest.mark.parametrize(
    "fixture",
    ["claude-2.1.197", "claude-2.1.39", "claude-2.1.38", "claude-2.0.74", "claude-1.0.17"],
)
def test_chat_usage_sums_to_ccusage(fixture, tmp_path):
    spans = trace(FIXTURES / fixture, tmp_path / "state")
    want = ccusage_totals(FIXTURES / fixture)
    got = chat_totals(spans)
    for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"):
        assert got[k] == want[k], k
    assert got["totalCost"] == pytest.approx(want["totalCost"], rel=1e-9)
    assert len({s.context.span_id for s in spans}) == len(spans)
    roots = {s.context.span_id for s in spans if s.parent is None}
    assert all(s.parent is None or s.parent.span_id in by_id(spans) for s in spans), "no orphans"
    assert len(roots) == len({s.context.trace_id for s in spans})


def test_legacy_flat_subagents(tmp_path):
    spans = trace(FIXTURES / "claude-2.0.74", tmp_path / "state")
    agents = [s for s in spans if s.name.startswith("invoke_agent ") and s.parent is not None]
    linked = [a for a in agents if parent(spans, a).name.startswith("execute_tool Task")]
    assert linked, "a Task-spawned legacy agent hangs under its Task span"
    for a in linked:
        assert (
            parent(spans, a).attributes["gen_ai.tool.call.id"]
            == a.attributes["gen_ai.tool.call.id"]
        )
        assert children(spans, a)


def test_compaction_agents_span_their_call_only(tmp_path):
    spans = trace(FIXTURES / "claude-2.1.39", tmp_path / "state")
    compact = [s for s in spans if s.name == "invoke_agent compact"]
    assert len(compact) == 5
    for c in compact:
        kids = children(spans, c)
        assert [k.name.split()[0] for k in kids] == ["chat"]
        assert c.start_time == kids[0].start_time  # not the copied history's first line


def test_same_records_same_spans(tmp_path):
    a = trace(FIXTURES / "claude-2.1.197", tmp_path / "a")
    b = trace(FIXTURES / "claude-2.1.197", tmp_path / "b")
    assert signature(a) == signature(b)


def test_no_content_by_default(cli_spans):
    blob = json.dumps([dict(s.attributes) for s in cli_spans] + [s.name for s in cli_spans])
    for text in ("scenario:", "please", "echo", "hello", "SUBAGENT", "Done.", "Let me run"):
        assert text not in blob
    keys = {k for s in cli_spans for k in s.attributes}
    assert not keys & {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments",
                       "gen_ai.tool.call.result", "ccotel.tool.command", "ccotel.tool.file_path"}  # fmt: skip


# --- hand-made transcripts -------------------------------------------------------------


SECRETS = {
    "anthropic": "sk-ant-api03-" + "A1b2C3d4E5f6G7h8I9j0" * 4,
    "aws": "AKIAIOSFODNN7EXAMPLQ",
    "github": "ghp_" + "x1Y2z3W4" * 5,
    "bearer": "eyJhbGciOi.JIUzI1NiJ9xx.dummysig0123",
    "password": "hunter2hunter2",
}


def _secret_session(root: Path) -> T:
    t = T(root)
    pk = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQUFBQUFB\n-----END OPENSSH PRIVATE KEY-----"
    t.write([
        t.prompt(0, f"deploy with key {SECRETS['anthropic']} please"),
        t.assistant(1, "msg_a", [{"type": "text", "text": "On it."}]),
        t.assistant(1.1, "msg_a", [t.use("toolu_1", command=f"AWS_ACCESS_KEY_ID={SECRETS['aws']} curl -H 'Authorization: Bearer {SECRETS['bearer']}' https://deploy:{SECRETS['password']}@example.com/x")]),
        t.result(2, "toolu_1", f"token {SECRETS['github']}\n{pk}\nok"),
        t.assistant(3, "msg_b", [t.use("toolu_2", name="Read", file_path="/home/u/proj/.env")]),
        t.result(4, "toolu_2", "DB_PASSWORD=" + SECRETS["password"]),
        t.assistant(5, "msg_c", [{"type": "text", "text": "Deployed."}], stop="end_turn"),
    ])  # fmt: skip
    return t


def test_content_capture_masks_secrets(tmp_path):
    _secret_session(tmp_path / "claude")
    spans = trace(tmp_path / "claude", tmp_path / "state", capture_content=True)
    blob = json.dumps([dict(s.attributes) for s in spans])
    for name, secret in SECRETS.items():
        assert secret not in blob, name
    assert (
        "PRIVATE KEY" not in blob.replace("BEGIN OPENSSH PRIVATE KEY-----", "")
        or "b3BlbnNzaC1rZXktdjEAAAAA" not in blob
    )
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in blob
    turn = next(s for s in spans if s.name == "turn 1")
    msgs = json.loads(turn.attributes["gen_ai.input.messages"])
    assert msgs[0]["parts"][0]["content"] == "deploy with key [REDACTED] please"
    bash = next(s for s in spans if s.name == "execute_tool Bash")
    cmd = bash.attributes["ccotel.tool.command"]
    assert (
        cmd.startswith("AWS_ACCESS_KEY_ID=[REDACTED] curl")
        and "https://deploy:[REDACTED]@example.com/x" in cmd
    )
    assert "[REDACTED]" in bash.attributes["gen_ai.tool.call.result"] and bash.attributes[
        "gen_ai.tool.call.result"
    ].endswith("ok")
    assert json.loads(bash.attributes["gen_ai.tool.call.arguments"])["command"] == cmd
    read = next(s for s in spans if s.name == "execute_tool Read")
    assert read.attributes["ccotel.tool.file_path"] == "/home/u/proj/.env"
    assert read.attributes["gen_ai.tool.call.result"] == "DB_PASSWORD=[REDACTED]"
    last = next(
        s
        for s in spans
        if s.name.startswith("chat") and s.attributes["gen_ai.response.id"] == "msg_c"
    )
    assert (
        json.loads(last.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"]
        == "Deployed."
    )


def test_tool_details_only_commands_and_paths(tmp_path):
    _secret_session(tmp_path / "claude")
    spans = trace(tmp_path / "claude", tmp_path / "state", tool_details=True)
    keys = {k for s in spans for k in s.attributes}
    assert "ccotel.tool.command" in keys and "ccotel.tool.file_path" in keys
    assert not keys & {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    blob = json.dumps([dict(s.attributes) for s in spans])
    assert all(v not in blob for v in SECRETS.values())


def test_content_is_truncated(tmp_path):
    t = T(tmp_path / "claude")
    t.write(
        [
            t.prompt(0, "x" * 5000),
            t.assistant(1, "m1", [t.use("toolu_1", command="y" * 5000)]),
            t.result(2, "toolu_1", "z" * 5000),
        ]
    )
    spans = trace(
        tmp_path / "claude", tmp_path / "state", capture_content=True, content_max_chars=100
    )
    bash = next(s for s in spans if s.name == "execute_tool Bash")
    assert bash.attributes["ccotel.tool.command"] == "y" * 100 + "…[truncated]"
    assert bash.attributes["gen_ai.tool.call.result"] == "z" * 100 + "…[truncated]"
    turn = next(s for s in spans if s.name == "turn 1")
    assert (
        json.loads(turn.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"]
        == "x" * 100 + "…[truncated]"
    )


def test_unanswered_tool_ends_interrupted_at_close(tmp_path):
    t = T(tmp_path / "claude")
    t.write(
        [
            t.prompt(0),
            t.assistant(1, "m1", [t.use("toolu_1", command="sleep 1000")]),
            t.assistant(1.5, "m1", [t.use("toolu_2", name="mcp__github__create_issue")]),
        ]
    )
    spans = trace(tmp_path / "claude", tmp_path / "state")
    tools = {
        s.attributes["gen_ai.tool.call.id"]: s for s in spans if s.name.startswith("execute_tool")
    }
    assert set(tools) == {"toolu_1", "toolu_2"}
    for s in tools.values():
        assert s.attributes["ccotel.tool.interrupted"] is True
        assert [e.name for e in s.events] == ["interrupted"]
        assert s.end_time == round((T0 + 1.5) * 1000) * 1_000_000
    mcp = tools["toolu_2"]
    assert mcp.name == "execute_tool mcp__github__create_issue"
    assert mcp.attributes["gen_ai.tool.type"] == "extension"
    assert (mcp.attributes["ccotel.mcp.server"], mcp.attributes["ccotel.mcp.tool"]) == (
        "github",
        "create_issue",
    )


def test_nested_subagents_nest(tmp_path):
    t = T(tmp_path / "claude")
    t.write(
        [
            t.prompt(0),
            t.assistant(
                1, "m1", [t.use("toolu_A", name="Agent", subagent_type="planner", prompt="p")]
            ),
        ]
    )
    t.write([t.prompt(2, "plan", agent="aaa"), t.assistant(3, "m2", [t.use("toolu_B", name="Agent", subagent_type="Explore", prompt="q")], agent="aaa")],
            agent="aaa", meta={"agentType": "planner", "toolUseId": "toolu_A"})  # fmt: skip
    t.write([t.prompt(4, "look", agent="bbb"), t.assistant(5, "m3", [t.use("toolu_C", command="ls")], agent="bbb"),
             t.result(6, "toolu_C", agent="bbb"), t.assistant(7, "m4", [{"type": "text", "text": "found"}], agent="bbb", stop="end_turn")],
            agent="bbb", meta={"agentType": "Explore", "toolUseId": "toolu_B", "parentAgentId": "aaa"})  # fmt: skip
    t.write(
        [
            t.result(8, "toolu_B", agent="aaa"),
            t.assistant(
                9, "m5", [{"type": "text", "text": "planned"}], agent="aaa", stop="end_turn"
            ),
        ],
        agent="aaa",
    )
    t.write(
        [
            t.result(10, "toolu_A", agent_id="aaa"),
            t.assistant(11, "m6", [{"type": "text", "text": "done"}], stop="end_turn"),
        ]
    )
    spans = trace(tmp_path / "claude", tmp_path / "state")

    def chain(s):
        out = []
        while s is not None:
            out.append(s.name)
            s = parent(spans, s)
        return out

    bash = next(s for s in spans if s.name == "execute_tool Bash")
    assert chain(bash) == ["execute_tool Bash", "invoke_agent Explore", "execute_tool Agent", "invoke_agent planner",
                           "execute_tool Agent", "turn 1", "invoke_agent claude-code"]  # fmt: skip
    assert len([s for s in spans if s.name.startswith("chat")]) == 6


def test_response_lines_around_tool_results_make_one_chat(tmp_path):
    """Streaming tool execution: results arrive between the lines of one response, usage grows."""
    t = T(tmp_path / "claude")
    t.write([
        t.prompt(0),
        t.assistant(1, "m1", [t.use("toolu_1", command="a")], out=8),
        t.result(2, "toolu_1"),
        t.assistant(3, "m1", [t.use("toolu_2", command="b")], out=8),
        t.result(4, "toolu_2"),
        t.assistant(5, "m1", [{"type": "text", "text": "x"}], out=780),
        t.assistant(6, "m2", [{"type": "text", "text": "y"}], out=3, stop="end_turn"),
    ])  # fmt: skip
    spans = trace(tmp_path / "claude", tmp_path / "state")
    chats = {s.attributes["gen_ai.response.id"]: s for s in spans if s.name.startswith("chat")}
    assert set(chats) == {"m1", "m2"}
    assert chats["m1"].attributes["gen_ai.usage.output_tokens"] == 780
    assert chats["m1"].end_time == round((T0 + 5) * 1000) * 1_000_000
    assert chats["m2"].start_time == chats["m1"].end_time


# --- export timing, continuation, restarts --------------------------------------------


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _live(tmp_path, idle=600):
    t = T(tmp_path / "claude")
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state", session_idle=idle)
    return t, cfg


def test_children_first_root_at_idle_then_continuation_joins(tmp_path):
    t, cfg = _live(tmp_path)
    clock = Clock(T0 + 3)
    m = Mem()
    t.write(
        [
            t.prompt(0),
            t.assistant(1, "m1", [t.use("toolu_1", command="ls")]),
            t.result(2, "toolu_1"),
            t.assistant(3, "m2", [{"type": "text", "text": "x"}]),
        ]
    )
    app.backfill(cfg)
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    names = sorted(s.name for s in m.spans())
    assert names == ["chat claude-sonnet-4-5-20250929", "execute_tool Bash"], (
        "children only while the session is active"
    )
    clock.t = T0 + 3 + 599
    assert sh.run_pass() and len(m.spans()) == 2
    clock.t = T0 + 3 + 600
    assert sh.run_pass()
    names = Counter(s.name for s in m.spans())
    assert names == {
        "chat claude-sonnet-4-5-20250929": 2,
        "execute_tool Bash": 1,
        "turn 1": 1,
        "invoke_agent claude-code": 1,
    }
    root = next(s for s in m.spans() if s.parent is None)
    # the user comes back an hour later: same trace, same root, a new turn
    t.write(
        [
            t.prompt(3600, "more"),
            t.assistant(3601, "m3", [{"type": "text", "text": "y"}], stop="end_turn"),
        ]
    )
    app.backfill(cfg)
    clock.t = T0 + 3602
    assert sh.run_pass()
    new = [s for s in m.spans() if s.name == "chat claude-sonnet-4-5-20250929"][-1]
    assert parent(m.spans(), new) is None  # its turn is not exported yet ...
    clock.t = T0 + 3601 + 600
    assert sh.run_pass()
    spans = m.spans()
    turn2 = next(s for s in spans if s.name == "turn 2")
    assert parent(spans, turn2) is root and parent(spans, new) is turn2
    assert Counter(s.name for s in spans)["invoke_agent claude-code"] == 1, (
        "the root is exported once"
    )
    assert len({s.context.trace_id for s in spans}) == 1


def test_finished_run_closes_without_waiting_for_idleness(tmp_path):
    t = T(tmp_path / "claude", entrypoint="sdk-cli")  # claude -p
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state", session_idle=600)
    t.write(
        [
            t.prompt(0),
            t.assistant(1, "m1", [{"type": "text", "text": "x"}], stop="end_turn"),
            t.last_prompt(),
        ]
    )
    app.backfill(cfg)
    m = Mem()
    clock = Clock(T0 + 2)
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    assert [s.name for s in m.spans()] == ["chat claude-sonnet-4-5-20250929"], (
        "a few seconds' grace first"
    )
    clock.t = T0 + 1 + 5
    assert sh.run_pass()
    assert sorted(s.name for s in m.spans()) == [
        "chat claude-sonnet-4-5-20250929",
        "invoke_agent claude-code",
        "turn 1",
    ]


@pytest.mark.parametrize("case", ["interactive", "tool open", "tool result last"])
def test_last_prompt_mid_session_does_not_close(tmp_path, case):
    """Claude Code re-appends last-prompt every 32 KiB written: only a finished -p run closes."""
    t = T(tmp_path / "claude", entrypoint="cli" if case == "interactive" else "sdk-cli")
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state", session_idle=600)
    lines = [t.prompt(0), t.assistant(1, "m1", [t.use("toolu_1", command="make")])]
    if case == "tool result last":
        lines.append(t.result(2, "toolu_1"))
    elif case == "interactive":
        lines += [
            t.result(2, "toolu_1"),
            t.assistant(3, "m2", [{"type": "text", "text": "x"}], stop="end_turn"),
        ]
    t.write([*lines, t.last_prompt()])
    app.backfill(cfg)
    m = Mem()
    assert shipper(cfg, m, Clock(T0 + 100)).run_pass()
    assert not [s for s in m.spans() if s.parent is None]


def test_failed_exports_lose_nothing_and_send_nothing_twice(tmp_path):
    src = FIXTURES / "claude-2.1.39"
    ref = trace(src, tmp_path / "ref")
    cfg = cfg_for(src, tmp_path / "state")
    app.backfill(cfg)
    m = Mem(fail_calls={1, 3, 4, 7})  # fail the 1st, 3rd, 4th and 7th export requests
    sh = shipper(cfg, m, batch=100)
    results = [sh.run_pass() for _ in range(12)]
    assert results[:1] == [False] and results[-1] is True
    got = m.spans()
    assert len(got) == len({s.context.span_id for s in got}), "nothing twice"
    assert signature(got) == signature(ref), "nothing lost, nothing different"
    assert sh.stats.errors == 4 and sh.stats.spans_exported == len(ref)


def test_restart_mid_session_continues_the_same_spans(tmp_path):
    t, cfg = _live(tmp_path)
    lines_all = [
        t.prompt(0), t.assistant(1, "m1", [t.use("toolu_1", name="Agent", subagent_type="general-purpose", prompt="p")]),
    ]  # fmt: skip
    sub = [
        t.prompt(2, "sub", agent="a1"),
        t.assistant(3, "m2", [t.use("toolu_2", command="x")], agent="a1"),
    ]
    sub2 = [
        t.result(4, "toolu_2", agent="a1"),
        t.assistant(5, "m3", [{"type": "text", "text": "ok"}], agent="a1", stop="end_turn"),
    ]
    rest = [
        t.result(6, "toolu_1", agent_id="a1"),
        t.assistant(7, "m4", [{"type": "text", "text": "done"}], stop="end_turn"),
    ]
    # reference: everything at once
    ref_t = T(tmp_path / "ref")
    ref_t.write(lines_all + rest)
    ref_t.write(
        sub + sub2, agent="a1", meta={"agentType": "general-purpose", "toolUseId": "toolu_1"}
    )
    ref = trace(tmp_path / "ref", tmp_path / "ref-state", session_idle=600)
    # the same, in three pieces, with a new Shipper (a restarted daemon) for each
    m = Mem()
    clock = Clock(T0 + 8)
    t.write(lines_all)
    t.write(sub, agent="a1", meta={"agentType": "general-purpose", "toolUseId": "toolu_1"})
    for piece in (None, (sub2, "a1"), (rest, None)):
        if piece:
            t.write(piece[0], agent=piece[1])
        app.backfill(cfg)
        sh = shipper(cfg, m, clock)
        assert sh.run_pass()
        sh.close()
    clock.t = T0 + 7 + 600
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    # the reference closed at once (its records are old for its clock): same spans
    assert signature(m.spans()) == signature(ref)


def test_backfill_since_skips_older_files(tmp_path):
    import os

    t = T(tmp_path / "claude")
    t.write([t.prompt(0), t.assistant(1, "m1", [{"type": "text", "text": "x"}], stop="end_turn")])
    os.utime(t.path, (T0, T0))
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state")
    app.backfill(cfg)
    m = Mem()
    res = backfill_traces(
        cfg, tmp_path / "state" / "state.db", since=T0 + 1, sink=SdkSpanSink(m, {})
    )
    assert res["spans"] == 0 and m.spans() == []
    res = backfill_traces(
        cfg, tmp_path / "state" / "state.db", since=T0 - 1, sink=SdkSpanSink(m, {})
    )
    assert res["spans"] == 3 and len(m.spans()) == 3


def test_backfill_gives_up_with_a_clear_error(tmp_path):
    t = T(tmp_path / "claude")
    t.write([t.prompt(0), t.assistant(1, "m1", [{"type": "text", "text": "x"}], stop="end_turn")])
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state", otlp_retry_max=0.05)
    app.backfill(cfg)
    m = Mem(fail_calls=set(range(1, 100)))
    with pytest.raises(ExportError, match="run again to continue"):
        backfill_traces(
            cfg, tmp_path / "state" / "state.db", since=0, sink=SdkSpanSink(m, {}), max_failures=3
        )
    m2 = Mem()
    res = backfill_traces(cfg, tmp_path / "state" / "state.db", since=0, sink=SdkSpanSink(m2, {}))
    assert res["spans"] == 3


def test_rewritten_file_is_read_again(tmp_path):
    t = T(tmp_path / "claude")
    t.write([t.prompt(0), t.assistant(1, "m1", [{"type": "text", "text": "x"}])])
    cfg = cfg_for(tmp_path / "claude", tmp_path / "state", session_idle=600)
    app.backfill(cfg)
    m = Mem()
    sh = shipper(cfg, m, Clock(T0 + 2))
    assert sh.run_pass()
    # replaced by another file (new inode) holding a longer history
    tmp = t.path.with_suffix(".new")
    shutil.copy(t.path, tmp)
    with tmp.open("a") as f:
        f.write(
            json.dumps(
                t.assistant(2, "m2", [{"type": "text", "text": "y"}], stop="end_turn"),
                separators=(",", ":"),
            )
            + "\n"
        )
    tmp.replace(t.path)
    app.backfill(cfg)
    assert sh.run_pass()
    chats = [s.attributes["gen_ai.response.id"] for s in m.spans() if s.name.startswith("chat")]
    assert sorted(chats) == ["m1", "m2"]
    sh.clock = Clock(T0 + 1000)
    assert sh.run_pass()
    spans = m.spans()
    assert sorted(s.name for s in spans if not s.name.startswith("chat")) == [
        "invoke_agent claude-code",
        "turn 1",
    ]
    assert len({s.context.span_id for s in spans}) == len(spans)


def test_a_span_the_collector_refuses_is_dropped_alone(tmp_path):
    """A collector that refuses one span as invalid (400) must not block the others forever."""
    from tests.sdk_sink import to_readable

    class Picky:
        def __init__(self):
            self.got = []

        def export(self, spans):
            if any(s.name == "execute_tool Bash" and s.error for s in spans):
                raise ExportError("HTTP 400 Bad Request", MALFORMED, answered=True)
            self.got.extend(spans)

        def probe(self):
            pass

        def shutdown(self):
            pass

    ref = trace(FIXTURES / "claude-2.1.197", tmp_path / "ref")
    cfg = cfg_for(FIXTURES / "claude-2.1.197", tmp_path / "state")
    app.backfill(cfg)
    sink = Picky()
    sh = Shipper(
        cfg.resolved_state_dir() / "state.db",
        sink,
        options(cfg),
        clock=lambda: T0 + 10 * 86400,
        session_idle=0,
        since=0,
        batch=512,
    )
    assert sh.run_pass()
    from opentelemetry.sdk.resources import Resource

    got = [to_readable(s, Resource({})) for s in sink.got]
    assert sh.stats.dropped == 1
    want = {
        x for x in signature(ref) if not (x[3] == "execute_tool Bash" and x[7] == StatusCode.ERROR)
    }
    a, b = {x[:4] for x in signature(got)}, {x[:4] for x in want}
    assert a == b, (a - b, b - a)
    assert len(got) == len(ref) - 1 == len({s.context.span_id for s in got})


@pytest.mark.parametrize("session", [SESSION, "not-a-uuid-session"])
def test_cost_exemplar_names_the_trace_of_its_session(tmp_path, session):
    """The exemplar on ccotel_cost_usd links to the trace the session's spans are in, for a
    session id that is a UUID and for one that is not (its trace id is then a hash)."""
    import time

    from prometheus_client import CollectorRegistry

    from ccotel.pipeline import Ingest
    from ccotel.projects import project_labeler
    from ccotel.sinks.prometheus import TotalsCollector
    from ccotel.state import Store

    t = T(tmp_path / "claude", session=session)
    t.write([t.prompt(0), t.assistant(1, "m1", [{"type": "text", "text": "hi"}], stop="end_turn")])
    spans = trace(tmp_path / "claude", tmp_path / "state")
    assert {s.context.trace_id for s in spans} == {ids.trace_id(session)}
    cfg = cfg_for(tmp_path / "claude", tmp_path / "fresh")
    store = Store(cfg.resolved_state_dir())
    try:
        ing = Ingest(cfg, store, app.roots_of(cfg), lambda: T0 + 60)
        ing.backfill(ing.scan(), 1)
        reg = CollectorRegistry(auto_describe=False)
        reg.register(TotalsCollector(ing.totals, project_labeler("name"), {}, time.time))
        cost = next(f for f in reg.collect() if f.name == "ccotel_cost_usd")
    finally:
        store.close()
    (sample,) = [s for s in cost.samples if s.name == "ccotel_cost_usd_total"]
    assert sample.exemplar.labels == {"trace_id": f"{ids.trace_id(session):032x}"}
