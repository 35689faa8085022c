"""A state commit that fails (issue 9, silent loss 1), model-checked the way log shippers are:
a multi-chunk corpus read with small chunks and batches, the Nth state commit made to fail
for every N in turn (at BEGIN, inside the transaction, or at COMMIT, leaving the
transaction open), a run where every third fails, and runs where the failure lasts and
then clears. After each: the totals equal ccusage's, and every line was committed exactly
once (``ccotel_lines_total`` equals the corpus's line count: nothing skipped, nothing read
twice), in the state and in memory, before and after a restart.

Paths: backfill in one process, backfill with decode workers, and the live daemon.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from msgspec.structs import astuple

from ccotel import app, report
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.projects import project_labeler
from ccotel.state.store import Store
from ccotel.totals import Totals
from tests.conftest import as_ccusage, assert_equal_totals
from tests.corpus import generate
from tests.oracle import ccusage_totals

CHUNK = 8 << 10  # bytes per read: every file takes several chunks
BATCH = 25  # lines per commit: a backfill makes 17 commits (8 with workers)
CLOCK = lambda: 1_800_000_000.0  # noqa: E731


class _Breaking:
    """The state's connection, failing at one call of a transaction: its ``at``-th call
    (1: BEGIN), and at COMMIT (reached when the transaction has fewer calls, or when the
    failed call was a read the store tried again). The transaction is left as SQLite would
    leave it: statements before the failure done, COMMIT not."""

    def __init__(self, db: sqlite3.Connection, at: int):
        self._db, self._at, self._i = db, at, 0

    def __getattr__(self, name):
        return getattr(self._db, name)

    def _maybe_fail(self, stmt: str) -> None:
        self._i += 1
        if self._at and (self._i == self._at or stmt == "COMMIT"):
            raise sqlite3.OperationalError("disk I/O error (injected)")

    def execute(self, stmt, *args):
        self._maybe_fail(stmt)
        return self._db.execute(stmt, *args)

    def executemany(self, stmt, *args):
        self._maybe_fail(stmt)
        return self._db.executemany(stmt, *args)


class Faults:
    """Which state commits fail: ``fail(n)`` for the nth commit (1-based); ``leave_open``:
    at COMMIT and at the ROLLBACK after it, leaving the failed transaction open."""

    def __init__(self, fail=lambda n: False, leave_open: bool = False):
        self.fail, self.n, self.failed, self.leave_open = fail, 0, 0, leave_open

    def install(self, monkeypatch) -> Faults:
        orig = Store.commit
        faults = self

        def commit(store: Store, b) -> None:
            faults.n += 1
            if not faults.fail(faults.n):
                return orig(store, b)
            faults.failed += 1
            real = store.db
            if faults.leave_open:
                store.db = _FailingEnd(real, at=0)
            else:  # BEGIN, a statement, or COMMIT
                store.db = _Breaking(real, at=1 + faults.n % 16)
            try:
                return orig(store, b)
            finally:
                store.db = real

        monkeypatch.setattr(Store, "commit", commit)
        return self


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate(root, files=12, target_bytes=600_000, seed=3)
    lines = sum(p.read_bytes().count(b"\n") for p in root.rglob("*.jsonl"))
    return root, ccusage_totals(root), lines


def cfg_for(root: Path, state: Path, **kw) -> Config:
    return Config(claude_dirs=[str(root)], state_dir=str(state), traces=False, web=False, **kw)


def committed(state: Path) -> tuple[dict, float]:
    s = Store(state, readonly=True)
    try:
        t = report.build(s, "day", None, project_labeler("name"))["totals"]
        return as_ccusage(t), s.counters().get("lines", 0)
    finally:
        s.close()


def check(state: Path, want: dict, lines: int, memory: Totals | None = None) -> None:
    got, got_lines = committed(state)
    assert_equal_totals(got, want)
    assert got_lines == lines, f"{got_lines} lines committed, the corpus has {lines}"
    if memory is not None:  # what the daemon shows is what the state holds
        s = Store(state, readonly=True)
        try:
            again = Totals.load(s, CLOCK())
        finally:
            s.close()
        assert memory.usage.keys() == again.usage.keys()
        for k, v in again.usage.items():
            assert astuple(memory.usage[k]) == pytest.approx(astuple(v), rel=1e-9), k
        assert memory.counters == again.counters
        assert memory.sessions_by_cwd == again.sessions_by_cwd


def backfill(root: Path, state: Path, workers: int) -> Ingest:
    store = Store(state)
    try:
        ing = Ingest(
            cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK, batch_lines=BATCH
        )
        ing.backfill(ing.scan(), workers, sleep=lambda s: None)
        return ing
    finally:
        store.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_nth_commit_fails_for_every_n(corpus, tmp_path, monkeypatch, workers):
    root, want, lines = corpus
    faults = Faults().install(monkeypatch)
    backfill(root, tmp_path / "clean", workers)
    commits = faults.n
    assert commits >= (12 if workers == 1 else 6), commits  # many commits at these sizes
    for n in range(1, commits + 2):
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        state = tmp_path / f"s{n}"
        ing = backfill(root, state, workers)
        assert faults.failed == (1 if n <= faults.n else 0)
        assert not ing.retry
        check(state, want, lines, ing.totals)
        shutil.rmtree(state)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_every_third_commit_fails(corpus, tmp_path, monkeypatch, workers):
    root, want, lines = corpus
    faults = Faults(lambda k: k % 3 == 0).install(monkeypatch)
    ing = backfill(root, tmp_path / "s", workers)
    assert faults.failed >= 3 and not ing.retry
    check(tmp_path / "s", want, lines, ing.totals)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_failure_lasts_then_clears(corpus, tmp_path, monkeypatch, workers):
    """Commits fail from the 4th on: backfill gives up with the files it could not commit
    left to retry (and the CLI says so); once the state is writable, the next run is exact."""
    root, want, lines = corpus
    faults = Faults(lambda k: k >= 4).install(monkeypatch)
    ing = backfill(root, tmp_path / "s", workers)
    assert ing.retry and ing.last_error is not None
    assert "nothing was lost" in ing.state_error()
    _, got_lines = committed(tmp_path / "s")
    assert 0 < got_lines < lines  # three commits got through
    faults.fail = lambda k: False
    ing = backfill(root, tmp_path / "s", workers)
    check(tmp_path / "s", want, lines, ing.totals)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_nth_commit_and_its_rollback_fail_after_a_restart(corpus, tmp_path, monkeypatch, workers):
    """A failed COMMIT whose ROLLBACK fails too leaves the failed batch in an open
    transaction, visible to the process's own reads until the next commit ends it. After a
    restart nothing is cached, so accounting looks rows up in the state: the lines read again
    looked counted already (a response's final copy, a tool's result) and were lost. For
    every n: half of each file committed, a restart, the rest read with its nth commit
    failing so."""
    root, want, lines = corpus
    data = tmp_path / "data"
    rounds = _rounds(root, data, 2)
    next(rounds)
    backfill(data, tmp_path / "half", workers)
    next(rounds)
    faults = Faults(leave_open=True).install(monkeypatch)
    shutil.copytree(tmp_path / "half", tmp_path / "clean")
    backfill(data, tmp_path / "clean", workers)
    commits = faults.n
    assert commits >= (6 if workers == 1 else 3), commits
    for n in range(1, commits + 1):
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        state = tmp_path / f"s{n}"
        shutil.copytree(tmp_path / "half", state)
        ing = backfill(data, state, workers)
        assert faults.failed == 1 and not ing.retry
        check(state, want, lines, ing.totals)
        shutil.rmtree(state)


def test_cli_backfill_reports_a_state_that_stays_unwritable(corpus, tmp_path, monkeypatch):
    """app.backfill (what `ccotel backfill` runs) raises StateError, not a success."""
    root = corpus[0]
    Faults(lambda k: True).install(monkeypatch)
    monkeypatch.setattr("ccotel.pipeline.RETRY_DELAYS", (0.0, 0.0))
    from ccotel.state.store import StateError

    with pytest.raises(StateError, match="nothing was lost"):
        app.backfill(cfg_for(root, tmp_path / "s"))


# --- the daemon ---------------------------------------------------------------------


def _rounds(src: Path, dst: Path, parts: int = 3):
    """Copy the corpus into dst in `parts` rounds, each file cut at line boundaries."""
    files = sorted(src.rglob("*.jsonl"))
    data = {p: p.read_bytes().splitlines(keepends=True) for p in files}
    for r in range(parts):
        for p, lines in data.items():
            out = dst / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            k = len(lines)
            with open(out, "ab") as f:
                f.write(b"".join(lines[k * r // parts : k * (r + 1) // parts]))
        yield r


STALL = 60  # seconds without a commit while work remains: the daemon stopped, not slow


def settle(d: app.Daemon, config: Path) -> None:
    """Wait until the daemon has committed every byte written under ``config`` (its
    committed cursors at each file's size, nothing left to retry). Slowness is no failure:
    it fails only when the daemon makes no commit for STALL seconds while work remains."""
    ing = d.ingest
    mark, since = ing.commits, time.monotonic()
    while True:
        cursors, retry = dict(ing.cursors), set(ing.retry)
        behind = {
            str(p): (p.stat().st_size, c.offset if (c := cursors.get(str(p))) else None)
            for p in config.rglob("*.jsonl")
        }
        behind = {p: v for p, v in behind.items() if v[0] != v[1]}
        if not behind and not retry:
            return
        if ing.commits != mark:
            mark, since = ing.commits, time.monotonic()
        elif time.monotonic() - since > STALL:
            raise AssertionError(
                f"no commit for {STALL} s with work left: behind={behind} retry={retry} "
                f"last_error={ing.last_error!r} loop alive={d.ready.is_set()}"
            )
        time.sleep(0.02)


def start_daemon(config: Path, state: Path, rescan: float) -> tuple[app.Daemon, threading.Thread]:
    cfg = cfg_for(config, state, http_addr="127.0.0.1:0", rescan_interval=rescan)
    d = app.Daemon(cfg, CLOCK)
    d.ingest.chunk_bytes, d.ingest.batch_lines = CHUNK, BATCH
    t = threading.Thread(target=d.run)
    t.start()
    return d, t


def live(src: Path, tmp: Path, faults: Faults, want: dict, lines: int, phase: str = "live") -> int:
    """The corpus written in rounds while the daemon runs. ``phase``: "catch-up" writes the
    first round before the daemon starts (its catch-up commits it); "no-rescan" turns the
    periodic rescan off (an hour), leaving a failed commit to the retry timer alone."""
    config = tmp / "claude"
    (config / "projects").mkdir(parents=True)
    rounds = _rounds(src, config)
    if phase == "catch-up":
        next(rounds)
    d, t = start_daemon(config, tmp / "state", 3600 if phase == "no-rescan" else 0.3)
    try:
        assert d.ready.wait(60)
        for _ in rounds:
            time.sleep(0.05)
        settle(d, config)
        check(tmp / "state", want, lines)
    finally:
        d.stop()
        t.join(30)
    assert not t.is_alive()
    check(tmp / "state", want, lines, d.ingest.totals)
    return faults.n


@pytest.mark.parametrize("phase", ["live", "catch-up", "no-rescan"])
def test_live_nth_commit_fails_for_every_n(corpus, tmp_path, monkeypatch, phase):
    root, want, lines = corpus
    monkeypatch.setattr(app, "RETRY_FIRST", 0.05)
    faults = Faults().install(monkeypatch)
    commits = live(root, tmp_path / "clean", faults, want, lines, phase)
    assert commits >= 10, commits
    hit = 0  # commits a run makes vary with timing: count the runs whose nth one failed
    for n in range(1, commits + 1):
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        live(root, tmp_path / f"s{n}", faults, want, lines, phase)
        assert faults.failed == (faults.n >= n)
        hit += faults.failed
    assert hit >= commits * 2 // 3, (hit, commits)


def test_live_retry_not_put_off_by_other_files(corpus, tmp_path, monkeypatch):
    """A file whose commit failed and that gets no further line (a session that ended) is
    read again by the retry timer alone when the rescan is far off. Each wake-up for another
    file's lines pushed that timer back and doubled its pause: while any other session
    wrote, the file waited, and after, it waited up to the rescan interval (an hour here)."""
    root, want, lines = corpus
    monkeypatch.setattr(app, "RETRY_FIRST", 0.05)
    faults = Faults().install(monkeypatch)
    config = tmp_path / "claude"
    files = sorted(root.rglob("*.jsonl"))
    quiet, busy = files[0], max(files, key=lambda p: p.stat().st_size)
    copy = {p: config / p.relative_to(root) for p in files}
    for p in files:  # all but the last lines of the quiet file and the busy one
        copy[p].parent.mkdir(parents=True, exist_ok=True)
        data = p.read_bytes().splitlines(keepends=True)
        copy[p].write_bytes(b"".join(data[: len(data) // 2 if p in (quiet, busy) else None]))
    d, t = start_daemon(config, tmp_path / "state", 3600)
    try:
        assert d.ready.wait(60)
        faults.fail = lambda k, n=faults.n + 1: k == n  # the next commit: the quiet file's
        data = quiet.read_bytes().splitlines(keepends=True)
        with open(copy[quiet], "ab") as f:
            f.write(b"".join(data[len(data) // 2 :]))
        while not faults.failed:
            time.sleep(0.01)
        data = busy.read_bytes().splitlines(keepends=True)
        for line in data[len(data) // 2 :]:  # another session goes on writing
            with open(copy[busy], "ab") as f:
                f.write(line)
            time.sleep(0.01)
        settle(d, config)
    finally:
        d.stop()
        t.join(30)
    assert faults.failed == 1
    check(tmp_path / "state", want, lines, d.ingest.totals)


def test_live_every_third_then_failing_for_a_while(corpus, tmp_path, monkeypatch):
    root, want, lines = corpus
    monkeypatch.setattr(app, "RETRY_FIRST", 0.05)
    faults = Faults(lambda k: k % 3 == 0).install(monkeypatch)
    live(root, tmp_path / "third", faults, want, lines)
    assert faults.failed >= 3
    stop_failing_at = time.monotonic() + 1.5  # every commit fails for 1.5 s, then none
    faults.fail, faults.n, faults.failed = (lambda k: time.monotonic() < stop_failing_at), 0, 0
    live(root, tmp_path / "while", faults, want, lines)
    assert faults.failed >= 3


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_a_value_the_state_refuses_is_confined_to_its_file(corpus, tmp_path, monkeypatch, workers):
    """A line whose value the state cannot store (simulated: every commit holding the
    victim's lines raises ValueError, as a text SQLite cannot encode did) must not block
    the files committed with it: they go file by file until the victim is found, set
    aside; the rest equals ccusage over the other files."""
    root, _want, _lines = corpus
    victim = str(sorted(root.rglob("*.jsonl"))[5])
    orig = Store.commit

    def commit(store: Store, b) -> None:
        if victim in b.files:
            raise ValueError("a value the state cannot store (injected)")
        return orig(store, b)

    monkeypatch.setattr(Store, "commit", commit)
    ing = backfill(root, tmp_path / "s", workers)
    assert list(ing.broken) == [victim] and not ing.retry
    others = tmp_path / "others"
    shutil.copytree(root, others)
    (others / Path(victim).relative_to(root)).unlink()
    assert_equal_totals(committed(tmp_path / "s")[0], ccusage_totals(others))


class _FailingEnd(_Breaking):
    """Fails COMMIT, and the ROLLBACK after it: the transaction stays open in SQLite."""

    def _maybe_fail(self, stmt: str) -> None:
        if stmt in ("COMMIT", "ROLLBACK"):
            raise sqlite3.OperationalError("disk I/O error (injected)")


def test_a_failed_rollback_does_not_wedge_the_state(tmp_path):
    """A failed COMMIT whose ROLLBACK fails too left the transaction open, and every later
    commit failed ("cannot start a transaction within a transaction"): the daemon never
    wrote again (found by test_live_nth_commit_fails_for_every_n, one run in three, when the
    injected failure landed on that ROLLBACK). The next commit ends it first."""
    from ccotel.batch import Batch

    store = Store(tmp_path / "state")
    try:
        lost, kept = Batch(), Batch()
        lost.count("lines", 5)
        kept.count("lines", 7)
        real = store.db
        store.db = _FailingEnd(real, at=0)
        with pytest.raises(sqlite3.OperationalError):
            store.commit(lost)
        store.db = real
        assert real.in_transaction  # what the two failures leave behind
        store.commit(kept)
        assert not real.in_transaction and store.counters()["lines"] == 7
    finally:
        store.close()


def test_a_path_noted_during_a_retry_pause_wakes_the_next_wait():
    """The catch-up's pauses between retries (Wakeup.sleep) drain the wake-up pipe and keep
    the paths the watcher noted meanwhile: the loop's first wait then slept until the rescan
    (60 s by default) with new lines waiting."""
    from ccotel.wakeup import Wakeup

    wake = Wakeup()
    try:
        wake.add("/p/s.jsonl")
        wake.sleep(0.01)
        got: list[set[str]] = []
        t = threading.Thread(target=lambda: got.append(wake.wait(3600)))
        t.start()
        t.join(60)
        assert got == [{"/p/s.jsonl"}]
    finally:
        wake.request_stop()
        t.join()
        wake.close()


class _RollbackFailsFor(_Breaking):
    """COMMIT fails once; ROLLBACK fails its first ``n`` times (the failed batch stays open)."""

    def __init__(self, db: sqlite3.Connection, n: int):
        super().__init__(db, at=0)
        self.commits, self.rollbacks = 1, n

    def _maybe_fail(self, stmt: str) -> None:
        if stmt == "COMMIT" and self.commits:
            self.commits -= 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        if stmt == "ROLLBACK" and self.rollbacks:
            self.rollbacks -= 1
            raise sqlite3.OperationalError("disk I/O error (injected)")


@pytest.mark.parametrize("rollbacks", [1, 3, 5])
def test_a_batch_left_open_is_never_read_as_counted(tmp_path, rollbacks):
    """After a restart (nothing cached) a response's final copy is read; its commit fails and
    the ROLLBACK after it too, for a while: reading again waits until the failed batch is gone
    (it would see the final copy as counted already), then counts it once."""
    from tests.lines import assistant

    root = tmp_path / "claude"
    f = root / "projects" / "-p" / "11111111-2222-3333-4444-555555555555.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text(assistant(out=5) + "\n")
    cfg = cfg_for(root, tmp_path / "s")
    store = Store(tmp_path / "s")
    Ingest(cfg, store, [root], CLOCK).backfill([str(f)], 1)
    store.close()
    with f.open("a") as fh:
        fh.write(assistant(out=50) + "\n")  # the same response, its final usage
    store = Store(tmp_path / "s")
    try:
        ing = Ingest(cfg, store, [root], CLOCK)
        store.db = _RollbackFailsFor(store.db, rollbacks)
        ing.backfill([str(f)], 1, sleep=lambda s: None)
        assert not ing.retry and not store.db.rollbacks
        assert store.query("SELECT sum(output) FROM usage") == [(50,)]
        assert store.counters()["lines"] == 2
    finally:
        store.close()
