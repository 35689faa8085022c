"""The status line's parts on their own: the plan rules, the JSON handling, the line."""

from __future__ import annotations

import json

import pytest

from ccotel.statusline import MAX_SESSIONS, Reports
from ccotel.statusline.plan import SAME_WINDOW, Plan, parse_rate_limits
from ccotel.statusline.render import Facts, render
from ccotel.statusline.reports import BadReport, check, context_of

T0 = 1_800_000_000.0
R5 = T0 + 3 * 3600  # a 5-hour window resetting in 3 h


# ------------------------------------------------------------------------------ plan rules


def test_freshest_report_wins_and_a_stale_lower_copy_never_does():
    p = Plan()
    assert p.offer("5h", 0.40, R5, T0)
    assert p.offer("5h", 0.45, R5, T0 + 60)  # another session, newer: higher
    # an idle session re-renders its old copy, later in time: ignored
    assert not p.offer("5h", 0.40, R5, T0 + 120)
    w = p.windows()["5h"]
    assert (w.used_ratio, w.resets_at, w.reported_at, w.seen_at) == (0.45, R5, T0 + 60, T0 + 120)
    # reset times a little apart name the same window
    assert not p.offer("5h", 0.30, R5 + SAME_WINDOW - 1, T0 + 180)
    assert p.windows()["5h"].used_ratio == 0.45


def test_a_new_window_wins_even_lower_and_an_old_one_is_ignored():
    p = Plan()
    p.offer("5h", 0.9, R5, T0)
    assert p.offer("5h", 0.05, R5 + 5 * 3600, T0 + 10)  # the window reset: a new one
    assert p.windows()["5h"].used_ratio == 0.05
    assert not p.offer("5h", 0.95, R5, T0 + 20)  # a copy from before the reset
    assert p.windows()["5h"].used_ratio == 0.05
    # a report with a reset time beats one without
    q = Plan()
    q.offer("7d", 0.5, None, T0)
    assert q.offer("7d", 0.2, T0 + 86400, T0 + 1)
    assert not q.offer("7d", 0.1, None, T0 + 2)


def test_windows_are_independent_and_changes_are_taken_once():
    p = Plan()
    p.offer("5h", 0.1, R5, T0)
    p.offer("7d", 0.2, T0 + 86400, T0)
    p.offer("5h", 0.1, R5, T0 + 5)  # no news
    changes = p.take_changes()
    assert [(c.window, c.used_ratio) for c in changes] == [("5h", 0.1), ("7d", 0.2)]
    assert p.take_changes() == []
    p.put_back(changes)
    assert p.take_changes() == changes


@pytest.mark.parametrize(
    "obj, want",
    [
        (None, {}),
        ("garbage", {}),
        ({}, {}),
        ({"five_hour": {"used_percentage": 42.5, "resets_at": R5}}, {"5h": (0.425, R5)}),
        ({"seven_day": {"used_percentage": 17}}, {"7d": (0.17, None)}),
        (
            {
                "five_hour": {"used_percentage": 1, "resets_at": 1},
                "seven_day": {"used_percentage": 2, "resets_at": 2},
            },
            {"5h": (0.01, 1.0), "7d": (0.02, 2.0)},
        ),
        ({"five_hour": {"used_percentage": "42"}}, {}),
        ({"five_hour": {"used_percentage": True}}, {}),
        ({"five_hour": {"used_percentage": -1}}, {}),
        ({"five_hour": {"used_percentage": float("nan")}}, {}),
        ({"five_hour": {"used_percentage": 5, "resets_at": "soon"}}, {"5h": (0.05, None)}),
        ({"five_hour": {"used_percentage": 5, "resets_at": 1e300}}, {"5h": (0.05, None)}),
        ({"five_hour": [1, 2]}, {}),
    ],
)
def test_rate_limits_every_block_absent_present_or_malformed(obj, want):
    assert parse_rate_limits(obj, T0) == want


# ------------------------------------------------------------------------------ reports


def _report(sid="s-1", **extra) -> dict:
    return {
        "session_id": sid,
        "model": {"id": "claude-opus-4-6", "display_name": "Opus 4.6"},
        **extra,
    }


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "x",
        3,
        None,
        {},
        {"session_id": ""},
        {"session_id": 5},
        {"session_id": "a\nb"},
        {"session_id": "x" * 201},
    ],
)
def test_a_report_must_be_an_object_naming_its_session(bad):
    with pytest.raises(BadReport):
        check(bad)


def test_reports_keep_the_latest_per_session_with_its_context():
    now = [T0]
    r = Reports(clock=lambda: now[0])
    assert r.report("s-1") is None and r.context("s-1") is None
    r.put(_report(context_window={"context_window_size": 200_000, "used_percentage": 38}))
    now[0] += 1
    r.put(_report("s-2", context_window={"context_window_size": 200_000, "current_usage": None}))
    assert r.context("s-1") == (0.38, 200_000)
    assert r.context("s-2") is None
    assert r.sessions() == ["s-2", "s-1"]
    assert r.report("s-1")["received_at"] == T0
    # no used_percentage: the last request's input and cache tokens over the window
    cu = {"input_tokens": 19, "output_tokens": 7, "cache_creation_input_tokens": 1000,
          "cache_read_input_tokens": 150_981}  # fmt: skip
    r.put(_report(context_window={"context_window_size": 200_000, "current_usage": cu}))
    assert r.context("s-1") == (152_000 / 200_000, 200_000)
    # old reports are forgotten
    now[0] += 25 * 3600
    assert r.report("s-1") is None and r.sessions() == []


def test_reports_are_bounded():
    r = Reports(clock=lambda: T0)
    for i in range(MAX_SESSIONS + 10):
        r.put(_report(f"s-{i}"))
    assert len(r.sessions()) == MAX_SESSIONS
    assert r.report("s-0") is None and r.report(f"s-{MAX_SESSIONS + 9}") is not None


@pytest.mark.parametrize(
    "cw",
    [
        None,
        "x",
        {},
        {"context_window_size": 0, "used_percentage": 5},
        {"context_window_size": 200_000, "current_usage": {"input_tokens": "many"}},
        {"context_window_size": True, "used_percentage": 5},
    ],
)
def test_context_unknown_when_the_block_says_nothing_usable(cw):
    assert context_of({"session_id": "s", "context_window": cw}) is None


# ------------------------------------------------------------------------------ the line


def _facts(**kw) -> Facts:
    base = dict(model="Opus 4.6", session_usd=1.234, today_usd=12.5, block_usd=7.0,
                block_left_s=2 * 3600 + 15 * 60, burn_usd_per_hour=3.2,
                context=(0.38, 200_000), plan={"5h": (0.425, R5), "7d": (0.17, T0 + 3 * 86400)},
                budget_ratio=0.85, now=T0)  # fmt: skip
    base.update(kw)
    return Facts(**base)


def test_the_full_line_and_its_colours():
    line = render(_facts(), color=False)
    assert line.startswith(
        "Opus 4.6 | $1.23 session · $12.50 today | $7.00 block (2h15m left) | $3.20/h | ctx 38% | 5h 43% ↻"
    ), line
    assert "· 7d 17% ↻" in line and line.endswith(" | budget 85%")
    coloured = render(_facts())
    assert "\x1b[33mbudget 85%\x1b[0m" in coloured  # amber, as the page's bar from 80 %
    assert "\x1b[32m5h 43%\x1b[0m" in coloured
    assert "\x1b[31mbudget 120%\x1b[0m" in render(_facts(budget_ratio=1.2))
    assert "\x1b" not in render(_facts(), color=False)


def test_segments_without_data_are_left_out_and_the_order_is_configurable():
    f = Facts(model="Sonnet 4.5", session_usd=0.0, today_usd=0.5, now=T0)
    assert render(f) == "Sonnet 4.5 | $0.00 session · $0.50 today"
    assert render(_facts(), segments=["plan", "model"], separator=" / ", color=False).endswith(
        " / Opus 4.6"
    )
    # a window whose reset time has passed says nothing any more
    assert "5h" not in render(_facts(plan={"5h": (0.9, T0 - 1)}), color=False)
    assert render(Facts(now=T0)) == ""


def test_the_line_is_one_line():
    assert "\n" not in render(_facts(model="a\nb"), color=False)


def test_statusline_json_survives_a_round_trip():
    d = _report(rate_limits={"five_hour": {"used_percentage": 42.5, "resets_at": R5}})
    assert check(json.loads(json.dumps(d)))["session_id"] == "s-1"
