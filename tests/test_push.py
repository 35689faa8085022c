"""The OTLP metrics push for a team (issue 14 §1, §3, §4), decoded with opentelemetry-proto:

- Claude Code's own metrics (native_metrics): names, units, meter, monotonic cumulative sums,
  user.id per point, user/host in the resource, no session label, exemplars on the cost;
  and the same metrics under the contract's names on /metrics;
- service.instance.id and the counters' start time, kept across restarts;
- OTEL_METRIC_EXPORT_INTERVAL and OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, after
  ccotel's own keys and before the defaults; delta and lowmemory as the SDKs mean them, exact
  through a failed push and a restart;
- the team profile: a laptop with 20 projects and 4 models under 500 series, no pushed counter
  ever going down.
"""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pbm
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ccotel.batch import ToolAgg, UsageSums
from ccotel.config import load
from ccotel.otlp.profile import PushState, TeamProfile
from ccotel.otlp.settings import push_identity, push_interval, push_temporality
from ccotel.pipeline import Ingest
from ccotel.projects import project_labeler
from ccotel.sinks.native import NativeCollector
from ccotel.sinks.outcomes import OutcomeCollector
from ccotel.sinks.prometheus import TotalsCollector
from ccotel.state import OutcomeTotals
from ccotel.state.store import Store
from ccotel.totals import Totals
from tests.conftest import FIXTURES, free_port
from tests.pushed import Collector
from tests.test_deploy_native_dashboards import NATIVE
from tests.test_live import start
from tests.test_traces_receiver import Answer, Receiver

NATIVE_UNITS = {
    "claude_code.token.usage": "tokens",
    "claude_code.cost.usage": "USD",
    "claude_code.session.count": "",
    "claude_code.lines_of_code.count": "",
    "claude_code.commit.count": "",
    "claude_code.pull_request.count": "",
    "claude_code.active_time.total": "s",
}
NATIVE_KEYS = {  # data point attributes, as Claude Code sets them (user.id on every point)
    "claude_code.token.usage": {"type", "model", "user.id"},
    "claude_code.cost.usage": {"model", "user.id"},
    "claude_code.lines_of_code.count": {"type", "user.id"},
}


def attrs(kvs) -> dict:
    return {kv.key: kv.value.string_value for kv in kvs}


def registry_of(totals: Totals, outcomes: OutcomeTotals, native: bool = True) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    tc = TotalsCollector(totals, project_labeler("name"), {"1h": 5.0}, time.time)
    reg.register(tc)
    reg.register(OutcomeCollector(outcomes, totals, tc.project))
    if native:
        reg.register(NativeCollector(totals, outcomes))
    return reg


@pytest.fixture(scope="module")
def fixture_registry(tmp_path_factory):
    """What a daemon over the real 2.1.39 sessions shows (read in this process, so the cost
    carries its exemplars)."""
    state = tmp_path_factory.mktemp("state")
    cfg = load(
        env={}, flags={"claude_dirs": [str(FIXTURES / "claude-2.1.39")], "state_dir": str(state)}
    )
    store = Store(state)
    try:
        ing = Ingest(cfg, store, [FIXTURES / "claude-2.1.39"], time.time)
        ing.backfill(ing.scan(), 1)
        return registry_of(ing.totals, ing.acct.outcomes.totals)
    finally:
        store.close()


def push_once(reg, state_dir: Path | None = None, **flags):
    """One push of ``reg`` by a MetricsPusher to a Receiver: (decoded request, pusher)."""
    from ccotel.traces.service import MetricsPusher

    with Receiver() as r:
        cfg = load(env={}, flags={"otlp_endpoint": r.url, **flags})
        p = MetricsPusher(cfg, lambda: list(reg.collect()), 15, (123_000, "inst-1"), state_dir)
        assert p.push(), p.health.as_dict()
        p.sender.shutdown()
        return r.got.metrics[-1], p


def test_native_metrics_over_otlp_as_claude_code_sends_them(fixture_registry):
    req, _ = push_once(fixture_registry, resource_user="ana", resource_host="lap-1")
    (rm,) = req.resource_metrics
    res = attrs(rm.resource.attributes)
    assert (res["user.name"], res["host.name"], res["service.instance.id"]) == (
        "ana",
        "lap-1",
        "inst-1",
    )
    scopes = {sm.scope.name: sm for sm in rm.scope_metrics}
    assert set(scopes) == {"ccotel", "com.anthropic.claude_code"}
    native = {m.name: m for m in scopes["com.anthropic.claude_code"].metrics}
    assert {n: m.unit for n, m in native.items()} == NATIVE_UNITS
    for name, m in native.items():
        assert m.WhichOneof("data") == "sum" and m.sum.is_monotonic, name
        assert m.sum.aggregation_temporality == pbm.AGGREGATION_TEMPORALITY_CUMULATIVE
        for p in m.sum.data_points:
            a = attrs(p.attributes)
            assert set(a) == NATIVE_KEYS.get(name, {"user.id"}), (name, a)
            assert a["user.id"] == "ana" and p.start_time_unix_nano == 123_000
    types = {attrs(p.attributes)["type"] for p in native["claude_code.token.usage"].sum.data_points}
    assert types == {"input", "output", "cacheRead", "cacheCreation"}
    assert native["claude_code.commit.count"].sum.data_points[0].as_double == 21
    cost = native["claude_code.cost.usage"].sum.data_points
    assert sum(p.as_double for p in cost) == pytest.approx(50.688711, rel=1e-6)  # ccusage's
    sessions = {  # the trace ids of the fixture's sessions (their UUIDs)
        s.replace("-", "")
        for s in ("258c7280-ae70-4798-800f-63464d01a85d", "8463c716-a2ea-4c14-9efa-87158ebd9f20",
                  "ae4a77f8-aedd-4bc1-888f-c94edc91af04", "fa812bfe-b295-4cca-9c2f-fdf01028cb46",
                  "4d5611e5-241a-462a-8d15-5122611a9569")
    }  # fmt: skip
    exemplars = [e for p in cost for e in p.exemplars]
    assert exemplars and all(e.trace_id.hex() in sessions for e in exemplars)
    own = {m.name: m for m in scopes["ccotel"].metrics}
    ex = [e for p in own["ccotel_cost_usd"].sum.data_points for e in p.exemplars]
    assert ex and all(len(e.trace_id) == 16 and e.as_double > 0 for e in ex)
    assert {"ccotel_code_lines", "ccotel_commits", "ccotel_pull_requests"} <= set(own)
    for m in (*native.values(), *own.values()):  # no session on any series
        for p in getattr(m, m.WhichOneof("data")).data_points:
            assert not {"session", "session.id", "session_id"} & set(attrs(p.attributes))


def test_the_collector_names_them_as_the_native_dashboards_query_them(fixture_registry):
    """Through the exporter's naming (tests/pushed.py), the pushed native metrics are the very
    Prometheus names /metrics shows, with user_id from the point attribute."""
    req, _ = push_once(fixture_registry, resource_user="ana")
    c = Collector()
    c._receive(req)
    got = {}
    for fam in c.collect():
        for s in fam.samples:
            if s.name.startswith("claude_code_"):
                got.setdefault(s.name, set()).update(s.labels)
    assert set(got) == set(NATIVE)
    for name, keys in got.items():
        assert keys - {"job", "instance", "host", "user", "user_id"} == NATIVE[name], name


def test_the_push_has_the_series_metrics_has_zeros_included(fixture_registry):
    """What the collector makes of a push (tests/pushed.py) is what /metrics shows, series by
    series, zeros included: a zero ccotel_web_search_requests per model and project with no
    search is on both sides (kept: increase() counts a first search only on a series that
    existed before it), and nothing is on one side only."""
    from prometheus_client import generate_latest

    def own(samples, drop=()) -> dict:
        return {
            (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in drop))): s.value
            for s in samples
            if s.name.startswith("ccotel_") and not s.name.endswith("_created")
        }

    t, o = typical_laptop(projects=3, models=2, tools=1)
    searched = ("claude-model-1", "/home/dev/src/project-02")
    for key, u in t.usage.items():
        u.web_search = 4 if key == searched else 0
    for reg in (registry_of(t, o), fixture_registry):
        text = generate_latest(reg).decode()
        shown = own(s for f in text_string_to_metric_families(text) for s in f.samples)
        req, _ = push_once(reg)
        c = Collector()
        c._receive(req)
        pushed = own(
            (s for f in c.collect() for s in f.samples), ("job", "instance", "host", "user")
        )
        web = {k: v for k, v in shown.items() if k[0] == "ccotel_web_search_requests_total"}
        assert web and 0 in web.values()
        assert {k: v for k, v in pushed.items() if k in shown} == pytest.approx(
            {k: v for k, v in shown.items() if k in pushed}
        )
        assert set(pushed) == set(shown), set(pushed) ^ set(shown)
    assert web == {  # the last: the fixture (real sessions, no search)
        k: 0.0 for k in web
    }


def scrape(port: int) -> list:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return [s for f in text_string_to_metric_families(body) for s in f.samples]


@pytest.mark.timeout(120)
def test_native_metrics_on_metrics_exactly_and_only_when_asked(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    port = free_port()
    for native, state in ((True, "a"), (False, "b")):
        e = env | ({"CCOTEL_NATIVE_METRICS": "true"} if native else {})
        proc = start(FIXTURES / "claude-2.1.39", tmp_path / state, port, e)
        try:
            samples = scrape(port)
        finally:
            proc.kill()
            proc.wait(10)
        names = {s.name for s in samples if s.name.startswith("claude_code_")}
        assert names == (set(NATIVE) if native else set())
        for s in samples:
            if s.name in NATIVE:
                assert set(s.labels) == NATIVE[s.name], s
        if native:
            by = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
            assert by[("claude_code_commit_count_total", ())] == 21
            own = sum(v for (n, _), v in by.items() if n == "ccotel_cost_usd_total")
            nat = sum(v for (n, _), v in by.items() if n == "claude_code_cost_usage_USD_total")
            assert nat == pytest.approx(own, rel=1e-12)


# --- identity across restarts ---------------------------------------------------------------


@pytest.mark.timeout(120)
def test_instance_and_start_time_survive_a_restart(tmp_path):
    """A real daemon pushing native metrics: kill -9, start again; the resource keeps its
    service.instance.id and every counter its start time (the exporter's _created), while a
    second daemon on another state is another instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    with Receiver() as r:
        env |= {"CCOTEL_OTLP_ENDPOINT": r.url, "CCOTEL_NATIVE_METRICS": "1", "CCOTEL_TRACES": "false",
                "OTEL_METRIC_EXPORT_INTERVAL": "300"}  # fmt: skip
        seen = []
        for state in ("s", "s", "other"):
            n = len(r.got.metrics)
            proc = start(FIXTURES / "claude-2.1.197", tmp_path / state, free_port(), env)
            try:
                deadline = time.monotonic() + 20
                while len(r.got.metrics) == n and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                proc.kill()
                proc.wait(10)
            req = r.got.metrics[-1]
            (rm,) = req.resource_metrics
            starts = {
                p.start_time_unix_nano
                for sm in rm.scope_metrics
                for m in sm.metrics
                if m.WhichOneof("data") == "sum"
                for p in m.sum.data_points
            }
            assert len(starts) == 1
            seen.append((attrs(rm.resource.attributes)["service.instance.id"], starts.pop()))
            time.sleep(0.01)
    assert seen[0] == seen[1]  # the same daemon's state: the same identity
    assert seen[2][0] != seen[0][0] and seen[2][1] > seen[0][1]


def test_push_identity_is_set_once(tmp_path):
    s = Store(tmp_path)
    try:
        first = push_identity(s, now_ns=5)
        assert first[0] == 5 and len(first[1]) == 36
        assert push_identity(s, now_ns=99) == first
    finally:
        s.close()


# --- the SDKs' variables ----------------------------------------------------------------------


def test_interval_and_temporality_follow_the_key_then_the_variable_then_the_default():
    cfg = load(env={}, flags={})
    assert push_interval(cfg, {}) == 15
    assert push_interval(cfg, {"OTEL_METRIC_EXPORT_INTERVAL": "60000"}) == 60
    assert push_interval(cfg, {"OTEL_METRIC_EXPORT_INTERVAL": " 2500 "}) == 2.5
    keyed = load(env={"CCOTEL_METRICS_PUSH_INTERVAL": "7"}, flags={})
    assert push_interval(keyed, {"OTEL_METRIC_EXPORT_INTERVAL": "60000"}) == 7
    off = load(env={"CCOTEL_METRICS_PUSH_INTERVAL": "0"}, flags={})
    assert push_interval(off, {"OTEL_METRIC_EXPORT_INTERVAL": "60000"}) == 0
    for bad in ("soon", "-5", "0", "nan", "inf"):
        with pytest.raises(ValueError, match="OTEL_METRIC_EXPORT_INTERVAL"):
            push_interval(cfg, {"OTEL_METRIC_EXPORT_INTERVAL": bad})
    var = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
    assert push_temporality(cfg, {}) == "cumulative"
    assert push_temporality(cfg, {var: "Delta"}) == "delta"
    assert push_temporality(cfg, {var: "LOWMEMORY"}) == "lowmemory"
    keyed = load(env={"CCOTEL_METRICS_PUSH_TEMPORALITY": "cumulative"}, flags={})
    assert push_temporality(keyed, {var: "delta"}) == "cumulative"
    with pytest.raises(ValueError, match=var):
        push_temporality(cfg, {var: "sometimes"})


def test_a_bad_variable_turns_the_push_off_with_one_line(tmp_path, monkeypatch):
    from structlog.testing import capture_logs

    from ccotel.traces.service import Exporters

    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon")
    cfg = load(env={}, flags={"otlp_endpoint": "http://127.0.0.1:9", "traces": False})
    ex = Exporters(cfg, tmp_path / "state.db")
    with capture_logs() as logs:
        ex.attach_registry(CollectorRegistry())
    h = ex.health()["metrics_push"]
    assert (
        ex.pusher is None
        and h["state"] == "failing"
        and "OTEL_METRIC_EXPORT_INTERVAL" in h["error"]
    )
    assert [e["log_level"] for e in logs] == ["error"]


@pytest.mark.timeout(60)
def test_the_daemon_pushes_at_the_variables_interval(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    with Receiver() as r:
        env |= {
            "CCOTEL_OTLP_ENDPOINT": r.url,
            "CCOTEL_TRACES": "false",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        proc = start(FIXTURES / "claude-2.1.197", tmp_path / "s", port := free_port(), env)
        try:
            time.sleep(2.5)
            h = json_get(port, "/healthz")["metrics_push"]
        finally:
            proc.kill()
            proc.wait(10)
    assert h["interval_seconds"] == 0.2
    assert 6 <= len(r.got.metrics) <= 14  # ~2.3 s of pushes every 0.2 s, on a busy machine


def json_get(port: int, path: str) -> dict:
    import json

    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read())


class Counting:
    """A registry whose counter, gauge and histogram move between pushes."""

    def __init__(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        self.n = 0
        self.C, self.G, self.H = CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    def collect(self):
        c = self.C("ccotel_tokens", "Tokens", labels=["type"])
        c.add_metric(["input"], 100 * self.n)
        yield c
        yield self.G("ccotel_spend_usd", "Spend", value=float(self.n))
        h = self.H("ccotel_tool_duration_seconds", "Durations", labels=["tool"])
        h.add_metric(["Bash"], [("1.0", self.n), ("+Inf", 2 * self.n)], 3.0 * self.n)
        yield h


def points(req) -> dict:
    out = {}
    for sm in req.resource_metrics[0].scope_metrics:
        for m in sm.metrics:
            d = getattr(m, m.WhichOneof("data"))
            p = d.data_points[0]
            temp = getattr(d, "aggregation_temporality", None)
            if m.WhichOneof("data") == "histogram":
                out[m.name] = (temp, p.count, list(p.bucket_counts), p.sum, p.start_time_unix_nano)
            else:
                out[m.name] = (temp, p.as_double, p.start_time_unix_nano)
    return out


@pytest.mark.parametrize("pref", ["delta", "lowmemory", "cumulative"])
def test_temporality_through_a_failed_push_and_a_restart(tmp_path, pref, monkeypatch):
    """Deltas are what the collector has not accepted yet: a refused push's share arrives with
    the next one, and a restarted pusher (push_state.json) goes on from what was accepted."""
    from ccotel.traces.service import MetricsPusher

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", pref)
    reg = Counting()
    refuse = {"now": False}
    got = []

    def answer(n, req):
        if refuse["now"]:
            return Answer(503)
        got.append(points(req))

    with Receiver(answer_metrics=answer) as r:
        cfg = load(env={}, flags={"otlp_endpoint": r.url, "otlp_retry_max": 0.05})

        def pusher():
            return MetricsPusher(cfg, lambda: list(reg.collect()), 15, (1, "i"), tmp_path)

        p = pusher()
        for n, refused in ((1, False), (2, True), (3, False)):
            reg.n, refuse["now"] = n, refused
            assert p.push() is not refused
        p.sender.shutdown()
        reg.n = 5
        p = pusher()  # a restart
        assert p.push()
        p.sender.shutdown()
    cum, delta = pbm.AGGREGATION_TEMPORALITY_CUMULATIVE, pbm.AGGREGATION_TEMPORALITY_DELTA
    tokens = [g["ccotel_tokens"][:2] for g in got]
    hist = [g["ccotel_tool_duration_seconds"][:4] for g in got]
    if pref == "cumulative":
        assert tokens == [(cum, 100), (cum, 300), (cum, 500)]
        assert hist == [(cum, 2, [1, 1], 3.0), (cum, 6, [3, 3], 9.0), (cum, 10, [5, 5], 15.0)]
    if pref == "delta":
        assert tokens == [(delta, 100), (delta, 200), (delta, 200)]
    if pref == "lowmemory":
        assert tokens == [(cum, 100), (cum, 300), (cum, 500)]
    if pref != "cumulative":
        assert hist == [(delta, 2, [1, 1], 3.0), (delta, 4, [2, 2], 6.0), (delta, 4, [2, 2], 6.0)]
        starts = [g["ccotel_tool_duration_seconds"][4] for g in got]
        assert starts[0] == 1 and starts[0] < starts[1] < starts[2]  # each from the last accepted
    if pref == "delta":  # each point starts where the last accepted one ended (the exporter
        # adds a delta to its running total only then)
        starts = [g["ccotel_tokens"][2] for g in got]
        assert starts[0] == 1 and starts[0] < starts[1] < starts[2]
    else:
        assert {g["ccotel_tokens"][2] for g in got} == {1}
    assert [g["ccotel_spend_usd"][:2] for g in got] == [(None, 1.0), (None, 3.0), (None, 5.0)]


# --- the team profile -----------------------------------------------------------------------


def typical_laptop(
    projects: int = 20, models: int = 4, tools: int = 12
) -> tuple[Totals, OutcomeTotals]:
    """A laptop's totals: every project used every model and tool, with commits."""
    t, o = Totals(), OutcomeTotals()
    names = [f"claude-model-{m}" for m in range(models)]
    for p in range(projects):
        cwd = f"/home/dev/src/project-{p:02d}"
        t.sessions_by_cwd[cwd] = 3 + p
        t.recent[(f"s{p}", cwd)] = time.time()
        for m, model in enumerate(names):
            t.usage[(model, cwd)] = UsageSums(
                1000 * (p + 1),
                100,
                10000,
                500,
                0,
                1,
                7,
                (p + 1) * (m + 1) * 0.5,
                0,
            )
        for k in range(tools):
            for status in ("ok", "error"):
                t.tool_agg[(f"Tool{k}", cwd, status)] = ToolAgg(3, 1.5, [1] * 15)
        o.by_cwd[cwd] = [40, 10, 2, 1, 60000]
    t.sessions = sum(t.sessions_by_cwd.values())
    return t, o


def series(req) -> int:
    """Prometheus series the collector makes of a push (histograms: buckets, _sum, _count)."""
    c = Collector()
    c._receive(req)
    return sum(len(f.samples) for f in c.collect())


def test_a_typical_laptop_pushes_under_500_series_in_the_team_profile(tmp_path):
    t, o = typical_laptop()
    reg = registry_of(t, o)
    full, _ = push_once(reg)
    team, _ = push_once(reg, state_dir=tmp_path, metrics_push_profile="team")
    n_full, n_team = series(full), series(team)
    assert n_full > 1000 and n_team < 500, (n_full, n_team)
    c = Collector()
    c._receive(team)
    fams = {f.name: f for f in c.collect()}
    projects = {s.labels["project"] for s in fams["ccotel_cost_usd"].samples}
    assert projects == {
        "project-19",
        "project-18",
        "project-17",
        "project-16",
        "project-15",
        "other",
    }
    assert "ccotel_tool_duration_seconds" not in fams
    assert all("project" not in s.labels for s in fams["ccotel_tool_calls"].samples)
    # nothing is lost in the fold: the sums are the full push's
    c2 = Collector()
    c2._receive(full)
    full_fams = {f.name: f for f in c2.collect()}
    for name in (
        "ccotel_cost_usd",
        "ccotel_tokens",
        "ccotel_tool_calls",
        "ccotel_sessions",
        "ccotel_commits",
    ):
        assert sum(s.value for s in fams[name].samples) == pytest.approx(
            sum(s.value for s in full_fams[name].samples)
        ), name


def test_the_team_profile_never_makes_a_pushed_counter_go_down(tmp_path):
    """A new project that outspends the named ones, a restart: the names stay, "other" only
    grows (a project moved out of it would make it drop, which Prometheus reads as a reset)."""
    t, o = typical_laptop(projects=8)
    state = PushState(tmp_path / "push_state.json")
    profile = TeamProfile(5, state)
    reg = registry_of(t, o, native=False)

    def pushed(profile) -> dict:
        return {
            (f.name, s.name, tuple(sorted(s.labels.items()))): s.value
            for f in profile.apply(reg.collect())
            for s in f.samples
            if f.type == "counter"
        }

    before = pushed(profile)
    big = "/home/dev/src/zz-new"
    t.usage[("claude-model-0", big)] = UsageSums(1, 1, 1, 1, 0, 0, 1, 9999.0, 0)
    t.sessions_by_cwd[big] = 1
    o.by_cwd[big] = [5, 0, 1, 0, 0]
    after = pushed(TeamProfile(5, PushState(tmp_path / "push_state.json")))  # a restart
    for k, v in before.items():
        assert after[k] >= v, k
    assert not any(("project", "zz-new") in k[2] for k in after)
    assert PushState(tmp_path / "push_state.json").named == sorted(profile.named)
    # More room later (metrics_push_projects raised): what was folded stays folded, only
    # projects never pushed before get the new names.
    newer = "/home/dev/src/zz-newer"
    t.usage[("claude-model-0", newer)] = UsageSums(1, 1, 1, 1, 0, 0, 1, 1.0, 0)
    t.sessions_by_cwd[newer] = 1
    roomy = TeamProfile(10, PushState(tmp_path / "push_state.json"))
    later = pushed(roomy)
    for k, v in after.items():
        assert later[k] >= v, k
    assert roomy.named == profile.named | {"zz-newer"}


def test_an_exemplar_timed_with_a_prometheus_timestamp_is_encoded_and_folded(tmp_path):
    """prometheus_client lets an exemplar's time be a Timestamp (sec, nsec) as well as a float
    (ccotel's own are floats): the encoder and the team profile read both as seconds."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.samples import Exemplar, Timestamp

    from ccotel.otlp import encode_metrics

    fam = CounterMetricFamily("ccotel_cost_usd", "Cost", labels=["project", "model"])
    older = Exemplar({"trace_id": "ab" * 16}, 0.5, Timestamp(1_700_000_000, 250_000_000))
    newer = Exemplar({"trace_id": "cd" * 16}, 0.7, 1_700_000_001.0)
    fam.add_metric(["a", "m1"], 1.0, exemplar=older)
    fam.add_metric(["a", "m2"], 2.0, exemplar=newer)
    req = ExportMetricsServiceRequest.FromString(encode_metrics([fam], {}, 1))
    (m,) = req.resource_metrics[0].scope_metrics[0].metrics
    times = [e.time_unix_nano for p in m.sum.data_points for e in p.exemplars]
    assert times == pytest.approx([1_700_000_000_250_000_000, 1_700_000_001_000_000_000], abs=1e3)
    profile = TeamProfile(0, PushState(tmp_path / "push_state.json"))  # every project folded
    (folded,) = profile.apply([fam])
    (s,) = [s for s in folded.samples if s.name.endswith("_total") and s.labels["model"] == "m1"]
    assert s.labels["project"] == "other" and s.exemplar == older
    both = CounterMetricFamily("ccotel_cost_usd", "Cost", labels=["project"])
    both.add_metric(["a"], 1.0, exemplar=older)
    both.add_metric(["b"], 2.0, exemplar=newer)
    (s,) = [s for s in profile.apply([both])[0].samples if s.name.endswith("_total")]
    assert s.value == 3.0 and s.exemplar == newer  # the newest of the two it summed
