"""Traces equal the metrics when a response's lines straddle a session's close (review 1,
finding 1).

On ca2edcb a chat span carried the usage of its response as read when the session closed:
with ``session_idle = 0``, or by default when two lines of one response were more than
``session_idle`` apart (a tool running between them), the later, larger copy moved the
metrics and never the trace. In a two-step ``backfill --traces`` (sessions closed in
between), invoke_agent spans were sent twice and chat sums came out under ccusage.

The rule now (docs/traces.md): a chat span is sent once its response is final (a final stop
reason, a later response of its thread, a new prompt, the end of the turn, its subagent
done), or when its session closes and the response's last line is RESPONSE_GRACE old; a copy
that moves the kept usage after that is sent as a correction span carrying the difference.
Here: corpora cut at random line boundaries (responses split across rounds), each round a
metrics backfill and a trace backfill by a new shipper (a restart) with every session closed
in between; then the sum of chat spans (corrections included) equals ccusage, and every span
id is sent once.
"""

from __future__ import annotations

import copy
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccotel import app
from ccotel.config import load
from ccotel.traces.builder import RESPONSE_GRACE
from ccotel.traces.service import backfill_traces
from tests.conftest import assert_equal_totals, free_port
from tests.corpus import Usage, append_lines, assistant_record, generate
from tests.oracle import ccusage_totals
from tests.sdk_sink import SdkSpanSink
from tests.test_cli_mistakes import clean_env
from tests.test_traces import T0, Clock, Mem, T, chat_totals, shipper
from tests.test_traces_receiver import Receiver


def _cfg(claude: Path, state: Path, idle: float):
    flags = {"claude_dirs": [str(claude)], "state_dir": str(state), "session_idle": idle,
             "trace_rate": 0}  # fmt: skip
    return load(env={}, flags=flags)


def _once(spans) -> None:
    ids = Counter((s.context.trace_id, s.context.span_id) for s in spans)
    twice = {f"{t:032x}/{s:016x}": n for (t, s), n in ids.items() if n > 1}
    assert not twice, f"span ids sent more than once: {list(twice.items())[:5]} ({len(twice)})"


def _rounds_by_lines(src: Path, dst: Path, parts: int, seed: int):
    """Each file cut at random line boundaries into ``parts`` pieces; round r appends piece r."""
    rng = random.Random(seed)
    plan = {}
    for p in sorted(src.rglob("*")):
        if p.is_file():
            lines = p.read_bytes().splitlines(keepends=True)
            cuts = sorted(rng.randint(0, len(lines)) for _ in range(parts - 1))
            plan[p] = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    for r in range(parts):
        for p, pieces in plan.items():
            out = dst / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "ab") as f:
                f.write(b"".join(pieces[r]))
        yield r


def _rounds_by_files(src: Path, dst: Path, parts: int, seed: int):
    """Whole files, a share per round (the review's two-step run: subagent files of sessions
    closed in an earlier round arrive later)."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    random.Random(seed).shuffle(files)
    for r in range(parts):
        for p in files[r::parts]:
            out = dst / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, out)
        yield r


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "claude"
    # ended two days ago: every session is idle by the end of each round
    generate(root, files=30, target_bytes=1_500_000, seed=21,
             start=datetime.now(UTC) - timedelta(days=2))  # fmt: skip
    return root, ccusage_totals(root)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("rounds", "parts", "idle"),
    [(_rounds_by_lines, 2, 600), (_rounds_by_lines, 4, 600), (_rounds_by_lines, 3, 0),
     (_rounds_by_files, 2, 600), (_rounds_by_files, 3, 0)],
    ids=["lines-2", "lines-4", "lines-3-idle0", "files-2", "files-3-idle0"],
)  # fmt: skip
def test_rounds_with_closes_and_restarts(corpus, tmp_path, rounds, parts, idle):
    src, want = corpus
    claude, state = tmp_path / "claude", tmp_path / "state"
    cfg = _cfg(claude, state, idle)
    m = Mem()
    for _ in rounds(src, claude, parts, seed=parts):
        app.backfill(cfg)
        backfill_traces(cfg, state / "state.db", since=0, sink=SdkSpanSink(m, {"service.name": "ccotel"}))  # fmt: skip
    spans = m.spans()
    _once(spans)
    got = chat_totals(spans)
    assert_equal_totals(got, want)
    fixes = [s for s in spans if s.attributes.get("ccotel.usage.correction")]
    if rounds is _rounds_by_lines:
        assert fixes, "the cuts split no response across rounds: the test tests nothing"
    for f in fixes:  # a correction names the chat span it corrects, in its own trace or another
        assert f.name.endswith(" correction") and f.attributes["gen_ai.operation.name"] == "chat"
        assert int(f.attributes["ccotel.usage.corrects_span_id"], 16)


def test_a_late_line_after_an_idle_close_is_a_correction(tmp_path):
    """Default idleness: a tool runs 11 minutes between two lines of one response."""
    t = T(tmp_path / "claude")
    cfg = _cfg(tmp_path / "claude", tmp_path / "state", 600)
    clock, m = Clock(T0 + 3), Mem()
    t.write([t.prompt(0), t.assistant(1, "m1", [t.use("toolu_1", command="make")], out=8)])
    app.backfill(cfg)
    clock.t = T0 + 1 + 660  # idle: the session closes with m1 as read so far
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    sh.close()
    chats = [s for s in m.spans() if s.name.startswith("chat")]
    assert [c.attributes["gen_ai.usage.output_tokens"] for c in chats] == [8]
    t.write([t.result(661, "toolu_1"), t.assistant(662, "m1", [{"type": "text", "text": "done"}], out=800)])  # fmt: skip
    app.backfill(cfg)
    clock.t = T0 + 2000
    sh = shipper(cfg, m, clock)  # a restart in between
    assert sh.run_pass()
    sh.close()
    spans = m.spans()
    _once(spans)
    chats = [s for s in spans if s.name.startswith("chat")]
    assert [c.attributes["gen_ai.usage.output_tokens"] for c in chats] == [8, 792]
    fix = chats[1]
    assert fix.attributes["ccotel.usage.correction"] == 1
    assert fix.parent.span_id == chats[0].context.span_id  # under the chat it corrects
    assert fix.attributes["gen_ai.response.model"] == chats[0].attributes["gen_ai.response.model"]
    assert sum(c.attributes["gen_ai.usage.cost.amount"] for c in chats) == pytest.approx(
        ccusage_totals(tmp_path / "claude")["totalCost"], rel=1e-9
    )


def test_session_idle_zero_waits_for_the_response(tmp_path):
    """session_idle = 0: a response still being read is sent once its last line is
    RESPONSE_GRACE old, not at the first close; a final stop reason sends it at once."""
    t = T(tmp_path / "claude")
    cfg = _cfg(tmp_path / "claude", tmp_path / "state", 0)
    clock, m = Clock(T0 + 2), Mem()
    t.write([t.prompt(0), t.assistant(1, "m1", [{"type": "text", "text": "a"}], out=8)])
    app.backfill(cfg)
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    assert not [s for s in m.spans() if s.name.startswith("chat")]  # not final, not old enough
    t.write([t.assistant(3, "m1", [{"type": "text", "text": "b"}], out=500)])
    app.backfill(cfg)
    clock.t = T0 + 3 + RESPONSE_GRACE
    assert sh.run_pass()
    chats = [s for s in m.spans() if s.name.startswith("chat")]
    assert [c.attributes["gen_ai.usage.output_tokens"] for c in chats] == [500]
    assert [s.name for s in m.spans() if s.parent is None] == ["invoke_agent claude-code"]
    t.write([t.prompt(10), t.assistant(11, "m2", [{"type": "text", "text": "c"}], out=9, stop="end_turn")])  # fmt: skip
    app.backfill(cfg)
    clock.t = T0 + 12  # well within the grace: the stop reason says m2 is complete
    assert sh.run_pass()
    sh.close()
    chats = [s for s in m.spans() if s.name.startswith("chat")]
    assert [c.attributes["gen_ai.usage.output_tokens"] for c in chats] == [500, 9]
    _once(m.spans())


def test_a_subagent_file_after_its_session_closed_is_not_sent_twice(tmp_path):
    """The review's 17 duplicates: a subagent whose span was sent at its session's close,
    whose file is read (or grows) later."""
    t = T(tmp_path / "claude")
    cfg = _cfg(tmp_path / "claude", tmp_path / "state", 600)
    clock, m = Clock(T0 + 5000), Mem()
    t.write([t.prompt(0), t.assistant(1, "m1", [t.use("toolu_a", "Agent", subagent_type="x")])])
    t.write([t.prompt(2, agent="ag1"), t.assistant(3, "s1", [{"type": "text", "text": "x"}], agent="ag1")],
            agent="ag1", meta={"agentType": "x", "toolUseId": "toolu_a"})  # fmt: skip
    t.write([t.result(4, "toolu_a", agent_id="ag1"), t.assistant(5, "m2", [{"type": "text", "text": "y"}], stop="end_turn")])  # fmt: skip
    app.backfill(cfg)
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    sh.close()
    t.write([t.assistant(6, "s2", [{"type": "text", "text": "late"}], agent="ag1", stop="end_turn")], agent="ag1")  # fmt: skip
    app.backfill(cfg)
    clock.t = T0 + 9000
    sh = shipper(cfg, m, clock)
    assert sh.run_pass()
    sh.close()
    spans = m.spans()
    _once(spans)
    agents = [s for s in spans if s.name == "invoke_agent x"]
    assert len(agents) == 1
    late = next(s for s in spans if s.attributes.get("gen_ai.response.id") == "s2")
    assert late.parent.span_id == agents[0].context.span_id  # under the span sent before
    assert_equal_totals(chat_totals(spans), ccusage_totals(tmp_path / "claude"))


@pytest.mark.timeout(120)
def test_live_split_response_with_session_idle_zero(tmp_path):
    """Review 1's reproduction through the real daemon: the sum of the chat spans (the span
    and its correction, if the first line was sent alone) is what /metrics shows."""
    root, sid = tmp_path / "claude", "22222222-2222-2222-2222-222222222222"
    path = root / "projects" / "-home-u-split" / f"{sid}.jsonl"
    path.parent.mkdir(parents=True)
    now = datetime.now(UTC)
    user = {"parentUuid": None, "isSidechain": False, "type": "user", "uuid": "u0",
            "message": {"role": "user", "content": "hi"}, "cwd": "/home/u/split",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "sessionId": sid}  # fmt: skip
    a1 = assistant_record(session_id=sid, cwd="/home/u/split", usage=Usage(5, 10, 100, 0, 1000),
                          message_id="msg_s1", request_id="req_s1", timestamp=now, parent_uuid="u0")  # fmt: skip
    a1["message"]["stop_reason"] = None
    a2 = copy.deepcopy(a1)
    a2["uuid"], a2["message"]["stop_reason"] = "u2", "end_turn"
    a2["message"]["usage"]["output_tokens"] = 900
    append_lines(path, [user, a1])
    port = free_port()
    with Receiver() as r:
        env = clean_env(tmp_path, CCOTEL_TRACES="true", CCOTEL_SESSION_IDLE="0",
                        CCOTEL_METRICS_PUSH_INTERVAL="0")  # fmt: skip
        args = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(root), "--state-dir",
                str(tmp_path / "s"), "--metrics-addr", f"127.0.0.1:{port}", "--otlp-endpoint", r.url]  # fmt: skip
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # the first line alone, sent once RESPONSE_GRACE passed (the session idle at once)
            r.wait(lambda: any(s.name.startswith("chat") for s in r.spans()), 30)
            append_lines(path, [a2])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                chats = [s.attrs["gen_ai.usage.output_tokens"] for s in r.spans() if s.name.startswith("chat")]  # fmt: skip
                if 'type="output"} 900.0' in m and sum(chats) == 900:
                    break
                time.sleep(0.5)
            time.sleep(6)  # a trace pass more: nothing more is sent
        finally:
            p.terminate()
            p.wait()
        chats = [s for s in r.spans() if s.name.startswith("chat")]
    assert 'type="output"} 900.0' in m
    assert [s.attrs["gen_ai.usage.output_tokens"] for s in chats] == [10, 890]
    assert chats[1].attrs["ccotel.usage.correction"] == 1
