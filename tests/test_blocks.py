"""Billing blocks (ccotel.blocks) equal ``ccusage blocks --json --offline`` block by block.

The oracle compares every block with usage (ccusage's gap blocks are not rows):
start, end and last activity to the millisecond, the four token counts and the
number of entries exactly, the cost to a relative 1e-9 (float summation order
only; a single missing token moves a block's cost by more), and, for the active
block, burn rate and projection.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccotel.blocks import (
    Block,
    Entry,
    active_block,
    blocks_from_store,
    burn_rate,
    identify_blocks,
    projection,
)
from ccotel.state.store import open_readonly
from tests.conftest import FIXTURES, ccotel
from tests.corpus import SONNET46, Usage, append_lines, assistant_record, generate
from tests.oracle import ccusage_json

H = 3600.0
VERSIONS = ["claude-1.0.17", "claude-2.0.74", "claude-2.1.38", "claude-2.1.39", "claude-2.1.197"]


def _t(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _e(ts: float | str, tokens: int = 10, cost: float = 0.25) -> Entry:
    ts = _t(ts) if isinstance(ts, str) else ts
    return Entry(ts, tokens, 2 * tokens, 3 * tokens, 4 * tokens, cost)


# ----------------------------------------------------------------------------- the rules


def test_block_starts_at_the_hour_of_its_first_entry_and_lasts_five_hours():
    (b,) = identify_blocks([_e("2026-01-05T10:17:03.250Z")], now=_t("2026-02-01T00:00:00Z"))
    assert (b.start, b.end) == (_t("2026-01-05T10:00:00Z"), _t("2026-01-05T15:00:00Z"))
    assert b.first_activity == b.last_activity == _t("2026-01-05T10:17:03.250Z")
    assert (b.entries, b.total_tokens, b.cost, b.active) == (1, 100, 0.25, False)


def test_block_edges_follow_ccusage_strict_comparisons():
    es = [
        _e("2026-01-05T10:17:03.250Z"),
        _e("2026-01-05T15:00:00.000Z"),  # exactly start + 5 h: still the first block
        _e("2026-01-05T15:00:00.001Z"),  # 1 ms later: a new block at 15:00, no gap
        _e("2026-01-05T20:00:00.001Z"),  # exactly 5 h after the last entry: new block, no gap
        _e("2026-01-06T01:00:00.002Z"),  # 5 h 1 ms after the last: new block after a gap
    ]
    random.Random(1).shuffle(es)  # order of the input does not matter
    bs = identify_blocks(es, now=_t("2026-02-01T00:00:00Z"))
    assert [(b.start, b.entries) for b in bs] == [
        (_t("2026-01-05T10:00:00Z"), 2),
        (_t("2026-01-05T15:00:00Z"), 1),
        (_t("2026-01-05T20:00:00Z"), 1),
        (_t("2026-01-06T01:00:00Z"), 1),
    ]
    assert bs[0].last_activity == _t("2026-01-05T15:00:00Z")
    assert all(b.end - b.start == 5 * H for b in bs)


def test_active_block_needs_recent_activity_and_an_open_window():
    first, last = _t("2026-01-05T10:30:00Z"), _t("2026-01-05T11:30:00Z")
    es = [_e(first), _e(last)]

    def active(now: str) -> bool:
        return identify_blocks(es, now=_t(now))[0].active

    assert active("2026-01-05T14:59:59.999Z")
    assert not active("2026-01-05T15:00:00Z")  # the window has ended
    es = [_e(_t("2026-01-05T10:00:00Z"))]
    assert active("2026-01-05T14:59:59.999Z")
    assert not active("2026-01-05T15:00:00.000Z")
    assert active_block(identify_blocks(es, now=_t("2026-01-05T12:00:00Z"))) is not None
    assert active_block(identify_blocks(es, now=_t("2026-01-05T16:00:00Z"))) is None


def test_burn_rate_and_projection_by_hand():
    es = [_e("2026-01-05T10:10:00Z", 10, 0.5), _e("2026-01-05T10:40:00Z", 20, 1.0)]
    now = _t("2026-01-05T10:50:00.400Z")  # 249.993 minutes left: rounds to 250
    (b,) = identify_blocks(es, now=now)
    r = burn_rate(b)
    assert r is not None
    assert r.tokens_per_minute == pytest.approx(300 / 30)
    assert r.tokens_per_minute_for_indicator == pytest.approx(90 / 30)
    assert r.cost_per_hour == pytest.approx(1.5 / 30 * 60)
    p = projection(b, now=now)
    assert p is not None
    assert p.remaining_minutes == 250
    assert p.total_tokens == 300 + 10 * 250
    assert p.total_cost == pytest.approx(1.5 + 0.05 * 250)
    # one entry (or all at one instant): no rate, no projection
    (one,) = identify_blocks(es[:1], now=now)
    assert burn_rate(one) is None and projection(one, now=now) is None
    # an ended block has no projection
    (old,) = identify_blocks(es, now=_t("2026-01-06T00:00:00Z"))
    assert projection(old, now=_t("2026-01-06T00:00:00Z")) is None


def test_projection_rounds_halves_away_from_zero_like_rust():
    es = [_e("2026-01-05T10:00:00Z", 1, 0.0625), _e("2026-01-05T10:01:00Z", 1, 0.0625)]
    end = _t("2026-01-05T15:00:00Z")
    # 150 s left = 2.5 minutes: Rust rounds to 3 (Python's round() to 2)
    (b,) = identify_blocks(es, now=end - 150)
    p = projection(b, now=end - 150)
    assert p is not None and p.remaining_minutes == 3
    assert p.total_tokens == 20 + 20 * 3  # 20 tokens in the one minute between entries
    # 10 s left: 0 minutes; the cost 0.125 goes to the cent half up: 0.13 (round() gives 0.12)
    (b,) = identify_blocks(es, now=end - 10)
    p = projection(b, now=end - 10)
    assert p is not None and p.remaining_minutes == 0
    assert p.total_cost == 0.13


def test_no_entries_no_blocks():
    assert identify_blocks([], now=0.0) == []


# ----------------------------------------------------------------------------- the oracle


def _compare(ours: list[Block], oracle: dict, *, entries: bool = True) -> None:
    theirs = [b for b in oracle["blocks"] if not b["isGap"]]
    assert len(ours) == len(theirs), (
        f"ccotel {len(ours)} blocks, ccusage {len(theirs)}: "
        f"{[b.start for b in ours]} vs {[b['startTime'] for b in theirs]}"
    )
    for o, t in zip(ours, theirs, strict=True):
        where = t["startTime"]
        assert o.start == _t(t["startTime"]), where
        assert o.end == _t(t["endTime"]), where
        assert o.last_activity == _t(t["actualEndTime"]), where
        tc = t["tokenCounts"]
        assert (o.input, o.output, o.cache_write, o.cache_read) == (
            tc["inputTokens"],
            tc["outputTokens"],
            tc["cacheCreationInputTokens"],
            tc["cacheReadInputTokens"],
        ), where
        assert o.total_tokens == t["totalTokens"], where
        assert o.cost == pytest.approx(t["costUSD"], rel=1e-9, abs=1e-12), where
        assert o.active == t["isActive"], where
        if entries:
            assert o.entries == t["entries"], where


def _backfill(claude_dir: Path, state: Path) -> list[Block]:
    ccotel("backfill", "--claude-dir", str(claude_dir), "--state-dir", str(state))
    store = open_readonly(state)
    try:
        return blocks_from_store(store)
    finally:
        store.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_blocks_equal_ccusage(version, tmp_path):
    src = FIXTURES / version
    ours = _backfill(src, tmp_path / "state")
    assert ours, "every fixture set has usage"
    _compare(ours, ccusage_json(src, "blocks"))


def _zero_usage_lines(root: Path) -> list[Entry]:
    """The ``<synthetic>`` API-error lines ccusage counts as (empty) block entries.

    ccotel's state keeps no row for them (they carry no tokens and no cost), so
    they are added here to check the block arithmetic on ccusage's exact entry set.
    """
    seen: dict[object, float] = {}
    for path in root.rglob("*.jsonl"):
        for n, raw in enumerate(path.read_bytes().splitlines()):
            if b'"<synthetic>"' not in raw or b'"usage":{' not in raw:
                continue
            d = json.loads(raw)
            m = d.get("message") or {}
            if d.get("type") == "assistant" and m.get("model") == "<synthetic>":
                # measured on ccusage 20.0.24: without a requestId, copies count once
                # per sessionId (a resumed session's copy counts again)
                rid = d.get("requestId") or d.get("sessionId")
                key = (m["id"], rid) if m.get("id") else (path, n)
                seen.setdefault(key, _t(d["timestamp"]))
    return [Entry(ts, 0, 0, 0, 0, 0.0) for ts in seen.values()]


PAST = datetime(2026, 3, 10, 12, tzinfo=UTC)  # all blocks closed: a deterministic answer


@pytest.fixture(scope="module", params=[(250, 3), (1500, 11)], ids=["sparse", "dense"])
def corpus_blocks(request, tmp_path_factory):
    files, seed = request.param
    root = tmp_path_factory.mktemp("blocks-corpus")
    info = generate(root, files=files, seed=seed, start=PAST)
    state = tmp_path_factory.mktemp("blocks-state")
    ccotel("backfill", "--claude-dir", str(root), "--state-dir", str(state))
    store = open_readonly(state)
    try:
        entries = [
            Entry(*row)
            for row in store.query(
                "SELECT ts, input, output, cw5m + cw1h, cache_read, cost FROM responses"
            )
        ]
        from_store = blocks_from_store(store)
        tail = {k: blocks_from_store(store, since=from_store[-k].start) for k in (1, 7)}
    finally:
        store.close()
    oracle = ccusage_json(root, "blocks")
    report = json.loads(
        ccotel("report", "--by", "block", "--json", "--state-dir", str(state)).stdout
    )
    return files < 1000, root, info, entries, from_store, tail, oracle, report


def test_corpus_blocks_equal_ccusage(corpus_blocks):
    sparse, root, info, entries, from_store, tail, oracle, _report = corpus_blocks
    gaps = sum(b["isGap"] for b in oracle["blocks"])
    # the sparse corpus has many gaps, the dense one chains block after block
    assert len(from_store) > (50 if sparse else 100)
    assert gaps > 30 if sparse else gaps < 5
    # what the state holds: same blocks, edges, tokens, cost and entries as ccusage (the
    # zero-usage API-error lines are entries: block_marks)
    _compare(from_store, oracle)
    zero = _zero_usage_lines(root)
    assert info.synthetic_lines and zero
    _compare(identify_blocks(entries + zero), oracle)
    assert sum(b.entries for b in from_store) == len(entries) + len(zero)
    # recomputing from a known block's start gives the same last blocks
    assert all(tail[k] == from_store[-k:] for k in tail)


# ---------------------------------------------------------------- `ccotel report --by block`


def _compare_report(report: dict, oracle: dict) -> None:
    """`ccotel report --by block --json` row by row against ccusage's blocks (no gap rows)."""
    theirs = [b for b in oracle["blocks"] if not b["isGap"]]
    rows = report["rows"]
    assert report["by"] == "block"
    assert [r["start"] for r in rows] == [t["startTime"] for t in theirs]
    for r, t in zip(rows, theirs, strict=True):
        tc = t["tokenCounts"]
        assert (r["end"], r["last_activity"], r["active"], r["entries"]) == (
            t["endTime"],
            t["actualEndTime"],
            t["isActive"],
            t["entries"],
        ), t["startTime"]
        assert (
            r["input_tokens"],
            r["output_tokens"],
            r["cache_write_tokens"],
            r["cache_read_tokens"],
            r["total_tokens"],
        ) == (
            tc["inputTokens"],
            tc["outputTokens"],
            tc["cacheCreationInputTokens"],
            tc["cacheReadInputTokens"],
            t["totalTokens"],
        ), t["startTime"]
        assert r["cost_usd"] == pytest.approx(t["costUSD"], rel=1e-9, abs=1e-10), t["startTime"]
    total = sum(t["costUSD"] for t in theirs)
    assert report["totals"]["cost_usd"] == pytest.approx(total, rel=1e-9)
    assert report["totals"]["entries"] == sum(t["entries"] for t in theirs)


@pytest.mark.parametrize("version", VERSIONS)
def test_report_by_block_equals_ccusage_on_the_fixtures(version, tmp_path):
    src = FIXTURES / version
    state = tmp_path / "state"
    ccotel("backfill", "--claude-dir", str(src), "--state-dir", str(state))
    report = json.loads(
        ccotel("report", "--by", "block", "--json", "--state-dir", str(state)).stdout
    )
    assert report["rows"]
    _compare_report(report, ccusage_json(src, "blocks"))


def test_report_by_block_equals_ccusage_on_the_corpus(corpus_blocks):
    *_, oracle, report = corpus_blocks
    assert len(report["rows"]) > 50
    _compare_report(report, oracle)


def test_report_by_block_table_and_since(tmp_path):
    root = tmp_path / "claude"
    _write(
        root,
        [("2026-01-04T10:17:03.250Z", U1), ("2026-01-07T12:00:00.002Z", U2)],
        session="00000000-0000-4000-8000-0000000000b1",
        cwd="/home/u/table",
    )
    state = tmp_path / "state"
    ccotel("backfill", "--claude-dir", str(root), "--state-dir", str(state))
    out = ccotel("report", "--by", "block", "--state-dir", str(state)).stdout
    assert "Claude Code usage by block" in out and "Total" in out
    since = json.loads(
        ccotel("report", "--by", "block", "--json", "--since", "2026-01-06",
               "--state-dir", str(state)).stdout
    )  # fmt: skip
    # local midnight of the 6th is between the two blocks in every time zone
    assert [r["start"] for r in since["rows"]] == ["2026-01-07T12:00:00.000Z"]


# ----------------------------------------------------------------------------- timelines


def _write(root: Path, stamps: list[tuple[str, Usage]], *, session: str, cwd: str) -> None:
    rng = random.Random(f"{session}{stamps[0][0]}")
    path = root / "projects" / cwd.replace("/", "-") / f"{session}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [
        assistant_record(
            session_id=session, cwd=cwd, usage=u, model=SONNET46, timestamp=ts, rng=rng
        )
        for ts, u in stamps
    ]
    append_lines(path, recs)


def _iso(ts: float) -> str:
    ms = round(ts * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


U1, U2 = Usage(3, 120, 2000, 0, 15000), Usage(5, 40, 0, 500, 9000)


def test_edge_timeline_equals_ccusage(tmp_path):
    root = tmp_path / "claude"
    _write(
        root,
        [
            ("2026-01-05T10:17:03.250Z", U1),
            ("2026-01-05T15:00:00.000Z", U2),
            ("2026-01-05T15:00:00.001Z", U1),
            ("2026-01-05T20:00:00.001Z", U2),
        ],
        session="00000000-0000-4000-8000-000000000001",
        cwd="/home/u/one",
    )
    _write(
        root,
        [("2026-01-06T01:00:00.002Z", U1), ("2026-01-06T02:59:59.999Z", U2)],
        session="00000000-0000-4000-8000-000000000002",
        cwd="/home/u/two",
    )
    _write(  # same instant as another session's entry, other project
        root,
        [("2026-01-06T01:00:00.002Z", U2)],
        session="00000000-0000-4000-8000-000000000003",
        cwd="/home/u/three",
    )
    ours = _backfill(root, tmp_path / "state")
    assert [_iso(b.start) for b in ours] == [
        "2026-01-05T10:00:00.000Z",
        "2026-01-05T15:00:00.000Z",
        "2026-01-05T20:00:00.000Z",
        "2026-01-06T01:00:00.000Z",
    ]
    assert [b.entries for b in ours] == [2, 1, 1, 3]
    oracle = ccusage_json(root, "blocks")
    assert sum(b["isGap"] for b in oracle["blocks"]) == 1  # before 01:00, sorted after it
    _compare(ours, oracle)


def test_api_error_line_opens_a_block_as_in_ccusage(tmp_path):
    """A zero-usage ``<synthetic>`` API-error line is a block entry for ccusage, so after a
    gap it decides the block's start hour (docs/notes/blocks.md); the state keeps its time
    (block_marks), not a response."""
    root = tmp_path / "claude"
    session, cwd = "00000000-0000-4000-8000-00000000000a", "/home/u/limit"
    _write(root, [("2026-01-07T02:10:00.000Z", U1)], session=session, cwd=cwd)
    err = {
        "parentUuid": None,
        "isSidechain": False,
        "type": "assistant",
        "uuid": "00000000-0000-4000-8000-0000000000e1",
        "timestamp": "2026-01-07T08:40:00.000Z",
        "message": {
            "id": "00000000-0000-4000-8000-0000000000e2",
            "model": "<synthetic>",
            "role": "assistant",
            "type": "message",
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
            "content": [{"type": "text", "text": "API Error: 529 overloaded"}],
        },
        "isApiErrorMessage": True,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.1.197",
        "gitBranch": "main",
    }
    path = next(root.rglob("*.jsonl"))
    append_lines(path, [err])
    _write(root, [("2026-01-07T09:20:00.000Z", U2)], session=session, cwd=cwd)
    ours = _backfill(root, tmp_path / "state")
    oracle = ccusage_json(root, "blocks")
    # ccusage: the error line at 08:40 opens the second block at 08:00
    assert [b["startTime"] for b in oracle["blocks"] if not b["isGap"]] == [
        "2026-01-07T02:00:00.000Z",
        "2026-01-07T08:00:00.000Z",
    ]
    # the arithmetic matches once the error line is an entry ...
    store = open_readonly(tmp_path / "state")
    try:
        rows = store.query("SELECT ts, input, output, cw5m + cw1h, cache_read, cost FROM responses")
    finally:
        store.close()
    _compare(identify_blocks([Entry(*r) for r in rows] + _zero_usage_lines(root)), oracle)
    # ... and the state has it: the second block starts at 08:00, with three entries
    _compare(ours, oracle)
    assert [_iso(b.start) for b in ours] == ["2026-01-07T02:00:00.000Z", "2026-01-07T08:00:00.000Z"]
    assert [b.entries for b in ours] == [1, 2]
    # without the marks the state would start it at 09:00
    assert [_iso(b.start) for b in identify_blocks([Entry(*r) for r in rows])][1] == (
        "2026-01-07T09:00:00.000Z"
    )


def test_active_block_burn_rate_and_projection_equal_ccusage(tmp_path):
    root = tmp_path / "claude"
    now = time.time()
    _write(
        root,
        [(_iso(now - m * 60), u) for m, u in ((47, U1), (31, U2), (12, U1), (2, U2))],
        session="00000000-0000-4000-8000-0000000000ac",
        cwd="/home/u/active",
    )
    ccotel("backfill", "--claude-dir", str(root), "--state-dir", str(tmp_path / "state"))
    t0 = time.time()
    oracle = ccusage_json(root, "blocks")
    t1 = time.time()
    (t,) = oracle["blocks"]
    assert t["isActive"]
    store = open_readonly(tmp_path / "state")
    try:
        ours = blocks_from_store(store, now=t0)
    finally:
        store.close()
    _compare(ours, oracle)
    (b,) = ours
    assert active_block(ours) is b
    r = burn_rate(b)
    assert r is not None
    assert r.tokens_per_minute == pytest.approx(t["burnRate"]["tokensPerMinute"], rel=1e-12)
    assert r.tokens_per_minute_for_indicator == pytest.approx(
        t["burnRate"]["tokensPerMinuteForIndicator"], rel=1e-12
    )
    assert r.cost_per_hour == pytest.approx(t["burnRate"]["costPerHour"], rel=1e-9)
    # ccusage took its own "now" somewhere between t0 and t1
    candidates = []
    for k in range(int(t1 - t0) + 2):
        p = projection(b, now=min(t0 + k, t1))
        assert p is not None
        candidates.append(
            {
                "totalTokens": p.total_tokens,
                "totalCost": p.total_cost,
                "remainingMinutes": p.remaining_minutes,
            }
        )
    assert t["projection"] in candidates, (t["projection"], candidates)


def test_window_that_ended_with_recent_activity_is_not_active(tmp_path):
    """Activity 30 minutes ago, but in a window that has already ended: not active
    (ccusage needs both `now - last < 5 h` and `now < end`)."""
    root = tmp_path / "claude"
    now = time.time()
    start = now // H * H - 5 * H  # the block's window ends at the top of this hour
    _write(
        root,
        [(_iso(start + 60), U1), (_iso(start + 4.5 * H), U2)],
        session="00000000-0000-4000-8000-0000000000ed",
        cwd="/home/u/ended",
    )
    ours = _backfill(root, tmp_path / "state")
    oracle = ccusage_json(root, "blocks")
    assert [b.active for b in ours] == [False]
    assert time.time() - ours[0].last_activity < 5 * H
    _compare(ours, oracle)
    assert projection(ours[0]) is None


def test_report_by_block_reads_a_state_not_migrated_yet(tmp_path):
    """`report` opens the state read-only: a 0.1.0 state (no block_marks, a `responses`
    table) still gives its blocks, summing to the report's totals."""
    import shutil

    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "state-0.1.0.db", state / "state.db")
    blocks = json.loads(
        ccotel("report", "--by", "block", "--json", "--state-dir", str(state)).stdout
    )
    totals = json.loads(ccotel("report", "--json", "--state-dir", str(state)).stdout)["totals"]
    assert len(blocks["rows"]) > 1
    assert blocks["totals"]["cost_usd"] == pytest.approx(totals["cost_usd"], rel=1e-9)
    assert blocks["totals"]["input_tokens"] == totals["input_tokens"]
