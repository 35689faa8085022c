"""Which files are a session's: one answer for accounting, the traces and the page (review 1,
finding 6).

Claude Code up to 2.0 wrote subagents as flat ``<project>/agent-<id>.jsonl`` files beside the
sessions; only their lines name the session. On ca2edcb the page's waterfall read only
``<sid>.jsonl`` and ``<sid>/subagents/``, so its root row ($0.0448) contradicted the list row
($0.1611) of the same session. Here every session of the 2.0.74 fixture (flat agent files)
and of the 2.1.197 one (subagents/ folders): waterfall root = list row = `ccotel report`,
token for token and to the cent.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from ccotel.sources.discovery import session_of
from tests.conftest import FIXTURES, ccotel, free_port
from tests.test_live import start

TOKENS = ("uncached_input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


def get(port: int, path: str):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read())


def test_a_flat_agent_file_is_its_sessions():
    d = FIXTURES / "claude-2.0.74" / "projects"
    flat = sorted(d.glob("*/agent-*.jsonl"))
    assert flat
    for f in flat:
        first = json.loads(f.read_text().splitlines()[0])
        assert session_of(str(f)) == first["sessionId"]
    main = next(d.glob("*/*-*-*-*-*.jsonl"))
    assert session_of(str(main)) == main.stem


@pytest.mark.parametrize("fixture", ["claude-2.0.74", "claude-2.1.197"])
def test_waterfall_root_equals_the_list_row_and_the_report(tmp_path, fixture):
    root, state = FIXTURES / fixture, tmp_path / "state"
    port = free_port()
    proc = start(root, state, port)
    try:
        rows = get(port, "/api/sessions?limit=1000")
        rows = rows["sessions"] if isinstance(rows, dict) else rows
        assert rows
        report = json.loads(
            ccotel("report", "--by", "session", "--json", "--state-dir", str(state)).stdout
        )
        by_report = {r["session"]: r for r in report["rows"]}
        with_agents = 0
        for row in rows:
            s = get(port, f"/api/sessions/{row['id']}")
            tops = [x for x in s["spans"] if x["parent"] is None]
            assert len(tops) == 1, (row["id"], s["spans"])
            (top,) = tops
            with_agents += any(x["kind"] == "agent" for x in s["spans"])
            for k in TOKENS:
                assert top[k] == row[k] == s[k], (row["id"], k)
            assert top["cost_usd"] == pytest.approx(row["cost_usd"], rel=1e-9, abs=1e-12)
            rep = by_report.get(row["id"], {"cost_usd": 0.0})  # the report lists spenders
            assert top["cost_usd"] == pytest.approx(rep["cost_usd"], rel=1e-9, abs=1e-12)
        assert with_agents, "no session with a subagent: the test tests nothing"
    finally:
        proc.terminate()
        proc.wait(20)
