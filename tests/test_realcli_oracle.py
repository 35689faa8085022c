"""Transcripts written by the real Claude Code CLI: ccotel equals ccusage and the stand-in's own usage."""

from __future__ import annotations

import json

from tests.conftest import as_ccusage, assert_equal_totals, ccotel, report_totals
from tests.oracle import ccusage_totals


def test_backfill_equals_ccusage_and_the_stand_in(real_claude_home, tmp_path):
    cfg = real_claude_home.config_dir
    ccotel("backfill", "--claude-dir", str(cfg), "--state-dir", str(tmp_path / "s"))
    ours = as_ccusage(report_totals(tmp_path / "s"))
    assert_equal_totals(ours, ccusage_totals(cfg))
    expected = real_claude_home.expected_totals()  # what the stand-in API reported
    for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"):
        assert ours[k] == expected[k], k


def test_sessions_models_and_tools(real_claude_home, tmp_path):
    cfg = real_claude_home.config_dir
    ccotel("backfill", "--claude-dir", str(cfg), "--state-dir", str(tmp_path / "s"))
    rows = json.loads(
        ccotel("report", "--by", "session", "--json", "--state-dir", str(tmp_path / "s")).stdout
    )["rows"]
    assert {r["session"] for r in rows} == set(real_claude_home.session_ids)
    from ccotel.state.store import open_readonly

    store = open_readonly(tmp_path / "s")
    tools = dict(
        ((n, s), c)
        for n, s, c in store.query("SELECT name, status, COUNT(*) FROM tools GROUP BY name, status")
    )
    lines = [
        json.loads(ln)
        for f in sorted(cfg.rglob("*.jsonl"))
        for ln in f.read_text().splitlines()
        if ln
    ]
    blocks = [
        b
        for ln in lines
        for b in ((ln.get("message") or {}).get("content") or [])
        if isinstance(b, dict)
    ]
    names = {b["id"]: b["name"] for b in blocks if b.get("type") == "tool_use"}
    want: dict = {}
    for b in blocks:
        if b.get("type") == "tool_result":
            key = (names[b["tool_use_id"]], "error" if b.get("is_error") else "ok")
            want[key] = want.get(key, 0) + 1
    assert tools == want and ("Bash", "error") in tools and ("Agent", "ok") in tools
    store.close()
