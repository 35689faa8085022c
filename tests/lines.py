"""Build transcript lines the way Claude Code writes them (compact JSON)."""

from __future__ import annotations

import json
from typing import Any

SID = "11111111-2222-3333-4444-555555555555"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def assistant(
    msg: str = "msg_1",
    req: str | None = "req_1",
    *,
    model: str = "claude-sonnet-4-5-20250929",
    inp: int = 10,
    out: int = 5,
    cr: int = 100,
    w5: int = 20,
    w1: int = 0,
    ts: str = "2026-11-20T10:00:00.000Z",
    session: str = SID,
    cwd: str = "/home/u/proj",
    sidechain: bool = False,
    content: list | None = None,
    speed: str | None = None,
    web: int | None = None,
    **extra: Any,
) -> str:
    usage: dict[str, Any] = {
        "input_tokens": inp,
        "cache_creation_input_tokens": w5 + w1,
        "cache_read_input_tokens": cr,
        "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
        "output_tokens": out,
    }
    if speed:
        usage["speed"] = speed
    if web is not None:
        usage["server_tool_use"] = {"web_search_requests": web}
    line: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "type": "assistant",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.1.197",
        "gitBranch": "main",
        "message": {
            "model": model,
            "id": msg,
            "type": "message",
            "role": "assistant",
            "content": content or [{"type": "text", "text": "hi"}],
            "usage": usage,
        },
        "uuid": f"u-{msg}-{out}",
        "timestamp": ts,
    }
    if req is not None:
        line["requestId"] = req
    line.update(extra)
    return dumps(line)


def tool_use(tid: str, name: str = "Bash", **kw: Any) -> str:
    return assistant(
        content=[
            {"type": "tool_use", "id": tid, "name": name, "input": {"command": "echo secret"}}
        ],
        **kw,
    )


def tool_result(
    tid: str,
    *,
    is_error: bool = False,
    ts: str = "2026-11-20T10:00:02.000Z",
    session: str = SID,
    cwd: str = "/home/u/proj",
    agent: str | None = None,
) -> str:
    line: dict[str, Any] = {
        "type": "user",
        "sessionId": session,
        "cwd": cwd,
        "timestamp": ts,
        "uuid": f"r-{tid}",
        "message": {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tid, "content": "out", "is_error": is_error}
            ],
        },
    }
    if agent:
        line["toolUseResult"] = {"status": "completed", "agentId": agent}
    return dumps(line)


def prompt(
    text: str = "hello",
    ts: str = "2026-11-20T09:59:59.000Z",
    session: str = SID,
    cwd: str = "/home/u/proj",
) -> str:
    return dumps(
        {
            "type": "user",
            "sessionId": session,
            "cwd": cwd,
            "timestamp": ts,
            "uuid": "p-1",
            "message": {"role": "user", "content": text},
        }
    )
