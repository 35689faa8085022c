"""Tests of the real-CLI harness itself: the stand-in API (tests/fakeapi.py), the
transcripts the real Claude Code 2.1.197 writes against it (tests/realcli.py), and
agreement between what the stand-in reported and what ccusage (tests/oracle.py)
computes from those transcripts."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tests.oracle as oracle
import tests.realcli as realcli
from tests.fakeapi import FakeAnthropic, Step, ToolCall, Usage, sse_events
from tests.realcli import (
    CLAUDE_VERSION,
    HAIKU,
    OPUS,
    SCENARIOS,
    SONNET,
    HarnessError,
    SessionRun,
    Transcripts,
    append_sessions,
    ccusage_shape,
    clone_home,
    encode_cwd,
    load_home,
    read_jsonl,
    scenario,
)

TOKEN_KEYS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")


# ---------------------------------------------------------------------------- helpers
def all_lines(run: SessionRun) -> list[dict[str, Any]]:
    lines = read_jsonl(run.transcript)
    for f in run.subagent_files:
        lines += read_jsonl(f)
    return lines


def blocks(lines: list[dict[str, Any]], line_type: str, block_type: str) -> list[tuple[dict, dict]]:
    out = []
    for line in lines:
        if line.get("type") != line_type:
            continue
        content = (line.get("message") or {}).get("content")
        if isinstance(content, list):
            out += [
                (line, b) for b in content if isinstance(b, dict) and b.get("type") == block_type
            ]
    return out


def assistant_responses(lines: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """(message.id, requestId) -> the assistant lines of that API response."""
    out: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        if line.get("type") == "assistant":
            out.setdefault((line["message"]["id"], line["requestId"]), []).append(line)
    return out


# ---------------------------------------------------------------------------- binaries
def test_pinned_cli_versions(claude_cli: Path) -> None:
    out = subprocess.run(
        [str(claude_cli), "--version"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=True,
    ).stdout
    assert out.split()[0] == CLAUDE_VERSION
    out = subprocess.run(
        [str(oracle.ccusage_bin()), "--version"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=True,
    ).stdout
    assert "20.0.24" in out


def test_missing_cli_names_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(realcli, "NODE_BIN", tmp_path / "nowhere")
    with pytest.raises(HarnessError, match="scripts/install-test-deps"):
        realcli.claude_bin()
    monkeypatch.setattr(oracle, "NODE_BIN", tmp_path / "nowhere")
    with pytest.raises(oracle.OracleError, match="scripts/install-test-deps"):
        oracle.ccusage_bin()


# ---------------------------------------------------------------------------- the stand-in, over HTTP
def _post(api: FakeAnthropic, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_stand_in_streams_like_the_messages_api() -> None:
    usage = Usage(7, 123, cache_creation_5m=11, cache_creation_1h=22, cache_read=333)
    with FakeAnthropic(seed="t") as api:
        tag = api.script(
            "s",
            [
                Step(
                    text="hello there",
                    tools=(
                        ToolCall("Bash", {"command": "true"}),
                        ToolCall("Bash", {"command": "false"}),
                    ),
                    usage=usage,
                ),
                Step(text="bye"),
            ],
        )
        body = {
            "model": "claude-opus-4-6",
            "stream": True,
            "max_tokens": 100,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "go " + api.marker(tag)}]}
            ],
        }
        status, headers, raw = _post(api, "/v1/messages?beta=true", body)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_011")
    events = _parse_sse(raw)
    names = [e for e, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(d["type"] == e for e, d in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_01") and start["model"] == "claude-opus-4-6"
    assert start["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 11,
        "ephemeral_1h_input_tokens": 22,
    }
    assert start["usage"]["cache_creation_input_tokens"] == 33
    assert start["usage"]["cache_read_input_tokens"] == 333 and start["usage"]["input_tokens"] == 7
    text = "".join(
        d["delta"]["text"] for e, d in events if e == "content_block_delta" and d["index"] == 0
    )
    assert text == "hello there"
    for index, command in ((1, "true"), (2, "false")):
        tool = next(
            d["content_block"]
            for e, d in events
            if e == "content_block_start" and d["index"] == index
        )
        assert (
            tool["type"] == "tool_use"
            and tool["name"] == "Bash"
            and tool["id"].startswith("toolu_01")
        )
        partial = "".join(
            d["delta"]["partial_json"]
            for e, d in events
            if e == "content_block_delta" and d["index"] == index
        )
        assert json.loads(partial) == {"command": command}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 123
    assert [r.kind for r in api.served] == ["scenario"] and api.served[0].usage == usage
    assert api.served[0].request_id == headers["request-id"]


def test_stand_in_side_requests_non_streaming_and_other_paths() -> None:
    with FakeAnthropic() as api:
        tag = api.script("s", [Step(text="scripted")])
        # no tools: a side request even though the marker is there (title generation quotes the prompt)
        title = {
            "model": HAIKU,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": f"<session>go {api.marker(tag)}</session>"}],
            "output_config": {
                "format": {
                    "type": "json_schema",
                    "schema": {
                        "type": "object",
                        "properties": {"title": {"type": "string"}},
                        "required": ["title"],
                    },
                }
            },
        }
        status, headers, raw = _post(api, "/v1/messages", title)
        assert status == 200 and headers["request-id"].startswith("req_")
        msg = json.loads(raw)
        assert (
            msg["type"] == "message" and msg["model"] == HAIKU and msg["stop_reason"] == "end_turn"
        )
        assert set(json.loads(msg["content"][0]["text"])) == {"title"}
        # a scripted request, non-streaming, still gets its step
        scripted = {
            "model": SONNET,
            "max_tokens": 50,
            "tools": [{"name": "Bash"}],
            "messages": [{"role": "user", "content": f"go {api.marker(tag)}"}],
        }
        msg2 = json.loads(_post(api, "/v1/messages", scripted)[2])
        assert msg2["content"] == [{"type": "text", "text": "scripted"}]
        # asking past the script is flagged, not crashed
        past = dict(
            scripted,
            messages=[
                *scripted["messages"],
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "more"},
            ],
        )
        _post(api, "/v1/messages", past)
        status, _, raw = _post(api, "/v1/messages/count_tokens", scripted)
        assert status == 200 and json.loads(raw)["input_tokens"] > 0
        status, _, _ = _post(api, "/api/something/else", {})
        assert status == 404
    assert [r.kind for r in api.served] == ["side", "scenario", "exhausted"]
    assert api.unknown == [("POST", "/api/something/else")]
    ids = [r.message_id for r in api.served]
    assert len(set(ids)) == 3
    assert api.served[0].usage != api.served[1].usage


def test_stand_in_ids_are_deterministic_and_unique() -> None:
    def serve(seed: str) -> list[tuple[str, str, tuple[str, ...], Usage]]:
        api = FakeAnthropic(seed=seed)
        api.script("a", [Step(tools=(ToolCall("Bash", {"command": "x"}),)), Step(text="done")])
        api.script("b", [Step(text="b")])
        out = []
        for tag, n_assistant in (("a", 0), ("a", 1), ("b", 0), ("a", 0)):
            msgs = [{"role": "user", "content": api.marker(tag)}]
            msgs += [
                {"role": "assistant", "content": "."},
                {"role": "user", "content": "."},
            ] * n_assistant
            _, r = api.answer(
                {"model": SONNET, "stream": True, "tools": [{}], "messages": msgs}, None
            )
            out.append((r.message_id, r.request_id, r.tool_use_ids, r.usage))
        return out

    one, two, other = serve("s1"), serve("s1"), serve("s2")
    assert one == two  # deterministic
    assert (
        len({m for m, *_ in one}) == 4 and len({q for _, q, *_ in one}) == 4
    )  # a retry gets new ids
    assert one[0][3] == one[3][3]  # ... but the same step and usage
    assert not {m for m, *_ in one} & {m for m, *_ in other}
    assert len({u for *_, u in one[:3]}) == 3


def test_sse_events_for_text_only() -> None:
    msg = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "a"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": Usage(1, 5).api(),
    }
    names = [e for e, _ in sse_events(msg)]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


# ---------------------------------------------------------------------------- transcripts of the real CLI
def test_every_scenario_ran_once_into_its_project(real_claude_home: Transcripts) -> None:
    h = real_claude_home
    assert [r.scenario for r in h.runs] == [s.name for s in SCENARIOS]
    assert len(set(h.session_ids)) == len(SCENARIOS)
    assert h.config_dir == h.home / ".claude"
    for run in h.runs:
        transcript = Path(run.transcript)
        assert transcript.parent == h.projects_dir / encode_cwd(run.cwd)
        assert transcript.name == f"{run.session_id}.jsonl"
        lines = read_jsonl(transcript)
        assert {ln["sessionId"] for ln in lines if "sessionId" in ln} == {run.session_id}
        assert {ln["version"] for ln in lines if "version" in ln} == {CLAUDE_VERSION}
        prompt = next(ln for ln in lines if ln["type"] == "user")
        assert f"[[ccotel:{run.tag}]]" in prompt["message"]["content"]
        assert lines[-1]["type"] == "last-prompt"
        assert run.result["session_id"] == run.session_id
    assert load_home(h.home).session_ids == h.session_ids


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_transcript_responses_are_exactly_the_served_ones(
    real_claude_home: Transcripts, name: str
) -> None:
    run = real_claude_home.run(name)
    sc = scenario(name)
    responses = assistant_responses(all_lines(run))
    served = {(r["message_id"], r["request_id"]): r for r in run.served}
    assert set(responses) == set(served)
    assert len(served) == len(sc.steps) + sum(len(s) for s in sc.subagents.values())
    for key, lines in responses.items():
        usage = Usage(**served[key]["usage"])
        # 2.1.197 writes one line per content block, each with the response's final usage
        assert len(lines) == len(served[key]["tool_use_ids"]) + (1 if served[key]["text"] else 0)
        for line in lines:
            u = line["message"]["usage"]
            assert (u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"]) == (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read,
            )
            assert u["cache_creation"] == {
                "ephemeral_5m_input_tokens": usage.cache_creation_5m,
                "ephemeral_1h_input_tokens": usage.cache_creation_1h,
            }
            assert u["cache_creation_input_tokens"] == usage.cache_creation
            assert line["message"]["model"] == served[key]["model"]


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_tool_use_and_tool_result_pair_by_id(real_claude_home: Transcripts, name: str) -> None:
    run = real_claude_home.run(name)
    expect = scenario(name).expect
    main = read_jsonl(run.transcript)
    uses = blocks(main, "assistant", "tool_use")
    results = blocks(main, "user", "tool_result")
    assert [b["name"] for _, b in uses] == expect["tools"]
    assert sorted(b["id"] for _, b in uses) == sorted(b["tool_use_id"] for _, b in results)
    by_uuid = {ln["uuid"]: ln for ln in main if "uuid" in ln}
    use_line = {b["id"]: ln for ln, b in uses}
    for line, block in results:
        # the result points back at the assistant line holding its tool_use
        assert line["sourceToolAssistantUUID"] == use_line[block["tool_use_id"]]["uuid"]
        assert line["parentUuid"] in by_uuid
    errors = [b for _, b in results if b.get("is_error") is True]
    assert len(errors) == expect["errors"]
    served_tool_ids = {t for r in run.served for t in r["tool_use_ids"]}
    assert {b["id"] for _, b in uses} <= served_tool_ids
    for text in expect.get("stdout", []):
        assert any(text in json.dumps(b["content"]) for _, b in results)


def test_two_tool_calls_in_one_response(real_claude_home: Transcripts) -> None:
    main = read_jsonl(real_claude_home.run("parallel").transcript)
    uses = blocks(main, "assistant", "tool_use")
    assert len(uses) == 2
    (l1, b1), (l2, b2) = uses
    assert l1["message"]["id"] == l2["message"]["id"] and l1["requestId"] == l2["requestId"]
    assert l1["uuid"] != l2["uuid"] and b1["id"] != b2["id"]
    outputs = {b["tool_use_id"]: b["content"] for _, b in blocks(main, "user", "tool_result")}
    assert outputs[b1["id"]].strip() == "ccotel-one" and outputs[b2["id"]].strip() == "ccotel-two"


def test_failing_tool_call_is_an_error_result(real_claude_home: Transcripts) -> None:
    main = read_jsonl(real_claude_home.run("error").transcript)
    [(line, block)] = blocks(main, "user", "tool_result")
    assert block["is_error"] is True
    assert "Exit code 3" in block["content"]
    assert "ccotel-failing" in line["toolUseResult"]


@pytest.mark.parametrize("name,sub_model", [("agent", OPUS), ("agent-haiku", HAIKU)])
def test_subagent_files_link_to_the_agent_tool_call(
    real_claude_home: Transcripts, name: str, sub_model: str
) -> None:
    run = real_claude_home.run(name)
    main = read_jsonl(run.transcript)
    [(_, agent_use)] = blocks(main, "assistant", "tool_use")
    assert agent_use["name"] == "Agent"
    [sub_file] = run.subagent_files
    assert sub_file.parent == Path(run.transcript).with_suffix("") / "subagents"
    agent_id = sub_file.stem.removeprefix("agent-")
    meta = json.loads(sub_file.with_suffix(".meta.json").read_text())
    assert meta["toolUseId"] == agent_use["id"]
    assert meta["agentType"] == "general-purpose"
    assert meta["description"] == agent_use["input"]["description"]
    sub = read_jsonl(sub_file)
    assert all(
        ln["isSidechain"] is True
        and ln["agentId"] == agent_id
        and ln["sessionId"] == run.session_id
        for ln in sub
    )
    assert sub[0]["type"] == "user" and sub[0]["parentUuid"] is None
    assert f"[[ccotel:{run.tag}/" in sub[0]["message"]["content"]
    # the subagent ran Bash itself, and its tool result pairs up inside its own file
    sub_uses = blocks(sub, "assistant", "tool_use")
    assert [b["name"] for _, b in sub_uses] == scenario(name).expect["subagent_tools"]
    assert {b["id"] for _, b in sub_uses} == {
        b["tool_use_id"] for _, b in blocks(sub, "user", "tool_result")
    }
    assert {ln["message"]["model"] for ln in sub if ln["type"] == "assistant"} == {sub_model}
    assert {ln["message"]["model"] for ln in main if ln["type"] == "assistant"} == {run.model}
    # the parent's tool result names the agent; its usage is a copy, not a billed response
    [(result_line, result)] = blocks(main, "user", "tool_result")
    assert result["tool_use_id"] == agent_use["id"]
    assert result_line["toolUseResult"]["agentId"] == agent_id
    assert result_line["toolUseResult"]["status"] == "completed"
    # no agent_progress copies of subagent messages in 2.1.197 -p runs
    assert not [ln for ln in main if ln["type"] == "progress"]


def test_requested_models_appear_as_message_model(real_claude_home: Transcripts) -> None:
    seen: Counter[str] = Counter()
    for run in real_claude_home.runs:
        main_models = {
            ln["message"]["model"] for ln in read_jsonl(run.transcript) if ln["type"] == "assistant"
        }
        assert main_models == {run.model}
        seen.update(ln["message"]["model"] for ln in all_lines(run) if ln["type"] == "assistant")
    assert {SONNET, OPUS, HAIKU} <= set(seen)
    assert "<synthetic>" not in seen


def test_side_requests_never_reach_transcript_usage(real_claude_home: Transcripts) -> None:
    """With CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 Claude Code 2.1.197 -p makes no
    side requests; with it off it asks for a session title (no tools, JSON schema), and
    writes only an ``ai-title`` record, no assistant line and no usage."""
    for run in real_claude_home.runs:
        if not scenario(run.scenario).nonessential_traffic:
            assert run.side == [], run.scenario
            assert run.unknown == [], run.scenario  # nothing but /v1/messages was called
        else:  # what it tried instead of leaving the machine went to the egress guard
            assert all(method == "CONNECT" for method, _ in run.unknown), run.unknown
    run = real_claude_home.run("text-side")
    assert run.side, "title generation side request expected"
    side_ids = {r["message_id"] for r in run.side}
    for other in real_claude_home.runs:
        assert not side_ids & {
            ln["message"]["id"] for ln in all_lines(other) if ln["type"] == "assistant"
        }
    titles = [ln for ln in read_jsonl(run.transcript) if ln["type"] == "ai-title"]
    assert [t["aiTitle"] for t in titles] == ["Ccotel test session"]


def test_ids_are_unique_across_the_home(real_claude_home: Transcripts) -> None:
    served = [r for run in real_claude_home.runs for r in run.served]
    assert len({r["message_id"] for r in served}) == len(served)
    assert len({r["request_id"] for r in served}) == len(served)
    usages = [tuple(r["usage"].values()) for r in served]
    assert len(set(usages)) == len(usages)
    assert all(all(v > 0 for v in u) for u in usages)


# ---------------------------------------------------------------------------- the oracle agrees
def test_ccusage_totals_equal_what_the_stand_in_reported(real_claude_home: Transcripts) -> None:
    totals = oracle.ccusage_totals(real_claude_home.config_dir)
    expected = real_claude_home.expected_totals()
    assert all(expected[k] > 0 for k in TOKEN_KEYS)
    assert {k: totals[k] for k in TOKEN_KEYS} == expected
    assert totals["totalCost"] > 0


def test_ccusage_per_session_rows_equal_each_run(real_claude_home: Transcripts) -> None:
    rows = oracle.ccusage_sessions(real_claude_home.config_dir)
    assert set(rows) == set(real_claude_home.session_ids)
    for run in real_claude_home.runs:
        row = rows[run.session_id]
        assert {k: row[k] for k in TOKEN_KEYS} == ccusage_shape(run.usage), run.scenario
        assert set(row["modelsUsed"]) == {r["model"] for r in run.served}
        assert row["totalCost"] > 0
    report = oracle.ccusage_report(real_claude_home.config_dir)
    assert sum(r["totalCost"] for r in report["session"]) == pytest.approx(
        report["totals"]["totalCost"]
    )


def test_ccusage_reads_nothing_but_the_given_config_dir(tmp_path: Path) -> None:
    (tmp_path / "empty" / "projects").mkdir(parents=True)
    totals = oracle.ccusage_totals(tmp_path / "empty")
    assert {k: totals[k] for k in TOKEN_KEYS} == dict.fromkeys(TOKEN_KEYS, 0)


def test_append_sessions_to_a_copy(real_claude_home: Transcripts, tmp_path: Path) -> None:
    before = real_claude_home.expected_totals()
    copy = clone_home(real_claude_home, tmp_path / "home")
    assert copy.session_ids == real_claude_home.session_ids
    assert all(Path(r.transcript).is_relative_to(copy.home) for r in copy.runs)
    added = append_sessions(copy.home, ["bash", "error"])
    assert [r.scenario for r in added.runs] == ["bash", "error"]
    after = load_home(copy.home)
    assert after.session_ids == real_claude_home.session_ids + added.session_ids
    old_ids = {r["message_id"] for run in real_claude_home.runs for r in run.served}
    assert not old_ids & {r["message_id"] for run in added.runs for r in run.served}
    totals = oracle.ccusage_totals(copy.config_dir)
    grown = ccusage_shape(
        Usage(
            **{
                "input_tokens": before["inputTokens"],
                "output_tokens": before["outputTokens"],
                "cache_creation_5m": before["cacheCreationTokens"],
                "cache_read": before["cacheReadTokens"],
            }
        )
        + added.usage()
    )
    assert {k: totals[k] for k in TOKEN_KEYS} == grown == after.expected_totals()
    # the cached home is untouched
    assert (
        oracle.ccusage_totals(real_claude_home.config_dir)["inputTokens"] == before["inputTokens"]
    )


def test_run_claude_with_its_own_stand_in(tmp_path: Path) -> None:
    steps = [
        Step(tools=(ToolCall("Bash", {"command": "pwd", "description": "Show cwd"}),)),
        Step(text="ok"),
    ]
    run = realcli.run_claude(
        tmp_path / "h", "Where am I?", SONNET, steps, cwd=tmp_path / "h" / "proj"
    )
    assert run.cwd == str(tmp_path / "h" / "proj")
    [(_, result)] = blocks(read_jsonl(run.transcript), "user", "tool_result")
    assert result["content"].strip() == str(tmp_path / "h" / "proj")
    assert {
        k: v
        for k, v in oracle.ccusage_totals(tmp_path / "h" / ".claude").items()
        if k in TOKEN_KEYS
    } == ccusage_shape(run.usage)
