"""Deterministic trace and span ids: the same records always give the same ids."""

from __future__ import annotations

import hashlib
import uuid


def trace_id(session: str) -> int:
    """The session UUID's 128 bits; a session id that is not a UUID is hashed."""
    try:
        v = uuid.UUID(session).int
    except ValueError:
        v = int.from_bytes(
            hashlib.blake2b(session.encode("utf-8", "surrogatepass"), digest_size=16).digest(),
            "big",
        )
    return v or 1


def span_id(kind: str, session: str, *parts: str | None) -> int:
    """A non-zero 64-bit id from what the span stands for (never from time or order)."""
    d = hashlib.blake2b(digest_size=8, person=b"ccotel-span")
    d.update(kind.encode() + b"\x00" + session.encode("utf-8", "surrogatepass"))
    for p in parts:
        d.update(b"\x00" if p is None else b"\x01" + p.encode("utf-8", "surrogatepass"))
    return int.from_bytes(d.digest(), "big") or 1


def root_id(session: str) -> int:
    return span_id("root", session)


def turn_id(session: str, prompt_uuid: str) -> int:
    return span_id("turn", session, prompt_uuid)


def chat_id(session: str, response_key: int) -> int:
    return span_id("chat", session, str(response_key))


def tool_id(session: str, tool_use_id: str) -> int:
    return span_id("tool", session, tool_use_id)


def agent_id(session: str, agent: str) -> int:
    return span_id("agent", session, agent)


def hex_trace(tid: int) -> str:
    return f"{tid:032x}"
