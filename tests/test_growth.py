"""Growth (issue 9, silent loss 6): what serves a time window is pruned, what grows with
history stays exact with bounded memory. bench/growth.py measures a year of it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from msgspec.structs import astuple

from ccotel import accounting, app
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.state.store import Store
from ccotel.totals import KEEP_SPEND
from tests.lines import SID, assistant

NOW = 1_800_000_000.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def write(root: Path, name: str, lines: list[str]) -> None:
    p = root / "projects" / "-home-u-proj" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def spend_rows(state: Path) -> list[int]:
    s = Store(state, readonly=True)
    try:
        return [m for (m,) in s.query("SELECT minute FROM spend_minutes ORDER BY minute")]
    finally:
        s.close()


def test_backfill_prunes_spend_beyond_its_windows(tmp_path):
    root = tmp_path / "claude"
    ages = [3 * 86400, 26 * 3600, 23 * 3600, 600]
    write(root, f"{SID}.jsonl", [assistant(f"m{a}", f"r{a}", ts=iso(NOW - a)) for a in ages])
    cfg = Config(claude_dirs=[str(root)], state_dir=str(tmp_path / "state"), traces=False)
    app.backfill(cfg, clock=lambda: NOW)
    rows = spend_rows(tmp_path / "state")
    assert rows == sorted(int(NOW - a) // 60 for a in ages if a < KEEP_SPEND)
    again = Ingest(cfg, Store(tmp_path / "state"), [root], lambda: NOW)
    one = again.totals.spend_in(3600, NOW)
    assert one > 0 and again.totals.spend_in(86400, NOW) == pytest.approx(2 * one)


@pytest.mark.timeout(60)
def test_the_daemon_prunes_as_time_passes(tmp_path):
    """Clock injected: two days after the lines, a rescan has removed their minutes."""
    root = tmp_path / "claude"
    write(root, f"{SID}.jsonl", [assistant("m1", "r1", ts=iso(NOW - 60))])
    offset = [0.0]
    cfg = Config(claude_dirs=[str(root)], state_dir=str(tmp_path / "state"), traces=False,
                 web=False, http_addr="127.0.0.1:0", rescan_interval=0.1)  # fmt: skip
    d = app.Daemon(cfg, lambda: NOW + offset[0])
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert d.ready.wait(10)
        assert len(spend_rows(tmp_path / "state")) == 1
        offset[0] = 2 * 86400
        deadline = time.monotonic() + 10
        while spend_rows(tmp_path / "state"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert d.ingest.totals.spend == {}
    finally:
        d.stop()
        t.join(20)


def test_dedupe_stays_exact_past_the_caches(tmp_path, monkeypatch):
    """With the row caches shrunk to 50 and 500 responses, copies of every one of them
    (a resumed session) count nothing: what left the caches is found through the key
    filter and the state; the caches stay at their bound. (A first backfill keeps every row
    while the state is small, accounting.COLD_KEYS: here it leaves that mode at once.)"""
    monkeypatch.setattr(accounting, "_CACHE", 50)
    monkeypatch.setattr(accounting, "COLD_KEYS", 0)
    root = tmp_path / "claude"
    lines = [assistant(f"m{i}", f"r{i}", out=i + 1, ts=iso(NOW - 3600 + i)) for i in range(500)]
    write(root, f"{SID}.jsonl", lines)
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: NOW, batch_lines=40)
    ing.backfill(ing.scan(), 1)
    bits = len(ing.acct.seen.bits)
    first = {k: astuple(v) for k, v in ing.totals.usage.items()}
    write(root, "99999999-2222-3333-4444-555555555555.jsonl", lines)  # the resumed copy
    ing.backfill(ing.scan(), 1)
    assert {k: astuple(v) for k, v in ing.totals.usage.items()} == first
    assert sum(v.requests for v in ing.totals.usage.values()) == 500
    assert len(ing.acct._rows) <= 50 and len(ing.acct._tools) <= 50
    assert len(ing.acct.seen.bits) == bits
    store.close()
