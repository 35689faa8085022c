"""Typed decoding of transcript lines into compact records.

Only the fields ccotel uses are declared; msgspec skips the rest without
building objects for them. A line whose shape is off falls back to the narrow
usage schema ccusage itself reads, so a stray wrong type elsewhere in the line
never loses its tokens.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Annotated, Any, Literal, NoReturn, Union

import msgspec
from msgspec import Meta, Raw, Struct

from ccotel import outcomes
from ccotel.keys import h64

# No response has a trillion tokens; larger counts (and negative ones, and floats) make the
# line malformed. ccusage sums any u64, which SQLite integers (and sums of them) cannot hold.
MAX_TOKENS = (1 << 40) - 1
NonNeg = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]
# ccusage (serde_json) refuses a line nested deeper than this, or with a key twice in an object.
MAX_DEPTH = 127

# ccusage counts usage only on lines containing this exact byte string.
USAGE_MARKER = b'"usage":{'
# ccusage drops usage lines where one of these fields is null.
_NULL_KEYS = frozenset(
    k.encode()
    for k in (
        "id", "cwd", "model", "speed", "costUSD", "version", "sessionId", "requestId",
        "isApiErrorMessage", "cache_read_input_tokens", "cache_creation_input_tokens",
    )
)  # fmt: skip
_SEMVER_PREFIX = re.compile(r"\d+\.\d+\.\d")
SYNTHETIC_MODEL = "<synthetic>"


# --- the wire shapes (what Claude Code writes) -------------------------------


class _CacheCreation(Struct):
    ephemeral_5m_input_tokens: NonNeg = 0
    ephemeral_1h_input_tokens: NonNeg = 0


class _ServerToolUse(Struct):
    web_search_requests: int | float | None = 0


class _Usage(Struct):
    input_tokens: NonNeg
    output_tokens: NonNeg
    cache_creation_input_tokens: NonNeg = 0
    cache_read_input_tokens: NonNeg = 0
    cache_creation: _CacheCreation | None = None
    speed: Literal["standard", "fast"] | None = None
    server_tool_use: Raw = msgspec.field(default_factory=Raw)


class _Block(Struct):
    type: str = ""
    id: str | None = None
    name: str | None = None
    tool_use_id: str | None = None
    is_error: bool | None = None
    input: Raw = msgspec.field(default_factory=Raw)
    content: Raw = msgspec.field(default_factory=Raw)


class _Message(Struct):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None
    content: str | list[_Block] | None = None
    stop_reason: str | None = None


class _ToolUseResult(Struct):
    agentId: str | None = None
    # What ccotel.outcomes reads (raw, decoded there only when it matters): Edit/MultiEdit/Write
    # patches and created files, Bash output and Claude Code's own git classification.
    type: Raw = msgspec.field(default_factory=Raw)
    structuredPatch: Raw = msgspec.field(default_factory=Raw)
    content: Raw = msgspec.field(default_factory=Raw)
    stdout: Raw = msgspec.field(default_factory=Raw)
    gitOperation: Raw = msgspec.field(default_factory=Raw)


class _Entry(Struct):
    timestamp: str | None = None
    sessionId: str | None = None
    uuid: str | None = None
    cwd: str | None = None
    gitBranch: str | None = None
    version: str | None = None
    isSidechain: bool | None = None
    agentId: str | None = None
    requestId: str | None = None
    isApiErrorMessage: bool | None = None
    isMeta: bool | None = None
    isCompactSummary: bool | None = None
    costUSD: float | None = None
    message: _Message | None = None
    toolUseResult: _ToolUseResult | str | list[Any] | int | float | bool | None = None
    subtype: Raw = msgspec.field(default_factory=Raw)  # system: turn_duration (ccotel.outcomes)
    durationMs: Raw = msgspec.field(default_factory=Raw)


class _UsageMessage(Struct):
    usage: _Usage
    model: str | None = None
    id: str | None = None


class _UsageLine(Struct):
    """The narrow schema of ccusage's UsageEntry."""

    timestamp: str
    message: _UsageMessage
    sessionId: str | None = None
    version: str | None = None
    costUSD: float | None = None
    requestId: str | None = None
    isApiErrorMessage: bool | None = None
    isSidechain: bool | None = None


class _Line(_Entry):
    """Any line, its type a plain field (the fallback for types not listed below)."""

    type: str = ""


class _Tagged(_Entry, tag_field="type"):
    pass


class _Assistant(_Tagged, tag="assistant"):
    pass


class _User(_Tagged, tag="user"):
    pass


class _System(_Tagged, tag="system"):
    pass


class _Skip(Struct, tag_field="type"):
    """Records that carry nothing ccotel counts: decoded without building anything."""


# progress lines copy subagent messages that the subagent files hold already.
SKIPPED_TYPES = (
    "progress", "file-history-snapshot", "queue-operation", "attachment", "last-prompt",
    "summary", "ai-title", "custom-title", "agent-setting", "pr-link",
)  # fmt: skip
_SKIPS = tuple(
    msgspec.defstruct(f"_Skip{i}", [], bases=(_Skip,), tag=t) for i, t in enumerate(SKIPPED_TYPES)
)
_TAG = {_Assistant: "assistant", _User: "user", _System: "system"}

_tagged_decoder = msgspec.json.Decoder(_Assistant | _User | _System | Union[_SKIPS])  # noqa: UP007
_line_decoder = msgspec.json.Decoder(_Line)
_usage_decoder = msgspec.json.Decoder(_UsageLine)
_any_decoder = msgspec.json.Decoder()
_server_tool_use = msgspec.json.Decoder(_ServerToolUse)
# msgspec raises UnicodeDecodeError for invalid UTF-8 in a declared string.
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


# --- the records ccotel works with --------------------------------------------


class Usage(Struct, array_like=True, gc=False):
    """One API response as counted by ccusage (one line of it)."""

    message_id: str | None
    request_id: str | None
    model: str | None
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    web_search: int
    fast: bool
    has_speed: bool
    sidechain: bool
    cost_usd: float | None = None  # the line's costUSD (Claude Code <= 1.0.8): its cost

    @property
    def total(self) -> int:
        return (
            self.input + self.output + self.cache_read + self.cache_write_5m + self.cache_write_1h
        )


class ToolUse(Struct, array_like=True, gc=False):
    id: str
    name: str
    input: bytes | None  # raw JSON, kept only for content capture
    outcome: int = 0  # outcomes.CALL_* bits: may commit or open a pull request


class ToolResult(Struct, array_like=True, gc=False):
    tool_use_id: str
    is_error: bool
    content: bytes | None


class Record(Struct, array_like=True, gc=False):
    """What one transcript line means to ccotel."""

    line_no: int
    type: str
    ts: float | None = None
    session: str | None = None
    uuid: str | None = None
    cwd: str | None = None
    branch: str | None = None
    version: str | None = None
    sidechain: bool = False
    agent_id: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    tool_uses: list[ToolUse] | None = None
    tool_results: list[ToolResult] | None = None
    prompt: bool = False  # a user prompt (not a tool result, not injected)
    result_agent_id: str | None = None
    error: str | None = None  # why the line (or part of it) could not be read
    raw: bytes | None = None  # the line, when it carries usage (for strict_error)
    mark: int | None = None  # a zero-usage API-error line: its mark_key (a block entry only)
    outcome: bool = False  # something for ccotel.outcomes.take: the two below, or a CALL
    result: _ToolUseResult | None = None  # toolUseResult with a patch, file or output
    turn_ms: int | None = None  # a turn_duration line's milliseconds


def response_key(u: Usage, session: str, ts: float, line_no: int) -> int:
    """Identity of an API response, as ccusage 20.0.24 de-duplicates (measured with crafted
    lines, docs/notes/parity.md): message.id with requestId across all sessions; message.id
    alone only within its session (the line's sessionId, else its file's); a line without a
    message id is never a copy of another (its key names the line itself).
    """
    if u.message_id is None:
        return h64(f"\x00{session}\x00{ts}\x00{line_no}\x00{u!r}")
    if u.request_id is None:
        return h64(f"\x02{u.message_id}\x00{session}")
    return h64(f"{u.message_id}\x00{u.request_id}")


def mark_key(message_id: str | None, request_id: str | None, session: str, ts: float) -> int:
    """Identity of a zero-usage API-error line as ccusage 20.0.24 de-duplicates it for blocks:
    message.id with requestId, or with sessionId when there is none (measured:
    docs/notes/blocks.md); a line without a message id is its own."""
    if message_id is None:
        return h64(f"\x01{session}\x00{ts}")
    return h64(f"\x01{message_id}\x00{request_id if request_id is not None else session}")


def message_key(u: Usage, key: int, session: str) -> int:
    """The message id within its session, which a /btw sidechain replay shares with its
    parent (ccusage 20.0.24 collapses such a replay only within one session)."""
    return key if u.message_id is None else h64(f"\x03{u.message_id}\x00{session}")


_TS = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?(?:(Z)|([+-])(\d\d):(\d\d))",
    re.ASCII,
)
_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


# What Claude Code writes (``2026-01-02T03:04:05.678Z``): read through a cache of the hour.
_TS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)
_HOURS: dict[str, int | None] = {}  # "YYYY-MM-DDTHH" -> its milliseconds since the epoch


def parse_ts(value: str | None) -> float | None:
    """Seconds since the epoch of a line's timestamp, read as ccusage 20 reads it (or None):
    ``YYYY-MM-DDTHH:MM:SS``, optionally ``.mmm`` (exactly three digits), then ``Z`` or
    ``+HH:MM``/``-HH:MM``; nothing else (no naive time, no other precision, no leap second).
    A line whose timestamp ccusage cannot read counts nothing in either. Year 0, which
    ccusage reads and Python's dates cannot hold, is refused too (docs/notes/parity.md)."""
    if value is not None and len(value) == 24 and _TS_Z.fullmatch(value):
        hour = value[:13]
        base = _HOURS.get(hour, -1)
        if base == -1:
            t = _parse_ts(hour + ":00:00Z")
            base = None if t is None else int(t) * 1000
            if len(_HOURS) >= 4096:
                _HOURS.clear()
            _HOURS[hour] = base
        mi, sec = int(value[14:16]), int(value[17:19])
        if base is None or mi > 59 or sec > 59:
            return None
        return (base + (mi * 60 + sec) * 1000 + int(value[20:23])) / 1000
    return _parse_ts(value)


def _parse_ts(value: str | None) -> float | None:
    if not value or len(value) not in (20, 24, 25, 29):
        return None
    m = _TS.fullmatch(value)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if y == 0 or not 1 <= mo <= 12 or d == 0 or d > _DAYS[mo] + (mo == 2 and leap):
        return None
    if h > 23 or mi > 59 or sec > 59:
        return None
    ms = int(m.group(7) or 0)
    offset = 0 if m.group(8) else (int(m.group(10)) * 60 + int(m.group(11)))
    if m.group(9) == "-":
        offset = -offset
    total = (_days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset * 60) * 1000
    return (total + ms) / 1000


def _has_null_key(raw: bytes) -> bool:
    i = raw.find(b'":null')
    while i >= 0:
        if raw[raw.rfind(b'"', 0, i) + 1 : i] in _NULL_KEYS:
            return True
        i = raw.find(b'":null', i + 6)
    return False


def _usage_eligible(raw: bytes, version: str | None, ids: tuple[str | None, ...]) -> bool:
    """ccusage's gate for a usage line: marker present, no null key field, sane ids."""
    if USAGE_MARKER not in raw or _has_null_key(raw):
        return False
    if version is not None and not _SEMVER_PREFIX.match(version):
        return False
    return "" not in ids


def _usage(
    u: _Usage,
    message_id: str | None,
    request_id: str | None,
    model: str | None,
    sidechain: bool,
    cost_usd: float | None,
) -> Usage:
    if u.cache_creation is not None:
        w5, w1 = (
            u.cache_creation.ephemeral_5m_input_tokens,
            u.cache_creation.ephemeral_1h_input_tokens,
        )
    else:
        w5, w1 = u.cache_creation_input_tokens, 0
    return Usage(
        message_id,
        request_id,
        model,
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        w5,
        w1,
        _web_searches(u.server_tool_use),
        u.speed == "fast",
        u.speed is not None,
        sidechain,
        cost_usd,
    )


def _web_searches(raw: Raw) -> int:
    if not raw:
        return 0
    try:
        n = _server_tool_use.decode(raw).web_search_requests
    except _DECODE_ERRORS:
        return 0
    return int(n) if isinstance(n, int | float) and 0 < n <= MAX_TOKENS else 0


def _blocks(
    msg: _Message, keep_content: bool
) -> tuple[list[ToolUse] | None, list[ToolResult] | None]:
    if not isinstance(msg.content, list):
        return None, None
    uses: list[ToolUse] | None = None
    results: list[ToolResult] | None = None
    for b in msg.content:
        if b.type == "tool_use" and b.id:
            uses = uses or []
            name = b.name or "unknown"
            uses.append(
                ToolUse(
                    b.id,
                    name,
                    bytes(b.input) if keep_content and b.input else None,
                    outcomes.call_kind(name, b.input),
                )
            )
        elif b.type == "tool_result" and b.tool_use_id:
            results = results or []
            content = bytes(b.content) if keep_content and b.content else None
            results.append(ToolResult(b.tool_use_id, bool(b.is_error), content))
    return uses, results


def decode(raw: bytes, line_no: int, keep_content: bool = False) -> Record | None:
    """Decode one line (without its newline). None for a blank line; never raises: a line
    that cannot be read is a record with its error."""
    try:
        return _decode(raw, line_no, keep_content)
    except Exception as exc:  # RecursionError (deep nesting), MemoryError, a decoder's bug
        return Record(line_no, "", error=f"undecodable ({type(exc).__name__})")


def _decode(raw: bytes, line_no: int, keep_content: bool) -> Record | None:
    try:
        line = _tagged_decoder.decode(raw)
    except _DECODE_ERRORS:
        if not raw.strip():
            return None
        try:
            line = _line_decoder.decode(raw)
        except _DECODE_ERRORS as exc:
            return _salvage(raw, line_no, exc)
    if isinstance(line, _Skip):
        return None
    kind = _TAG.get(type(line)) or line.type
    msg = line.message
    sidechain = bool(line.isSidechain)
    rec = Record(
        line_no,
        kind,
        parse_ts(line.timestamp),
        line.sessionId,
        line.uuid,
        line.cwd,
        line.gitBranch,
        line.version,
        sidechain,
        line.agentId,
    )
    if line.durationMs and kind == "system":
        rec.turn_ms = outcomes.turn_ms(line.subtype, line.durationMs)
        rec.outcome = rec.turn_ms is not None
    if msg is None:
        return rec
    rec.model = msg.model
    rec.stop_reason = msg.stop_reason
    if (
        msg.usage is not None
        and line.timestamp is not None
        and rec.ts is not None
        and _usage_eligible(raw, line.version, (line.sessionId, line.requestId, msg.id, msg.model))
    ):
        if not _no_usage(msg.model, line.isApiErrorMessage, msg.usage, line.costUSD):
            rec.usage = _usage(
                msg.usage, msg.id, line.requestId, msg.model, sidechain, line.costUSD
            )
            rec.raw = raw
        elif line.sessionId:
            rec.mark = mark_key(msg.id, line.requestId, line.sessionId, rec.ts)
    rec.tool_uses, rec.tool_results = _blocks(msg, keep_content)
    if rec.tool_uses and any(t.outcome for t in rec.tool_uses):
        rec.outcome = True
    if kind == "user":
        rec.prompt = (
            rec.tool_results is None
            and not line.isMeta
            and not line.isCompactSummary
            and not sidechain
            and msg.content is not None
        )
        if rec.tool_results:
            tur = line.toolUseResult
            rec.result_agent_id = tur.agentId if isinstance(tur, _ToolUseResult) else None
            if isinstance(tur, _ToolUseResult) and (
                tur.structuredPatch or (tur.type and tur.content) or tur.stdout or tur.gitOperation
            ):
                rec.result, rec.outcome = tur, True
    return rec


def _no_usage(model: str | None, api_error: bool | None, u: _Usage, cost_usd: float | None) -> bool:
    """A <synthetic> or API-error line with nothing to count: a block mark, not a response.
    One that does carry tokens (or a cost) counts them, as ccusage counts every usage line."""
    if model != SYNTHETIC_MODEL and not api_error:
        return False
    c = u.cache_creation
    return not (
        u.input_tokens or u.output_tokens or u.cache_read_input_tokens or cost_usd
        or (u.cache_creation_input_tokens if c is None
            else c.ephemeral_5m_input_tokens or c.ephemeral_1h_input_tokens)
    )  # fmt: skip


def _salvage(raw: bytes, line_no: int, exc: Exception) -> Record:
    """The full schema failed: keep what ccusage would still count."""
    reason = _reason(raw, exc)
    rec = Record(line_no, "", error=reason)
    if USAGE_MARKER not in raw:
        return rec
    try:
        u = _usage_decoder.decode(raw)
    except _DECODE_ERRORS:
        return rec
    ts = parse_ts(u.timestamp)
    m = u.message
    if ts is None or not _usage_eligible(raw, u.version, (u.sessionId, u.requestId, m.id, m.model)):
        return rec
    rec.ts, rec.session, rec.model = ts, u.sessionId, m.model
    if not _no_usage(m.model, u.isApiErrorMessage, m.usage, u.costUSD):
        rec.usage = _usage(m.usage, m.id, u.requestId, m.model, bool(u.isSidechain), u.costUSD)
        rec.raw = raw
    elif u.sessionId:
        rec.mark = mark_key(m.id, u.requestId, u.sessionId, ts)
    return rec


def _reason(raw: bytes, exc: Exception) -> str:
    try:
        _any_decoder.decode(raw)
    except _DECODE_ERRORS:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid UTF-8"
        return "not JSON"
    return f"unexpected shape: {exc}"


# --- what ccusage refuses that the decoders here accept --------------------------------

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_encoder = msgspec.json.Encoder()


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, object]]) -> None:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _DuplicateKey


def depth(raw: bytes) -> int:
    """How deep the line's arrays and objects nest (the top-level object is 1)."""
    s = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, s)), default=0)


def strict_error(raw: bytes) -> str | None:
    """Why ccusage would refuse a line these decoders read (nesting deeper than MAX_DEPTH,
    a key twice in one object, invalid UTF-8 or escapes in a field not read here), or None.

    Cheap for what Claude Code writes: such a line decodes and encodes back to its own
    bytes, which proves it has no key twice; only other lines are parsed again.
    """
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(raw) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    try:
        if _encoder.encode(_any_decoder.decode(raw)) == raw:
            return None
        json.loads(raw, object_pairs_hook=_unique, parse_constant=_no_constant)
    except _DuplicateKey:
        return "a key twice in one object"
    except (UnicodeError, ValueError, RecursionError) as exc:
        return _reason(raw, exc)
    return None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
