"""What one batch of lines changed: committed to the state in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Per usage row: input, output, cache_read, cw5m, cw1h, web_search, requests, cost, unpriced.
USAGE_FIELDS = 9


@dataclass(slots=True)
class FileCursor:
    """Where a file's next complete line starts, and how to recognise the file."""

    dev: int
    ino: int
    offset: int = 0
    line_no: int = 0
    marker: bytes = b""  # the bytes just before offset, to detect a rewritten file


@dataclass
class Batch:
    files: dict[str, FileCursor] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    responses: dict[int, tuple] = field(default_factory=dict)
    aliases: dict[int, int] = field(default_factory=dict)
    usage: dict[tuple[str, int, str, str], list[float]] = field(default_factory=dict)
    sessions: dict[str, list] = field(default_factory=dict)
    places: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (session, cwd)
    tools: dict[str, tuple] = field(default_factory=dict)
    tool_agg: dict[tuple[str, str, str], list] = field(default_factory=dict)
    spend: dict[int, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    last_event_ts: float | None = None
    outcomes: Any = None  # outcome_ledger.Writes: what the spend bought, new in this batch
    lines: int = 0
    bytes: int = 0  # transcript bytes the batch's cursors moved over

    def count(self, name: str, n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def add_usage(self, key: tuple[str, int, str, str], values: list[float], sign: int) -> None:
        row = self.usage.get(key)
        if row is None:
            row = self.usage[key] = [0] * USAGE_FIELDS
        for i, v in enumerate(values):
            row[i] += sign * v

    def __bool__(self) -> bool:
        return bool(self.files or self.forgotten or self.counters)
