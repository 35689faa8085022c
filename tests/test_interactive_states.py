"""What Claude Code 2.1.197's transcript shows in each live state of a session.

The live board (issue 15) derives working / tool / waiting / ended from these
lines; docs/notes/live-states.md records the findings with excerpts. Each test
drives the real CLI into one state and checks the transcript at that moment.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.fakeapi import Step, ToolCall
from tests.interactive import gate_command, interactive_claude_fixture, wait_for  # noqa: F401
from tests.realcli import Scenario, read_jsonl, run_claude

pytestmark = pytest.mark.serial  # timing a busy machine would break: run alone

Lines = list[dict[str, Any]]


def conv(lines: Lines) -> Lines:
    """The conversation lines (user / assistant / system), in file order."""
    return [x for x in lines if x.get("type") in ("user", "assistant", "system")]


def leaf(lines: Lines) -> dict:
    """The newest conversation line: latest ``timestamp``, ties broken by depth in the
    ``parentUuid`` chain.

    Not the file's last line: within one flush the CLI may write an answer (and its
    ``turn_duration``) before the prompt that asked for it, and the prompt's
    attachments follow it in the chain with earlier timestamps."""
    parent = {x["uuid"]: x.get("parentUuid") for x in lines if x.get("uuid")}

    def depth(u: str | None) -> int:
        n = 0
        while u in parent and n <= len(parent):
            u, n = parent[u], n + 1
        return n

    talk = conv(lines)
    assert talk, "no conversation yet"
    return max(talk, key=lambda x: (x.get("timestamp") or "", depth(x.get("uuid"))))


def content(x: dict) -> list[dict]:
    c = (x.get("message") or {}).get("content")
    return c if isinstance(c, list) else []


def tool_uses(lines: Lines) -> dict[str, dict]:
    return {b["id"]: b for x in lines for b in content(x) if b.get("type") == "tool_use"}


def tool_results(lines: Lines) -> dict[str, dict]:
    return {
        b["tool_use_id"]: b for x in lines for b in content(x) if b.get("type") == "tool_result"
    }


def stop_reasons(lines: Lines) -> list[str | None]:
    return [x["message"].get("stop_reason") for x in lines if x.get("type") == "assistant"]


def turn_ended(lines: Lines) -> Lines | None:
    """The lines, once the conversation ends with the ``turn_duration`` record the
    interactive CLI writes a moment after a turn's final answer."""
    done = [x for x in lines if x.get("uuid")] and leaf(lines).get("subtype") == "turn_duration"
    return lines if done else None


def exit_marks(lines: Lines) -> Lines:
    """``last-prompt`` lines that carry the prompt: written when the process ends."""
    return [x for x in lines if x.get("type") == "last-prompt" and "lastPrompt" in x]


def observe(probe, seconds: float) -> list:
    """Everything ``probe`` returned during a fixed observation window (to show that
    nothing changes while the CLI waits: an absence cannot be waited for)."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(probe())
        time.sleep(0.1)
    return seen


# ---------------------------------------------------------------------------- ended (-p)
def test_print_session_ends_with_a_last_prompt_line(tmp_path):
    run = run_claude(
        tmp_path / "home",
        scenario=Scenario(
            name="ended",
            model="claude-sonnet-4-5-20250929",
            steps=(
                Step(tools=(ToolCall("Bash", {"command": "echo ended"}),)),
                Step(text="Finished."),
            ),
        ),
    )
    lines = read_jsonl(run.transcript)
    assert stop_reasons(lines) == ["tool_use", "end_turn"]
    assert lines[-1]["type"] == "last-prompt" and exit_marks(lines) == [lines[-1]]
    assert lines[-1]["leafUuid"] == leaf(lines)["uuid"]
    assert leaf(lines)["message"]["stop_reason"] == "end_turn"
    assert lines[-1]["lastPrompt"].startswith("Run the ccotel harness scenario.")
    assert not [x for x in lines if x.get("subtype") == "turn_duration"]  # -p writes none


# ---------------------------------------------------------------------------- working
def test_request_in_flight_shows_the_prompt_as_the_last_line(interactive_claude):
    s = interactive_claude([Step(text="First."), Step(text="Second.")])
    api = interactive_claude.api
    assert not s.transcript.exists()  # the status line names it; the first prompt creates it
    for step, text in ((0, "One"), (1, "Two")):
        gate = api.hold(s.tag, step)
        s.submit(text)
        wait_for(lambda step=step: step in api.held(s.tag), "the request to be held")
        lines = s.wait_transcript(
            lambda ls, text=text: (
                ls if conv(ls) and text in str(leaf(ls).get("message", {}).get("content")) else None
            ),
            f"the prompt {text!r}",
        )
        last = leaf(lines)
        assert last["type"] == "user" and isinstance(last["message"]["content"], str)
        assert last["origin"] == {"kind": "human"} and last["promptSource"] == "typed"
        assert stop_reasons(lines) == ["end_turn"] * step  # nothing for this prompt yet
        assert not exit_marks(lines)
        gate.set()
        s.wait_idle()
    assert stop_reasons(s.transcript_lines()) == ["end_turn", "end_turn"]


# ---------------------------------------------------------------------------- tool
def test_tool_running_for_seconds_shows_a_tool_use_without_result(interactive_claude):
    """The issue's scenario: the stand-in asks for Bash `sleep 5`."""
    s = interactive_claude(
        [
            Step(text="Sleeping.", tools=(ToolCall("Bash", {"command": "sleep 5"}),)),
            Step(text="Slept."),
        ]
    )
    s.submit("Sleep")
    lines = s.wait_transcript(lambda ls: tool_uses(ls) and ls, "the tool_use")
    (tid,) = tool_uses(lines)
    wait_for(lambda: any("sleep 5" in p for p in s.processes()), "the sleep to start", 5)
    # while the command runs (read first, then check it still runs): no result yet
    lines = s.transcript_lines()
    assert any("sleep 5" in p for p in s.processes()), s.processes()
    assert tid not in tool_results(lines)
    assert stop_reasons(lines)[-1] == "tool_use"
    running = leaf(lines)
    assert running["type"] == "assistant"
    assert running["message"]["content"][-1]["id"] == tid
    # after it
    s.wait_idle()
    lines = s.transcript_lines()
    assert tid in tool_results(lines)
    assert stop_reasons(lines) == ["tool_use", "tool_use", "end_turn"]
    use_ts = next(x for x in lines if tid in {b.get("id") for b in content(x)})["timestamp"]
    res = next(x for x in lines if tid in {b.get("tool_use_id") for b in content(x)})
    assert _secs(res["timestamp"]) - _secs(use_ts) >= 5
    s.wait_transcript(turn_ended, "the turn_duration record")


def test_gated_tool_runs_until_the_test_releases_it(interactive_claude, tmp_path):
    gate = tmp_path / "gate"
    s = interactive_claude(
        [
            Step(tools=(ToolCall("Bash", {"command": gate_command(gate)}),)),
            Step(text="Released."),
        ],
        settings={"permissions": {"allow": ["Bash"]}},
    )
    s.submit("Wait for the gate")
    lines = s.wait_transcript(lambda ls: tool_uses(ls) and ls, "the tool_use")
    (tid,) = tool_uses(lines)
    wait_for(lambda: any("until [ -e" in p for p in s.processes()), "the gated command")
    assert tid not in tool_results(s.transcript_lines())
    gate.touch()
    s.wait_idle()
    (res,) = tool_results(s.transcript_lines()).values()
    assert "ccotel-gate-open" in str(res["content"])


# ---------------------------------------------------------------------------- permission
def _touch_session(interactive_claude):
    return interactive_claude(
        [
            Step(
                text="Creating it.",
                tools=(ToolCall("Bash", {"command": "touch made-by-ccotel.txt"}),),
            ),
            Step(text="Created."),
        ]
    )


def test_pending_permission_prompt_looks_like_a_running_tool(interactive_claude):
    s = _touch_session(interactive_claude)
    s.submit("Make a file")
    s.wait_pane(r"Do you want to proceed\?")
    lines = s.wait_transcript(lambda ls: tool_uses(ls) and ls, "the tool_use")
    (tid,) = tool_uses(lines)
    # while the prompt waits, nothing more is written: the transcript cannot tell a
    # pending permission from a running tool (no process runs, though)
    seen = observe(lambda: len(s.transcript_lines()), 3.0)
    assert set(seen) == {len(lines)}
    assert tid not in tool_results(lines) and stop_reasons(lines)[-1] == "tool_use"
    assert not any("touch" in p for p in s.processes())
    assert not (s.cwd / "made-by-ccotel.txt").exists()
    s.send_keys("Enter")  # 1. Yes
    s.wait_idle()
    lines = s.transcript_lines()
    assert tool_results(lines)[tid]["is_error"] is False
    assert (s.cwd / "made-by-ccotel.txt").exists()


def test_denied_permission_ends_the_turn_without_an_answer(interactive_claude):
    s = _touch_session(interactive_claude)
    s.submit("Make a file")
    s.wait_pane(r"Do you want to proceed\?")
    s.wait_transcript(lambda ls: tool_uses(ls), "the tool_use")
    s.send_keys("Escape")
    lines = s.wait_transcript(
        lambda ls: ls if any(b.get("type") == "text" for b in content(leaf(ls))) else None,
        "the interruption",
    )
    (res,) = tool_results(lines).values()
    assert res["is_error"] is True
    last = leaf(lines)
    assert last["type"] == "user"
    assert content(last) == [{"type": "text", "text": "[Request interrupted by user for tool use]"}]
    assert stop_reasons(lines) == ["tool_use", "tool_use"]  # no end_turn: the user is needed
    s.wait_pane(r"What should Claude do instead\?")
    assert not (s.cwd / "made-by-ccotel.txt").exists()


# ---------------------------------------------------------------------------- waiting / ended
def _answered(interactive_claude):
    """A session that answered one prompt; returns it and its turn_duration line."""
    s = interactive_claude([Step(text="Here you are.")])
    s.submit("Answer me")
    s.wait_idle()
    lines = s.wait_transcript(turn_ended, "the turn_duration record")
    ended = leaf(lines)
    # the prompt's own lines may be flushed after the answer's (seen under load); the
    # newest line stays the turn's end
    lines = s.wait_transcript(
        lambda ls: ls if any(x.get("promptSource") == "typed" for x in ls) else None,
        "the prompt line",
    )
    assert leaf(lines) == ended
    return s, ended


def local_command(x: dict) -> bool:
    """A line a slash command such as /exit writes: the meta caveat, the command, its output
    (not a prompt: never "working")."""
    c = (x.get("message") or {}).get("content")
    return x.get("type") == "user" and (
        bool(x.get("isMeta"))
        or (isinstance(c, str) and c.lstrip().startswith(("<command-name>", "<local-command-")))
    )


def _ended_by_mark(lines: Lines, ended: dict) -> None:
    (mark,) = exit_marks(lines)
    assert mark["leafUuid"] == ended["uuid"]
    assert "Answer me" in mark["lastPrompt"]
    after = lines[lines.index(mark) + 1 :]
    # /exit's own lines may follow the mark (or be lost with the process): nothing else
    assert all(local_command(x) or x["type"] == "file-history-snapshot" for x in after), after
    assert leaf([x for x in lines if not local_command(x)]) == ended


def test_answered_session_waits_then_exit_appends_a_last_prompt(interactive_claude):
    s, ended = _answered(interactive_claude)
    lines = s.transcript_lines()
    assert stop_reasons(lines) == ["end_turn"]
    answer = next(x for x in lines if x.get("uuid") == ended["parentUuid"])
    assert answer["type"] == "assistant" and answer["message"]["stop_reason"] == "end_turn"
    assert not exit_marks(lines)
    assert not s.exited()
    assert s.exit() == 0
    _ended_by_mark(s.wait_transcript(lambda ls: exit_marks(ls) and ls, "the exit mark"), ended)


@pytest.mark.parametrize(
    ("sig", "status", "marked"),
    [
        (signal.SIGTERM, 143, True),
        (signal.SIGHUP, 129, True),
        (signal.SIGKILL, -9, False),
    ],
    ids=["TERM", "HUP", "KILL"],
)
def test_signals_and_the_exit_mark(interactive_claude, sig, status, marked):
    s, ended = _answered(interactive_claude)
    s.signal(sig)
    wait_for(s.exited, "claude to end")
    assert s.exit_status() == status
    if marked:
        _ended_by_mark(s.wait_transcript(lambda ls: exit_marks(ls) and ls, "the exit mark"), ended)
    else:  # killed: no mark, the session looks idle for ever
        lines = s.transcript_lines()
        assert not exit_marks(lines) and leaf(lines) == ended


def _secs(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
