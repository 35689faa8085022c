"""A generated corpus of thousands of files: ccotel equals ccusage and the generator's ground truth."""

from __future__ import annotations

import json

import pytest

from ccotel.state.store import open_readonly
from tests.conftest import as_ccusage, assert_equal_totals, ccotel, report_totals
from tests.corpus import generate
from tests.oracle import ccusage_totals


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    info = generate(root, files=2000, target_bytes=60 << 20, seed=7)
    state = tmp_path_factory.mktemp("state")
    ccotel("backfill", "--claude-dir", str(root), "--state-dir", str(state))
    return root, state, info


def test_totals_equal_ccusage_and_ground_truth(corpus):
    root, state, info = corpus
    assert (
        info.files >= 2000
        and info.resumed_copies
        and info.subagent_files
        and info.legacy_agent_files
    )
    ours = as_ccusage(report_totals(state))
    assert_equal_totals(ours, ccusage_totals(root))
    exp = info.expected["totals"]
    truth = {
        "inputTokens": exp["input_tokens"],
        "outputTokens": exp["output_tokens"],
        "cacheCreationTokens": exp["cache_write_tokens"],
        "cacheReadTokens": exp["cache_read_tokens"],
        "totalCost": exp["cost_usd"],
    }
    assert_equal_totals(ours, truth)
    t = report_totals(state)
    assert (t["cache_write_5m_tokens"], t["cache_write_1h_tokens"]) == (
        exp["cache_write_5m_tokens"],
        exp["cache_write_1h_tokens"],
    )
    assert t["requests"] == exp["responses"]


def test_per_model_equals_ground_truth(corpus):
    _root, state, info = corpus
    rows = json.loads(
        ccotel("report", "--by", "model", "--json", "--state-dir", str(state)).stdout
    )["rows"]
    ours = {r["model"]: r for r in rows if r["requests"]}
    want = info.expected["by_model"]
    assert set(ours) == set(want)
    for model, w in want.items():
        assert ours[model]["requests"] == w["responses"], model
        assert ours[model]["output_tokens"] == w["output_tokens"], model
        assert ours[model]["cost_usd"] == pytest.approx(w["cost_usd"], rel=1e-9), model


def test_tools_and_web_search_equal_ground_truth(corpus):
    _root, state, info = corpus
    store = open_readonly(state)
    try:
        by_status = dict(
            store.query("SELECT COALESCE(status, 'open'), COUNT(*) FROM tools GROUP BY 1")
        )
        by_name = dict(store.query("SELECT name, COUNT(*) FROM tools GROUP BY name"))
        web = store.query("SELECT SUM(web_search) FROM usage")[0][0]
    finally:
        store.close()
    assert by_status == info.tool_calls_by_status
    assert by_name == info.tool_calls_by_name
    assert web == info.expected["totals"]["web_search_requests"]
