"""What lets an idle daemon sleep and a scrape stay cheap: the trace exporter knows when the
next session is due to close (and sleeps until then, or until new lines); a missing collector
costs an empty request per retry; /metrics remembers its formatted sample lines."""

from __future__ import annotations

import math

from ccotel.traces.builder import Builder, Options
from ccotel.traces.model import Session


def test_next_due_is_the_first_time_due_returns_a_session():
    b = Builder(Options(), lambda key: None, lambda key: False)
    assert b.next_due(600) is None  # nothing open: nothing is due until a line arrives
    b.sessions["a"] = Session("a", first=100.0, last=1000.0)
    b.sessions["b"] = Session("b", first=100.0, last=400.0)
    b.sessions["c"] = Session("c", last=10.0, closed=True)
    # a finished -p run closes after the grace period instead of the idle time
    b.sessions["d"] = Session("d", last=900.0, finished=True, sdk=True, main_last="assistant")
    due = b.next_due(600)
    assert due == 905.0
    assert b.due(due - 0.001, 600) == [] and b.due(due, 600) == ["d"]
    assert b.due(1000.0, 600) == ["b", "d"] and b.due(1600.0, 600) == ["a", "b", "d"]
    del b.sessions["d"]
    assert b.next_due(600) == 1000.0
    b.sessions["e"] = Session("e")  # no time at all: due at once
    assert b.next_due(600) == -math.inf and "e" in b.due(0.0, 600)
    assert b.next_due(0) == -math.inf  # session_idle 0: every open session is due


def test_no_collector_yet_costs_an_empty_request_not_a_pass(tmp_path):
    """While nothing has ever answered at the endpoint, a retry is an empty request first; the
    transcripts are read (a pass) only once something answers."""
    import structlog

    from ccotel import app
    from ccotel.otlp import ExportHealth
    from ccotel.traces.service import TraceThread, options, span_sink
    from ccotel.traces.shipper import Shipper
    from tests.conftest import FIXTURES, free_port
    from tests.test_traces import cfg_for
    from tests.test_traces_receiver import Receiver

    src, port = FIXTURES / "claude-2.1.38", free_port()
    cfg = cfg_for(src, tmp_path / "state", otlp_endpoint=f"http://127.0.0.1:{port}")
    app.backfill(cfg)
    sink = span_sink(cfg)
    shipper = Shipper(cfg.resolved_state_dir() / "state.db", sink, options(cfg), since=0)
    passes = []
    real_pass = shipper.run_pass
    shipper.run_pass = lambda: passes.append(1) or real_pass()  # type: ignore[method-assign]
    health = ExportHealth(structlog.get_logger(), "traces", sink.target.where, False, 0.05)
    th = TraceThread(shipper, health)
    try:
        th._once()  # the first pass: refused
        assert passes == [1] and health.state == "waiting" and health.backoff.failures == 1
        for n in (2, 3):
            assert th._reachable() is False  # still nobody: no pass, one more failure
            assert passes == [1] and health.backoff.failures == n
        with Receiver(port=port) as r:
            assert th._reachable() is True and r.got.requests == 1  # the empty request
            th._once()
            assert passes == [1, 1] and health.state == "ok" and r.got.spans
            sent = r.got.requests
            assert th._reachable() is True and r.got.requests == sent  # answered: no probing
    finally:
        sink.shutdown()
        shipper.close()


def backfilled_totals(tmp_path):
    """The in-memory totals of a state backfilled from one real fixture (Claude Code 2.1.38)."""
    import time

    from ccotel import app
    from ccotel.state import Store
    from ccotel.totals import Totals
    from tests.conftest import FIXTURES
    from tests.test_traces import cfg_for

    cfg = cfg_for(FIXTURES / "claude-2.1.38", tmp_path / "state")
    app.backfill(cfg)
    store = Store(cfg.resolved_state_dir())
    try:
        return Totals.load(store, time.time())
    finally:
        store.close()


def test_text_exposition_equals_the_library_byte_for_byte(tmp_path):
    """The remembered-lines renderer writes what prometheus-client's generate_latest writes, on
    the daemon's own collector (real transcripts, odd project names), before and after changes."""
    import time

    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from ccotel.batch import UsageSums
    from ccotel.projects import project_labeler
    from ccotel.server.exposition import TextExposition
    from ccotel.sinks import TotalsCollector

    totals = backfilled_totals(tmp_path)
    assert totals.usage and totals.tool_agg
    reg = CollectorRegistry(auto_describe=False)
    collector = TotalsCollector(totals, project_labeler("name"), {"1h": 2.5}, time.time)
    reg.register(collector)
    text = TextExposition()
    for odd in ('/home/u/quote"d', "/home/u/back\\slash", "/home/u/new\nline", "/home/u/ünï"):
        assert text.render(reg) == generate_latest(reg)
        totals.usage[("claude-x", odd)] = UsageSums(1, 2, 3, 4, 5, 0, 1, 0.25, 0)
        key = next(iter(totals.usage))
        totals.usage[key] = UsageSums(9, 9, 9, 9, 9, 9, 9, 9.5, 9)  # a value moved
        totals.version += 1  # as a merge does: the collector's usage families are made again
    body = text.render(reg)
    assert body == generate_latest(reg) and b'quote\\"d' in body and b"new\\nline" in body
    assert text.render(reg) == body  # unchanged: the families' texts are reused
    totals.usage[key] = UsageSums(7, 7, 7, 7, 7, 7, 7, 7.25, 7)
    assert text.render(reg) == body  # changed without a merge: not seen (merges are the writers)
    totals.version += 1
    body = text.render(reg)
    assert body == generate_latest(reg) and b"} 7.25\n" in body

    # A merge that moves one (model, project) row: only that row's samples (5 token types,
    # cost, requests, web searches) are looked up or formatted again; the other rows' sample
    # objects are the collector's from before, their lines reused as they are.
    looked: list[str] = []

    class Looked(dict):
        def get(self, key, default=None):
            looked.append(key[0])
            return super().get(key, default)

    text._lines = Looked(text._lines)
    totals.usage[key] = UsageSums(101, 102, 103, 104, 105, 106, 107, 108.5, 0)
    totals.version += 1
    body = text.render(reg)
    assert body == generate_latest(reg) and b"} 108.5\n" in body
    usage = ("ccotel_tokens", "ccotel_cost", "ccotel_requests", "ccotel_web")
    assert sorted(n for n in looked if n.startswith(usage)) == sorted(
        ["ccotel_tokens_total"] * 5
        + ["ccotel_cost_usd_total", "ccotel_requests_total", "ccotel_web_search_requests_total"]
    )
    # ... and the usage families are formatted a row at a time: each row's run of samples is
    # remembered as one piece (a row unchanged since the last text costs one lookup)
    rows = len(collector._usage_rows)
    assert rows >= 5
    for name in ("ccotel_tokens_total", "ccotel_cost_usd_total"):
        kept = text._samples[name]
        assert sum(isinstance(obj, list) for obj, _ in kept.values()) == rows
    again = text._samples["ccotel_tokens_total"]
    totals.version += 1  # a merge that moved nothing: every row is found whole
    assert text.render(reg) == generate_latest(reg)
    assert {id(o) for o, _ in text._samples["ccotel_tokens_total"].values()} == {
        i for i, (o, _) in again.items() if isinstance(o, list)
    }


def test_statusline_worker_sleeps_until_there_is_work(tmp_path):
    """The plan/blocks worker has no timer while idle; plan rows a failed write kept bring it
    back every WORK_EVERY, a commit that makes a full block recomputation due wakes it (and it
    runs no sooner than FULL_EVERY after the last)."""
    from ccotel.batch import Batch, Response
    from ccotel.blocks_live import FULL_EVERY
    from ccotel.config import Config
    from ccotel.state import Store
    from ccotel.statusline import Hub
    from ccotel.statusline.daemon import WORK_EVERY
    from ccotel.totals import Totals

    store = Store(tmp_path)
    h = Hub(Config(), tmp_path, Totals(), {}, restore=store.db)
    try:
        assert h._next_round() is None  # not ready, nothing pending
        h.ready.set()
        assert h._next_round() is None or h.blocks.pending  # a first full run is pending
        h.blocks.refresh(force=True)
        assert h._next_round() is None and not h._wake.is_set()
        b = Batch()
        b.responses[1] = Response(1, 1, "s", "/p", "m", 1.7e9, 1, 1, 0, 0, 0, 0, 0, 0, 0.1, 1)
        h.committed(b)  # an entry before the tail: a full recomputation is due
        assert h._wake.is_set() and h.blocks.pending
        assert WORK_EVERY <= h._next_round() <= FULL_EVERY
        h.take({"session_id": "s", "rate_limits": {"five_hour": {"used_percentage": 5}}})
        h.plan.put_back(h.plan.take_changes())  # as after a refused write
        assert h.plan.has_changes() and h._next_round() == WORK_EVERY
    finally:
        h.stop()
        store.close()
