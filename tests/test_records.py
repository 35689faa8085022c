"""Typed decoding: what is counted, what is salvaged, what is an error."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ccotel.records import _parse_ts, decode, parse_ts
from tests.lines import assistant, prompt, tool_result, tool_use


def test_usage_line_fields():
    r = decode(assistant(inp=3, out=7, cr=11, w5=13, w1=17, web=2).encode(), 1)
    u = r.usage
    assert (u.input, u.output, u.cache_read, u.cache_write_5m, u.cache_write_1h, u.web_search) == (
        3,
        7,
        11,
        13,
        17,
        2,
    )
    assert (u.message_id, u.request_id, u.model) == ("msg_1", "req_1", "claude-sonnet-4-5-20250929")
    assert r.session and r.cwd == "/home/u/proj" and r.ts > 1.7e9


def test_flat_cache_creation_when_no_breakdown():
    line = json.loads(assistant(w5=0, w1=0))
    usage = line["message"]["usage"]
    del usage["cache_creation"]
    usage["cache_creation_input_tokens"] = 500
    u = decode(json.dumps(line, separators=(",", ":")).encode(), 1).usage
    assert (u.cache_write_5m, u.cache_write_1h) == (500, 0)


def test_breakdown_wins_over_flat_field():
    line = json.loads(assistant(w5=30, w1=40))
    line["message"]["usage"]["cache_creation_input_tokens"] = 0  # 2.1.152+ quirk
    u = decode(json.dumps(line, separators=(",", ":")).encode(), 1).usage
    assert (u.cache_write_5m, u.cache_write_1h) == (30, 40)


def test_synthetic_and_api_errors_count_nothing():
    """Zero-usage <synthetic> and API-error lines are block marks, not responses."""
    zero = dict(inp=0, out=0, cr=0, w5=0)
    for rec in (
        decode(assistant(model="<synthetic>", **zero).encode(), 1),
        decode(assistant(isApiErrorMessage=True, **zero).encode(), 1),
    ):
        assert rec.usage is None and rec.mark is not None


def test_synthetic_and_api_errors_with_tokens_count_them():
    """ccusage 20.0.24 counts every usage line: such a line that carries tokens counts them
    (measured: tests/test_parity_crafted.py)."""
    for line in (assistant(model="<synthetic>"), assistant(isApiErrorMessage=True)):
        rec = decode(line.encode(), 1)
        assert rec.mark is None and rec.usage is not None and rec.usage.total == 135


def test_ccusage_gates():
    # Not compact: ccusage looks for the literal bytes "usage":{
    spaced = json.dumps(json.loads(assistant()))
    assert decode(spaced.encode(), 1).usage is None
    # A null key field drops the line, as in ccusage; the same line without it counts.
    for key in ("requestId", "sessionId", "version", "cwd"):
        line = assistant(**{key: None})
        assert f'"{key}":null' in line
        assert decode(line.encode(), 1).usage is None, key
    assert decode(assistant().encode(), 1).usage is not None
    nulled = assistant().replace('"cache_read_input_tokens":100', '"cache_read_input_tokens":null')
    assert '"cache_read_input_tokens":null' in nulled and decode(nulled.encode(), 1).usage is None
    assert decode(assistant(version="garbage").encode(), 1).usage is None
    assert decode(assistant(req="").encode(), 1).usage is None
    line = json.loads(assistant())
    line["message"]["usage"]["speed"] = "warp"
    assert decode(json.dumps(line, separators=(",", ":")).encode(), 1).usage is None


def test_wrong_type_elsewhere_keeps_usage_and_reports():
    line = json.loads(assistant(out=42))
    line["gitBranch"] = 7
    r = decode(json.dumps(line, separators=(",", ":")).encode(), 3)
    assert r.error and "unexpected shape" in r.error
    assert r.usage is not None and r.usage.output == 42


def test_bad_lines_are_errors_not_exceptions():
    assert decode(b"{not json", 1).error == "not JSON"
    assert decode(b'{"type":"user","cwd":"\xff\xfe"}', 1).error == "invalid UTF-8"
    assert decode(b"[1,2,3]", 1).error.startswith("unexpected shape")
    assert decode(b"   ", 1) is None
    assert (
        decode(b'{"type":"user","message":{"content":"a\x00b"}}', 1).error == "not JSON"
    )  # raw NUL
    assert decode(b'{"type":"user","message":{"content":"a\\u0000b"}}', 1).error is None


def test_tools_and_prompts():
    r = decode(tool_use("toolu_1").encode(), 1)
    assert [(t.id, t.name, t.input) for t in r.tool_uses] == [("toolu_1", "Bash", None)]
    assert (
        decode(tool_use("toolu_1").encode(), 1, keep_content=True).tool_uses[0].input
        == b'{"command":"echo secret"}'
    )
    res = decode(tool_result("toolu_1", is_error=True, agent="a1").encode(), 2)
    assert [(t.tool_use_id, t.is_error) for t in res.tool_results] == [("toolu_1", True)]
    assert res.result_agent_id == "a1" and not res.prompt
    assert decode(prompt().encode(), 3).prompt


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    decode(raw.replace(b"\n", b""), 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=3))
def test_mutated_real_lines_never_raise(pos, junk):
    raw = tool_use("toolu_9").encode()
    pos = min(pos, len(raw))
    decode((raw[:pos] + junk + raw[pos:]).replace(b"\n", b""), 1)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1970, 2023, 2024, 2100, 9999]),
            *(st.integers(0, hi) for hi in (13, 32, 25, 61, 61, 999)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_timestamps_read_through_the_hour_cache_as_without_it(stamps):
    """Claude Code's own form (``...T03:04:05.678Z``) is read through a cache of its hour: the
    same answer as the general reader for valid and invalid dates, hours, minutes and
    seconds, on the first reading of an hour and on later ones."""
    for y, mo, d, h, mi, s, ms in stamps * 2:
        value = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z"
        assert parse_ts(value) == _parse_ts(value), value
        assert parse_ts(value.replace("Z", "z")) is None


def test_timestamp_hour_cache_keeps_refusals():
    for _ in range(2):
        assert parse_ts("2023-02-29T10:00:00.000Z") is None  # no 29 February in 2023
        assert parse_ts("2024-02-29T10:00:00.000Z") == 1709200800.0
        assert parse_ts("2024-02-29T10:60:00.000Z") is None
        assert parse_ts("2024-02-29T24:00:00.000Z") is None
        assert parse_ts("2024-02-29T10:00:0٣.000Z") is None  # a digit, but not an ASCII one
