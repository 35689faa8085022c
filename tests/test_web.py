"""The web page's JSON API on a running daemon, over real Claude Code transcripts: its numbers
equal `ccotel report --json` and ccusage; projects follow the rule of every view (cost where
each response was made; a session in every project it had activity in), shown on a session
that was resumed 20 days later and changed directory; a session's waterfall has the subagent
under its Agent call, the failing Bash marked, and a root row equal to the session.

No assertion reads the wall clock: "today" and "this month" are checked against the report's
days as seen from the summary's own ``now``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, assert_equal_totals
from tests.fakeapi import FakeAnthropic
from tests.oracle import ccusage_totals
from tests.realcli import (
    SONNET,
    Scenario,
    Step,
    ToolCall,
    Transcripts,
    clone_home,
    load_home,
    run_claude,
)
from tests.test_live import start

RESUMED_AFTER = timedelta(days=20)
TOKENS = ("uncached_input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
REPORT_TOKENS = {"uncached_input_tokens": "input_tokens", "cache_read_tokens": "cache_read_tokens",
                 "cache_write_tokens": "cache_write_tokens", "output_tokens": "output_tokens"}  # fmt: skip


def _bash(cmd: str) -> ToolCall:
    return ToolCall("Bash", {"command": cmd, "description": "step"})


# One conversation in two sittings: a Bash call in project "delta"; then, resumed later, a
# `cd` into delta/sub (Claude Code records the new cwd) and more calls there.
WANDER = Scenario(
    name="wander",
    model=SONNET,
    project="delta",
    steps=(
        Step(text="First sitting.", tools=(_bash("echo ccotel-first"),)),
        Step(text="First sitting done."),
        Step(text="Moving into sub.", tools=(_bash("mkdir -p sub && cd sub && pwd"),)),
        Step(tools=(_bash("pwd"),)),
        Step(text="Second sitting done."),
    ),
)


def shift_timestamps(path: Path, by: timedelta) -> None:
    """Move every record of a transcript in time (as if written ``by`` earlier)."""

    def move(m: re.Match) -> str:
        t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) + by
        return '"timestamp":"' + t.isoformat(timespec="milliseconds").replace("+00:00", "Z") + '"'

    path.write_text(re.sub(r'"timestamp":"([^"]+)"', move, path.read_text()))


def make_web_home(real: Transcripts, dst: Path) -> tuple[Transcripts, str]:
    """The default scenarios plus WANDER, its first sitting RESUMED_AFTER earlier."""
    clone_home(real, dst)
    with FakeAnthropic(seed="ccotel-web-wander") as api:
        first = run_claude(dst, scenario=WANDER, api=api)
        shift_timestamps(Path(first.transcript), -RESUMED_AFTER)
        resume = Scenario(
            name="wander-resume", model=SONNET, project="delta", steps=(Step(text="-"),)
        )
        again = run_claude(dst, scenario=resume, api=api, extra_args=["--resume", first.session_id])
    assert again.session_id == first.session_id, "the CLI resumed into the same session"
    return load_home(dst), first.session_id


@pytest.fixture(scope="session")
def web_home(real_claude_home, tmp_path_factory) -> tuple[Transcripts, str]:
    return make_web_home(real_claude_home, tmp_path_factory.mktemp("web-home") / "home")


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        body = r.read()
        if r.headers["Content-Type"].startswith("application/json"):
            text = body.decode()
            noise = re.findall(r"\d+\.\d{11,}", text)
            assert not noise, f"floats past 10 decimals in {path}: {noise[:3]}"
            return json.loads(text)
        return body.decode()


def report(state, by: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "ccotel", "report", "--json", "--by", by, "--state-dir", str(state)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def api_tokens(x: dict) -> int:
    return sum(x[k] for k in TOKENS)


@pytest.fixture(scope="module")
def daemon(web_home, tmp_path_factory):
    home, wander = web_home
    state = tmp_path_factory.mktemp("web-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["CCOTEL_TRACES"] = "false"
    proc = start(home.config_dir, state, 0, env)
    port = proc.port
    try:
        yield port, state, home, wander
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_summary_equals_report_and_ccusage(daemon):
    port, state, home, _ = daemon
    s = get(port, "/api/summary")
    rep = report(state, "day")
    a = s["all_time"]
    for k, r in REPORT_TOKENS.items():
        assert a[k] == rep["totals"][r], k
    assert a["tokens"] == api_tokens(a)
    assert a["cost_usd"] == pytest.approx(rep["totals"]["cost_usd"], rel=1e-9)
    oracle = ccusage_totals(home.config_dir)
    ours = {
        "inputTokens": a["uncached_input_tokens"],
        "outputTokens": a["output_tokens"],
        "cacheReadTokens": a["cache_read_tokens"],
        "cacheCreationTokens": a["cache_write_tokens"],
        "totalCost": a["cost_usd"],
    }
    assert_equal_totals(ours, oracle)
    assert a["sessions"] == len(set(home.session_ids))
    assert s["health"]["ok"] and s["health"]["files"] >= len(set(home.session_ids))
    assert s["health"]["traces"]["state"] == "off"
    # Today and this month, by the report's local days, as seen from the summary's `now`.
    today = date.fromtimestamp(s["now"])
    days = {r["day"]: r["cost_usd"] for r in rep["rows"]}
    month = sum(c for d, c in days.items() if date.fromisoformat(d) >= today.replace(day=1))
    assert s["this_month_usd"] == pytest.approx(month, rel=1e-9, abs=1e-12)
    assert s["today"]["cost_usd"] == pytest.approx(
        days.get(today.isoformat(), 0.0), rel=1e-9, abs=1e-12
    )
    assert s["month_since"] == datetime(today.year, today.month, 1).timestamp()
    # The resumed session's first sitting lies 20 days back: outside the trailing 24 h.
    assert s["last_24h_usd"] < a["cost_usd"]


def test_sessions_equal_report_by_session(daemon):
    port, state, home, wander = daemon
    got = get(port, "/api/sessions?limit=1000")
    rows = {r["session"]: r for r in report(state, "session")["rows"]}
    assert got["total"] == len(got["sessions"]) == len(set(home.session_ids))
    assert {s["id"] for s in got["sessions"]} == set(home.session_ids)
    for s in got["sessions"]:
        r = rows[s["id"]]
        assert s["cost_usd"] == pytest.approx(r["cost_usd"], rel=1e-9)
        for k, rk in REPORT_TOKENS.items():
            assert s[k] == r[rk], (s["id"], k)
        assert s["tokens"] == api_tokens(s)
        assert s["models"] and set(s["models"]) == set(r["models"])
        assert sum(p["cost_usd"] for p in s["projects"]) == pytest.approx(s["cost_usd"], rel=1e-9)
    ends = [s["end"] for s in got["sessions"]]
    assert ends == sorted(ends, reverse=True)
    by_cost = get(port, "/api/sessions?sort=cost&limit=3")["sessions"]
    assert [s["cost_usd"] for s in by_cost] == sorted(
        (s["cost_usd"] for s in got["sessions"]), reverse=True
    )[:3]
    asc = get(port, "/api/sessions?sort=-cost&limit=1000")["sessions"]
    assert [s["cost_usd"] for s in asc] == sorted(s["cost_usd"] for s in got["sessions"])
    for sort in ("active", "duration"):  # "duration" is the old name
        longest = get(port, f"/api/sessions?sort={sort}&limit=1")["sessions"][0]
        assert longest["active_s"] == max(s["active_s"] for s in got["sessions"])
    by_start = get(port, "/api/sessions?sort=-start&limit=1000")["sessions"]
    assert [s["start"] for s in by_start] == sorted(s["start"] for s in got["sessions"])
    # Filters: id prefix, project, day.
    one = home.run("error")
    hit = get(port, f"/api/sessions?q={one.session_id[:8]}")["sessions"]
    assert [s["id"] for s in hit] == [one.session_id]
    assert hit[0]["tool_calls"] == 1 and hit[0]["tool_errors"] == 1
    assert get(port, "/api/sessions?day=2001-01-01")["sessions"] == []
    w = next(s for s in got["sessions"] if s["id"] == wander)
    first_day = date.fromtimestamp(w["start"]).isoformat()
    assert wander in {
        s["id"] for s in get(port, f"/api/sessions?day={first_day}&limit=1000")["sessions"]
    }


def test_projects_follow_each_response(daemon):
    """The rule of every view: cost where each response was made; a session belongs to every
    project it had activity in."""
    port, state, home, wander = daemon
    by_project = {r["project"]: r for r in report(state, "project")["rows"]}
    w = get(port, f"/api/sessions/{wander}")
    names = [p["name"] for p in w["projects"]]
    assert set(names) == {"delta", "sub"}, w["projects"]
    for p in w["projects"]:  # only this session works in delta and delta/sub
        assert p["cost_usd"] == pytest.approx(by_project[p["name"]]["cost_usd"], rel=1e-9)
        assert p["cost_usd"] > 0
    assert w["project"] == names[0]
    for name in ("sub", "delta", "SUB"):
        found = get(port, f"/api/sessions?project={name}&limit=1000")["sessions"]
        assert [s["id"] for s in found] == [wander], name
    alpha = get(port, "/api/sessions?project=alpha&limit=1000")["sessions"]
    assert alpha and wander not in {s["id"] for s in alpha}
    assert all("alpha" in [p["name"] for p in s["projects"]] for s in alpha)
    assert len(alpha) == len({r.session_id for r in home.runs if r.cwd.endswith("/alpha")})
    # Spend by project: the series are report --by project (all of it within 30 days).
    daily = get(port, "/api/spend?by=project&bucket=day")
    series = {x["name"]: sum(x["cost_usd"]) for x in daily["series"]}
    assert set(series) == set(by_project)
    for name, cost in series.items():
        assert cost == pytest.approx(by_project[name]["cost_usd"], rel=1e-9), name


def test_resumed_session_shows_active_time(daemon):
    port, _, _, wander = daemon
    w = get(port, f"/api/sessions/{wander}")
    assert w["wall_s"] >= RESUMED_AFTER.total_seconds() - 60
    # Two short sittings: the active time is theirs, not the 20 days between.
    sittings = _sittings(w["spans"])
    assert len(sittings) == 2, sittings
    assert 0 < w["active_s"] <= sum(b - a for a, b in sittings) + 1.0
    assert w["active_s"] < 3600


def _sittings(spans: list[dict]) -> list[tuple[float, float]]:
    turns = sorted((x["start"], x["end"]) for x in spans if x["kind"] == "turn")
    out: list[list[float]] = []
    for a, b in turns:
        if out and a - out[-1][1] < 3600:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def test_spend_series_add_up(daemon):
    port, state, _, _ = daemon
    rep = report(state, "day")
    total = rep["totals"]["cost_usd"]
    s = get(port, "/api/summary")
    for by in ("model", "project"):
        daily = get(port, f"/api/spend?by={by}&bucket=day")
        assert len(daily["buckets"]) == 30 and all(
            len(x["cost_usd"]) == 30 for x in daily["series"]
        )
        assert sum(sum(x["cost_usd"]) for x in daily["series"]) == pytest.approx(total, rel=1e-9)
        for i, day in enumerate(daily["buckets"]):  # each day is the report's day
            want = next((r["cost_usd"] for r in rep["rows"] if r["day"] == day), 0.0)
            assert sum(x["cost_usd"][i] for x in daily["series"]) == pytest.approx(
                want, rel=1e-9, abs=1e-12
            )
        hourly = get(port, f"/api/spend?by={by}&bucket=hour")
        assert len(hourly["buckets"]) == 48 and all(
            len(x["cost_usd"]) == 48 for x in hourly["series"]
        )
        # The last 48 h hold everything but the resumed session's first sitting.
        in_48h = sum(sum(x["cost_usd"]) for x in hourly["series"])
        assert s["last_24h_usd"] - 1e-9 <= in_48h < total
    models = {x["name"] for x in get(port, "/api/spend?by=model&bucket=day")["series"]}
    assert models == {m for r in report(state, "model")["rows"] for m in r["models"]}


def test_session_waterfall(daemon):
    port, state, home, _ = daemon
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
    seen = set()
    for x in spans:  # depth first: every span after its parent
        assert x["parent"] is None or x["parent"] in seen
        seen.add(x["id"])
    # The root row is the session, token for token and to the cent (and so the report).
    row = {r["session"]: r for r in report(state, "session")["rows"]}[agent.session_id]
    for k in TOKENS:
        assert root[k] == s[k], k
    assert root["tokens"] == s["tokens"] == sum(row[k] for k in REPORT_TOKENS.values())
    assert root["cost_usd"] == pytest.approx(s["cost_usd"], rel=1e-9)
    assert root["cost_usd"] == pytest.approx(row["cost_usd"], rel=1e-9)
    # Model spans carry the cost once; turns carry the sum of the model calls under them.
    models = [x for x in spans if x["kind"] == "model"]
    assert sum(x["cost_usd"] for x in models) == pytest.approx(s["cost_usd"], rel=1e-9)
    assert sum(x["tokens"] for x in models) == s["tokens"]
    turns = [x for x in spans if x["kind"] == "turn"]
    assert turns and sum(x["tokens"] for x in turns) == s["tokens"]
    for x in models:  # a span's GenAI input includes the cache; ours do not double it
        a = x["attrs"]
        assert x["tokens"] == a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"]
        assert x["uncached_input_tokens"] == a["ccotel.usage.uncached_input_tokens"]
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


def test_session_ids_slash_prefix_and_errors(daemon):
    port, _, home, _ = daemon
    sid = home.run("agent").session_id
    full = get(port, f"/api/sessions/{sid}")
    assert get(port, f"/api/sessions/{sid}/") == full
    assert get(port, f"/api/sessions/{sid[:8]}")["id"] == sid
    assert get(port, f"/api/sessions/{sid[:13]}/")["id"] == sid
    assert get(port, "/api/sessions/")["total"] == len(set(home.session_ids))
    for path, code, words in (
        ("/api/sessions/not-a-session", 404, "no such session"),
        (f"/api/sessions/{sid}/spans", 404, "no such endpoint"),
        ("/api/nope", 404, "no such endpoint"),
        ("/api/spend?by=cwd", 400, "by:"),
        ("/api/sessions?sort=bogus", 400, "sort:"),
        ("/api/sessions?limit=x", 400, "limit:"),
        ("/api/sessions?day=yesterday", 400, "day:"),
    ):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(port, path)
        assert e.value.code == code, path
        assert e.value.headers["Content-Type"] == "application/json", path
        assert words in json.loads(e.value.read())["error"], path


def test_an_ambiguous_id_prefix_is_a_404_that_says_so(tmp_path):
    """Two sessions whose ids share their first 8 characters (a copy of a real transcript
    under another id): the prefix names neither."""
    src = FIXTURES / "claude-2.1.197"
    root = tmp_path / "claude"
    shutil.copytree(src, root)
    d = next((root / "projects").iterdir())
    orig = "99a599e4-a529-401f-a86f-2085f534f439"
    twin = "99a599e4-0000-4000-8000-000000000001"
    text = (d / f"{orig}.jsonl").read_text().replace(orig, twin)
    text = re.sub(r'"(msg_[A-Za-z0-9]+|req_[A-Za-z0-9]+)"', lambda m: f'"{m.group(1)}x"', text)
    (d / f"{twin}.jsonl").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["CCOTEL_TRACES"] = "false"
    proc = start(root, tmp_path / "s", 0, env)
    port = proc.port
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            get(port, "/api/sessions/99a599e4")
        assert (
            e.value.code == 404 and "2 sessions start with" in json.loads(e.value.read())["error"]
        )
        assert get(port, "/api/sessions/99a599e4-a")["id"] == orig
        assert get(port, "/api/sessions/99a599e4-0")["id"] == twin
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_page_assets(daemon):
    port, _, _, _ = daemon
    html = get(port, "/")
    assert '<script src="/app.js">' in html and "https://" not in html and "http://" not in html
    assert "fetch(" in get(port, "/app.js")
    assert "prefers-color-scheme: dark" in get(port, "/style.css")
    with pytest.raises(urllib.error.HTTPError) as e:
        get(port, "/nope")
    assert e.value.code == 404
    assert "ccotel_cost_usd_total" in get(port, "/metrics")


def test_a_state_that_disappears_is_a_503_not_a_traceback(tmp_path):
    """The state file removed under the running daemon (a rebuild, a user's rm): the API
    answers 503 in JSON with one log line, /metrics and /healthz go on, and a state that
    comes back is read again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["CCOTEL_TRACES"] = "false"
    state = tmp_path / "s"
    proc = start(FIXTURES / "claude-2.1.197", state, 0, env)
    port = proc.port
    try:
        before = get(port, "/api/sessions")
        saved = tmp_path / "saved.db"
        shutil.copy(state / "state.db", saved)
        (state / "state.db").unlink()
        for path in (
            "/api/summary",
            "/api/sessions",
            "/api/spend",
            f"/api/sessions/{before['sessions'][0]['id']}",
        ):
            for _ in range(3):
                with pytest.raises(urllib.error.HTTPError) as e:
                    get(port, path)
                assert (
                    e.value.code == 503
                    and "state cannot be read" in json.loads(e.value.read())["error"]
                )
        assert "ccotel_cost_usd_total" in get(port, "/metrics")
        assert get(port, "/healthz")["ok"]
        shutil.copy(saved, state / "state.db")
        assert get(port, "/api/sessions") == before
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert "Traceback" not in out
    warned = [x for x in out.splitlines() if "state cannot be read" in x]
    assert len(warned) == 1, warned
