"""`backfill --rebuild` (issue 9, silent loss 3): the lock first, the new state built beside
the old one and swapped in whole, history whose transcripts are gone kept unless --force.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ccotel import app
from ccotel.config import Config
from ccotel.pipeline import Ingest
from tests.conftest import as_ccusage, assert_equal_totals, ccotel, report_totals
from tests.corpus import generate
from tests.oracle import ccusage_totals
from tests.test_live import start, wait_equal


def _files(state: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in state.iterdir()}


@pytest.mark.timeout(180)
def test_refused_while_the_daemon_runs_and_nothing_touched(tmp_path):
    config = tmp_path / "claude"
    generate(config, files=10, seed=2)
    state = tmp_path / "state"
    proc = start(config, state)
    port = proc.port
    try:
        wait_equal(port, config)
        before = _files(state)
        out = ccotel("backfill", "--rebuild", "--claude-dir", str(config), "--state-dir", str(state),
                     check=False)  # fmt: skip
        assert out.returncode != 0
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another ccotel (pid" in lines[0], out.stderr
        assert _files(state) == before  # same files, same inodes: nothing deleted or replaced
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=5).read()
        assert json.loads(body)["all_time"]["requests"] > 0
        wait_equal(port, config)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))


def test_swap_after_a_kill_leaves_no_wal_of_the_old_state(tmp_path):
    """The old state killed with frames in its WAL, one transcript deleted since: without
    --force the state is kept (and says what would go); with --force the new one replaces
    it whole: no rebuild files left, the old WAL not replayed into the new file."""
    config = tmp_path / "claude"
    generate(config, files=10, seed=3)
    state = tmp_path / "state"
    proc = start(config, state)
    port = proc.port
    wait_equal(port, config)
    proc.kill()
    proc.wait()
    assert (state / "state.db-wal").stat().st_size > 0
    old = report_totals(state)
    victim = sorted(config.rglob("*.jsonl"))[0]
    victim.unlink()
    args = ["backfill", "--rebuild", "--claude-dir", str(config), "--state-dir", str(state)]
    out = ccotel(*args, check=False)
    assert out.returncode != 0 and "whose transcripts no longer exist" in out.stderr, out.stderr
    assert report_totals(state) == old
    ccotel(*args, "--force")
    assert sorted(p.name for p in state.iterdir() if "rebuild" in p.name) == []
    db = sqlite3.connect(state / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))


def test_rebuild_with_nothing_lost_swaps_and_keeps_trace_progress(tmp_path):
    config = tmp_path / "claude"
    generate(config, files=6, seed=4)
    state = tmp_path / "state"
    ccotel("backfill", "--claude-dir", str(config), "--state-dir", str(state))
    db = sqlite3.connect(state / "state.db")
    db.execute("INSERT INTO trace_meta(key, value) VALUES('spans_exported', '42')")
    db.commit()
    db.close()
    ino = (state / "state.db").stat().st_ino
    out = ccotel("backfill", "--rebuild", "--claude-dir", str(config), "--state-dir", str(state))
    assert "Traceback" not in out.stderr
    assert (state / "state.db").stat().st_ino != ino  # a new file, swapped in
    db = sqlite3.connect(state / "state.db")
    assert db.execute("SELECT value FROM trace_meta WHERE key='spans_exported'").fetchone() == (
        "42",
    )
    db.close()
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))


def test_a_rebuild_that_fails_midway_leaves_the_old_state(tmp_path, monkeypatch):
    config = tmp_path / "claude"
    generate(config, files=10, seed=5)
    state = tmp_path / "state"
    cfg = Config(claude_dirs=[str(config)], state_dir=str(state), traces=False)
    app.backfill(cfg)
    old = report_totals(state)
    calls = [0]
    real = Ingest.ingest

    def crash(self, path):
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(Ingest, "ingest", crash)
    with pytest.raises(KeyboardInterrupt):
        app.backfill(cfg, rebuild=True, force=True)
    assert report_totals(state) == old
    assert sorted(p.name for p in state.iterdir() if "rebuild" in p.name) == []


@pytest.mark.timeout(300)
def test_kill9_during_a_rebuild_leaves_the_old_state(tmp_path):
    config = tmp_path / "claude"
    generate(config, files=300, target_bytes=40 << 20, seed=6)
    state = tmp_path / "state"
    ccotel("backfill", "--claude-dir", str(config), "--state-dir", str(state))
    old = report_totals(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    p = subprocess.Popen(
        [sys.executable, "-m", "ccotel", "backfill", "--rebuild", "--force", "--claude-dir",
         str(config), "--state-dir", str(state)],
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    while p.poll() is None and not (state / "state.db.rebuild").exists():
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL  # it was killed mid-rebuild, not after
    assert report_totals(state) == old
    ccotel("backfill", "--rebuild", "--claude-dir", str(config), "--state-dir", str(state))
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
    assert sorted(p.name for p in state.iterdir() if "rebuild" in p.name) == []


def test_the_swap_leaves_no_old_wal_to_replay_into_the_new_state(tmp_path):
    """The swap itself, with the old state's WAL still holding frames (a daemon killed, and
    nothing opened the old file for writing since): the new file in its place reads as the
    new state, not the old one's frames replayed over it."""
    from ccotel.state.rebuild import _swap

    old, new = tmp_path / "state.db", tmp_path / "state.db.rebuild"
    live = sqlite3.connect(tmp_path / "live.db")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("CREATE TABLE t (v TEXT)")
    live.executemany("INSERT INTO t VALUES (?)", [("old",)] * 50)
    live.commit()
    for sfx in ("", "-wal"):  # the files as a kill -9 leaves them: frames in the WAL
        Path(f"{old}{sfx}").write_bytes(Path(f"{tmp_path / 'live.db'}{sfx}").read_bytes())
    live.close()
    assert Path(f"{old}-wal").stat().st_size > 0
    db = sqlite3.connect(new)  # a WAL database like every state (closed: no WAL left)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES ('new')")
    db.commit()
    db.close()
    assert _swap(old, new, readable=True) == "replaced"
    assert not new.exists() and not Path(f"{old}-wal").exists()
    db = sqlite3.connect(old)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT v FROM t").fetchall() == [("new",)]
    finally:
        db.close()
