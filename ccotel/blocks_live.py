"""The billing blocks of a running daemon: the active block without re-reading history.

The blocks before the last one cannot change unless an entry older than the last block's
start arrives (ccotel.blocks: a block's start depends only on the entries before it). So
the daemon keeps the entries of the last block in memory, fed by every commit
(``committed``), and recomputes only that tail; an entry at or before the tail's start
(a late file, a backfill of another folder) marks the whole history for a recomputation
from the state, done at most every ``FULL_EVERY`` seconds, never by a reader: until it is
done, readers see the last result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ccotel.blocks import Block, Entry, active_block, burn_rate, identify_blocks, projection

if TYPE_CHECKING:
    from ccotel.batch import Batch
    from ccotel.state import limits

# (kind, key): a response's key (kind 0) or an API-error line's (kind 1), and its entry
KeyedEntry = tuple[tuple[int, int], Entry]

FULL_EVERY = 30.0  # seconds between full recomputations at most


def _ms(ts: float) -> int:
    return round(ts * 1000)


class LiveBlocks:
    """``active(now)``: the active block (or None); ``committed(batch)`` after each commit;
    ``refresh()`` runs a pending full recomputation (the daemon calls it off the ingest path)."""

    def __init__(
        self,
        read_entries: Callable[[float], list[limits.BlockEntry]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read_entries = read_entries  # since -> limits.block_entries' rows
        self.clock = clock
        self._lock = threading.Lock()
        self._full_lock = threading.Lock()
        self._tail_start: int | None = None  # ms; None: never computed
        self._tail: dict[tuple[int, int], Entry] = {}  # (kind, key) -> entry after the start
        self._need_full = True
        self._last_full = float("-inf")
        self._pending: list[KeyedEntry] | None = None  # during a full run

    # --- feeding ---------------------------------------------------------------------------

    def committed(self, b: Batch) -> None:
        """Take a committed batch's responses and marks (on the ingest thread: cheap)."""
        items = [
            ((0, k), Entry(r.ts, r.input, r.output, r.cw5m + r.cw1h, r.cache_read, r.cost))
            for k, r in b.responses.items()
            if r.ts is not None
        ]
        items += [((1, k), Entry(ts, 0, 0, 0, 0, 0.0)) for k, ts in b.marks.items()]
        if items:
            with self._lock:
                self._take(items)

    def _take(self, items: list[KeyedEntry]) -> None:
        if self._pending is not None:
            self._pending += items
        start = self._tail_start
        for key, e in items:
            if start is None or _ms(e.ts) <= start:
                self._need_full = True
            else:
                self._tail[key] = e

    # --- the full recomputation -------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._need_full

    def full_in(self) -> float:
        """Seconds until a pending full recomputation may run (``refresh``)."""
        return max(0.0, FULL_EVERY - (time.monotonic() - self._last_full))

    def refresh(self, force: bool = False) -> bool:
        """Recompute everything from the state when needed (and not done in the last
        FULL_EVERY seconds, unless ``force``); True when it ran."""
        if not self._need_full or (not force and time.monotonic() - self._last_full < FULL_EVERY):
            return False
        if not self._full_lock.acquire(blocking=False):
            return False
        try:
            with self._lock:
                self._need_full = False
                self._pending = []
            try:
                rows = self.read_entries(float("-inf"))
            except BaseException:
                with self._lock:
                    self._need_full, self._pending = True, None
                raise
            self._last_full = time.monotonic()
            items = sorted(
                (((row[0], row[1]), Entry(*row[2:])) for row in rows),
                key=lambda kv: _ms(kv[1].ts),
            )
            blocks = identify_blocks((e for _, e in items), now=self.clock())
            with self._lock:
                pending, self._pending = self._pending or [], None
                if blocks:  # the tail: exactly the last block's entries
                    self._tail_start = _ms(blocks[-1].start)
                    self._tail = dict(items[len(items) - blocks[-1].entries :])
                else:
                    self._tail_start, self._tail = None, {}
                self._take(pending)
            return True
        finally:
            self._full_lock.release()

    # --- readers -------------------------------------------------------------------------------

    def blocks(self, now: float | None = None) -> list[Block]:
        """The last blocks (the tail's): the active one, if any, is the last. A block that
        has closed is dropped from memory here (the tail is the last block only)."""
        now = self.clock() if now is None else now
        with self._lock:
            entries = list(self._tail.values())
        blocks = identify_blocks(entries, now=now) if entries else []
        if len(blocks) > 1:
            cut = _ms(blocks[-2].last_activity)  # every entry of the last block is later
            with self._lock:
                if self._tail_start is not None and self._tail_start < _ms(blocks[-1].start):
                    self._tail_start = _ms(blocks[-1].start)
                    self._tail = {k: e for k, e in self._tail.items() if _ms(e.ts) > cut}
            blocks = blocks[-1:]
        return blocks

    def active(self, now: float | None = None) -> Block | None:
        return active_block(self.blocks(now))

    def summary(self, now: float | None = None) -> dict[str, Any] | None:
        """The active block for the page, API and status line: cost, start and end, time
        left, ccusage's burn rate and projection."""
        now = self.clock() if now is None else now
        b = self.active(now)
        if b is None:
            return None
        rate = burn_rate(b)
        proj = projection(b, now=now)
        return {
            "start": b.start,
            "end": b.end,
            "last_activity": b.last_activity,
            "seconds_left": max(0.0, b.end - now),
            "cost_usd": b.cost,
            "tokens": b.total_tokens,
            "entries": b.entries,
            "burn_rate_usd_per_hour": rate.cost_per_hour if rate else None,
            "projected_cost_usd": proj.total_cost if proj else None,
        }
