"""Totals on real transcripts of five Claude Code versions equal ccusage 20.0.24."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES, as_ccusage, assert_equal_totals, ccotel, report_totals
from tests.oracle import ccusage_totals

VERSIONS = ["claude-1.0.17", "claude-2.0.74", "claude-2.1.38", "claude-2.1.39", "claude-2.1.197"]

# ccusage's totals as recorded in the fixtures' README (measured with 20.0.24).
README = {
    "claude-2.1.197": (11814, 198, 4120, 150490, 0.2283304),
    "claude-2.1.39": (7289, 193955, 1968864, 76343645, 50.688711),
    "claude-2.1.38": (1852, 1839, 96811, 984890, 1.0157068),
    "claude-2.0.74": (23713, 2249, 45563, 315668, 0.51992635),
    "claude-1.0.17": (293, 19313, 206624, 4302385, 2.3561295),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_backfill_equals_ccusage(version, tmp_path):
    src = FIXTURES / version
    ccotel("backfill", "--claude-dir", str(src), "--state-dir", str(tmp_path / "state"))
    ours = as_ccusage(report_totals(tmp_path / "state"))
    assert_equal_totals(ours, ccusage_totals(src))
    i, o, cw, cr, cost = README[version]
    assert_equal_totals(
        ours,
        dict(
            inputTokens=i,
            outputTokens=o,
            cacheCreationTokens=cw,
            cacheReadTokens=cr,
            totalCost=cost,
        ),
    )


def test_all_versions_together_equal_ccusage(tmp_path):
    """Several roots at once, as CLAUDE_CONFIG_DIR=a,b,c would give."""
    args = []
    for v in VERSIONS:
        args += ["--claude-dir", str(FIXTURES / v)]
    ccotel("backfill", *args, "--state-dir", str(tmp_path / "s"))
    assert_equal_totals(
        as_ccusage(report_totals(tmp_path / "s")), ccusage_totals([FIXTURES / v for v in VERSIONS])
    )


def test_per_session_equals_ccusage(tmp_path):
    """ccusage groups by the file's session; ccotel by the lines' sessionId: same numbers here."""
    src = FIXTURES / "claude-2.1.39"
    ccotel("backfill", "--claude-dir", str(src), "--state-dir", str(tmp_path / "s"))
    rows = json.loads(
        ccotel("report", "--by", "session", "--json", "--state-dir", str(tmp_path / "s")).stdout
    )["rows"]
    ours = {r["session"]: r for r in rows}
    from tests.oracle import ccusage_sessions

    theirs = ccusage_sessions(src)
    assert set(ours) == set(theirs)
    for sid, t in theirs.items():
        assert_equal_totals(as_ccusage(ours[sid]), t)


def test_backfill_twice_counts_once(tmp_path):
    src = FIXTURES / "claude-2.1.39"
    state = str(tmp_path / "s")
    ccotel("backfill", "--claude-dir", str(src), "--state-dir", state)
    first = report_totals(tmp_path / "s")
    out = ccotel("backfill", "--claude-dir", str(src), "--state-dir", state)
    assert "0 lines" in out.stderr
    assert report_totals(tmp_path / "s") == first
