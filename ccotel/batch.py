"""What one batch of lines changed: committed to the state in one transaction.

The rows a batch holds have named fields (msgspec Structs: as fast to build and read as
tuples, and they travel between processes as msgpack arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from msgspec import Struct


@dataclass(slots=True)
class FileCursor:
    """Where a file's next complete line starts, and how to recognise the file."""

    dev: int
    ino: int
    offset: int = 0
    line_no: int = 0
    marker: bytes = b""  # the bytes just before offset, to detect a rewritten file


class Response(Struct, array_like=True, gc=False):
    """A de-duplicated API response, as kept (the columns of the `responses` view)."""

    key: int  # records.response_key
    mkey: int  # records.message_key
    session: str | None
    cwd: str | None
    model: str | None
    ts: float
    input: int
    output: int
    cache_read: int
    cw5m: int
    cw1h: int
    web_search: int
    sidechain: int  # 0 or 1
    has_speed: int  # 0 or 1: the line had a speed field
    cost: float
    priced: int  # 0 or 1: the model has a price

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.cache_read + self.cw5m + self.cw1h


class UsageSums(Struct, array_like=True, gc=False):
    """Sums over responses (a `usage` row, or the totals of a model and directory)."""

    input: float = 0
    output: float = 0
    cache_read: float = 0
    cw5m: float = 0
    cw1h: float = 0
    web_search: float = 0
    requests: float = 0
    cost: float = 0.0
    unpriced: float = 0  # tokens of responses whose model has no price

    def count(self, r: Response, sign: int) -> None:
        """Add (sign 1) or take away (-1) one response."""
        self.input += sign * r.input
        self.output += sign * r.output
        self.cache_read += sign * r.cache_read
        self.cw5m += sign * r.cw5m
        self.cw1h += sign * r.cw1h
        self.web_search += sign * r.web_search
        self.requests += sign
        self.cost += sign * r.cost
        if not r.priced:
            self.unpriced += sign * r.tokens

    def add(self, o: UsageSums) -> None:
        self.input += o.input
        self.output += o.output
        self.cache_read += o.cache_read
        self.cw5m += o.cw5m
        self.cw1h += o.cw1h
        self.web_search += o.web_search
        self.requests += o.requests
        self.cost += o.cost
        self.unpriced += o.unpriced


class ToolCall(Struct, array_like=True, gc=False):
    key: int  # records.h64 of the tool_use id
    name: str
    session: str
    cwd: str | None
    start: float | None
    end: float | None = None  # None: no result yet
    status: str | None = None  # "ok", "error"; None: no result yet


class ToolAgg(Struct, array_like=True, gc=False):
    """Tool calls with a result, of one tool, directory and status."""

    count: int
    dur_sum: float
    buckets: list[int]  # per accounting.TOOL_BUCKETS bound, and one above the last


class SessionInfo(Struct, array_like=True, gc=False):
    """What a session's lines said: its first cwd, latest branch and version, its span."""

    cwd: str | None
    branch: str | None
    version: str | None
    first: float
    last: float

    def update(self, cwd: str | None, branch: str | None, version: str | None,
               first: float, last: float) -> None:  # fmt: skip
        self.cwd = self.cwd or cwd or None
        self.branch = branch or self.branch
        self.version = version or self.version
        self.first = min(self.first, first)
        self.last = max(self.last, last)


class Interval(Struct, array_like=True, gc=False):
    """The first and last activity of a session in a directory."""

    first: float
    last: float


@dataclass
class Batch:
    files: dict[str, FileCursor] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    responses: dict[int, Response] = field(default_factory=dict)
    aliases: dict[int, int] = field(default_factory=dict)
    usage: dict[tuple[str, int, str, str], UsageSums] = field(default_factory=dict)
    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    places: dict[tuple[str, str], Interval] = field(default_factory=dict)  # (session, cwd)
    tools: dict[int, ToolCall] = field(default_factory=dict)
    tool_agg: dict[tuple[str, str, str], ToolAgg] = field(default_factory=dict)
    spend: dict[int, float] = field(default_factory=dict)
    marks: dict[int, float] = field(default_factory=dict)  # block entries without usage: key -> ts
    counters: dict[str, float] = field(default_factory=dict)
    last_event_ts: float | None = None
    outcomes: Any = None  # outcome_ledger.Writes: what the spend bought, new in this batch
    lines: int = 0
    bytes: int = 0  # transcript bytes the batch's cursors moved over

    def count(self, name: str, n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def add_usage(self, key: tuple[str, int, str, str], r: Response, sign: int) -> None:
        row = self.usage.get(key)
        if row is None:
            row = self.usage[key] = UsageSums()
        row.count(r, sign)

    def __bool__(self) -> bool:
        return bool(self.files or self.forgotten or self.counters)
