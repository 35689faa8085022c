"""The interactive harness itself: it waits on conditions, says what it waited for, and
leaves no process behind."""

from __future__ import annotations

import os
import time

import pytest

from tests.fakeapi import FakeAnthropic, Step, ToolCall
from tests.interactive import InteractiveClaude, gate_command, wait_for
from tests.realcli import HarnessError

pytestmark = pytest.mark.serial  # timing a busy machine would break: run alone


def test_wait_for_returns_the_value_or_names_what_it_waited_for():
    t0 = time.monotonic()
    values = iter([None, 0, "", "ready"])
    assert wait_for(lambda: next(values), "a value", 5) == "ready"
    with pytest.raises(HarnessError, match=r"timed out after 0s waiting for never\nextra info"):
        wait_for(lambda: None, "never", 0.3, lambda: "extra info")
    assert time.monotonic() - t0 < 5


def test_close_ends_the_cli_and_the_tool_it_was_running(tmp_path):
    gate = tmp_path / "never-opened"
    with FakeAnthropic(seed="harness-close") as api:
        s = InteractiveClaude(
            tmp_path / "home",
            api,
            [Step(tools=(ToolCall("Bash", {"command": gate_command(gate)}),)), Step(text="x")],
            settings={"permissions": {"allow": ["Bash"]}},
        )
        with s:
            s.submit("Wait")
            wait_for(lambda: any("until [ -e" in p for p in s.processes()), "the gated tool")
            pids = [s.pane_pid] + [
                int(d) for d in os.listdir("/proc") if d.isdigit() and _is_gate(d, gate)
            ]
            assert len(pids) >= 2
            sock = s.socket
        # closed: the CLI, its tool and the tmux server are gone
        for pid in pids:
            assert not _alive(pid), pid
        assert not os.path.exists(sock)


def _is_gate(pid: str, gate) -> bool:
    try:
        return str(gate) in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False
