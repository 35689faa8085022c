"""Ten sessions written at once, from lines the real CLI wrote: /api/live, the Prometheus
gauge, the page's board in Chromium and `ccotel live` in tmux all agree with what the
transcripts show (tests.livereplay.expected, an oracle written from the documented rules).
Also: context use from the status line (the real CLI's own JSON) and from the estimate."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from ccotel.live.board import LiveBoard
from ccotel.records import decode
from ccotel.statusline import Reports
from tests.fakeapi import Step, ToolCall
from tests.interactive import interactive_claude_fixture, tmux_bin, wait_for  # noqa: F401
from tests.livedaemon import LiveDaemon, clean_env
from tests.livereplay import Session, cut, expected, last_usage, new_id, record_sources, replay
from tests.test_web_browser import browser, css, scheme, shot, wait  # noqa: F401

ORDER = ("waiting", "tool", "working", "idle", "ended")


def _prompt(text: str):
    return lambda x: x.get("type") == "user" and text in json.dumps(x.get("message"))


def _answer(text: str):
    return lambda x: x.get("type") == "assistant" and text in json.dumps(x.get("message"))


def _use(name: str):
    return lambda x: (
        x.get("type") == "assistant" and f'"name": "{name}"' in json.dumps(x.get("message"))
    )


def ten_sessions(src) -> list[Session]:
    i, a, sub = src.interactive, src.agent, src.sub
    agent = {"sub_name": src.sub_name, "sub_meta": src.sub_meta}
    return [
        Session(new_id(), cut(i, _prompt("Run the gated command")), age=400),  # idle by now
        Session(new_id(), cut(i, _prompt("Run the gated command")), age=40),
        Session(new_id(), cut(i, _use("Bash")), age=30),
        Session(new_id(), cut(i, _answer("Released.")), age=100),
        Session(new_id(), cut(i, _answer("Released.")), age=50, context=0.75),
        Session(new_id(), cut(i, _answer("Second answer.")), age=3, context=0.5),
        Session(new_id(), cut(i, _use("Bash")), age=12, context=0.9),
        Session(new_id(), list(i), age=20),
        Session(new_id(), cut(a, _use("Agent")), sub=cut(sub, _use("Bash")), age=6, **agent),
        Session(new_id(), list(a), sub=list(sub), age=60, **agent),
    ]


def oracle(s: Session, now: float, idle: float = 300.0) -> dict:
    want = expected(s.main)
    newest = max(x["timestamp"] for x in s.main + s.sub if x.get("timestamp"))
    last = _epoch(newest)
    if want["state"] in ("working", "tool") and now - last > idle:
        want = {"state": "idle", "state_since": last, "tool": None}
    want["last_activity"] = last
    return want


def _epoch(iso: str) -> float:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp(), 3)


def agrees(row: dict, s: Session, now: float) -> list[str]:
    """What in a row differs from the transcripts ([] when nothing)."""
    want, bad = oracle(s, now), []
    if row["state"] != want["state"]:
        return [f"state {row['state']} != {want['state']}"]
    if "state_since" in want and row["state_since"] != round(want["state_since"], 3):
        bad.append(f"since {row['state_since']} != {want['state_since']}")
    if (row["tool"] or {}).get("name") != want["tool"]:
        bad.append(f"tool {row['tool']} != {want['tool']}")
    if row["last_activity"] != want["last_activity"]:
        bad.append("last_activity")
    n = last_usage(s.main)
    if n is not None and row["context_used_ratio"] != round(n / 200_000, 4):
        bad.append(f"context {row['context_used_ratio']} != {n / 200_000}")
    if s.sub:
        want_sub = expected(s.sub, sub=True)
        got = [(x["state"], (x["tool"] or {}).get("name")) for x in row["subagents"]]
        if want["state"] == "ended" or want_sub["state"] == "ended":
            ok = got in ([], [("ended", None)])
        else:
            ok = got == [(want_sub["state"], want_sub["tool"])]
        if not ok:
            bad.append(f"subagents {got} != {want_sub}")
    return bad


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return record_sources(tmp_path_factory.mktemp("live-sources"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, sources):
    """The ten sessions, written at once while the daemon runs, agreeing with the board."""
    work = tmp_path_factory.mktemp("live-board")
    src = sources
    claude = work / "claude"
    (claude / "projects").mkdir(parents=True)
    with LiveDaemon(claude, work / "state") as d:
        sessions = ten_sessions(src)
        replay(claude / "projects", sessions)
        by_id = {s.id: s for s in sessions}

        def settled():
            board = d.live()
            rows = {r["id"]: r for r in board["sessions"]}
            if rows.keys() != by_id.keys():
                return None
            bad = {k[:8]: agrees(rows[k], s, board["now"]) for k, s in by_id.items()}
            return board if not any(bad.values()) else None

        board = wait_for(settled, "the board to agree with the transcripts", 60,
                         lambda: json.dumps(d.live(), indent=1)[:6000])  # fmt: skip
        yield d, sessions, board, work


def test_ten_sessions_written_at_once_agree_with_their_transcripts(site):
    d, _, board, _ = site
    rows = board["sessions"]
    states = [r["state"] for r in rows]
    # every state is there, and the order is the board's: waiting first, the longest wait
    # first; then tools, work, idle, ended
    assert set(states) == set(ORDER), states
    assert states == sorted(states, key=ORDER.index)
    for st in ("waiting", "tool", "working"):
        since = [r["state_since"] for r in rows if r["state"] == st]
        assert since == sorted(since), (st, since)
    levels = {r["context_level"] for r in rows}
    assert {"ok", "amber", "red"} <= levels
    # the parent runs an Agent whose subagent runs Bash
    (parent,) = [r for r in rows if r["subagents"] and r["state"] == "tool"]
    assert parent["tool"]["name"] == "Agent"
    assert parent["subagents"][0]["tool"]["name"] == "Bash"
    assert parent["subagents"][0]["type"] == "general-purpose"
    # the gauge counts the same
    counts = {st: states.count(st) for st in ORDER}
    assert d.states() == counts
    # the stream sends the same board
    with d.events() as next_board:
        streamed = next_board()
    assert [(r["id"], r["state"]) for r in streamed["sessions"]] == [
        (r["id"], r["state"]) for r in rows
    ]


def _rgb(hex_color: str) -> str:
    h = hex_color.strip().lstrip("#")
    return "rgba({}, {}, {}, 1)".format(*(int(h[i : i + 2], 16) for i in (0, 2, 4)))


@pytest.mark.timeout(300)
def test_the_page_opens_on_the_board(site, browser, tmp_path):  # noqa: F811
    d, _, board, _ = site
    rows = board["sessions"]
    browser.get(d.base + "/")
    wait(browser, 30).until(
        lambda b: (
            len(css(b, "#live .live-row")) == len(rows)
            and b.execute_script("return document.querySelector('#live').dataset.ready === '1'")
        )
    )
    # the board is the first thing on the page
    first = browser.execute_script("return document.querySelector('#view section').id")
    assert first == "live"
    got = [
        (e.get_attribute("data-id"), e.get_attribute("data-state"))
        for e in css(browser, "#live .live-row")
    ]
    assert got == [(r["id"], r["state"]) for r in rows]
    # waiting for you: marked, with how long; the count in the heading and the tab's title
    waiting = [r for r in rows if r["state"] == "waiting"]
    for e in css(browser, "#live .live-row.st-waiting"):
        pill = e.find_element(By.CSS_SELECTOR, ".state .pill")
        assert re.fullmatch(r"WAITING FOR YOU (\d+s|\d+m \d\ds)", pill.text), pill.text
        assert pill.value_of_css_property("background-color") == _rgb(_var(browser, "--warn"))
    assert f"{len(waiting)} waiting for you" in browser.find_element(By.ID, "live-count").text
    assert browser.title == f"({len(waiting)}) waiting · ccotel"
    # context bars: green, amber, red by level
    colors = {"ok": "--ok", "amber": "--warn", "red": "--bad"}
    for e, r in zip(css(browser, "#live .live-row"), rows, strict=True):
        if r["context_level"] is None:
            continue
        bar = e.find_element(By.CSS_SELECTOR, ".ctx .bar > i")
        assert bar.value_of_css_property("background-color") == _rgb(
            _var(browser, colors[r["context_level"]])
        )
        width = float(bar.value_of_css_property("width").removesuffix("px"))
        track = float(
            e.find_element(By.CSS_SELECTOR, ".ctx .bar")
            .value_of_css_property("width")
            .removesuffix("px")
        )
        assert width / track == pytest.approx(r["context_used_ratio"], abs=0.02)
    # a running tool with its timer, which moves
    tool_row = next(
        e for e in css(browser, "#live .live-row") if e.get_attribute("data-state") == "tool"
    )
    assert "⚙" in tool_row.text
    timer = tool_row.find_element(By.CSS_SELECTOR, ".timer").text
    wait(browser, 10).until(
        lambda b: (
            next(e for e in css(b, "#live .live-row") if e.get_attribute("data-state") == "tool")
            .find_element(By.CSS_SELECTOR, ".timer")
            .text
            != timer
        )
    )
    shot(browser, tmp_path, "live-board-10")
    scheme(browser, dark=True)
    shot(browser, tmp_path, "live-board-10-dark")
    scheme(browser, dark=False)
    browser.set_window_size(700, 1000)
    shot(browser, tmp_path, "live-board-10-narrow")
    browser.set_window_size(1400, 1000)
    # a click opens the session's waterfall
    target = rows[0]["id"]
    css(browser, f'#live .live-row[data-id="{target}"]')[0].click()
    wait(browser, 30).until(lambda b: css(b, "#waterfall tr"))
    assert browser.current_url.endswith(f"#/session/{target}")


@pytest.mark.timeout(300)
def test_one_session_reads_as_well(sources, browser, tmp_path):  # noqa: F811
    claude = tmp_path / "claude"
    (claude / "projects").mkdir(parents=True)
    one = Session(new_id(), cut(sources.interactive, _answer("Released.")), age=30)
    replay(claude / "projects", [one])
    with LiveDaemon(claude, tmp_path / "state") as d:
        d.wait_row(one.id, lambda r: r["state"] == "waiting", "waiting")
        browser.get(d.base + "/")
        wait(browser, 30).until(lambda b: len(css(b, "#live .live-row.st-waiting")) == 1)
        assert (
            "1 in the last 2h 00m · 1 waiting for you"
            in browser.find_element(By.ID, "live-count").text
        )
        shot(browser, tmp_path, "live-board-1")
        browser.set_window_size(700, 1000)
        shot(browser, tmp_path, "live-board-1-narrow")
    # and with none: one quiet line, not an empty panel
    with LiveDaemon(tmp_path / "empty", tmp_path / "state2") as d:
        browser.get(d.base + "/")
        wait(browser, 30).until(
            lambda b: "No Claude Code session" in b.find_element(By.ID, "live").text
        )


def _var(b, name: str) -> str:
    return b.execute_script(
        f"return getComputedStyle(document.documentElement).getPropertyValue('{name}')"
    )


@pytest.mark.timeout(300)
def test_ccotel_live_in_a_terminal(site, tmp_path):
    """`ccotel live` in tmux, read with capture-pane; then a waiting session gets a prompt."""
    d, sessions, board, work = site
    tmux = tmux_bin()
    sock = tempfile.mkdtemp(prefix="cclive-") + "/tmux"
    env = clean_env(
        TERM="xterm-256color", COLUMNS="200", LINES="50"
    )  # the pane size, also under load
    cmd = shlex.join([sys.executable, "-m", "ccotel", "live", "--http-addr", f"127.0.0.1:{d.port}"])
    subprocess.run([tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50",
                    cmd], check=True, env=env)  # fmt: skip

    def pane() -> str:
        return subprocess.run([tmux, "-S", sock, "capture-pane", "-p"], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip

    try:
        rows = board["sessions"]
        text = wait_for(lambda: (p := pane()) and all(r["id"][:8] in p for r in rows) and p,
                        "the board in the pane", 30, pane)  # fmt: skip
        (tmp_path / "ccotel-live.txt").write_text(text)
        if os.environ.get("CCOTEL_SCREENSHOTS"):
            Path(os.environ["CCOTEL_SCREENSHOTS"], "ccotel-live.txt").write_text(text)
        lines = text.splitlines()
        at = [next(i for i, ln in enumerate(lines) if r["id"][:8] in ln) for r in rows]
        assert at == sorted(at), "the pane lists the sessions in the board's order"
        waiting = [r for r in rows if r["state"] == "waiting"]
        assert f"{len(waiting)} waiting for you" in lines[0]
        for r, i in zip(rows, at, strict=True):
            line = lines[i]
            if r["state"] == "waiting":
                assert "WAITING FOR YOU" in line, line
            elif r["state"] == "tool":
                assert f"⚙ {r['tool']['name']}" in line, line
            else:
                assert r["state"] in line, line
            if r["context_used_ratio"] is not None:
                assert f"{round(r['context_used_ratio'] * 100):3d}%" in line, line
        assert "└" in text and "general-purpose" in text  # the subagent under its session
        # the user answers a waiting session: the pane follows
        s = next(s for s in sessions if s.id == waiting[-1]["id"])
        prompt = dict(next(x for x in s.main if x.get("type") == "user"))
        prompt |= {
            "uuid": new_id(),
            "timestamp": _iso_now(),
            "message": {"role": "user", "content": "Go on"},
        }
        with open(work / "claude" / "projects" / "-home-user-live" / f"{s.id}.jsonl", "a") as f:
            f.write(json.dumps(prompt) + "\n")
        wait_for(lambda: any(s.id[:8] in ln and "working" in ln for ln in pane().splitlines()),
                 "the pane to show the answered session working", 30, pane)  # fmt: skip
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], check=False)


def _iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- context
@pytest.mark.timeout(300)
def test_context_from_the_status_line_else_estimated(interactive_claude):
    """Claude Code's own status-line JSON, through the status line's Reports: the board takes
    its context_window; without it, the estimate from the transcript gives the same use."""
    s = interactive_claude([Step(text="Reading.", tools=(ToolCall("Bash", {"command": "true"}),)),
                            Step(text="Here you are.")], settings={"permissions": {"allow": ["Bash"]}})  # fmt: skip
    s.submit("Answer me")
    s.wait_idle()
    last = last_usage(s.transcript_lines())  # input + cache tokens of the last request

    def same_request(x: dict) -> bool:
        cu = (x.get("context_window") or {}).get("current_usage") or {}
        keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        return bool(cu) and sum(cu.get(k, 0) for k in keys) == last

    # the status line re-rendered after the last answer reports the same request's usage
    sl = s.wait_statusline(same_request, "the last request's usage")
    raw = s.transcript.read_bytes()
    lines = [(n + 1, x) for n, x in enumerate(raw.splitlines())]
    recs = [r for n, x in lines if (r := decode(x, n)) is not None]
    now = time.time()

    def board(statusline) -> dict:
        b = LiveBoard(lambda: now, statusline=lambda: statusline)
        b.lines(str(s.transcript), lines, recs)
        (row,) = b.snapshot()["sessions"]
        return row

    reports = Reports(lambda: now)
    reports.put(json.loads(json.dumps(sl)))
    cw = sl["context_window"]
    reported = board(reports)
    assert reported["context_source"] == "statusline"
    assert reported["context_used_ratio"] == pytest.approx(cw["used_percentage"] / 100, abs=1e-4)
    assert reported["context_window"] == cw["context_window_size"]
    estimated = board(None)
    assert estimated["context_source"] == "estimate"
    cu = cw["current_usage"]
    used = cu["input_tokens"] + cu["cache_creation_input_tokens"] + cu["cache_read_input_tokens"]
    assert estimated["context_used_ratio"] == round(used / cw["context_window_size"], 4)
    assert round(estimated["context_used_ratio"] * 100) == cw["used_percentage"]
    # a session the status line has not reported: the estimate, whatever else it holds
    other = Reports(lambda: now)
    other.put({"session_id": "someone-else", "context_window": cw})
    assert board(other)["context_source"] == "estimate"


@pytest.mark.timeout(300)
def test_the_daemon_takes_context_from_the_status_line(interactive_claude, tmp_path):
    """Claude Code runs `ccotel statusline`: the daemon's board reads the context use it
    reported, and says so."""
    state = tmp_path / "state"
    cmd = shlex.join([sys.executable, "-m", "ccotel", "statusline", "--state-dir", str(state)])
    s = interactive_claude([Step(text="First.")], statusline=cmd)
    with LiveDaemon(s.config_dir, state) as d:
        s.submit("One")
        s.wait_idle()
        sl = s.wait_statusline(
            lambda x: (x.get("context_window") or {}).get("used_percentage"), "usage"
        )
        cw = sl["context_window"]
        r = d.wait_row(
            sl["session_id"], lambda r: r["context_source"] == "statusline", "from the status line"
        )
        assert r["context_used_ratio"] == pytest.approx(cw["used_percentage"] / 100, abs=1e-4)
        assert r["context_window"] == cw["context_window_size"]


def test_ccotel_live_once_and_json(site, tmp_path):
    d = site[0]
    board = d.live()  # now: another test of this module may have answered a waiting session
    addr = ["--http-addr", f"127.0.0.1:{d.port}"]
    env = clean_env(COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "ccotel", "live", "--json", *addr],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [(r["id"], r["state"]) for r in got["sessions"]] == [
        (r["id"], r["state"]) for r in board["sessions"]
    ]
    out = subprocess.run([sys.executable, "-m", "ccotel", "live", "--once", *addr],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    waiting = [r for r in board["sessions"] if r["state"] == "waiting"]
    assert f"{len(waiting)} waiting for you" in out.stdout.splitlines()[0]
    assert all(r["id"][:8] in out.stdout for r in board["sessions"])


def test_ccotel_live_says_why_it_cannot(tmp_path):
    from tests.conftest import free_port

    port = free_port()  # nothing listens
    out = subprocess.run([sys.executable, "-m", "ccotel", "live", "--once", "--metrics-addr",
                          f"127.0.0.1:{port}"], capture_output=True, text=True,
                         env=clean_env(), timeout=60)  # fmt: skip
    assert out.returncode == 3 and "not running" in out.stderr and "Traceback" not in out.stderr
    with LiveDaemon(tmp_path / "claude", tmp_path / "state", clean_env(CCOTEL_WEB="false")) as d:
        out = subprocess.run([sys.executable, "-m", "ccotel", "live", "--once", "--metrics-addr",
                              f"127.0.0.1:{d.port}"], capture_output=True, text=True,
                             env=clean_env(), timeout=60)  # fmt: skip
    assert out.returncode == 1 and "web = false" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
