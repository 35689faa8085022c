"""A first backfill into an empty state keeps what it committed in memory and looks nothing
up (accounting.Accountant.cold); a state that holds rows is never treated so.

The corpus (resumed copies across files, a larger copy and a /btw sidechain replay of
responses committed batches earlier, tool results far from their calls) is read with small
chunks and batches, so that most de-duplication happens against committed batches. The
state it leaves, table by table, must equal the one the seen filter and lookups leave
(the path every warm state takes), and the one of a fill that leaves the cold mode half-way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccotel import accounting
from ccotel.pipeline import Ingest
from ccotel.state.store import Store
from tests.corpus import generate
from tests.lines import SID, assistant
from tests.oracle import ccusage_totals
from tests.test_faults_commit import BATCH, CHUNK, CLOCK, cfg_for, check
from tests.test_faults_read import _extras

# Every table accounting writes, in a stable order (keys are random: sorted by them).
TABLES = {
    "responses": "SELECT * FROM responses ORDER BY key",
    "aliases": "SELECT * FROM response_alias ORDER BY key",
    "tools": "SELECT * FROM tools ORDER BY id",
    "tool_agg": "SELECT * FROM tool_agg ORDER BY 1, 2, 3",
    "sessions": "SELECT * FROM sessions ORDER BY id",
    "places": "SELECT * FROM session_cwds ORDER BY 1, 2",
    "usage": "SELECT * FROM usage ORDER BY 1, 2, 3, 4",
    "spend": "SELECT minute, round(cost, 9) FROM spend_minutes ORDER BY 1",
    "outcomes": "SELECT * FROM outcome ORDER BY key",
    "counters": "SELECT * FROM counters ORDER BY name",
    "files": "SELECT path, offset, line_no FROM files ORDER BY path",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold") / "claude"
    generate(root, files=24, target_bytes=900_000, seed=12)
    _extras(sorted(root.rglob("*.jsonl"))[::2], root)
    lines = sum(p.read_bytes().count(b"\n") for p in root.rglob("*.jsonl"))
    return root, ccusage_totals(root), lines


def _fill(root: Path, state: Path, workers: int, cold: bool | None = None) -> Ingest:
    """Backfill ``root`` into ``state``; ``cold=False``: as if the state held rows."""
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK,
                     batch_lines=BATCH)  # fmt: skip
        if cold is not None:
            ing.acct.cold = cold
        ing.backfill(ing.scan(), workers)
        assert not ing.retry and not ing.broken
        return ing
    finally:
        store.close()


def _schema(state: Path) -> list[tuple]:
    s = Store(state, readonly=True)
    try:
        return s.query("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2")
    finally:
        s.close()


def _tables(state: Path) -> dict[str, list[tuple]]:
    s = Store(state, readonly=True)
    try:
        return {name: s.query(q) for name, q in TABLES.items()}
    finally:
        s.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_cold_fill_leaves_the_state_a_warm_fill_leaves(corpus, tmp_path, monkeypatch, workers):
    root, want, lines = corpus
    ing = _fill(root, tmp_path / "cold", workers)
    assert ing.acct.cold and ing.commits > 8  # cold all along, over many commits
    check(tmp_path / "cold", want, lines, ing.totals)
    ing = _fill(root, tmp_path / "warm", workers, cold=False)
    assert not ing.acct.cold
    check(tmp_path / "warm", want, lines, ing.totals)
    monkeypatch.setattr(accounting, "COLD_KEYS", 100)  # leaves the cold mode a few commits in
    ing = _fill(root, tmp_path / "half", workers)
    assert not ing.acct.cold
    check(tmp_path / "half", want, lines, ing.totals)
    assert _schema(tmp_path / "cold") == _schema(tmp_path / "warm")  # its indexes built again
    cold = _tables(tmp_path / "cold")
    assert cold["aliases"] and cold["responses"] and cold["tools"]  # what is compared is there
    assert cold == _tables(tmp_path / "warm")
    assert cold == _tables(tmp_path / "half")


def test_a_state_with_rows_is_not_cold(corpus, tmp_path):
    """Half of the corpus committed, then all of it read by a new process: every copy of a
    committed response, every result of a committed call and every known session is found
    in the state (a cold shortcut here would count them twice, or miss the results)."""
    full, want, lines = corpus
    root, state = tmp_path / "claude", tmp_path / "state"
    files = sorted(full.rglob("*.jsonl"))

    def add(some: list[Path]) -> None:
        for p in some:
            dst = root / p.relative_to(full)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dst)

    add(files[::2])
    assert _fill(root, state, 1).acct.cold
    add(files[1::2])
    ing = _fill(root, state, 1)
    assert not ing.acct.cold
    check(state, want, lines, ing.totals)
    _same_counts(ing, _fill(full, tmp_path / "whole", 1), state, tmp_path / "whole")


def test_indexes_a_stopped_first_backfill_left_out_are_built_at_open(tmp_path):
    """A kill -9 between a first backfill's start and its end leaves the state without the
    indexes it builds at its end: the next open builds them. A state with rows keeps them."""
    fresh = _schema_of_new(tmp_path / "fresh")
    store = Store(tmp_path / "s")
    assert store.defer_indexes()
    store.close()  # as a kill leaves it
    assert _schema(tmp_path / "s") != fresh  # the readers' view: no index
    Store(tmp_path / "s").close()
    assert _schema(tmp_path / "s") == fresh


def test_indexes_are_kept_on_a_state_with_rows(corpus, tmp_path):
    root, _, _ = corpus
    ing = _fill(root, tmp_path / "s", 1)
    store = Store(tmp_path / "s")
    try:
        assert not store.defer_indexes()
        assert not Ingest(cfg_for(root, tmp_path / "s"), store, [root], CLOCK).acct.cold
    finally:
        store.close()
    assert ing.commits and _schema(tmp_path / "s") == _schema_of_new(tmp_path / "fresh")


def _schema_of_new(state: Path) -> list[tuple]:
    Store(state).close()
    return _schema(state)


def test_a_message_id_under_several_request_ids(tmp_path):
    """Main-thread responses sharing a message id (another request id each) committed, then a
    sidechain replay of it: the cold state finds the same committed copy the state's index
    gives (the first by key), with its several keys kept in memory."""

    def run(name: str, cold: bool) -> dict[str, list[tuple]]:
        root, state = tmp_path / name / "claude", tmp_path / name / "state"
        path = root / "projects" / "-home-u-proj" / f"{SID}.jsonl"
        path.parent.mkdir(parents=True)
        store = Store(state)
        try:
            ing = Ingest(cfg_for(root, state), store, [root], CLOCK)
            ing.acct.cold = cold
            for lines in (
                [assistant("msg_m", f"req_{i}", out=10 * i) for i in (1, 2, 3)],
                [assistant("msg_m", "req_btw", out=5, sidechain=True)],
                [assistant("msg_m", "req_btw", out=500, sidechain=True)],  # a better replay
            ):
                with open(path, "a") as f:
                    f.write("".join(line + "\n" for line in lines))
                for p in ing.scan():
                    ing.ingest(p)
                assert ing.flush()
            assert ing.acct.cold == cold
            return {k: v for k, v in _tables(state).items() if k != "files"}
        finally:
            store.close()

    cold = run("cold", True)
    assert len(cold["responses"]) == 3 and len(cold["aliases"]) == 1
    assert cold == run("warm", False)


def test_leaving_the_cold_mode_between_batches_finds_every_committed_row(
    corpus, tmp_path, monkeypatch
):
    """The daemon leaves the cold mode after its catch-up (Accountant.warm): what comes next
    is looked up through the seen filter, which must know every row committed while cold
    (the caches shrunk to one row: every look beyond the batch goes to the state)."""
    monkeypatch.setattr(accounting, "_CACHE", 1)
    full, want, lines = corpus
    root, state = tmp_path / "claude", tmp_path / "state"
    files = sorted(full.rglob("*.jsonl"))
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK,
                     batch_lines=BATCH)  # fmt: skip
        for some in (files[::2], files[1::2]):
            for p in some:
                dst = root / p.relative_to(full)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dst)
            ing.backfill(ing.scan(), 1)
            assert not ing.retry and not ing.broken
            if ing.acct.cold:
                ing.acct.warm()
                assert len(ing.acct._rows) == 1 and not ing.acct.cold
    finally:
        store.close()
    check(state, want, lines, ing.totals)
    _same_counts(ing, _fill(full, tmp_path / "whole", 1), state, tmp_path / "whole")


def _same_counts(ing: Ingest, whole: Ingest, state: Path, whole_state: Path) -> None:
    """Sessions, tool calls with a result and kept responses: as many as a fill in one go."""
    assert ing.totals.sessions == whole.totals.sessions == len(_tables(state)["sessions"])
    assert sum(a.count for a in ing.totals.tool_agg.values()) == sum(
        a.count for a in whole.totals.tool_agg.values()
    )
    assert ing.totals.sessions_by_cwd == whole.totals.sessions_by_cwd
    assert len(_tables(state)["responses"]) == len(_tables(whole_state)["responses"])


@pytest.mark.parametrize("restart", [False, True], ids=["cold", "warm"])
def test_a_copy_found_through_a_committed_alias_meets_the_batch_s_better_copy(tmp_path, restart):
    """A main-thread response committed under its /btw replay's key (an alias), then, in one
    batch, a larger copy of it and a smaller one (two files): the larger stays (ccusage keeps
    the largest copy). The lookup through the alias used to return the committed copy, which
    the smaller one beat."""
    root, state = tmp_path / "claude", tmp_path / "state"
    folder = root / "projects" / "-home-u-proj"
    folder.mkdir(parents=True)

    def sync(ing: Ingest, name: str, *lines: str) -> None:
        (folder / name).write_text("".join(line + "\n" for line in lines))
        for p in ing.scan():
            ing.ingest(p)
        assert ing.flush()

    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK)
        sync(ing, "a.jsonl", assistant("msg_p", "req_btw", out=5, sidechain=True))
        sync(ing, "b.jsonl", assistant("msg_p", "req_p", out=100))  # takes the replay's key
        if restart:
            store.close()
            store = Store(state)
            ing = Ingest(cfg_for(root, state), store, [root], CLOCK)
        assert ing.acct.cold != restart
        (folder / "c.jsonl").write_text(assistant("msg_p", "req_p", out=200) + "\n")
        sync(ing, "d.jsonl", assistant("msg_p", "req_p", out=150))
        assert sum(u.output for u in ing.totals.usage.values()) == 200
        assert sum(u.requests for u in ing.totals.usage.values()) == 1
    finally:
        store.close()
    assert ccusage_totals(root)["outputTokens"] == 200


def test_a_state_without_its_indexes_opens_on_a_full_disk(corpus, tmp_path, monkeypatch):
    """A first backfill stopped before it built its indexes (a kill, or the disk filling up),
    then an open while the disk is still full: building them fails, and the state opens
    anyway (they only speed lookups up; a daemon used to start and wait for space); the next
    open builds them."""
    import sqlite3

    root, want, lines = corpus
    fresh = _schema_of_new(tmp_path / "fresh")
    store = Store(tmp_path / "s")
    assert store.defer_indexes()
    store.close()
    real = Store.restore_indexes

    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "restore_indexes", full)
    Store(tmp_path / "s").close()
    assert _schema(tmp_path / "s") != fresh
    monkeypatch.setattr(Store, "restore_indexes", real)
    ing = _fill(root, tmp_path / "s", 1)
    check(tmp_path / "s", want, lines, ing.totals)
    assert _schema(tmp_path / "s") == fresh
