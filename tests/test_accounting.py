"""De-duplication and live deltas, driven through the pipeline on a real SQLite state."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccotel.batch import UsageSums
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.state.store import Store
from tests.lines import SID, assistant, prompt, tool_result, tool_use

NOW = 1_795_000_000.0


def make(tmp_path: Path):
    root = tmp_path / "claude"
    (root / "projects" / "-home-u-proj").mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "state")
    return root, store, Ingest(Config(), store, [root], lambda: NOW)


def write(root: Path, name: str, *lines: str, mode: str = "a") -> str:
    p = root / "projects" / "-home-u-proj" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, mode) as f:
        f.write("".join(line + "\n" for line in lines))
    return str(p)


def totals(ing: Ingest) -> UsageSums:
    out = UsageSums()
    for v in ing.totals.usage.values():
        out.add(v)
    return out


def sync(ing: Ingest) -> None:
    for p in ing.scan():
        ing.ingest(p)
    assert ing.flush()


def test_streamed_copies_keep_largest_and_move_by_difference(tmp_path):
    root, _store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant(out=5), assistant(out=5))
    sync(ing)
    assert totals(ing).output == 5 and totals(ing).requests == 1
    write(root, f"{SID}.jsonl", assistant(out=300))
    sync(ing)
    t = totals(ing)
    assert t.output == 300 and t.requests == 1  # one request, final output
    assert t.cost == pytest.approx((10 * 3 + 300 * 15 + 100 * 0.3 + 20 * 3.75) / 1e6)
    write(root, f"{SID}.jsonl", assistant(out=7))  # a smaller copy changes nothing
    sync(ing)
    assert totals(ing).output == 300


def test_resumed_copy_in_another_file_counts_once(tmp_path):
    root, _store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant("msg_a", "req_a"), assistant("msg_b", "req_b"))
    write(
        root,
        "99999999-2222-3333-4444-555555555555.jsonl",
        assistant("msg_a", "req_a", session="99999999-2222-3333-4444-555555555555"),
        assistant("msg_c", "req_c", session="99999999-2222-3333-4444-555555555555"),
    )
    sync(ing)
    assert totals(ing).requests == 3


def test_main_thread_copy_beats_sidechain_replay(tmp_path):
    root, _store, ing = make(tmp_path)
    # /btw replay: same message id, new request id, larger numbers, sidechain.
    write(root, f"{SID}.jsonl", assistant("msg_p", "req_p", cr=20))
    write(
        root,
        f"{SID}/subagents/agent-abc.jsonl",
        assistant("msg_p", "req_btw", cr=50_000, sidechain=True),
    )
    sync(ing)
    t = totals(ing)
    assert t.requests == 1 and t.cache_read == 20
    # Order reversed in a fresh state: the parent copy still wins.
    root2, _store2, ing2 = make(tmp_path / "two")
    write(root2, f"{SID}.jsonl", assistant("msg_p", "req_btw", cr=50_000, sidechain=True))
    sync(ing2)
    write(root2, f"{SID}.jsonl", assistant("msg_p", "req_p", cr=20))
    sync(ing2)
    assert totals(ing2).requests == 1 and totals(ing2).cache_read == 20


def test_lines_without_message_id_are_never_deduplicated(tmp_path):
    root, _store, ing = make(tmp_path)
    a = assistant(msg=None, req=None).replace('"id":null,', "")
    b = assistant(msg=None, req=None, ts="2026-11-20T10:00:05.000Z").replace('"id":null,', "")
    write(root, f"{SID}.jsonl", a, b)
    sync(ing)
    assert totals(ing).requests == 2


def test_dedupe_survives_restart(tmp_path):
    root, store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant(out=5))
    sync(ing)
    store.close()
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: NOW)
    assert totals(ing).output == 5  # restored from the state
    write(root, "other.jsonl", assistant(out=5), assistant(out=50))
    sync(ing)
    t = totals(ing)
    assert t.output == 50 and t.requests == 1


def test_tools_paired_once_with_status_and_duration(tmp_path):
    root, _store, ing = make(tmp_path)
    write(
        root,
        f"{SID}.jsonl",
        prompt(),
        tool_use("toolu_1", msg="m1", req="r1"),
        tool_use("toolu_2", name="Read", msg="m2", req="r2"),
        tool_result("toolu_1", ts="2026-11-20T10:00:03.000Z"),
        tool_result("toolu_2", is_error=True),
    )
    # A resumed copy repeats the call and its result: not counted again.
    write(root, "copy.jsonl", tool_use("toolu_1", msg="m1", req="r1"), tool_result("toolu_1"))
    sync(ing)
    agg = ing.totals.tool_agg
    assert agg[("Bash", "/home/u/proj", "ok")].count == 1
    assert agg[("Bash", "/home/u/proj", "ok")].dur_sum == pytest.approx(3.0)
    assert agg[("Read", "/home/u/proj", "error")].count == 1
    assert sum(v.count for v in agg.values()) == 2


def test_tool_result_after_restart_finds_its_call(tmp_path):
    root, store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", tool_use("toolu_x"))
    sync(ing)
    store.close()
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: NOW)
    write(root, f"{SID}.jsonl", tool_result("toolu_x"))
    sync(ing)
    assert ing.totals.tool_agg[("Bash", "/home/u/proj", "ok")].count == 1


def test_sessions_spend_windows_and_unpriced(tmp_path):
    root, _store, ing = make(tmp_path)
    ts_recent = "2026-11-18T10:40:00.000Z"  # NOW is 2026-11-18T11:06:40Z
    write(
        root,
        f"{SID}.jsonl",
        prompt(ts=ts_recent),
        assistant(ts=ts_recent, out=1000, model="claude-opus-4-6"),
        assistant("m_old", "r_old", ts="2026-11-10T10:00:00.000Z", model="claude-opus-4-6"),
        assistant("m_new", "r_new", ts=ts_recent, model="claude-fable-9"),
    )
    sync(ing)
    t = ing.totals
    assert t.sessions_by_cwd == {"/home/u/proj": 1}
    assert t.active_by_cwd(NOW) == {}  # 26 minutes ago is not active
    assert t.active_by_cwd(NOW - 1500) == {"/home/u/proj": 1}
    one = t.spend_in(3600, NOW)
    assert one == pytest.approx((10 * 5 + 1000 * 25 + 100 * 0.5 + 20 * 6.25) / 1e6)
    assert t.spend_in(24 * 3600, NOW) == pytest.approx(one)
    assert t.usage[("claude-fable-9", "/home/u/proj")].unpriced == 135  # unpriced tokens


def test_failed_commit_moves_nothing(tmp_path):
    root, store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant(out=5))
    store.db.execute("PRAGMA query_only=ON")  # every write fails, like a read-only disk
    for p in ing.scan():
        ing.ingest(p)
    assert not ing.flush()
    assert totals(ing).requests == 0 and not ing.cursors
    store.db.execute("PRAGMA query_only=OFF")
    sync(ing)
    assert totals(ing).requests == 1 and totals(ing).output == 5


def test_lag_is_zero_when_nothing_waits(tmp_path):
    root, _store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant(ts="2026-11-10T10:00:00.000Z"))  # a week before NOW
    sync(ing)
    t = ing.totals
    assert t.read_lag > 6 * 86400  # the last line read was old...
    assert t.pending_bytes == 0 and t.lag == 0  # ...but nothing is late
    t.pending_bytes = 100  # bytes waiting: the lag is how late the last line read was
    assert t.lag == t.read_lag


def test_files_tracked_is_known_right_after_a_restart(tmp_path):
    root, store, ing = make(tmp_path)
    write(root, f"{SID}.jsonl", assistant())
    sync(ing)
    store.close()
    again = Ingest(Config(), Store(tmp_path / "state"), [root], lambda: NOW)
    assert again.totals.files_tracked == 1  # not 0 until something new is read
