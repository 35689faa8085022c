"""Upgrades keep history (issue 9): the state written by ccotel 0.1.0 opens in this version
without a rebuild, is migrated in place, and keeps its all-time totals with the transcripts
behind it gone; a state from a newer version gets one line, not a traceback.

tests/data/state-0.1.0.db was written by 0.1.0 (commit 084e159) from the real-transcript
fixtures, metrics and traces (tests/data/make_state_0_1_0.py says how).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from ccotel.state import schema
from ccotel.state.store import Store
from tests.conftest import (
    FIXTURES,
    as_ccusage,
    assert_equal_totals,
    ccotel,
    report_totals,
)
from tests.oracle import ccusage_totals
from tests.test_live import scrape, start

OLD = Path(__file__).parent / "data" / "state-0.1.0.db"
VERSIONS = ["claude-1.0.17", "claude-2.0.74", "claude-2.1.38", "claude-2.1.39", "claude-2.1.197"]


@pytest.fixture(scope="module")
def want() -> dict:
    """ccusage over the transcripts the old state was made from."""
    return ccusage_totals([FIXTURES / v for v in VERSIONS])


@pytest.fixture
def old_state(tmp_path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    shutil.copyfile(OLD, state / "state.db")
    return state


def _schema(db: Path) -> list[tuple[str, str, str]]:
    c = sqlite3.connect(db)
    try:
        rows = c.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    finally:
        c.close()
    return sorted((t, n, re.sub(r"\s+", " ", s).replace("( ", "(")) for t, n, s in rows)


def _version(db: Path) -> int:
    c = sqlite3.connect(db)
    try:
        return c.execute("PRAGMA user_version").fetchone()[0]
    finally:
        c.close()


def test_the_fixture_is_a_0_1_0_state(want):
    assert _version(OLD) == 1
    names = {n for _, n, _ in _schema(OLD)}
    assert {"responses", "tools", "trace_files", "trace_chats"} <= names
    assert "session_cwds" not in names and "names" not in names


def test_old_state_opens_migrates_and_keeps_its_totals(old_state, tmp_path, want):
    empty = tmp_path / "claude"  # the transcripts are gone
    (empty / "projects").mkdir(parents=True)

    def by_session() -> list:
        out = ccotel("report", "--by", "session", "--json", "--state-dir", str(old_state))
        return json.loads(out.stdout)["rows"]

    before, sessions = report_totals(old_state), by_session()  # read-only: not migrated yet
    assert_equal_totals(as_ccusage(before), want)
    assert _version(old_state / "state.db") == 1 and len(sessions) == 23
    out = ccotel("backfill", "--claude-dir", str(empty), "--state-dir", str(old_state))
    assert "Traceback" not in out.stderr
    assert _version(old_state / "state.db") == schema.VERSION
    assert report_totals(old_state) == before
    assert by_session() == sessions
    s = Store(old_state)
    try:
        assert s.query("SELECT COUNT(*) FROM responses")[0][0] == 1033
        assert s.query("SELECT COUNT(*) FROM tools")[0][0] == 1247
        assert s.query("SELECT COUNT(*) FROM trace_chats")[0][0] == 1033  # trace progress kept
        assert s.query("SELECT COUNT(DISTINCT session) FROM session_cwds")[0][0] == 25
    finally:
        s.close()


def test_migrated_schema_equals_a_new_one(old_state, tmp_path):
    Store(old_state).close()
    Store(tmp_path / "new").close()
    assert _schema(old_state / "state.db") == _schema(tmp_path / "new" / "state.db")


def test_daemon_on_an_upgraded_state_shows_the_old_history(old_state, tmp_path, want):
    empty = tmp_path / "claude"
    (empty / "projects").mkdir(parents=True)
    proc = start(empty, old_state)
    port = proc.port
    try:
        got = scrape(port)
        assert_equal_totals(got, want)
        assert got["sessions"] >= 25  # a session counts in each project it worked in
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("cmd", ["report", "backfill", "run", "rebuild", "rebuild --force"])
def test_a_state_from_a_newer_version_is_one_line(old_state, tmp_path, cmd):
    """Every command refuses it, `backfill --rebuild` (even with --force) included: a rebuild
    replaced a newer ccotel's state, and the history only it held, on ca2edcb."""
    db = sqlite3.connect(old_state / "state.db")
    db.execute(f"PRAGMA user_version={schema.VERSION + 7}")
    db.close()
    before = (old_state / "state.db").read_bytes()
    (tmp_path / "projects").mkdir()  # a claude dir, empty
    args = {
        "report": ["report", "--state-dir", str(old_state)],
        "backfill": ["backfill", "--claude-dir", str(tmp_path), "--state-dir", str(old_state)],
        "rebuild": [
            "backfill",
            "--rebuild",
            "--claude-dir",
            str(tmp_path),
            "--state-dir",
            str(old_state),
        ],
        "rebuild --force": [
            "backfill",
            "--rebuild",
            "--force",
            "--claude-dir",
            str(tmp_path),
            "--state-dir",
            str(old_state),
        ],
        "run": [
            "run",
            "--claude-dir",
            str(tmp_path),
            "--state-dir",
            str(old_state),
            "--http-addr",
            "127.0.0.1:0",
        ],
    }[cmd]
    proc = ccotel(*args, check=False, timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "newer ccotel" in lines[0] and "Traceback" not in proc.stderr, (
        proc.stderr
    )
    assert (old_state / "state.db").read_bytes() == before
    assert not list(old_state.glob("state.db.*")), list(old_state.iterdir())  # no leftovers


def test_rebuild_keeps_history_whose_transcripts_are_gone(old_state, tmp_path, want):
    """`backfill --rebuild` over the upgraded state with the transcripts gone: it names what
    would be lost and keeps the state; --force replaces it."""
    empty = tmp_path / "claude"
    (empty / "projects").mkdir(parents=True)
    args = ["backfill", "--rebuild", "--claude-dir", str(empty), "--state-dir", str(old_state)]
    proc = ccotel(*args, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "25 sessions ($54.81) whose transcripts no longer exist" in proc.stderr, proc.stderr
    assert "--force" in proc.stderr
    assert_equal_totals(as_ccusage(report_totals(old_state)), want)
    assert sorted(p.name for p in old_state.iterdir() if "rebuild" in p.name) == []
    proc = ccotel(*args, "--force")
    assert report_totals(old_state)["requests"] == 0
