"""The live board's states from transcripts the real Claude Code CLI writes, read by the real
daemon: a `-p` run that ended, an interactive session driven in tmux through working, tool,
waiting and ended, a tool that runs for seconds, a pending and a denied permission, subagents,
a killed session, Claude Code's 32 KiB metadata re-append (no exit), and a daemon restarted
in the middle of it all. Every time in a row is checked against the transcript's own line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.fakeapi import Step, ToolCall
from tests.interactive import gate_command, interactive_claude_fixture, wait_for  # noqa: F401
from tests.livedaemon import LiveDaemon, first, has_tool_use, last, lines_of, stop_of, ts
from tests.realcli import run_claude, scenario
from tests.test_interactive_states import local_command

ALLOW = {"permissions": {"allow": ["Bash", "Agent"]}}


def prompt_line(lines: list[dict], text: str) -> dict:
    return first(
        lines,
        lambda x: x.get("type") == "user" and text in str((x.get("message") or {}).get("content")),
    )


# ---------------------------------------------------------------------------- -p
@pytest.mark.timeout(300)
def test_print_runs_end_and_a_restart_rebuilds_them(tmp_path):
    home = tmp_path / "home"
    claude = home / ".claude"
    claude.mkdir(parents=True)
    with LiveDaemon(claude, tmp_path / "state") as d:
        bash = run_claude(home, scenario=scenario("bash"))
        agent = run_claude(home, scenario=scenario("agent"))
        # a -p run whose last write was a re-append (a 40 KB answer): it has ended all the same
        loud = run_claude(home, scenario=[Step(text="a" * 40000)])
        d.wait_row(loud.session_id, lambda r: r["state"] == "ended", "ended")
        runs = (bash.session_id, agent.session_id)

        def settled():  # a row turns "ended" when its lines are read, its cost moves with
            # the commit after: read both until they agree
            costs = {s["id"]: s["cost_usd"] for s in _sessions(d)}
            rows = {sid: d.row(sid) for sid in runs}
            ok = all(
                r is not None and r["state"] == "ended" and sid in costs
                and r["cost_usd"] == pytest.approx(costs[sid], rel=1e-9)
                for sid, r in rows.items()
            )  # fmt: skip
            return (rows, costs) if ok else None

        rows, costs = wait_for(settled, "the runs ended, with the state's costs", 60)
        assert d.states() == {"waiting": 0, "tool": 0, "working": 0, "idle": 0, "ended": 3}
    for run in (bash, agent):
        r = rows[run.session_id]
        lines = lines_of(Path(run.transcript))
        answer = last(lines, lambda x: stop_of(x) == "end_turn")
        assert r["last_activity"] == ts(answer["timestamp"])
        assert r["model"] == run.model and r["project"] == run.cwd.rsplit("/", 1)[1]
        assert r["last_tool"] == ("Bash" if run is bash else "Agent")
        assert r["tool"] is None and r["context_source"] == "estimate"
        usage = answer["message"]["usage"]
        n = usage["input_tokens"] + usage["cache_read_input_tokens"]
        n += usage["cache_creation_input_tokens"]
        assert r["context_used_ratio"] == pytest.approx(n / 200_000, abs=1e-4)
        assert r["context_window"] == 200_000
        # the cost so far is the session's cost in the rest of ccotel (the same state)
        assert r["cost_usd"] == pytest.approx(costs[run.session_id], rel=1e-9) and r["cost_usd"] > 0
        assert r["cost_rate_usd_per_hour"] == pytest.approx(r["cost_usd"] * 4, rel=1e-9)
    (sub,) = rows[agent.session_id]["subagents"]
    assert sub["state"] == "ended" and sub["type"] == "general-purpose"
    assert sub["last_tool"] == "Bash" and sub["cost_usd"] > 0
    # restarted: the same board from the transcripts' tails and the state
    with LiveDaemon(claude, tmp_path / "state") as d:
        again = {r["id"]: r for r in d.live()["sessions"]}
    assert again.keys() == rows.keys() | {loud.session_id}
    assert again[loud.session_id]["state"] == "ended"
    for sid, r in rows.items():
        assert again[sid] == r | {"state_since": again[sid]["state_since"]}


def _sessions(d: LiveDaemon) -> list[dict]:
    return json.loads(d.get("/api/sessions")[1])["sessions"]


# ---------------------------------------------------------------------------- interactive
@pytest.mark.timeout(400)
def test_interactive_session_works_runs_a_tool_waits_and_ends(interactive_claude, tmp_path):
    gate = tmp_path / "gate"
    s = interactive_claude(
        [
            Step(text="Running it.", tools=(ToolCall("Bash", {"command": gate_command(gate)}),)),
            Step(text="Released."),
            Step(text="Second answer."),
        ],
        settings=ALLOW,
    )
    api = interactive_claude.api
    with LiveDaemon(s.config_dir, tmp_path / "state") as d:
        held = api.hold(s.tag, 0)
        s.submit("Run the gated command")
        sid = s.session_id
        # working: the prompt is the newest line, its request in flight
        r = d.wait_row(sid, lambda r: r["state"] == "working", "working")
        prompt = prompt_line(s.transcript_lines(), "Run the gated command")
        assert r["state_since"] == ts(prompt["timestamp"]) and r["tool"] is None
        assert d.states()["working"] == 1
        held.set()
        # tool: the Bash call has no result while the command waits for the gate
        r = d.wait_row(sid, lambda r: r["state"] == "tool", "running its tool")
        use = first(s.transcript_lines(), lambda x: has_tool_use(x, "Bash"))
        assert r["tool"] == {"name": "Bash", "since": ts(use["timestamp"]), "running": 1}
        assert r["state_since"] == r["tool"]["since"] and r["last_tool"] == "Bash"
        wait_for(lambda: any("until [ -e" in p for p in s.processes()), "the gated command")
        assert d.row(sid)["state"] == "tool"  # still: the command runs
        assert d.waits() == (0, 0)
        gate.touch()
        s.wait_idle()
        # waiting: the answer ended the turn
        r = d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting")
        lines = s.transcript_lines()
        answer = last(lines, lambda x: stop_of(x) == "end_turn")
        assert r["state_since"] == ts(answer["timestamp"]) and r["tool"] is None
        assert d.states()["waiting"] == 1
        # the user answers: the wait ends, observed with the transcript's times
        s.submit("Again")
        s.wait_idle()
        r = d.wait_row(
            sid,
            lambda r: r["state"] == "waiting" and r["state_since"] > ts(answer["timestamp"]),
            "waiting again",
        )
        lines = s.transcript_lines()
        again = prompt_line(lines, "Again")
        count, total = d.waits()
        assert count == 1
        assert total == pytest.approx(ts(again["timestamp"]) - ts(answer["timestamp"]), abs=2e-3)
        assert r["state"] == "waiting"
        assert r["state_since"] == ts(last(lines, lambda x: stop_of(x) == "end_turn")["timestamp"])
        # /exit: ended, and the wait it ended is observed
        assert s.exit() == 0
        r = d.wait_row(sid, lambda r: r["state"] == "ended", "ended")
        assert d.waits()[0] == 2
        assert d.states() == {"waiting": 0, "tool": 0, "working": 0, "idle": 0, "ended": 1}


@pytest.mark.timeout(300)
def test_a_tool_that_runs_for_seconds_is_tool_then_waiting(interactive_claude, tmp_path):
    """The issue's scenario: the stand-in asks for Bash `sleep 5`."""
    s = interactive_claude(
        [
            Step(text="Sleeping.", tools=(ToolCall("Bash", {"command": "sleep 5"}),)),
            Step(text="Slept."),
        ],
        settings=ALLOW,
    )
    with LiveDaemon(s.config_dir, tmp_path / "state") as d:
        s.submit("Sleep")
        sid = s.session_id
        seen = []

        def tool_while_sleeping():
            running = any("sleep 5" in p for p in s.processes())
            r = d.row(sid)
            if running and r is not None and r["state"] == "tool":
                seen.append(r)
            return seen

        wait_for(tool_while_sleeping, "the board to show the tool while sleep 5 runs", 30)
        assert seen[0]["tool"]["name"] == "Bash"
        s.wait_idle()
        r = d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting")
        lines = s.transcript_lines()
        use = first(lines, lambda x: has_tool_use(x, "Bash"))
        assert seen[0]["tool"]["since"] == ts(use["timestamp"])
        assert r["state_since"] == ts(last(lines, lambda x: stop_of(x) == "end_turn")["timestamp"])


@pytest.mark.timeout(300)
def test_a_pending_permission_shows_as_the_tool_and_a_denial_as_waiting(
    interactive_claude, tmp_path
):
    s = interactive_claude(
        [
            Step(text="Creating it.", tools=(ToolCall("Bash", {"command": "touch made.txt"}),)),
            Step(text="Created."),
        ]
    )
    with LiveDaemon(s.config_dir, tmp_path / "state") as d:
        s.submit("Make a file")
        s.wait_pane(r"Do you want to proceed\?")
        sid = s.session_id
        # the transcript cannot tell a pending permission from a running tool
        r = d.wait_row(sid, lambda r: r["state"] == "tool", "the tool (asking permission)")
        assert r["tool"]["name"] == "Bash"
        assert not (s.cwd / "made.txt").exists()
        s.send_keys("Escape")
        r = d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting after the denial")
        lines = s.transcript_lines()
        interrupted = last(lines, lambda x: "[Request interrupted by user" in str(x.get("message")))
        assert r["state_since"] == ts(interrupted["timestamp"]) and r["tool"] is None
        assert not any(stop_of(x) == "end_turn" for x in lines)


@pytest.mark.timeout(400)
def test_subagents_show_under_their_session(interactive_claude, tmp_path):
    gate = tmp_path / "gate"
    api = interactive_claude.api
    tag = f"live-agent-{tmp_path.name}"
    api.script(
        f"{tag}/sub",
        [
            Step(tools=(ToolCall("Bash", {"command": gate_command(gate)}),)),
            Step(text="Subagent done."),
        ],
    )
    agent = ToolCall(
        "Agent",
        {
            "description": "Run the gated check",
            "prompt": f"Do the delegated part. {api.marker(f'{tag}/sub')}",
            "subagent_type": "general-purpose",
        },
    )
    s = interactive_claude(
        [Step(text="Delegating.", tools=(agent,)), Step(text="All done.")],
        settings=ALLOW,
        tag=tag,
    )
    with LiveDaemon(s.config_dir, tmp_path / "state") as d:
        s.submit("Delegate it")
        sid = s.session_id

        def sub_running(r):
            return r["state"] == "tool" and [a["state"] for a in r["subagents"]] == ["tool"]

        r = d.wait_row(sid, sub_running, "running its subagent's tool")
        assert r["tool"]["name"] == "Agent"
        (a,) = r["subagents"]
        assert a["type"] == "general-purpose" and a["tool"]["name"] == "Bash"
        sub_file = next(s.transcript.parent.glob(f"{sid}/subagents/agent-*.jsonl"))
        assert a["id"] == sub_file.stem.removeprefix("agent-")
        use = first(lines_of(sub_file), lambda x: has_tool_use(x, "Bash"))
        assert a["tool"]["since"] == ts(use["timestamp"])
        assert r["last_activity"] >= a["last_activity"]
        gate.touch()
        s.wait_idle()
        r = d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting")
        (a,) = r["subagents"]
        assert a["state"] == "ended" and a["cost_usd"] > 0


# ---------------------------------------------------------------------------- exits
@pytest.mark.timeout(400)
def test_a_killed_session_stays_waiting_a_terminated_one_ends(interactive_claude, tmp_path):
    killed = interactive_claude([Step(text="One.")])
    ended = interactive_claude([Step(text="Two.")])
    with LiveDaemon([killed.config_dir, ended.config_dir], tmp_path / "state") as d:
        for s in (killed, ended):
            s.submit("Answer me")
            s.wait_idle()
            d.wait_row(s.session_id, lambda r: r["state"] == "waiting", "waiting")
        killed.signal(signal.SIGKILL)
        ended.signal(signal.SIGTERM)
        wait_for(lambda: killed.exited() and ended.exited(), "both to end")
        d.wait_row(ended.session_id, lambda r: r["state"] == "ended", "ended")
        assert d.row(killed.session_id)["state"] == "waiting"  # SIGKILL writes no mark
        assert d.waits()[0] == 1  # the wait SIGTERM ended


LOUD = "head -c 40000 /dev/zero | tr '\\0' a"  # 40 KB of output: Claude Code re-appends


def marks(lines: list[dict]) -> list[int]:
    """Indexes of last-prompt lines that carry the prompt (exit marks and re-appends)."""
    return [i for i, x in enumerate(lines) if x.get("type") == "last-prompt" and "lastPrompt" in x]


@pytest.mark.timeout(400)
def test_the_32k_metadata_reappend_is_no_exit(interactive_claude, tmp_path):
    """Claude Code appends the last-prompt line it writes at exit also after every 32 KiB it
    writes, and writes nothing at exit when the file already ends with one."""
    # the re-append lands between the tool's result and the answer (held): no exit, and the
    # real exit later is told by its mark
    s = interactive_claude(
        [
            Step(tools=(ToolCall("Bash", {"command": LOUD}),)),
            Step(text="That was long."),
            Step(text="Second."),
        ],
        settings=ALLOW,
    )
    answer = interactive_claude.api.hold(s.tag, 1)
    # a 40 KB answer: the re-append follows it, then /exit writes nothing
    big = interactive_claude([Step(text="a" * 40000)])
    with LiveDaemon([s.config_dir, big.config_dir], tmp_path / "state") as d:
        s.submit("Print a lot")
        wait_for(lambda: marks(s.transcript_lines()), "the re-append")
        sid = s.session_id
        r = d.wait_row(sid, lambda r: r["state"] == "working", "working past the re-append")
        answer.set()
        s.wait_idle()
        r = d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting")
        assert r["may_have_exited"] is False
        s.submit("Again")
        s.wait_idle()
        since = r["state_since"]
        d.wait_row(
            sid, lambda r: r["state"] == "waiting" and r["state_since"] > since, "waiting again"
        )
        assert s.exit() == 0
        d.wait_row(sid, lambda r: r["state"] == "ended", "ended")
        lines = s.transcript_lines()
        assert len(marks(lines)) == 2  # the re-append, and the exit's own

        big.submit("Answer at length")
        big.wait_idle()
        bid = big.session_id
        # the re-append may land a moment after the screen goes idle
        wait_for(lambda: marks(big.transcript_lines()), "the answer's re-append")
        lines = big.transcript_lines()
        (mark,) = marks(lines)
        assert any(stop_of(x) == "end_turn" for x in lines[:mark])  # the re-append follows
        assert not [x for x in lines[mark:] if x.get("type") in ("user", "assistant")]
        # the daemon may read the answer and its re-append in two wake-ups: waiting, then
        # maybe exited (the file ends with the mark)
        d.wait_row(bid, lambda r: r["state"] == "waiting" and r["may_have_exited"] is True,
                   "waiting, with the file ending in the re-append")  # fmt: skip
        assert big.exit() == 0
        after = big.transcript_lines()  # no exit mark: the file ended with one (the CLI may
        # still add bookkeeping lines at exit, file-history snapshots and the like: no message)
        assert after[: len(lines)] == lines and len(marks(after)) == 1
        # /exit's own lines (its caveat, the command, its output) may follow: no prompt
        talk = [x for x in after[len(lines) :] if x.get("type") in ("user", "assistant")]
        assert not [x for x in talk if not local_command(x)], talk
        assert d.row(bid)["state"] == "waiting"  # so it cannot be told from the transcript
    with LiveDaemon([s.config_dir, big.config_dir], tmp_path / "state") as d:  # a rebuild agrees
        assert d.row(sid)["state"] == "ended"
        assert d.row(bid)["state"] == "waiting" and d.row(bid)["may_have_exited"] is True


# ---------------------------------------------------------------------------- restart
@pytest.mark.timeout(400)
def test_a_restart_rebuilds_the_board_from_the_transcripts(interactive_claude, tmp_path):
    gate = tmp_path / "gate"
    s = interactive_claude(
        [
            Step(tools=(ToolCall("Bash", {"command": gate_command(gate)}),)),
            Step(text="Released."),
            Step(text="More."),
        ],
        settings=ALLOW,
    )
    more = interactive_claude.api.hold(s.tag, 2)
    d = LiveDaemon(s.config_dir, tmp_path / "state")
    try:
        s.submit("Run the gated command")
        sid = s.session_id
        before = d.wait_row(sid, lambda r: r["state"] == "tool", "running its tool")
        d.stop()
        d = LiveDaemon(s.config_dir, tmp_path / "state", port=d.port)
        after = d.row(sid)
        assert after == before | {"last_activity": after["last_activity"]}
        assert after["last_activity"] == before["last_activity"]
        d.stop()
        gate.touch()  # answered while no daemon runs
        s.wait_idle()
        d = LiveDaemon(s.config_dir, tmp_path / "state", port=d.port)
        r = d.row(sid)
        lines = s.transcript_lines()
        assert r["state"] == "waiting"
        assert r["state_since"] == ts(last(lines, lambda x: stop_of(x) == "end_turn")["timestamp"])
        assert r["cost_usd"] > before["cost_usd"] > 0
        s.submit("More")  # held by the stand-in: in flight
        d.wait_row(sid, lambda r: r["state"] == "working", "working")
        assert d.waits()[0] == 1  # a wait seen across the restart still counts
    finally:
        more.set()
        d.stop()
