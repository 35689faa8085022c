"""The web page's JSON API on a running daemon, over real Claude Code transcripts:
its numbers equal `ccotel report --json` and ccusage; a session's waterfall has the
subagent under its Agent call and the failing Bash marked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import assert_equal_totals, free_port
from tests.oracle import ccusage_totals
from tests.test_live import start


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        body = r.read()
        return (
            json.loads(body)
            if r.headers["Content-Type"].startswith("application/json")
            else body.decode()
        )


def report(state, by: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "ccotel", "report", "--json", "--by", by, "--state-dir", str(state)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def daemon(real_claude_home, tmp_path_factory):
    state = tmp_path_factory.mktemp("web-state")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    env["CCOTEL_TRACES"] = "false"
    proc = start(real_claude_home.config_dir, state, port, env)
    try:
        yield port, state, real_claude_home
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_summary_equals_report_and_ccusage(daemon):
    port, state, home = daemon
    s = get(port, "/api/summary")
    rep = report(state, "day")["totals"]
    a = s["all_time"]
    for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert a[k] == rep[k], k
    assert a["cost_usd"] == pytest.approx(rep["cost_usd"], rel=1e-9)
    oracle = ccusage_totals(home.config_dir)
    ours = {
        "inputTokens": a["input_tokens"],
        "outputTokens": a["output_tokens"],
        "cacheReadTokens": a["cache_read_tokens"],
        "cacheCreationTokens": a["cache_write_tokens"],
        "totalCost": a["cost_usd"],
    }
    assert_equal_totals(ours, oracle)
    assert a["sessions"] == len(set(home.session_ids))
    assert s["health"]["ok"] and s["health"]["files"] >= len(home.session_ids)
    # The sessions were written minutes ago: this month holds all of them.
    assert s["this_month_usd"] == pytest.approx(rep["cost_usd"], rel=1e-9)
    assert s["today"]["cost_usd"] <= a["cost_usd"] + 1e-9


def test_sessions_equal_report_by_session(daemon):
    port, state, home = daemon
    got = get(port, "/api/sessions?limit=1000")
    rows = {r["session"]: r for r in report(state, "session")["rows"]}
    assert got["total"] == len(got["sessions"]) == len(set(home.session_ids))
    assert {s["id"] for s in got["sessions"]} == set(home.session_ids)
    for s in got["sessions"]:
        r = rows[s["id"]]
        assert s["cost_usd"] == pytest.approx(r["cost_usd"], rel=1e-9)
        assert s["input_tokens"] == r["input_tokens"] and s["output_tokens"] == r["output_tokens"]
        assert s["models"] and set(s["models"]) == set(r["models"])
    starts = [s["end"] for s in got["sessions"]]
    assert starts == sorted(starts, reverse=True)
    by_cost = get(port, "/api/sessions?sort=cost&limit=3")["sessions"]
    assert [s["cost_usd"] for s in by_cost] == sorted(
        (s["cost_usd"] for s in got["sessions"]), reverse=True
    )[:3]
    asc = get(port, "/api/sessions?sort=-cost&limit=1000")["sessions"]
    assert [s["cost_usd"] for s in asc] == sorted(s["cost_usd"] for s in got["sessions"])
    longest = get(port, "/api/sessions?sort=duration&limit=1")["sessions"][0]
    assert longest["duration_s"] == max(s["duration_s"] for s in got["sessions"])
    # Filters: search by id prefix, by project, by day.
    one = home.run("error")
    hit = get(port, f"/api/sessions?q={one.session_id[:8]}")["sessions"]
    assert [s["id"] for s in hit] == [one.session_id]
    assert hit[0]["tool_calls"] == 1 and hit[0]["tool_errors"] == 1
    proj = got["sessions"][0]["project"]
    by_proj = get(port, f"/api/sessions?project={proj}&limit=1000")["sessions"]
    assert by_proj and all(s["project"] == proj for s in by_proj)
    assert get(port, "/api/sessions?day=2001-01-01")["sessions"] == []


def test_spend_series_add_up(daemon):
    port, state, _ = daemon
    total = report(state, "day")["totals"]["cost_usd"]
    for by in ("model", "project"):
        for bucket, n in (("hour", 48), ("day", 30)):
            sp = get(port, f"/api/spend?by={by}&bucket={bucket}")
            assert len(sp["buckets"]) == n
            assert all(len(s["cost_usd"]) == n for s in sp["series"])
            assert sum(sum(s["cost_usd"]) for s in sp["series"]) == pytest.approx(total, rel=1e-9)
    models = {s["name"] for s in get(port, "/api/spend?by=model&bucket=hour")["series"]}
    assert models == {m for r in report(state, "model")["rows"] for m in r["models"]}


def test_session_waterfall(daemon):
    port, _state, home = daemon
    agent = home.run("agent")
    s = get(port, f"/api/sessions/{agent.session_id}")
    assert s["trace_id"] == agent.session_id.replace("-", "")
    assert s["trace_id"] in s["trace_url"] and s["trace_url"].startswith("http://localhost:3000/")
    spans = s["spans"]
    by_id = {x["id"]: x for x in spans}
    (root,) = [x for x in spans if x["parent"] is None]
    assert root["kind"] == "session" and root["depth"] == 0
    (call,) = [x for x in spans if x["kind"] == "tool" and x["tool"] == "Agent"]
    (sub,) = [x for x in spans if x["kind"] == "agent"]
    assert sub["parent"] == call["id"] and sub["depth"] == call["depth"] + 1
    inner = [x for x in spans if x["kind"] == "tool" and x["tool"] == "Bash"]
    assert inner and all(by_id[x["parent"]]["kind"] in ("agent", "model") for x in inner)
    # Depth first: every span comes after its parent.
    seen = set()
    for x in spans:
        assert x["parent"] is None or x["parent"] in seen
        seen.add(x["id"])
    # Model spans carry the session's cost exactly once.
    cost = sum(x["cost_usd"] for x in spans if x["kind"] == "model")
    assert cost == pytest.approx(s["cost_usd"], rel=1e-9)
    # No content without capture_content.
    assert not s["content_captured"]
    assert not any(
        k in x["attrs"]
        for x in spans
        for k in ("gen_ai.tool.call.arguments", "ccotel.tool.command")
    )

    err = get(port, f"/api/sessions/{home.run('error').session_id}")
    failed = [x for x in err["spans"] if x["error"]]
    assert [x["tool"] for x in failed] == ["Bash"]


def test_page_assets_and_errors(daemon):
    port, _, _ = daemon
    html = get(port, "/")
    assert '<script src="/app.js">' in html and "https://" not in html and "http://" not in html
    assert "fetch(" in get(port, "/app.js")
    assert "prefers-color-scheme: dark" in get(port, "/style.css")
    for path, code in (
        ("/api/nope", 404),
        ("/api/sessions/not-a-session", 404),
        ("/api/spend?by=cwd", 400),
        ("/api/sessions?sort=bogus", 400),
        ("/nope", 404),
    ):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(port, path)
        assert e.value.code == code, path
    assert "ccotel_cost_usd_total" in get(port, "/metrics")
