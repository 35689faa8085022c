"""Billing blocks exactly as ``ccusage blocks`` (20.0.x) computes them.

Read from ccusage's own code (``rust/crates/ccusage/src/blocks.rs``):

* entries (de-duplicated API responses, the same set ``ccusage session`` sums, and the
  zero-usage API-error lines ccusage also counts) are
  sorted by time; the first one opens a block that starts at its time floored to
  the UTC hour and ends 5 hours later;
* an entry opens a new block when it is more than 5 hours (strictly) after the
  block's start *or* after the previous entry; the check is ``>``, so an entry at
  exactly ``start + 5 h`` still belongs to the old block;
* a block's ``last_activity`` (ccusage's ``actualEndTime``) is its last entry;
  it is active when ``now - last_activity < 5 h`` and ``now < end``;
* between blocks more than 5 hours apart ccusage prints a gap block: here gaps
  are not rows;
* burn rate (active block only): tokens and cost over the minutes between the
  block's first and last entry (none when they are the same instant); the
  projection adds that rate times the whole minutes left until ``end`` (rounded),
  and rounds the cost to the cent as ccusage does.

All arithmetic is in integer milliseconds like ccusage's, so block edges match
to the millisecond. Times in and out are epoch seconds (floats).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccotel.state import limits

if TYPE_CHECKING:
    from ccotel.state import Store

__all__ = [
    "BLOCK_HOURS",
    "Block",
    "BurnRate",
    "Entry",
    "Projection",
    "active_block",
    "blocks_from_db",
    "blocks_from_store",
    "burn_rate",
    "identify_blocks",
    "projection",
]

BLOCK_HOURS = 5
_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Entry:
    """One de-duplicated API response: epoch seconds, its tokens and its cost."""

    ts: float
    input: int
    output: int
    cache_write: int
    cache_read: int
    cost: float


@dataclass(frozen=True, slots=True)
class Block:
    start: float  # ccusage startTime: the first entry's time floored to the hour
    end: float  # ccusage endTime: start + 5 h
    first_activity: float
    last_activity: float  # ccusage actualEndTime
    active: bool
    entries: int
    input: int
    output: int
    cache_write: int
    cache_read: int
    cost: float

    @property
    def total_tokens(self) -> int:
        return self.input + self.output + self.cache_write + self.cache_read


@dataclass(frozen=True, slots=True)
class BurnRate:
    tokens_per_minute: float
    tokens_per_minute_for_indicator: float  # input + output only, as ccusage's indicator
    cost_per_hour: float


@dataclass(frozen=True, slots=True)
class Projection:
    total_tokens: int
    total_cost: float  # rounded to the cent, as ccusage does
    remaining_minutes: int


def _ms(ts: float) -> int:
    return round(ts * 1000)


def _round(x: float) -> float:
    """Rust's f64::round: halves away from zero (Python's round() goes to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def identify_blocks(
    entries: Iterable[Entry], *, now: float | None = None, hours: float = BLOCK_HOURS
) -> list[Block]:
    """The blocks with usage, oldest first (ccusage's gap blocks are left out)."""
    dur = int(hours * _HOUR_MS)
    now_ms = _ms(time.time() if now is None else now)
    timed = sorted(((_ms(e.ts), e) for e in entries), key=lambda p: p[0])
    out: list[Block] = []
    group: list[tuple[int, Entry]] = []
    start = 0
    for ms, e in timed:
        if group and (ms - start > dur or ms - group[-1][0] > dur):
            out.append(_block(start, group, dur, now_ms))
            group = []
        if not group:
            start = ms // _HOUR_MS * _HOUR_MS
        group.append((ms, e))
    if group:
        out.append(_block(start, group, dur, now_ms))
    return out


def _block(start: int, group: list[tuple[int, Entry]], dur: int, now_ms: int) -> Block:
    first, last = group[0][0], group[-1][0]
    end = start + dur
    cost = 0.0
    for _, e in group:  # summed in time order, like ccusage
        cost += e.cost
    return Block(
        start=start / 1000,
        end=end / 1000,
        first_activity=first / 1000,
        last_activity=last / 1000,
        active=now_ms - last < dur and now_ms < end,
        entries=len(group),
        input=sum(e.input for _, e in group),
        output=sum(e.output for _, e in group),
        cache_write=sum(e.cache_write for _, e in group),
        cache_read=sum(e.cache_read for _, e in group),
        cost=cost,
    )


def active_block(blocks: Iterable[Block]) -> Block | None:
    return next((b for b in blocks if b.active), None)


def burn_rate(block: Block) -> BurnRate | None:
    """ccusage's burn rate of a block: its usage per minute between its first and last entry."""
    minutes = (_ms(block.last_activity) - _ms(block.first_activity)) / _MINUTE_MS
    if minutes <= 0:
        return None
    return BurnRate(
        tokens_per_minute=block.total_tokens / minutes,
        tokens_per_minute_for_indicator=(block.input + block.output) / minutes,
        cost_per_hour=block.cost / minutes * 60,
    )


def projection(block: Block, *, now: float | None = None) -> Projection | None:
    """ccusage's projection of an active block's usage at its end, at the current burn rate."""
    if not block.active:
        return None
    rate = burn_rate(block)
    if rate is None:
        return None
    now_ms = _ms(time.time() if now is None else now)
    remaining = _round(max(0, _ms(block.end) - now_ms) / _MINUTE_MS)
    tokens = block.total_tokens + rate.tokens_per_minute * remaining
    cost = block.cost + rate.cost_per_hour / 60 * remaining
    return Projection(
        total_tokens=int(_round(tokens)),
        total_cost=_round(cost * 100) / 100,
        remaining_minutes=int(remaining),
    )


def blocks_from_store(
    store: Store, *, now: float | None = None, since: float | None = None
) -> list[Block]:
    """The blocks of the entries in a :class:`ccotel.state.store.Store` (read only): its
    responses and its zero-usage API-error lines (``block_marks``), as ccusage's entries.

    ``since``: the ``start`` of a block computed before; only it and the blocks after
    it are recomputed (a block's start depends only on the entries before it, so the
    earlier ones cannot change unless an older response arrives late: recompute all
    from time to time). Reading every response costs about 3 s per million.
    """
    return blocks_from_db(store.db, now=now, since=since)


def blocks_from_db(
    db: sqlite3.Connection, *, now: float | None = None, since: float | None = None
) -> list[Block]:
    """``blocks_from_store`` on a state database connection (``connect_readonly``)."""
    rows = limits.block_entries(db, since if since is not None else float("-inf"))
    return identify_blocks((Entry(*row[2:]) for row in rows), now=now)
