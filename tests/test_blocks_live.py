"""The daemon's live blocks (ccotel.blocks_live) equal ccotel.blocks over everything, whatever
order and batches the entries arrive in."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from ccotel.batch import Response
from ccotel.blocks import Entry, active_block, identify_blocks
from ccotel.blocks_live import LiveBlocks

H = 3600.0
T0 = 1_800_000_000.0


def _row(e: Entry) -> Response:
    """A response row (batch.Response) carrying an entry."""
    return Response(
        0,
        0,
        "s",
        "/c",
        "m",
        e.ts,
        e.input,
        e.output,
        e.cache_read,
        e.cache_write,
        0,
        0,
        0,
        0,
        e.cost,
        1,
    )


class Store:
    """What the state would hold: everything committed so far."""

    def __init__(self):
        self.rows: dict[tuple[int, int], Entry] = {}

    def read(self, since: float) -> list[tuple]:
        return [(k[0], k[1], e.ts, e.input, e.output, e.cache_write, e.cache_read, e.cost)
                for k, e in self.rows.items() if e.ts >= since]  # fmt: skip


def _entries(rng: random.Random, n: int, start: float, spread_h: float) -> list[Entry]:
    out = []
    t = start
    for _ in range(n):
        t += rng.choice([rng.uniform(0, 600), rng.uniform(0, 2 * H), rng.uniform(4 * H, 7 * H)])
        out.append(
            Entry(round(t, 3), rng.randint(1, 50), rng.randint(1, 500), 10, 100, rng.random())
        )
    return out


@pytest.mark.parametrize("seed", range(12))
def test_live_blocks_equal_a_full_computation(seed):
    rng = random.Random(seed)
    es = _entries(rng, 300, T0, 5)
    now = es[-1].ts + rng.uniform(0, 6 * H)
    store = Store()
    live = LiveBlocks(store.read, clock=lambda: now)
    keys = list(range(len(es)))
    order = list(zip(keys, es, strict=True))
    if seed % 3 == 0:
        rng.shuffle(order)  # late entries: the history must be recomputed
    i = 0
    while i < len(order):
        batch = order[i : i + rng.randint(1, 30)]
        i += len(batch)
        marks = {
            k: e.ts for k, e in batch if e.cost < 0.05 and e.input < 5
        }  # some are API-error lines
        responses = {k: _row(e) for k, e in batch if k not in marks}
        for k, e in batch:
            store.rows[(1 if k in marks else 0, k)] = (
                Entry(e.ts, 0, 0, 0, 0, 0.0) if k in marks else e
            )
        live.committed(SimpleNamespace(responses=responses, marks=marks))
        if rng.random() < 0.3 or i >= len(order):
            live.refresh(force=True)
        got = live.blocks(now)
        if not live.pending:
            want = identify_blocks(store.rows.values(), now=now)
            assert got == want[-1:], (seed, i)
    want = identify_blocks(store.rows.values(), now=now)
    assert live.active(now) == active_block(want)
    # the tail holds the last block only
    assert len(live._tail) == want[-1].entries


def test_an_old_entry_waits_for_the_full_computation_and_readers_keep_the_last_result():
    store = Store()
    now = T0 + 10 * H
    live = LiveBlocks(store.read, clock=lambda: now)
    recent = [Entry(T0 + 9 * H + m * 60, 1, 1, 1, 1, 1.0) for m in range(5)]
    for k, e in enumerate(recent):
        store.rows[(0, k)] = e
    live.committed(SimpleNamespace(responses={k: _row(e) for k, e in enumerate(recent)}, marks={}))
    assert live.pending and live.blocks(now) == []  # nothing computed yet
    assert live.refresh(force=True) and not live.pending
    (b,) = live.blocks(now)
    assert b.entries == 5 and b.active
    old = Entry(T0 + 9 * H - 60, 1, 1, 1, 1, 5.0)  # a minute before the block's first entry
    store.rows[(0, 99)] = old
    live.committed(SimpleNamespace(responses={99: _row(old)}, marks={}))
    assert live.pending
    assert live.blocks(now) == [b]  # the last result until the recomputation
    assert not live.refresh()  # not within FULL_EVERY of the last one ...
    assert live.refresh(force=True)  # ... unless asked
    (b2,) = live.blocks(now)
    assert (b2.entries, b2.cost) == (6, 10.0)


def test_an_entry_exactly_at_the_tail_start_belongs_to_the_block_before():
    """15:00:00.000 is exactly 5 h after a block that started at 10:00: ccusage keeps it in
    that block (the split needs more than 5 h), not in the one that starts at 15:00."""
    store = Store()
    start = T0 + 10 * H  # on the hour
    first = [Entry(start, 1, 1, 1, 1, 1.0), Entry(start + 5 * H + 0.001, 1, 1, 1, 1, 2.0)]
    now = start + 6 * H
    live = LiveBlocks(store.read, clock=lambda: now)
    for k, e in enumerate(first):
        store.rows[(0, k)] = e
    live.committed(SimpleNamespace(responses={k: _row(e) for k, e in enumerate(first)}, marks={}))
    live.refresh(force=True)
    assert [b.start for b in live.blocks(now)] == [start + 5 * H]
    edge = Entry(start + 5 * H, 1, 1, 1, 1, 4.0)
    store.rows[(0, 7)] = edge
    live.committed(SimpleNamespace(responses={7: _row(edge)}, marks={}))
    assert live.pending  # it may change the blocks before the tail: recompute
    live.refresh(force=True)
    (b,) = live.blocks(now)
    want = identify_blocks(store.rows.values(), now=now)
    assert [x.entries for x in want] == [2, 1] and b == want[-1] and b.cost == 2.0
