"""What the trace builder remembers about a session between lines (and restarts).

One msgpack blob per session in ``trace_sessions``; only sessions that are
open (not closed by idleness or a finished run) are held in memory.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

# Indices into usage lists.
U_INPUT, U_OUTPUT, U_CACHE_READ, U_CACHE_WRITE, U_COST, U_REQUESTS = range(6)


def zero_usage() -> list[float]:
    return [0, 0, 0, 0, 0.0, 0]


Event = tuple[str, int, dict[str, Any]]  # a span event: name, time (ns), attributes


class Span(Struct, array_like=True):
    """A finished span, as ccotel builds it (converted to OTLP/SDK types on export)."""

    trace_id: int
    span_id: int
    parent_id: int  # 0: none (the root)
    name: str
    kind: int  # opentelemetry.trace.SpanKind value: 0 INTERNAL, 2 CLIENT
    start: int  # ns since the epoch
    end: int
    attrs: dict[str, Any]
    error: str | None = None  # status ERROR with this description; None: UNSET
    events: list[Event] = []


class Resp(Struct, array_like=True):
    """An API response being read (its lines may straddle tool results)."""

    key: int  # the accounting key of the response (records.response_key)
    mid: str | None
    rid: str | None
    model: str | None
    start: float
    last: float
    stop: str | None
    parent: int
    text: str | None = None  # captured assistant text (capture_content only)


class Sent(Struct, array_like=True):
    """What a response's chat span (and its corrections) carried: the sum of what was sent."""

    span: int  # the chat span's id (0: sent by a ccotel that did not record the rest)
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cw5m: int = 0
    cw1h: int = 0
    web_search: int = 0
    cost: float = 0.0
    corrections: int = 0


class Thread(Struct, array_like=True):
    last: float | None = None  # time of the thread's last record
    resp: Resp | None = None
    done: int = 0  # key of the last finished response (its late lines add nothing)


class Tool(Struct, array_like=True):
    id: str
    name: str
    start: float
    parent: int
    thread: str
    agent_type: str | None = None
    args: str | None = None
    command: str | None = None
    path: str | None = None


class Agent(Struct, array_like=True):
    id: str
    type: str | None = None
    tool: str | None = None  # the Agent/Task tool_use id that spawned it
    first: float | None = None
    last: float | None = None
    parent: int = 0  # fallback parent when no tool call is known
    work: float | None = None  # start of its first API call (compaction files copy older lines)
    linked: bool = False  # the spawning tool call has its result
    done: bool = False  # its invoke_agent span was emitted
    usage: list[float] = msgspec.field(default_factory=zero_usage)


class Session(Struct):
    id: str
    first: float | None = None
    last: float | None = None
    cwd: str | None = None
    branch: str | None = None
    version: str | None = None
    usage: list[float] = msgspec.field(default_factory=zero_usage)
    tool_calls: int = 0
    tool_errors: int = 0
    turn_no: int = 0
    turn: int = 0  # span id of the open turn (0: none)
    turn_start: float | None = None
    turn_last: float | None = None
    turn_prompt: str | None = None
    turn_open: bool = False
    turn_ids: list[int] = []  # every turn started (a file read again must not start them twice)
    threads: dict[str, Thread] = {}
    tools: dict[str, Tool] = {}
    agents: dict[str, Agent] = {}
    root_done: bool = False
    closed: bool = False
    finished: bool = False  # a last-prompt record came after the last record
    sdk: bool = False  # written by a non-interactive run (claude -p, the Agent SDK)
    main_last: str = ""  # type of the main thread's last record
    agents_sent: list[str] = []  # subagents whose span was sent (a span id is sent once)

    def trim(self) -> None:
        """Forget per-call state once closed; what a continuation needs stays."""
        self.threads = {}
        self.tools = {}
        done = (k for k, a in self.agents.items() if a.done)
        self.agents_sent = list(dict.fromkeys([*self.agents_sent, *done]))
        self.agents = {k: a for k, a in self.agents.items() if not a.done}


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Session)


def dump(s: Session) -> bytes:
    return _enc.encode(s)


def load(blob: bytes) -> Session:
    return _dec.decode(blob)
