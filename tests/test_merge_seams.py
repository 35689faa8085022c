"""Outside review 2b: the seams of the five merged branches (migrations, the outcome ledger,
chat-span corrections, block marks, startup). Faults found are fixed and tested here; two
open ones are strict xfails, described in docs/traces.md."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from ccotel import outcomes
from ccotel.state import COMMITS
from tests.test_outcomes import SID, _assistant, _bash_out, _result, _write, backfill, by_project


def test_pretended_commit_counts_the_same_with_or_without_a_restart(tmp_path: Path):
    """`echo "git commit"` succeeds and prints no commit: counted 0 when the daemon reads the
    call and its result in one process, but 1 when a restart falls between them (the ledger's
    waiting call then counts any successful result). The count must not depend on restarts."""
    cmd = {"command": 'echo "then git commit"'}
    out = _bash_out("then git commit")
    # one process reads call and result
    a = tmp_path / "a"
    fa = a / "projects" / "-w-app" / f"{SID}.jsonl"
    _write(fa, [_assistant(SID, "/w/app", "tp1", "Bash", cmd, 0)])
    backfill(a, tmp_path / "sa")
    _write(fa, [_result(SID, "/w/app", "tp1", out, False, 1)])
    backfill(a, tmp_path / "sa")
    same = by_project(tmp_path / "sa").get("app", [0] * 5)[COMMITS]
    # a restart between the call and its result
    b = tmp_path / "b"
    fb = b / "projects" / "-w-app" / f"{SID}.jsonl"
    _write(fb, [_assistant(SID, "/w/app", "tp2", "Bash", cmd, 0)])
    backfill(b, tmp_path / "sb")
    outcomes.CALLS.kinds.clear()  # a restart: this process never saw the call
    _write(fb, [_result(SID, "/w/app", "tp2", out, False, 1)])
    backfill(b, tmp_path / "sb")
    restarted = by_project(tmp_path / "sb").get("app", [0] * 5)[COMMITS]
    assert same == 0
    assert restarted == same, "a restart between call and result counted a pretended commit"


def _downgrade_to_before_outcomes(state: Path) -> None:
    import sqlite3

    db = sqlite3.connect(state / "state.db")
    db.executescript(
        "DROP TABLE outcome; DROP TABLE outcome_call;"
        " PRAGMA user_version=5;"  # the version before outcomes (schema.py: v6)
    )
    db.close()


def test_read_history_with_the_nth_commit_failing_then_a_restart(tmp_path, monkeypatch):
    """An upgraded state reads its history; the Nth commit (of read_history or the catch-up
    after it) fails, for every N; a restart finishes. Outcomes equal a clean upgrade's, and
    the tokens and lines the state holds do not move."""
    import shutil

    from ccotel import app
    from ccotel.pipeline import Ingest
    from ccotel.state.store import Store
    from tests.corpus import generate
    from tests.test_faults_commit import Faults, committed
    from tests.test_outcomes import CLOCK, cfg_for

    root = tmp_path / "corpus"
    generate(root, files=6, target_bytes=200_000, seed=7)
    base = tmp_path / "base"
    backfill(root, base)
    want = by_project(base)
    tokens, lines = committed(base)
    _downgrade_to_before_outcomes(base)

    def start(state: Path) -> None:
        s = Store(state)
        try:
            app.catch_up(Ingest(cfg_for(root, state), s, [root], CLOCK), 1, sleep=lambda x: None)
        finally:
            s.close()

    faults = Faults().install(monkeypatch)
    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    start(clean)
    n_commits = faults.n
    assert by_project(clean) == want
    assert n_commits >= 3
    for n in range(1, n_commits + 1):
        state = tmp_path / f"s{n}"
        shutil.copytree(base, state)
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        start(state)
        faults.fail = lambda k: False
        start(state)  # the restart
        assert by_project(state) == want, n
        got_tokens, got_lines = committed(state)
        assert got_tokens == tokens and got_lines == lines, n
        shutil.rmtree(state)


@pytest.mark.xfail(
    strict=True,
    reason="open: a copy of a response in another session moves the "
    "metrics' whole response and the spans' difference only (docs/traces.md)",
)
def test_chat_spans_and_corrections_sum_to_the_metrics_per_session(tmp_path):
    """Session A's response m1 is sent as read (8 output tokens, its session idle); session B
    (a resume) then holds a larger copy of m1 (800). The metrics move the kept response to B
    (A: 0, B: 800); the spans say A: 8, B: 792 (the correction is in B's trace, the chat span
    in A's). Per session, chat spans plus corrections must equal the metrics."""
    import sqlite3
    from collections import Counter

    from ccotel import app
    from tests.test_traces import T0, Clock, Mem, T, shipper
    from tests.test_traces_split import _cfg

    root, state = tmp_path / "claude", tmp_path / "state"
    sa, sb = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
    a, b = T(root, session=sa), T(root, session=sb)
    cfg = _cfg(root, state, 600)
    clock, m = Clock(T0 + 3), Mem()
    a.write([a.prompt(0), a.assistant(1, "m1", [a.use("toolu_1", command="make")], out=8)])
    app.backfill(cfg)
    clock.t = T0 + 1 + 660  # A idle: m1 sent as read so far
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    sh.close()
    b.write([b.prompt(700), b.assistant(701, "m1", [b.use("toolu_1", command="make")], out=800)])
    app.backfill(cfg)
    clock.t = T0 + 5000
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    sh.close()
    spans_out: Counter = Counter()
    for s in m.spans():
        if s.name.startswith("chat "):
            spans_out[s.attributes["gen_ai.conversation.id"]] += s.attributes[
                "gen_ai.usage.output_tokens"
            ]
    db = sqlite3.connect(state / "state.db")
    metrics_out = Counter(
        dict(db.execute("SELECT session, SUM(output) FROM usage GROUP BY session"))
    )
    db.close()
    assert sum(spans_out.values()) == sum(metrics_out.values()) == 800  # the totals agree
    assert {k: v for k, v in spans_out.items() if v} == {
        k: v for k, v in metrics_out.items() if v
    }, "chat spans + corrections per session differ from the metrics per session"


def test_a_state_upgraded_from_before_block_marks_keeps_ccusage_blocks(tmp_path):
    """An API-error line opens a billing block for ccusage (tests/test_blocks.py). A state
    written before block_marks existed (schema 3, 0.1.x) had read that line already: after the
    upgrade its marks are never read (only outcomes' history is read again), so the blocks
    of the upgraded state differ from `ccusage blocks` for good, while a new state's agree."""
    import json
    import sqlite3

    from ccotel.state import schema
    from tests.conftest import ccotel
    from tests.oracle import ccusage_json
    from tests.test_blocks import _backfill, _compare
    from tests.test_blocks import test_api_error_line_opens_a_block_as_in_ccusage as make

    # the corpus of test_blocks' API-error test (its asserts pass on a new state)
    make(tmp_path)
    root, state = tmp_path / "claude", tmp_path / "state"
    oracle = ccusage_json(root, "blocks")
    # the same state as a ccotel before block_marks left it: schema 3, every line read
    db = sqlite3.connect(state / "state.db")
    cols = [
        "span",
        "input",
        "output",
        "cache_read",
        "cw5m",
        "cw1h",
        "web_search",
        "cost",
        "corrections",
    ]
    db.executescript(
        "DROP TABLE outcome; DROP TABLE outcome_call; DROP TABLE plan_history;"
        " DROP TABLE block_marks;"
        + "".join(f" ALTER TABLE trace_chats DROP COLUMN {c};" for c in cols)
        + " PRAGMA user_version=3;"
    )
    db.close()
    assert len(schema.MIGRATIONS) > 3
    ours = _backfill(root, state)  # a newer ccotel starts on it: migrates, reads what is new
    out = json.loads(ccotel("report", "--by", "block", "--json", "--state-dir", str(state)).stdout)
    theirs = [b["startTime"] for b in oracle["blocks"] if not b["isGap"]]
    assert len(out["rows"]) == len(theirs)
    _compare(ours, oracle)


class _Killed(BaseException):
    """The process dies here (kill -9: nothing after this point runs)."""


def test_stop_or_kill_at_every_startup_point_then_restart(tmp_path):
    """An upgraded state (its history to read) starts: read_history, then the catch-up. A stop
    request (SIGTERM) or a kill -9 lands at each point the daemon checks for a stop, for every
    point in turn; a restart then finishes. Tokens equal ccusage's, lines are counted once,
    outcomes equal a clean start's."""
    import shutil

    from ccotel import app
    from ccotel.pipeline import Ingest
    from ccotel.state.store import Store
    from tests.conftest import assert_equal_totals
    from tests.corpus import generate
    from tests.oracle import ccusage_totals
    from tests.test_faults_commit import BATCH, CHUNK, committed
    from tests.test_outcomes import CLOCK, cfg_for

    root = tmp_path / "corpus"
    generate(root, files=8, target_bytes=300_000, seed=5)
    full = ccusage_totals(root)
    base = tmp_path / "base"
    # the old version read part of each file: a backfill of the first half of every file
    half = tmp_path / "half"
    for p in root.rglob("*.jsonl"):
        lines = p.read_bytes().splitlines(keepends=True)
        out = half / p.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"".join(lines[: len(lines) // 2]))
    backfill(half, base)
    for p in root.rglob("*.jsonl"):  # then the files grew while it was down
        shutil.copy(p, half / p.relative_to(root))
    src = half
    _downgrade_to_before_outcomes(base)
    lines_total = sum(p.read_bytes().count(b"\n") for p in src.rglob("*.jsonl"))

    def start(state: Path, stop_at: int | None, kill: bool) -> int:
        s = Store(state)
        calls = 0
        try:
            ing = Ingest(cfg_for(src, state), s, [src], CLOCK, chunk_bytes=CHUNK, batch_lines=BATCH)

            def stopping() -> bool:
                nonlocal calls
                calls += 1
                if stop_at is not None and calls >= stop_at:
                    if kill:
                        raise _Killed
                    return True
                return False

            ing.stopping = stopping
            with contextlib.suppress(_Killed):
                app.catch_up(ing, 1, sleep=lambda x: None)
        finally:
            s.close()
        return calls

    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    points = start(clean, None, False)
    want = by_project(clean)
    tokens, lines = committed(clean)
    assert_equal_totals(tokens, full)
    assert lines == lines_total and points > 10
    for kill in (False, True):
        for k in range(1, points + 1):
            state = tmp_path / f"s{k}{kill}"
            shutil.copytree(base, state)
            start(state, k, kill)
            start(state, None, False)  # the restart
            got_tokens, got_lines = committed(state)
            assert_equal_totals(got_tokens, full)
            assert got_lines == lines_total, (k, kill)
            assert by_project(state) == want, (k, kill)
            shutil.rmtree(state)


@pytest.mark.xfail(
    strict=True,
    reason="open: a kill between export and commit resends a chat "
    "span under its id with the counts of now (docs/traces.md)",
)
def test_a_chat_span_sent_again_after_a_kill_carries_what_it_carried(tmp_path, monkeypatch):
    """kill -9 after the collector took a batch and before the state committed it: the next
    start sends the batch again (at least once), with the same span ids. When the response
    grew in between (its late line read by the metrics), the chat span goes out again under
    the same id with other token counts and no correction: a backend that keeps one span per
    id keeps 8 or 800 output tokens, never the metrics' 800 = 8 + correction. A span sent
    again must carry what it carried, the growth going to a correction."""
    from collections import defaultdict

    from ccotel import app
    from ccotel.state.traces import TraceState
    from tests.test_traces import T0, Clock, Mem, T, shipper
    from tests.test_traces_split import _cfg

    root, state = tmp_path / "claude", tmp_path / "state"
    t = T(root)
    cfg = _cfg(root, state, 600)
    clock, m = Clock(T0 + 3), Mem()
    t.write([t.prompt(0), t.assistant(1, "m1", [t.use("toolu_1", command="make")], out=8)])
    app.backfill(cfg)
    clock.t = T0 + 1 + 660  # idle: m1 sent as read so far
    sh = shipper(cfg, m, clock)
    real = TraceState.commit

    def killed(self, *a, **kw):
        raise _Killed

    monkeypatch.setattr(TraceState, "commit", killed)
    with contextlib.suppress(_Killed):
        sh.run_pass()
    monkeypatch.setattr(TraceState, "commit", real)
    sh.state.close()  # the process is gone
    sent = [s for s in m.spans() if s.name.startswith("chat")]
    assert [s.attributes["gen_ai.usage.output_tokens"] for s in sent] == [8]
    t.write([t.result(661, "toolu_1"), t.assistant(662, "m1", [{"type": "text", "text": "done"}], out=800)])  # fmt: skip
    app.backfill(cfg)
    clock.t = T0 + 2000
    sh = shipper(cfg, m, clock)  # the restart
    assert sh.run_pass()
    sh.close()
    by_id = defaultdict(list)
    for s in m.spans():
        if s.name.startswith("chat"):
            by_id[(s.context.trace_id, s.context.span_id)].append(
                s.attributes["gen_ai.usage.output_tokens"]
            )
    kept = sum(v[0] for v in by_id.values())  # a backend that keeps the first copy of an id
    assert all(len(set(v)) == 1 for v in by_id.values()), dict(by_id)
    assert kept == 800


def test_live_rounds_with_the_nth_commit_failing_keep_outcomes_and_tokens(tmp_path, monkeypatch):
    """One daemon (one Ingest) reads a corpus that grows in rounds (files cut at random line
    boundaries: calls and their results in different rounds); the Nth commit fails, for every
    N. Outcomes equal a clean run's, in the state and in memory; tokens equal ccusage's."""
    import random
    import shutil

    from ccotel.pipeline import Ingest
    from ccotel.state.store import Store
    from tests.conftest import assert_equal_totals
    from tests.corpus import generate
    from tests.oracle import ccusage_totals
    from tests.test_faults_commit import BATCH, CHUNK, Faults, committed
    from tests.test_outcomes import CLOCK, cfg_for
    from tests.test_traces_split import _rounds_by_lines

    src = tmp_path / "src"
    generate(src, files=6, target_bytes=250_000, seed=11)
    from tests.test_outcomes import crafted

    crafted(src)  # commits, pull requests, failed and pretended calls
    full = ccusage_totals(src)
    faults = Faults().install(monkeypatch)

    def run(tag: str) -> tuple[Path, dict]:
        root, state = tmp_path / f"c{tag}", tmp_path / f"s{tag}"
        store = Store(state)
        try:
            ing = Ingest(cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK,
                         batch_lines=BATCH)  # fmt: skip
            for _ in _rounds_by_lines(src, root, 3, seed=1):
                ing.backfill(ing.scan(), 1, sleep=lambda s: None)
            ing.backfill(ing.scan(), 1, sleep=lambda s: None)
            mem = ing.acct.outcomes.totals.snapshot()
        finally:
            store.close()
        shutil.rmtree(root)
        return state, mem

    clean, clean_mem = run("clean")
    commits = faults.n
    want = by_project(clean)
    assert any(v[COMMITS] for v in want.values()) and commits > 5
    random.seed(0)
    for n in range(1, commits + 1):
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        state, mem = run(str(n))
        assert faults.failed == 1
        assert by_project(state) == want, n
        assert {k: v for k, v in mem.items() if any(v)} == {
            k: v for k, v in clean_mem.items() if any(v)
        }, n
        assert_equal_totals(committed(state)[0], full)
        shutil.rmtree(state)


def test_pretended_commit_read_by_a_decode_worker_then_live_counts_nothing(tmp_path):
    """Finding 1 without a restart: the catch-up decodes in worker processes (8 files or more),
    so the call is remembered in a worker, not in the daemon; its result, read live by the
    daemon, then counts `echo "then git commit"` as a commit."""
    from ccotel.pipeline import Ingest
    from ccotel.state.store import Store
    from tests.corpus import generate
    from tests.test_outcomes import CLOCK, cfg_for

    root, state = tmp_path / "claude", tmp_path / "s"
    generate(root, files=10, target_bytes=100_000, seed=3)  # enough files for the workers
    f = root / "projects" / "-w-app" / f"{SID}.jsonl"
    cmd, out = {"command": 'echo "then git commit"'}, _bash_out("then git commit")
    _write(f, [_assistant(SID, "/w/app", "tw1", "Bash", cmd, 0)])
    outcomes.CALLS.kinds.clear()
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK)
        ing.backfill(ing.scan(), 2, sleep=lambda s: None)  # the catch-up, with workers
        _write(f, [_result(SID, "/w/app", "tw1", out, False, 1)])
        ing.backfill(ing.scan(), 1, sleep=lambda s: None)  # live: this process
    finally:
        store.close()
    assert by_project(state).get("app", [0] * 5)[COMMITS] == 0
