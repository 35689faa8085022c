"""The live board's rules that need a clock or a fault: idle, the window, a clock ahead,
older versions' null stop reasons, a rewritten file, commits that fail (each session's cost
stays the state's), and a fault in the board (it costs the board, never the ingest). Lines
are real Claude Code transcripts (the shared fixtures) or the realistic corpus."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ccotel.live import board_for
from ccotel.live.board import LiveBoard
from ccotel.live.state import Thread
from ccotel.pipeline import Ingest
from ccotel.projects import project_labeler
from ccotel.records import decode
from ccotel.state import queries as Q
from ccotel.state.store import Store
from tests.conftest import FIXTURES, assert_equal_totals
from tests.corpus import generate
from tests.oracle import ccusage_totals
from tests.test_faults_commit import BATCH, CHUNK, Faults, cfg_for, committed

NEW = next((FIXTURES / "claude-2.1.197" / "projects").glob("*/c16a9a56-*.jsonl"))
OLD = next((FIXTURES / "claude-2.1.39" / "projects").glob("*/4d5611e5-*.jsonl"))


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def feed(board: LiveBoard, path: str, raws: list[bytes], first: int = 1) -> None:
    lines = [(first + i, r) for i, r in enumerate(raws)]
    board.lines(path, lines, [r for n, x in lines if (r := decode(x, n)) is not None])


def ts_of(raw: bytes) -> float:
    from datetime import datetime

    return datetime.fromisoformat(json.loads(raw)["timestamp"].replace("Z", "+00:00")).timestamp()


def row(board: LiveBoard) -> dict:
    (r,) = board.snapshot()["sessions"]
    return r


def test_working_and_tool_go_idle_waiting_stays_and_the_window_ends_it():
    # the -p run's lines as an interactive session writes them (a -p run never waits)
    raws = [r.replace(b'"entrypoint":"sdk-cli"', b'"entrypoint":"cli"') for r in raw_lines(NEW)]
    use = next(
        i for i, r in enumerate(raws) if b'"stop_reason":"tool_use"' in r and b'"tool_use"' in r
    )
    t_use = ts_of(raws[use])
    clock = Clock(t_use + 1)
    b = LiveBoard(clock, window=7200, idle=300)
    feed(b, "/p/s.jsonl", raws[: use + 1])
    assert row(b)["state"] == "tool"
    clock.t = t_use + 299.9
    assert row(b)["state"] == "tool"
    clock.t = t_use + 300.1
    r = row(b)
    assert (r["state"], r["state_since"]) == ("idle", round(t_use, 3))
    assert b.counts() == {"waiting": 0, "tool": 0, "working": 0, "idle": 1, "ended": 0}
    # the rest of the run: its answer (waiting), which never goes idle
    end = next(i for i, r in enumerate(raws) if b'"stop_reason":"end_turn"' in r)
    t_end = ts_of(raws[end])
    feed(b, "/p/s.jsonl", raws[use + 1 : end + 1], use + 2)
    clock.t = t_end + 3600
    assert row(b)["state"] == "waiting"
    assert b.histogram() == ([0] * 12, 0.0)
    # past the window: off the board, and its wait observed as it leaves
    clock.t = t_end + 7200.5
    assert b.snapshot()["sessions"] == []
    counts, total = b.histogram()
    assert sum(counts) == 1 and counts[-1] == 1 and total == pytest.approx(7200.5, abs=0.01)


def test_a_clock_ahead_cannot_pin_a_session_to_the_board():
    raws = raw_lines(NEW)
    future = [r.replace(b'"timestamp":"20', b'"timestamp":"29') for r in raws]  # year 29xx
    clock = Clock(time.time())
    b = LiveBoard(clock, window=7200)
    feed(b, "/p/s.jsonl", future)
    (r,) = b.snapshot()["sessions"]
    assert r["last_activity"] <= round(clock.t + 60, 3)
    clock.t += 7300
    assert b.snapshot()["sessions"] == []


@pytest.mark.parametrize(
    ("kind", "state"),
    [("thinking", "working"), ("tool_use", "tool"), ("tool_result", "working"), ("text", None)],
)
def test_older_versions_null_stop_reasons_are_read_from_the_content(kind, state):
    """2.1.39 wrote stop_reason null on every line: a text line is an answer (waiting) unless
    a tool call follows it in the same response."""
    raws = raw_lines(OLD)

    def kind_of(r: bytes) -> str | None:
        x = json.loads(r)
        c = (x.get("message") or {}).get("content")
        if x.get("type") in ("user", "assistant") and isinstance(c, list) and c:
            return c[0].get("type")
        return None

    cuts = [
        i for i, r in enumerate(raws) if kind_of(r) == kind and not json.loads(r).get("isSidechain")
    ]
    assert cuts
    for i in cuts[:40]:
        b = LiveBoard(Clock(ts_of(raws[i]) + 1))
        feed(b, "/p/s.jsonl", raws[: i + 1])
        got = row(b)["state"]
        if state is not None:
            want = "tool" if kind == "tool_result" and _pending(raws[: i + 1]) else state
            assert got == want, (i, got)  # (after a result, parallel calls may still run)
            continue
        # text: waiting, whether the response goes on with a tool call or the turn is over
        nxt = next((kind_of(r) for r in raws[i + 1 :] if kind_of(r)), None)
        assert got == "waiting", (i, nxt)


def _pending(raws: list[bytes]) -> set[str]:
    uses, done = set(), set()
    for r in raws:
        c = (json.loads(r).get("message") or {}).get("content")
        for blk in c if isinstance(c, list) else ():
            if blk.get("type") == "tool_use":
                uses.add(blk["id"])
            elif blk.get("type") == "tool_result":
                done.add(blk["tool_use_id"])
    return uses - done


def _is_prompt(r: bytes) -> bool:
    x = json.loads(r)
    c = (x.get("message") or {}).get("content")
    return x.get("type") == "user" and isinstance(c, str) and not x.get("isMeta")


def test_waits_are_counted_when_the_user_answers_not_when_the_model_goes_on():
    raws = raw_lines(OLD)
    clock = Clock(ts_of(raws[-1]) + 1)
    b = LiveBoard(clock, window=10 * 86400)
    for i in range(len(raws)):  # a line at a time, as the daemon may read them
        feed(b, "/p/s.jsonl", raws[i : i + 1], i + 1)
    prompts = [r for r in raws if _is_prompt(r)]
    counts, total = b.histogram()
    # "continue" answered a turn that ended with no answer line (a turn_duration); the 90 text
    # lines, most of them before a tool call, end no wait
    assert 1 <= sum(counts) <= len(prompts) - 1
    assert total > 0


def test_a_rewritten_file_is_read_anew(tmp_path):
    raws = raw_lines(NEW)
    clock = Clock(ts_of(raws[-2]) + 1)
    b = LiveBoard(clock)
    feed(b, "/p/s.jsonl", raws)
    assert row(b)["state"] == "ended"
    # the same file, rewritten shorter (up to the tool call): line numbers start over
    use = next(
        i for i, r in enumerate(raws) if b'"stop_reason":"tool_use"' in r and b'"tool_use"' in r
    )
    lines = [(i + 1, r) for i, r in enumerate(raws[: use + 1])]
    recs = [r for n, x in lines if (r := decode(x, n)) is not None]
    b.lines("/p/s.jsonl", lines, recs, restarted=True)
    assert row(b)["state"] == "tool"


# ---------------------------------------------------------------------------- with the ingest
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-corpus")
    generate(root, files=14, target_bytes=700_000, seed=5)
    return root


def _ingest(root: Path, state: Path, clock) -> tuple[Ingest, Store]:
    cfg = cfg_for(root, state, live_window=40 * 86400.0)
    store = Store(state)
    ing = Ingest(cfg, store, [root], clock, chunk_bytes=CHUNK, batch_lines=BATCH)
    ing.live = board_for(cfg, ing, clock, project_labeler("name"), lambda: None)
    return ing, store


def _state_costs(state: Path) -> dict[str, float]:
    s = Store(state, readonly=True)
    try:
        out: dict[str, float] = {}
        for sid, _m, _c, u in Q.usage_by_session(
            s.db, [r[0] for r in s.query("SELECT id FROM sessions")]
        ):
            out[sid] = out.get(sid, 0.0) + u.cost
        return out
    finally:
        s.close()


@pytest.mark.parametrize("every", [0, 3, 2], ids=["no-fault", "every-3rd-fails", "every-2nd-fails"])
def test_each_sessions_cost_is_the_states_through_failed_commits(
    corpus, tmp_path, monkeypatch, every
):
    """The corpus has responses copied across sessions (resumed sessions, /btw replays): a
    better copy moves a response's cost from one session to another."""
    faults = Faults(lambda n: bool(every) and n % every == 0).install(monkeypatch)
    ing, store = _ingest(corpus, tmp_path / "state", time.time)
    try:
        ing.backfill(ing.scan(), 1, sleep=lambda s: None)
        board = ing.live
    finally:
        store.close()
    assert not ing.retry
    assert faults.failed >= (1 if every else 0)
    want = _state_costs(tmp_path / "state")
    got = {r["id"]: r["cost_usd"] for r in board.snapshot()["sessions"]}
    assert board.snapshot()["more"] == 0
    assert got.keys() == want.keys()
    for sid, cost in want.items():
        assert got[sid] == pytest.approx(cost, rel=1e-9, abs=1e-9), sid
    # a restarted daemon's board, from the state and the transcripts' tails: the same costs
    monkeypatch.undo()
    ing2, store2 = _ingest(corpus, tmp_path / "state", time.time)
    try:
        ing2.live.rebuild(ing2.cursors)
        again = {r["id"]: r["cost_usd"] for r in ing2.live.snapshot()["sessions"]}
    finally:
        store2.close()
    assert again.keys() <= got.keys()  # a tail may hold no conversation line of an old file
    for sid, cost in again.items():
        assert cost == pytest.approx(got[sid], rel=1e-9, abs=1e-9), sid


def test_a_fault_in_the_board_costs_the_board_not_the_ingest(corpus, tmp_path, monkeypatch):
    def broken(self, *a, **kw):
        raise RuntimeError("a bug in the board (injected)")

    monkeypatch.setattr(Thread, "event", broken)
    ing, store = _ingest(corpus, tmp_path / "state", time.time)
    try:
        ing.backfill(ing.scan(), 1, sleep=lambda s: None)
    finally:
        store.close()
    assert not ing.broken and not ing.retry
    got, lines = committed(tmp_path / "state")
    assert_equal_totals(got, ccusage_totals(corpus))
    assert lines == sum(p.read_bytes().count(b"\n") for p in corpus.rglob("*.jsonl"))
    assert ing.live._faults > 0
    ing.live.snapshot()  # still answers
