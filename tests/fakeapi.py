"""A scripted stand-in for the Anthropic Messages API, on 127.0.0.1.

The real Claude Code CLI (tests/node) is pointed at it with ANTHROPIC_BASE_URL so
that it writes real transcripts offline. Responses follow the wire format of the
real API: server-sent events (message_start, content_block_start/delta/stop,
message_delta, message_stop) for ``stream: true``, a full message object
otherwise, and a ``request-id: req_...`` header (Claude Code records it as
``requestId``).

Scenario requests vs side requests
----------------------------------
A *script* is a list of :class:`Step` registered under a tag; :meth:`FakeAnthropic.marker`
gives the marker text (``[[ccotel:TAG]]``) to put into a prompt. A request is a
*scenario request* when it offers tools (the agent loop always does) and its first
user message contains a marker of a registered script. Which step answers is
derived from the request itself: the number of assistant messages already in
``messages``. So concurrent CLI runs never interfere, and a retried request gets
the same step again. Each thread of a conversation has its own script: the main
thread is identified by the marker in the user's prompt, a subagent by a marker
in the ``prompt`` input of the Agent tool call (it becomes the subagent's first
user message).

Everything else (title generation, quota probes, topic detection, ...) is a *side
request* and gets a short plain-text reply with its own small, non-zero usage; it
never consumes a script step. Every response served is recorded in
:attr:`FakeAnthropic.served` with its ids and usage, so tests can compute the
totals a correct accountant must report.

Identifiers are deterministic (a hash of the seed, tag, step and attempt), unique
per response, and shaped like the real ones (``msg_01…``, ``req_011…``, ``toolu_01…``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeAnthropic",
    "RequestLog",
    "ServedResponse",
    "Step",
    "ToolCall",
    "Usage",
    "auto_usage",
    "ratelimit_headers",
]

HOLD_TIMEOUT = 600.0  # a held answer is released after this, whatever the test does
MARKER_RE = re.compile(r"\[\[ccotel:([A-Za-z0-9_.:/\-]+)\]\]")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _b62(data: bytes, n: int) -> str:
    x = int.from_bytes(data, "big")
    out = []
    for _ in range(n):
        x, r = divmod(x, 62)
        out.append(_B62[r])
    return "".join(out)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


@dataclass(frozen=True)
class Usage:
    """Token usage of one API response, as the API reports it."""

    input_tokens: int
    output_tokens: int
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    cache_read: int = 0

    @property
    def cache_creation(self) -> int:
        return self.cache_creation_5m + self.cache_creation_1h

    def api(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_5m,
                "ephemeral_1h_input_tokens": self.cache_creation_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_5m + other.cache_creation_5m,
            self.cache_creation_1h + other.cache_creation_1h,
            self.cache_read + other.cache_read,
        )

    @classmethod
    def zero(cls) -> Usage:
        return cls(0, 0, 0, 0, 0)

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        t = cls.zero()
        for u in usages:
            t = t + u
        return t


def auto_usage(*key: object, side: bool = False) -> Usage:
    """Deterministic, non-zero usage numbers that differ between keys."""
    h = int.from_bytes(_digest("usage", *key)[:16], "big")
    if side:  # small, like a haiku title/quota call
        return Usage(
            input_tokens=50 + h % 200,
            output_tokens=3 + (h >> 10) % 20,
            cache_creation_5m=0,
            cache_creation_1h=0,
            cache_read=0,
        )
    return Usage(
        input_tokens=3 + h % 97,
        output_tokens=20 + (h >> 10) % 480,
        cache_creation_5m=100 + (h >> 20) % 1900,
        cache_creation_1h=200 + (h >> 32) % 3800,
        cache_read=5_000 + (h >> 48) % 45_000,
    )


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """One scripted API response: optional text, then tool calls, with its usage.

    ``usage=None`` picks :func:`auto_usage` of the tag and step index.
    The stop reason is ``tool_use`` when there are tool calls, else ``end_turn``.
    """

    text: str | None = None
    tools: tuple[ToolCall, ...] = ()
    usage: Usage | None = None

    def __post_init__(self) -> None:
        if not self.text and not self.tools:
            raise ValueError("a Step needs text or tool calls")
        object.__setattr__(self, "tools", tuple(self.tools))


@dataclass(frozen=True)
class ServedResponse:
    kind: str  # "scenario" | "side" | "exhausted"
    tag: str | None
    step: int | None
    attempt: int
    model: str
    message_id: str
    request_id: str
    usage: Usage
    stream: bool
    session_id: str | None  # X-Claude-Code-Session-Id request header
    tool_use_ids: tuple[str, ...]
    stop_reason: str
    text: str | None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = asdict(self.usage)
        d["tool_use_ids"] = list(self.tool_use_ids)
        return d


@dataclass(frozen=True)
class RequestLog:
    method: str
    path: str
    model: str | None = None
    stream: bool | None = None
    n_tools: int = 0
    n_messages: int = 0
    max_tokens: int | None = None
    kind: str | None = None  # how it was answered
    system_head: str = ""
    session_id: str | None = None


class FakeAnthropic:
    """Context manager running the stand-in on an ephemeral 127.0.0.1 port.

    >>> with FakeAnthropic() as api:
    ...     tag = api.script("demo", [Step(text="hi")])
    ...     # run claude with ANTHROPIC_BASE_URL=api.base_url and a prompt
    ...     # containing api.marker(tag)
    """

    SIDE_TEXT = "OK"

    def __init__(
        self,
        seed: str = "ccotel-fakeapi",
        host: str = "127.0.0.1",
        record_bodies: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.seed = seed
        # sent with every /v1/messages answer, e.g. ratelimit_headers(); tests may
        # change it between requests
        self.extra_headers: dict[str, str] = dict(headers or {})
        self.record_bodies = record_bodies
        self.bodies: list[dict[str, Any]] = []  # request bodies, when record_bodies
        self.host = host
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Step]] = {}
        self._attempts: dict[tuple[Any, ...], int] = {}
        self._side_counter = 0
        self._holds: dict[tuple[str, int], threading.Event] = {}
        self._held: set[tuple[str, int]] = set()
        self.served: list[ServedResponse] = []
        self.requests: list[RequestLog] = []
        self.unknown: list[tuple[str, str]] = []  # (method, path) of unrecognized calls
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ scripts
    def script(self, tag: str, steps: Iterable[Step]) -> str:
        """Register the steps answering the thread whose first message has marker(tag)."""
        if not MARKER_RE.fullmatch(self.marker(tag)):
            raise ValueError(f"bad tag {tag!r}: use letters, digits and _.:/-")
        steps = list(steps)
        if not steps:
            raise ValueError("a script needs at least one step")
        with self._lock:
            if tag in self._scripts:
                raise ValueError(f"tag {tag!r} is already scripted")
            self._scripts[tag] = steps
        return tag

    def hold(self, tag: str, step: int) -> threading.Event:
        """Hold the answer to step ``step`` of ``tag`` until the returned event is set
        (a request "in flight" for as long as a test needs; at most HOLD_TIMEOUT s)."""
        with self._lock:
            return self._holds.setdefault((tag, step), threading.Event())

    def held(self, tag: str) -> list[int]:
        """The steps of ``tag`` whose requests are being held right now."""
        with self._lock:
            return sorted(i for t, i in self._held if t == tag)

    @staticmethod
    def marker(tag: str) -> str:
        return f"[[ccotel:{tag}]]"

    def served_for(self, tag: str) -> list[ServedResponse]:
        with self._lock:
            return [r for r in self.served if r.tag == tag and r.kind == "scenario"]

    def side_responses(self) -> list[ServedResponse]:
        with self._lock:
            return [r for r in self.served if r.kind != "scenario"]

    # ------------------------------------------------------------------ server
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeAnthropic:
        api = self

        class Handler(_Handler):
            owner = api

        self._httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fakeapi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:  # nothing stays held past the stand-in's life
            for gate in self._holds.values():
                gate.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ ids
    def _ids(self, *key: object) -> tuple[str, str]:
        d = _digest(self.seed, "ids", *key)
        return "msg_01" + _b62(d[:20], 22), "req_011" + _b62(d[12:32], 21)

    def _tool_id(self, *key: object) -> str:
        return "toolu_01" + _b62(_digest(self.seed, "tool", *key)[:20], 22)

    # ------------------------------------------------------------------ answering
    def _classify(self, body: Mapping[str, Any]) -> tuple[str | None, int]:
        """Return (tag, step index) for a scenario request, (None, 0) for a side request."""
        if not body.get("tools"):
            return None, 0
        messages = body.get("messages") or []
        first_user = next((m for m in messages if m.get("role") == "user"), None)
        if first_user is None:
            return None, 0
        m = MARKER_RE.search(_text_of(first_user.get("content")))
        if not m:
            return None, 0
        tag = m.group(1)
        with self._lock:
            if tag not in self._scripts:
                return None, 0
        step = sum(1 for msg in messages if msg.get("role") == "assistant")
        return tag, step

    def answer(
        self, body: Mapping[str, Any], session_id: str | None
    ) -> tuple[dict[str, Any], ServedResponse]:
        """Build the complete message for a /v1/messages request and record it."""
        model = str(body.get("model") or "claude-unknown")
        stream = bool(body.get("stream"))
        tag, index = self._classify(body)
        if tag is not None:
            with self._lock:
                gate = self._holds.get((tag, index))
                if gate is not None:
                    self._held.add((tag, index))
            if gate is not None:
                gate.wait(HOLD_TIMEOUT)
                with self._lock:
                    self._held.discard((tag, index))
        if tag is not None:
            steps = self._scripts[tag]
            if index < len(steps):
                kind, step = "scenario", steps[index]
                key: tuple[Any, ...] = (tag, index)
                usage = step.usage or auto_usage(self.seed, tag, index)
            else:
                kind = "exhausted"
                step = Step(text=f"(script {tag} has no step {index})")
                key = (tag, index)
                usage = auto_usage(self.seed, tag, index, side=True)
        else:
            with self._lock:
                self._side_counter += 1
                n = self._side_counter
            kind, step = "side", Step(text=_side_text(body, self.SIDE_TEXT))
            key = ("side", n)
            usage = auto_usage(self.seed, "side", n, side=True)
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
        msg_id, req_id = self._ids(*key, attempt)
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        tool_ids = []
        for i, call in enumerate(step.tools):
            tid = self._tool_id(*key, attempt, i)
            tool_ids.append(tid)
            content.append(
                {"type": "tool_use", "id": tid, "name": call.name, "input": dict(call.input)}
            )
        stop_reason = "tool_use" if step.tools else "end_turn"
        message = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage.api(),
        }
        served = ServedResponse(
            kind=kind,
            tag=tag,
            step=index if tag is not None else None,
            attempt=attempt,
            model=model,
            message_id=msg_id,
            request_id=req_id,
            usage=usage,
            stream=stream,
            session_id=session_id,
            tool_use_ids=tuple(tool_ids),
            stop_reason=stop_reason,
            text=step.text,
        )
        with self._lock:
            self.served.append(served)
        return message, served


def ratelimit_headers(
    five_hour: float | None = 0.425,
    seven_day: float | None = 0.17,
    *,
    five_hour_reset: int | None = None,
    seven_day_reset: int | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """The plan-utilisation headers the Messages API sends a Claude.ai subscriber.

    Utilisation is a fraction (0-1), resets are epoch seconds (default: 5 hours and
    7 days after ``now``). ``None`` leaves a window out. Claude Code 2.1.197 reads
    ``anthropic-ratelimit-unified-{5h,7d}-{utilization,reset}`` into the status
    line's ``rate_limits``; the rest of the family (status, representative claim,
    overage) is what a subscriber's answer also carries.
    """
    t = int(time.time() if now is None else now)
    out = {"anthropic-ratelimit-unified-status": "allowed"}
    windows = (
        ("5h", "five_hour", five_hour, five_hour_reset or t + 5 * 3600),
        ("7d", "seven_day", seven_day, seven_day_reset or t + 7 * 86400),
    )
    claim = None
    for short, name, used, reset in windows:
        if used is None:
            continue
        out[f"anthropic-ratelimit-unified-{short}-utilization"] = repr(float(used))
        out[f"anthropic-ratelimit-unified-{short}-reset"] = str(int(reset))
        out[f"anthropic-ratelimit-unified-{short}-status"] = "allowed"
        if claim is None or used > claim[1]:
            claim = (name, used, reset)
    if claim is not None:
        out["anthropic-ratelimit-unified-representative-claim"] = claim[0]
        out["anthropic-ratelimit-unified-reset"] = str(int(claim[2]))
    out["anthropic-ratelimit-unified-fallback"] = "available"
    out["anthropic-ratelimit-unified-overage-status"] = "rejected"
    out["anthropic-ratelimit-unified-overage-disabled-reason"] = "org_level_disabled"
    return out


def _side_text(body: Mapping[str, Any], default: str) -> str:
    """A harmless reply for a side request; JSON when a JSON schema is demanded
    (Claude Code's title generation asks for {"title": ...})."""
    fmt = (body.get("output_config") or {}).get("format") or {}
    if fmt.get("type") != "json_schema":
        return default
    return json.dumps(_fill_schema(fmt.get("schema") or {}))


def _fill_schema(schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _fill_schema(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "Ccotel test session"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "\n".join(parts)
    return ""


def sse_events(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The event sequence the real API streams for a complete message."""
    usage = dict(message["usage"])
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(usage, output_tokens=1)  # like the API: final count comes later
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            text = block["text"]
            cut = max(1, len(text) // 2)
            for piece in (text[:cut], text[cut:]):
                if piece:
                    events.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": piece},
                            },
                        )
                    )
        elif block["type"] == "tool_use":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
            )
            raw = json.dumps(block["input"])
            cut = len(raw) // 2
            for piece in ("", raw[:cut], raw[cut:]):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        else:  # pragma: no cover - scripts only make text and tool_use
            raise ValueError(block["type"])
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                    "output_tokens": usage["output_tokens"],
                },
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _estimate_tokens(body: Mapping[str, Any]) -> int:
    return max(1, len(json.dumps(body.get("messages", []))) // 4)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeAnthropic
    protocol_version = "HTTP/1.1"
    server_version = "ccotel-fakeapi"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -------------------------------------------------------------- helpers
    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw[:200].decode("utf-8", "replace")}

    def _log(self, **kw: Any) -> None:
        with self.owner._lock:
            self.owner.requests.append(RequestLog(method=self.command, path=self.path, **kw))

    def _unknown(self) -> None:
        with self.owner._lock:
            self.owner.unknown.append((self.command, self.path))

    def _not_found(self) -> None:
        self._json(
            404,
            {
                "type": "error",
                "error": {
                    "type": "not_found_error",
                    "message": f"ccotel fakeapi: no {self.command} {self.path}",
                },
            },
        )

    # -------------------------------------------------------------- verbs
    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        session_id = self.headers.get("x-claude-code-session-id")
        if path == "/v1/messages/count_tokens":
            self._log(
                model=body.get("model"),
                n_messages=len(body.get("messages") or []),
                n_tools=len(body.get("tools") or []),
                kind="count_tokens",
                session_id=session_id,
            )
            self._json(200, {"input_tokens": _estimate_tokens(body)})
            return
        if path != "/v1/messages":
            self._log(kind="unknown", session_id=session_id)
            self._unknown()
            self._not_found()
            return
        message, served = self.owner.answer(body, session_id)
        if self.owner.record_bodies:
            with self.owner._lock:
                self.owner.bodies.append(
                    {"kind": served.kind, "message_id": served.message_id, "body": body}
                )
        system = body.get("system")
        self._log(
            model=body.get("model"),
            stream=bool(body.get("stream")),
            n_tools=len(body.get("tools") or []),
            n_messages=len(body.get("messages") or []),
            max_tokens=body.get("max_tokens"),
            kind=served.kind,
            system_head=_text_of(system)[:200] if not isinstance(system, str) else system[:200],
            session_id=session_id,
        )
        headers = {
            "request-id": served.request_id,
            "anthropic-organization-id": "00000000-0000-4000-8000-000000000000",
            **self.owner.extra_headers,
        }
        if not served.stream:
            self._json(200, message, headers=headers)
            return
        payload = "".join(
            f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
            for name, data in sse_events(message)
        ).encode()
        self._send(
            200,
            payload,
            content_type="text/event-stream; charset=utf-8",
            headers=dict(headers, **{"cache-control": "no-cache"}),
        )

    def do_GET(self) -> None:
        self._log(kind="unknown")
        self._unknown()
        self._not_found()

    def do_HEAD(self) -> None:
        self._log(kind="unknown")
        self._unknown()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_CONNECT(self) -> None:
        # Only reached if the CLI tries to leave the machine through the HTTPS_PROXY
        # that tests/realcli.py points at this server: refuse and record it.
        self._log(kind="blocked-egress")
        self._unknown()
        self._send(403, b"ccotel fakeapi: no egress from tests\n", content_type="text/plain")
        self.close_connection = True

    do_PUT = do_DELETE = do_PATCH = do_GET
