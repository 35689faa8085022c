"""Load, short (issue 5): sessions written concurrently (a third of the lines in two
parts) while the daemon ingests: no line lost, totals equal the writer's ground truth
and ccusage. bench/load.py runs 50 sessions at 10 MB/s for minutes and prints the lag,
memory and CPU figures; this test asserts no timing."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("bench_load", REPO / "bench" / "load.py")
bench_load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_load)


@pytest.mark.timeout(300)
def test_concurrent_sessions_no_line_lost(tmp_path):
    rep = bench_load.run_load(
        tmp_path, sessions=20, mbps=2.0, seconds=6.0, settle=120.0, oracle=True
    )
    assert rep["lines_written"] > 1000
    assert rep["lines_lost"] == 0, rep
    assert rep["parse_errors"] == 0, rep  # half-written lines are waited for, never parsed early
    assert rep["tokens_equal_ground_truth"] and rep["cost_equal_ground_truth"], rep
    assert rep["oracle_equal"], rep
