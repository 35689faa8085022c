"""A state READ that fails (review 1, finding 2), model-checked like a failed commit.

On ca2edcb one failed lookup while accounting (a "maybe" of the seen filter looked up in
the state) was blamed on the transcript: the file was set aside until a restart and counted
as a malformed line; with decode workers the error escaped the backfill, and the daemon
exited at start telling the user to rebuild. A read error is the state's, like a failed
commit: what was read since the last commit is read again from the committed cursors.

The corpus: half of it committed first; then the other half appears (resumed copies of the
first half's sessions), with a larger copy of a committed response, a /btw-style sidechain
replay of one (same message id, another request id) and results of committed tool calls,
so that every kind of lookup goes to the state (the row caches shrunk to one row). Every
read the pipeline makes (every SELECT on the state's connection: at start, while
accounting, inside a commit) is made to fail in turn, in backfill in one process and with
decode workers; a run fails every third read; and the live daemon meets the same. After
each: totals equal ccusage, every line committed once, no file set aside, no parse error.
"""

from __future__ import annotations

import copy
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ccotel import accounting, app
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.state import store as store_module
from ccotel.state.store import Store
from tests.conftest import as_ccusage, assert_equal_totals, report_totals
from tests.corpus import generate
from tests.oracle import ccusage_totals
from tests.test_faults_commit import BATCH, CHUNK, CLOCK, cfg_for, check, committed

# What accounting looks up in the state (and the start's read of the cursors, and a commit's
# of the names): each must be among the reads of a clean run, so each is made to fail.
LOOKUPS = ("FROM responses WHERE key=?", "FROM responses WHERE mkey=?", "FROM sessions WHERE id=?",
           "FROM session_cwds WHERE session=? AND cwd=?", "FROM tools WHERE id=?",
           "FROM names WHERE name=?", "FROM files")  # fmt: skip


class Reads:
    """Which reads fail: ``fail(n)`` for the nth SELECT on the state's connection."""

    def __init__(self, fail=lambda n: False, at_start: bool = True):
        self.fail, self.n, self.failed = fail, 0, 0
        self.armed = at_start  # False: the reads at start are spared (armed once started)
        self.kinds: set[str] = set()


class _Flaky:
    def __init__(self, db: sqlite3.Connection, reads: Reads):
        self._db, self._reads = db, reads

    def __getattr__(self, name):
        return getattr(self._db, name)

    def _maybe_fail(self, stmt: str) -> None:
        if not stmt.lstrip().upper().startswith(("SELECT", "WITH")):
            return
        r = self._reads
        r.n += 1
        r.kinds.add(" ".join(stmt.split()))
        if r.armed and r.fail(r.n):
            r.failed += 1
            raise sqlite3.OperationalError("disk I/O error (injected read)")

    def execute(self, stmt, *args):
        self._maybe_fail(stmt)
        return self._db.execute(stmt, *args)

    def executemany(self, stmt, *args):
        self._maybe_fail(stmt)
        return self._db.executemany(stmt, *args)


def flaky_store(state: Path, reads: Reads) -> Store:
    store = Store(state)  # opened as usual (its checks at open are another test's)
    store.db = _Flaky(store.db, reads)
    return store


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """(the whole corpus as a claude dir, the state after its first half, the oracle, its
    line count, the first half's files)."""
    base = tmp_path_factory.mktemp("reads")
    full = base / "full"
    generate(full, files=24, target_bytes=900_000, seed=12)
    first = [p.relative_to(full) for p in sorted(full.rglob("*.jsonl"))[::2]]
    _extras([full / p for p in first], full)
    root, state = base / "claude", base / "state1"
    stage_one(full, first, root, state)
    for p in full.rglob("*.jsonl"):  # then the rest appears
        dst = root / p.relative_to(full)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dst)
    lines = sum(p.read_bytes().count(b"\n") for p in full.rglob("*.jsonl"))
    return root, state, ccusage_totals(full), lines, first


def stage_one(full: Path, first: list[Path], root: Path, state: Path) -> None:
    """The first half of the corpus in ``root``, committed to ``state`` (no faults)."""
    for rel in first:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(full / rel, root / rel)
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK,
                     batch_lines=BATCH)  # fmt: skip
        ing.backfill(ing.scan(), 1)
        assert not ing.retry
    finally:
        store.close()


def _extras(first: list[Path], full: Path) -> None:
    """A file only the second stage has: copies of responses and tool calls the first
    stage committed, one larger, one a sidechain replay under another request id."""
    lines = []
    for p in first:
        for raw in p.read_bytes().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            msg = rec.get("message") if isinstance(rec, dict) else None
            if rec.get("type") == "assistant" and isinstance(msg, dict) and msg.get("usage"):
                lines.append(rec)
        if len(lines) > 40:
            break
    better, replay = copy.deepcopy(lines[3]), copy.deepcopy(lines[17])
    better["message"]["usage"]["output_tokens"] += 1000
    better["uuid"] = "extra-better"
    replay["isSidechain"], replay["requestId"], replay["uuid"] = True, "req_btw_replay", "extra-btw"
    replay["message"]["usage"]["output_tokens"] += 7
    sid = better["sessionId"]
    out = full / "projects" / "-home-user-extras" / "99999999-0000-4000-8000-000000000001.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in (better, replay))
    out.write_bytes(body)
    assert sid


def _backfill(full: Path, state: Path, reads: Reads, workers: int) -> Ingest:
    store = flaky_store(state, reads)
    try:
        ing = Ingest(cfg_for(full, state), store, [full], CLOCK, chunk_bytes=CHUNK,
                     batch_lines=BATCH, sleep=lambda s: None)  # fmt: skip
        reads.armed = True
        ing.backfill(ing.scan(), workers, sleep=lambda s: None)
        return ing
    finally:
        store.close()


def _fresh(stages, tmp: Path, name: str) -> Path:
    state = tmp / name
    shutil.copytree(stages[1], state)
    return state


def _parse_errors(state: Path) -> float:
    s = Store(state, readonly=True)
    try:
        return s.counters().get("parse_errors", 0)
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _small_caches(monkeypatch):
    monkeypatch.setattr(accounting, "_CACHE", 1)  # every second look at a row is a lookup
    monkeypatch.setattr(store_module, "READ_PAUSES", (0.0, 0.0))


@pytest.mark.parametrize("run", [1, 3], ids=["once", "three-in-a-row"])
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_nth_read_fails_for_every_n(stages, tmp_path, workers, run):
    """Reads n to n+run-1 fail: once, a lookup is tried again in place; three in a row, the
    lookup fails and what was read since the last commit is read again."""
    full, _, want, lines, _ = stages
    clean = Reads()
    ing = _backfill(full, _fresh(stages, tmp_path, "clean"), clean, workers)
    check(tmp_path / "clean", want, lines, ing.totals)
    errors = _parse_errors(tmp_path / "clean")
    for kind in LOOKUPS:  # every kind of lookup accounting makes was made
        assert any(kind in k for k in clean.kinds), (kind, clean.kinds)
    for n in range(1, clean.n + 2):
        reads = Reads(lambda k, n=n: n <= k < n + run)
        state = _fresh(stages, tmp_path, f"s{n}")
        ing = _backfill(full, state, reads, workers)
        assert reads.failed == (run if n <= clean.n else 0), n
        assert not ing.broken and not ing.retry, (n, ing.broken, ing.retry)
        check(state, want, lines, ing.totals)
        assert _parse_errors(state) == errors, n
        shutil.rmtree(state)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_every_third_read_fails(stages, tmp_path, workers):
    full, _, want, lines, _ = stages
    reads = Reads(lambda k: k % 3 == 0, at_start=False)  # a start reads 13 times: each fails
    state = _fresh(stages, tmp_path, "s")
    ing = _backfill(full, state, reads, workers)
    assert reads.failed >= 10 and not ing.broken and not ing.retry
    check(state, want, lines, ing.totals)


def test_reads_failing_for_a_while_then_clearing(stages, tmp_path):
    """Every read fails from the 30th on: backfill gives up with "nothing was lost"; the
    file it was reading is not set aside; the next run is exact."""
    full, _, want, lines, _ = stages
    errors = _parse_errors(stages[1])
    reads = Reads(lambda k: k >= 30)
    state = _fresh(stages, tmp_path, "s")
    ing = _backfill(full, state, reads, 1)
    assert ing.retry and not ing.broken
    assert "nothing was lost" in ing.state_error() and "rebuild" not in ing.state_error()
    assert _parse_errors(state) == errors
    ing = _backfill(full, state, Reads(), 1)
    check(state, want, lines, ing.totals)


def test_reads_failing_at_start_are_tried_again(stages, tmp_path):
    """The reads at start (the seen filter, the totals, the cursors): a failure is tried
    again after a pause; one that lasts is raised (the CLI names the file and what to do)."""
    full, _, want, lines, _ = stages
    reads = Reads(lambda k: k in (2, 3, 9))
    state = _fresh(stages, tmp_path, "s")
    ing = _backfill(full, state, reads, 1)
    assert reads.failed == 3
    check(state, want, lines, ing.totals)
    with pytest.raises(sqlite3.OperationalError):
        _backfill(full, state, Reads(lambda k: True), 1)


# --- the daemon -----------------------------------------------------------------------


def _live(stages, tmp: Path, reads: Reads, monkeypatch) -> None:
    full, _, want, lines, first = stages
    config, state = tmp / "claude", tmp / "state"
    stage_one(full, first, config, state)
    new = [p for p in sorted(full.rglob("*.jsonl")) if not (config / p.relative_to(full)).exists()]
    data = {p: p.read_bytes().splitlines(keepends=True) for p in new}

    class FlakyStore(Store):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.db = _Flaky(self.db, reads)

    monkeypatch.setattr(app, "Store", FlakyStore)
    cfg = cfg_for(config, state, http_addr="127.0.0.1:0", rescan_interval=0.3)
    d = app.Daemon(cfg, CLOCK)
    reads.armed = True
    d.ingest.chunk_bytes, d.ingest.batch_lines = CHUNK, BATCH
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert d.ready.wait(30)
        for r in range(3):  # the second half arrives in three rounds
            for p, ls in data.items():
                dst = config / p.relative_to(full)
                dst.parent.mkdir(parents=True, exist_ok=True)
                k = len(ls)
                with open(dst, "ab") as f:
                    f.write(b"".join(ls[k * r // 3 : k * (r + 1) // 3]))
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while True:
            try:
                check(state, want, lines)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        d.stop()
        t.join(30)
    assert not t.is_alive()
    assert not d.ingest.broken
    check(state, want, lines, d.ingest.totals)
    assert committed(state)[1] == lines


@pytest.mark.timeout(900)
def test_live_reads_fail(stages, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "RETRY_FIRST", 0.05)
    clean = Reads()
    _live(stages, tmp_path / "clean", clean, monkeypatch)
    errors = _parse_errors(tmp_path / "clean" / "state")
    assert clean.n >= 30, clean.n
    step = max(1, clean.n // 12)
    hit = 0
    for n in [*range(1, 16), *range(16, clean.n + 1, step)]:
        reads = Reads(lambda k, n=n: n <= k < n + 3)  # three in a row: the lookup fails
        _live(stages, tmp_path / f"n{n}", reads, monkeypatch)
        assert _parse_errors(tmp_path / f"n{n}" / "state") == errors
        hit += reads.failed
    assert hit >= 20, hit
    reads = Reads(lambda k: k % 3 == 0, at_start=False)
    _live(stages, tmp_path / "third", reads, monkeypatch)
    assert reads.failed >= 10
    assert _parse_errors(tmp_path / "third" / "state") == errors


def test_a_transient_state_read_error_is_not_a_broken_transcript(tmp_path, monkeypatch):
    # review 1's reproduction, as it was written
    """One failed SELECT while accounting (a "maybe" of the seen filter looked up) sets the
    whole transcript aside until a restart and counts it as a malformed line; the daemon's
    next passes never read it again. Expected: retried like a failed commit."""
    config, state = tmp_path / "claude", tmp_path / "state"
    generate(config, files=40, target_bytes=3_000_000, seed=77)
    files = sorted(config.glob("projects/*/*.jsonl"))
    held = {p: p.read_bytes() for p in files[1::2]}
    for p in held:
        p.unlink()
    cfg = Config(claude_dirs=[str(config)], state_dir=str(state), traces=False, web=False)
    store = Store(state)
    Ingest(cfg, store, [config], CLOCK).backfill(Ingest(cfg, store, [config], CLOCK).scan(), 1)
    store.close()
    for p, data in held.items():  # the other half appears (resumed copies refer to the first)
        p.write_bytes(data)
    store = Store(state)
    ingest = Ingest(cfg, store, [config], CLOCK)
    real, calls = Store.response, []

    def flaky(self, key):
        calls.append(key)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error (injected, once)")
        return real(self, key)

    monkeypatch.setattr(Store, "response", flaky)
    ingest.backfill(ingest.scan(), 1)
    for p in ingest.scan():  # the daemon's next wake-ups
        ingest.ingest(p)
    ingest.flush()
    store.close()
    assert calls, "no lookup happened: the corpus did not exercise the path"
    assert ingest.broken == {}, ingest.broken
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
