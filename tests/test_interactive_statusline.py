"""The real Claude Code 2.1.197, run interactively in tmux, feeds its status line.

What the status-line command receives (session, model, cost, ``context_window``,
and with an OAuth login the plan's ``rate_limits`` from the stand-in's headers)
and what the pane shows of its output.
"""

from __future__ import annotations

import re
import shlex
import sys

import pytest

from tests.fakeapi import Step, ToolCall, Usage, ratelimit_headers
from tests.interactive import interactive_claude_fixture, wait_for  # noqa: F401
from tests.realcli import OPUS, SONNET

pytestmark = pytest.mark.serial  # timing a busy machine would break: run alone

RESET_5H, RESET_7D = 1_900_000_000, 1_900_400_000


def test_statusline_gets_the_session_json_and_the_pane_shows_its_line(interactive_claude):
    api = interactive_claude.api
    api.extra_headers.update(ratelimit_headers(0.425, 0.17))  # ignored with an API key
    s = interactive_claude(
        [
            Step(text="Running.", tools=(ToolCall("Bash", {"command": "echo ok"}),)),
            Step(text="All done."),
        ],
        model=SONNET,
    )
    s.submit("Do it")
    pane = s.wait_idle()
    assert "API Usage Billing" in pane
    d = s.wait_statusline(lambda d: d["cost"]["total_cost_usd"] > 0, "a cost")
    assert s.transcript.name == f"{d['session_id']}.jsonl"
    assert s.transcript.exists()
    assert d["model"] == {"id": SONNET, "display_name": "Sonnet 4.5"}
    assert d["cwd"] == d["workspace"]["current_dir"] == str(s.cwd)
    assert d["version"] == "2.1.197"
    assert "rate_limits" not in d  # an API key has no plan
    # the pane shows the command's output, counting what it has received so far
    shown = wait_for(lambda: s.statusline_shown(), "the status line")
    n = int(re.match(r"CCOTEL-SL (\d+)", shown).group(1))
    assert 1 <= n <= len(s.statusline_inputs())


def test_statusline_command_reads_the_json_on_stdin(interactive_claude):
    # what `ccotel statusline` will do: read the JSON, print one line
    cmd = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        "import json,sys; d=json.load(sys.stdin); "
        "print('SL', d['session_id'][:8], d['model']['display_name'], d['cost']['total_cost_usd'] > 0)"
    )
    s = interactive_claude([Step(text="Hi.")], model=OPUS, statusline=cmd)
    s.submit("Hello")
    s.wait_idle()
    want = f"SL {s.session_id[:8]} Opus 4.6 True"
    wait_for(lambda: (s.statusline_shown() or "").startswith(want), f"the status line {want!r}")


def test_oauth_login_carries_the_plan_utilisation_the_stand_in_sent(interactive_claude):
    api = interactive_claude.api
    api.extra_headers.update(
        ratelimit_headers(0.425, 0.17, five_hour_reset=RESET_5H, seven_day_reset=RESET_7D)
    )
    s = interactive_claude([Step(text="First."), Step(text="Second.")], auth="oauth")
    s.submit("One")
    s.wait_idle()
    d = s.wait_statusline(lambda d: "rate_limits" in d, "rate_limits")
    assert d["rate_limits"] == {
        "five_hour": {"used_percentage": 42.5, "resets_at": RESET_5H},
        "seven_day": {"used_percentage": 17, "resets_at": RESET_7D},
    }
    # new numbers on the next answer reach the next status line: they come from the headers
    api.extra_headers.update(ratelimit_headers(0.61, None, five_hour_reset=RESET_5H + 3600))
    s.submit("Two")
    s.wait_idle()
    d = s.wait_statusline(
        lambda d: d.get("rate_limits", {}).get("five_hour", {}).get("used_percentage") == 61,
        "the second 5h utilisation",
    )
    assert d["rate_limits"]["five_hour"]["resets_at"] == RESET_5H + 3600
    # no rate_limits before the first answer: the start-up render has none
    assert "rate_limits" not in s.statusline_inputs()[0]


def test_context_window_is_the_last_request_against_the_model_window(interactive_claude):
    u1 = Usage(input_tokens=1000, output_tokens=500, cache_creation_5m=1200, cache_read=73_000)
    u2 = Usage(input_tokens=19, output_tokens=7, cache_creation_1h=1000, cache_read=150_980)
    s = interactive_claude([Step(text="A.", usage=u1), Step(text="B.", usage=u2)], model=OPUS)
    first = s.statusline_inputs()[0]["context_window"]
    assert first["current_usage"] is None and first["used_percentage"] is None
    for text, u, pct in (("One", u1, 38), ("Two", u2, 76)):  # 37.6 % and 75.9995 %: rounded
        s.submit(text)
        s.wait_idle()
        cw = s.wait_statusline(
            lambda d, u=u: (
                (d["context_window"].get("current_usage") or {}).get("cache_read_input_tokens")
                == u.cache_read
            ),
            f"the usage of {text}",
        )["context_window"]
        context = u.input_tokens + u.cache_creation + u.cache_read
        assert cw["current_usage"] == {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_creation_input_tokens": u.cache_creation,
            "cache_read_input_tokens": u.cache_read,
        }
        assert cw["context_window_size"] == 200_000
        # "total" is the last request's context, not a running sum
        assert (cw["total_input_tokens"], cw["total_output_tokens"]) == (context, u.output_tokens)
        assert cw["used_percentage"] == pct == round(context * 100 / 200_000)
        assert cw["remaining_percentage"] == 100 - pct
