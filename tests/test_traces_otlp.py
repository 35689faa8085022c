"""OTLP settings (ccotel keys and the standard variables), and what ccotel's own protobuf
writer puts on the wire for spans and metrics, checked against opentelemetry-proto."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pbm
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1 import trace_pb2 as pbt
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ccotel import __version__
from ccotel.config import ConfigError, load
from ccotel.otlp import encode_metrics, resource_attributes, target
from ccotel.otlp.metrics import histogram_points
from ccotel.traces.export import encode_spans
from ccotel.traces.model import Span


def cfg(**flags):
    return load(env={}, flags=flags)


def test_defaults():
    t = target(cfg(), "traces", env={})
    assert (t.protocol, t.url, t.headers, t.compression, t.timeout) == (
        "http/protobuf",
        "http://localhost:4318/v1/traces",
        {},
        "none",
        10.0,
    )
    assert target(cfg(), "metrics", env={}).url == "http://localhost:4318/v1/metrics"
    assert (
        target(cfg(), "traces", env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}).url
        == "http://localhost:4317"
    )


def test_standard_variables(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):  # named files must exist
        (tmp_path / name).write_text("")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example/custom/path",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc,team=a%20b",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=traces-only",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": f"{tmp_path}/ca.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": f"{tmp_path}/client.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": f"{tmp_path}/client.key",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    }
    t = target(cfg(), "traces", env=env)
    assert t.url == "https://collector.example:4318/v1/traces"
    assert t.headers == {"x-api-key": "traces-only"}
    assert (t.ca_file, t.client_cert, t.client_key, t.compression, t.timeout) == (
        f"{tmp_path}/ca.pem",
        f"{tmp_path}/client.pem",
        f"{tmp_path}/client.key",
        "gzip",
        2.5,
    )
    m = target(cfg(), "metrics", env=env)
    assert m.url == "https://metrics.example/custom/path"  # a signal endpoint is used as is
    assert m.headers == {"x-api-key": "abc", "team": "a b"}


def test_grpc_endpoints():
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}
    assert target(cfg(), "traces", env=env).url == "https://collector:4317"
    env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
    with pytest.raises(ValueError, match=r"^OTEL_EXPORTER_OTLP_ENDPOINT: .*scheme is missing"):
        target(cfg(), "traces", env=env)  # OTLP/HTTP needs a URL
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://collector:4318"
    assert target(cfg(), "traces", env=env).protocol == "http/protobuf"
    assert target(cfg(), "metrics", env=env).protocol == "grpc"


def test_ccotel_keys_win_over_the_environment():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env-traces/v1/traces",
           "OTEL_EXPORTER_OTLP_HEADERS": "a=1"}  # fmt: skip
    c = cfg(
        otlp_endpoint="http://mine:4318",
        otlp_headers="b=2",
        otlp_protocol="http/protobuf",
        otlp_timeout=3,
    )
    t = target(c, "traces", env=env)
    assert t.url == "http://mine:4318/v1/traces"
    assert t.headers == {"a": "1", "b": "2"}
    assert t.timeout == 3
    c = load(
        env={
            "CCOTEL_OTLP_ENDPOINT": "http://fromenv:1234",
            "CCOTEL_CAPTURE_CONTENT": "true",
            "CCOTEL_RESOURCE_USER": "off",
        }
    )
    assert (
        c.otlp_endpoint == "http://fromenv:1234"
        and c.capture_content is True
        and c.resource_user == "off"
    )


def test_unsupported_settings_are_errors():
    with pytest.raises(ValueError, match="http/json"):
        target(cfg(), "traces", env={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ConfigError, match="otlp_protocol"):
        cfg(otlp_protocol="udp")
    with pytest.raises(ConfigError, match="tracez"):
        cfg(tracez=True)


def test_resource_attributes():
    a = resource_attributes(
        cfg(resource_user="alice", resource_host="laptop-7"),
        env={"OTEL_RESOURCE_ATTRIBUTES": "team=core, deployment.environment=dev"},
    )
    assert (
        a["service.name"] == "ccotel" and a["host.name"] == "laptop-7" and a["user.name"] == "alice"
    )
    assert a["team"] == "core" and a["deployment.environment"] == "dev"
    a = resource_attributes(cfg(resource_user="off"), env={})
    assert "user.name" not in a and a["host.name"]
    a = resource_attributes(cfg(), env={"OTEL_SERVICE_NAME": "ccotel-laptops"})
    assert a["service.name"] == "ccotel-laptops" and a["user.name"]


def test_metrics_as_cumulative_otlp_with_the_same_names():
    class C:
        def collect(self):
            c = CounterMetricFamily("ccotel_tokens", "Tokens", labels=["model", "type"])
            c.add_metric(["opus", "input"], 10)
            c.add_metric(["opus", "output"], 3)
            yield c
            yield GaugeMetricFamily("ccotel_spend_usd", "Spend", value=1.5)
            h = HistogramMetricFamily("ccotel_tool_duration_seconds", "Durations", labels=["tool"])
            h.add_metric(["Bash"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], 5.5)
            yield h

    reg = CollectorRegistry()
    reg.register(C())
    req = ExportMetricsServiceRequest.FromString(
        encode_metrics(reg.collect(), {"service.name": "ccotel"}, start_ns=100, now_ns=200)
    )
    ms = {m.name: m for m in req.resource_metrics[0].scope_metrics[0].metrics}
    assert set(ms) == {"ccotel_tokens", "ccotel_spend_usd", "ccotel_tool_duration_seconds"}
    s = ms["ccotel_tokens"].sum
    assert s.is_monotonic and s.aggregation_temporality == pbm.AGGREGATION_TEMPORALITY_CUMULATIVE
    pts = {
        tuple(kv.value.string_value for kv in p.attributes): (
            p.as_double,
            p.start_time_unix_nano,
            p.time_unix_nano,
        )
        for p in s.data_points
    }
    assert pts == {("opus", "input"): (10, 100, 200), ("opus", "output"): (3, 100, 200)}
    assert ms["ccotel_spend_usd"].gauge.data_points[0].as_double == 1.5
    h = ms["ccotel_tool_duration_seconds"].histogram
    assert h.aggregation_temporality == pbm.AGGREGATION_TEMPORALITY_CUMULATIVE
    p = h.data_points[0]
    assert (
        list(p.explicit_bounds) == [0.1, 1.0]
        and list(p.bucket_counts) == [1, 2, 1]
        and p.count == 4
        and p.sum == 5.5
    )
    assert req.resource_metrics[0].resource.attributes[0].value.string_value == "ccotel"


# --- the protobuf writer against opentelemetry-proto's classes ---------------------------
# These reference encoders build the same requests from opentelemetry-proto messages (they
# were ccotel's own encoders before it wrote the wire format directly); ccotel's bytes must
# equal theirs, so a collector decodes exactly the same spans and metrics.


def _any(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any(x) for x in v]))
    return AnyValue(string_value=str(v))


def _attrs(d: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in d.items() if v is not None]


def _pb_resource(attrs: Mapping[str, str]) -> PbResource:
    return PbResource(attributes=_attrs(attrs))


def reference_spans(spans: Sequence[Span], resource_attrs: Mapping[str, str]) -> bytes:
    out = []
    for s in spans:
        p = pbt.Span(
            trace_id=s.trace_id.to_bytes(16, "big"), span_id=s.span_id.to_bytes(8, "big"),
            parent_span_id=s.parent_id.to_bytes(8, "big") if s.parent_id else b"", name=s.name,
            kind=s.kind + 1, start_time_unix_nano=s.start, end_time_unix_nano=s.end,
            attributes=_attrs(s.attrs), flags=0x101,
        )  # fmt: skip
        if s.error is not None:
            p.status.code = pbt.Status.STATUS_CODE_ERROR
            p.status.message = s.error
        for name, t, attrs in s.events:
            p.events.append(pbt.Span.Event(name=name, time_unix_nano=t, attributes=_attrs(attrs)))
        out.append(p)
    scope = InstrumentationScope(name="ccotel", version=__version__)
    return ExportTraceServiceRequest(
        resource_spans=[
            pbt.ResourceSpans(
                resource=_pb_resource(resource_attrs),
                scope_spans=[pbt.ScopeSpans(scope=scope, spans=out)],
            )
        ]
    ).SerializeToString()


def _pb_exemplar(ex) -> pbm.Exemplar:
    """A counter sample's exemplar: the session's trace, its cost, its time."""
    return pbm.Exemplar(time_unix_nano=int(ex.timestamp * 1e9), as_double=float(ex.value),
                        trace_id=bytes.fromhex(ex.labels["trace_id"]))  # fmt: skip


def reference_metrics(
    families: Iterable, resource_attrs: Mapping[str, str], start_ns: int, now_ns: int
) -> bytes:
    cum = pbm.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    kv = lambda labels: [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels.items()]  # noqa: E731
    out = []
    for fam in families:
        m = pbm.Metric(name=fam.name, description=fam.documentation or "")
        if fam.type == "counter":
            pts = [
                pbm.NumberDataPoint(attributes=kv(s.labels), start_time_unix_nano=start_ns,
                                    time_unix_nano=now_ns, as_double=float(s.value),
                                    exemplars=[_pb_exemplar(s.exemplar)] if s.exemplar else [])
                for s in fam.samples if s.name.endswith("_total")
            ]  # fmt: skip
            m.sum.CopyFrom(pbm.Sum(data_points=pts, aggregation_temporality=cum, is_monotonic=True))
        elif fam.type == "histogram":
            pts = [
                pbm.HistogramDataPoint(
                    attributes=kv(labels), start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                    count=count, sum=total, bucket_counts=counts, explicit_bounds=bounds,
                )
                for labels, bounds, counts, total, count in histogram_points(fam)
            ]  # fmt: skip
            m.histogram.CopyFrom(pbm.Histogram(data_points=pts, aggregation_temporality=cum))
        else:
            pts = [
                pbm.NumberDataPoint(attributes=kv(s.labels), time_unix_nano=now_ns, as_double=float(s.value))
                for s in fam.samples
            ]  # fmt: skip
            m.gauge.CopyFrom(pbm.Gauge(data_points=pts))
        out.append(m)
    scope = InstrumentationScope(name="ccotel", version=__version__)
    return ExportMetricsServiceRequest(
        resource_metrics=[
            pbm.ResourceMetrics(
                resource=_pb_resource(resource_attrs),
                scope_metrics=[pbm.ScopeMetrics(scope=scope, metrics=out)],
            )
        ]
    ).SerializeToString()


EDGE_SPANS = [
    Span(2**127 + 5, 2**63 + 7, 12345, "chat claude-opus-4-6", 2, 10**18, 10**18 + 5,
         {"s": "é", "n": -3, "big": 2**40, "f": 1.5, "t": True, "no": False, "l": ["end_turn"], "none": None},
         "tool_error", [("interrupted", 99, {"reason": "z", "gone": None})]),
    Span(1, 2, 0, "invoke_agent claude-code", 0, 1, 2, {}, None, []),
    Span(3, 4, 5, "x" * 300, 0, 0, 2**64 - 1, {"k" * 200: "v" * 5000, "e": "", "z": 0}, "", []),
]  # fmt: skip


def test_span_encoder_writes_what_protobuf_writes():
    res = {"service.name": "ccotel", "host.name": "h", "team": "ü"}
    assert encode_spans(EDGE_SPANS[:2], res) == reference_spans(EDGE_SPANS[:2], res)
    # zero times and an empty status message: written where protobuf omits defaults; the
    # same message once decoded
    decoded = ExportTraceServiceRequest.FromString
    assert decoded(encode_spans(EDGE_SPANS, res)) == decoded(reference_spans(EDGE_SPANS, res))
    assert encode_spans([], res) == reference_spans([], res)
    back = ExportTraceServiceRequest.FromString(encode_spans(EDGE_SPANS, res))
    s = back.resource_spans[0].scope_spans[0].spans[0]
    assert s.status.code == 2 and s.kind == 3 and s.parent_span_id == (12345).to_bytes(8, "big")
    assert {kv.key: kv.value.WhichOneof("value") for kv in s.attributes}["n"] == "int_value"
    assert "none" not in {kv.key for kv in s.attributes}


def test_span_encoder_on_every_real_fixture(tmp_path):
    """Every span built from the real transcripts, in batches as the shipper sends them."""
    from ccotel import app
    from ccotel.traces.service import backfill_traces
    from tests.conftest import FIXTURES
    from tests.test_traces import cfg_for

    class Keep:
        def __init__(self):
            self.batches: list[list[Span]] = []

        def export(self, spans):
            self.batches.append(list(spans))

        def probe(self):
            pass

        def shutdown(self):
            pass

    res = resource_attributes(load(env={}), env={})
    n = 0
    for d in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        cfg = cfg_for(d, tmp_path / d.name, capture_content=True)
        app.backfill(cfg)
        k = Keep()
        backfill_traces(cfg, cfg.resolved_state_dir() / "state.db", since=0, sink=k)
        for b in k.batches:
            assert encode_spans(b, res) == reference_spans(b, res), d.name
            n += len(b)
    assert n > 2000


def test_a_string_that_is_not_utf8_goes_out_as_valid_utf8():
    """A lone surrogate (a file name that is not UTF-8, read with surrogateescape) must not
    make the request invalid protobuf: the collector would refuse the span as malformed."""
    s = Span(1, 2, 0, "execute_tool Read", 0, 1, 2, {"ccotel.tool.file_path": "/tmp/caf\udce9.txt"})
    back = ExportTraceServiceRequest.FromString(encode_spans([s], {}))  # raises on bad UTF-8
    got = back.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value
    assert got == "/tmp/caf\ufffd.txt"


def test_metrics_encoder_writes_what_protobuf_writes():
    class C:
        def collect(self):
            c = CounterMetricFamily("ccotel_tokens", "Tokens", labels=["model", "type"])
            c.add_metric(["opus", "input"], 10)
            c.add_metric(["opus", "output"], 0)
            yield c
            yield GaugeMetricFamily("ccotel_spend_usd", "", value=0.0)
            g = GaugeMetricFamily("ccotel_budget_usd", "Budget", labels=["window"])
            g.add_metric(["1h"], 2.5)
            yield g
            h = HistogramMetricFamily("ccotel_tool_duration_seconds", "Durations", labels=["tool"])
            h.add_metric(["Bash"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], 5.5)
            h.add_metric(["Read"], [("0.1", 0), ("1.0", 0), ("+Inf", 0)], 0.0)
            yield h

    reg = CollectorRegistry()
    reg.register(C())
    attrs = {"service.name": "ccotel", "host.name": "h"}
    fams = list(reg.collect())
    want = reference_metrics(fams, attrs, start_ns=100, now_ns=200)
    assert encode_metrics(fams, attrs, start_ns=100, now_ns=200) == want


def test_metrics_encoder_on_a_daemon_registry(tmp_path):
    """What /metrics shows for the real fixtures, budgets and native metrics included."""
    import time

    from ccotel.app import roots_of
    from ccotel.pipeline import Ingest
    from ccotel.projects import project_labeler
    from ccotel.sinks.prometheus import TotalsCollector
    from ccotel.state.store import Store
    from tests.conftest import FIXTURES

    cfg = load(
        env={}, flags={"claude_dirs": [str(FIXTURES / "claude-2.1.39")], "state_dir": str(tmp_path)}
    )
    store = Store(cfg.resolved_state_dir())
    try:
        ing = Ingest(cfg, store, roots_of(cfg), time.time)
        ing.backfill(ing.scan(), 1)
        reg = CollectorRegistry(auto_describe=False)
        reg.register(
            TotalsCollector(ing.totals, project_labeler("name"), {"1h": 2.0, "24h": 9.0}, time.time)
        )
        fams = list(reg.collect())
    finally:
        store.close()
    attrs = resource_attributes(cfg, env={})
    assert sum(len(f.samples) for f in fams) > 100
    assert {f.type for f in fams} >= {"counter", "gauge", "histogram"}
    assert any(s.exemplar for f in fams for s in f.samples)  # the cost's trace, pushed too
    assert encode_metrics(fams, attrs, 5, 6) == reference_metrics(fams, attrs, 5, 6)


# --- headers: the spec's format, and no secret in an error --------------------------


def test_headers_are_parsed_and_a_malformed_one_names_its_key_not_its_value():
    from ccotel.otlp.settings import parse_headers

    assert parse_headers("a=1, Authorization=Bearer%20x%3Dy ,b = two words", "X") == {
        "a": "1",
        "authorization": "Bearer x=y",
        "b": "two words",
    }
    with pytest.raises(ValueError) as e:
        target(cfg(), "traces", env={"OTEL_EXPORTER_OTLP_HEADERS": 'x-api-key=s3cr3t;"bad"'})
    msg = str(e.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in msg and "x-api-key" in msg and "s3cr3t" not in msg
    with pytest.raises(ValueError, match="otlp_headers"):
        target(cfg(otlp_headers="novalue"), "traces", env={})


def test_endpoint_shown_without_credentials():
    t = target(
        cfg(otlp_endpoint="https://user:hunter22@c.example:4318/?token=abcd1234"), "traces", env={}
    )
    assert t.where == "https://c.example:4318/v1/traces"
    assert "hunter22" in t.secrets and "token=abcd1234" in t.secrets
    with pytest.raises(ValueError, match="http"):
        target(cfg(otlp_endpoint="collector:4318"), "traces", env={})


# --- what the CLI loads ------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["report"], ["report", "--json"]])
def test_cli_loads_no_opentelemetry_grpc_or_test_dependency(tmp_path, argv):
    code = (
        "import sys, runpy; sys.argv = ['ccotel', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('ccotel', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'grpc', "
        "'google', 'pytest', 'hypothesis', 'yaml', 'cryptography', 'selenium', 'requests', 'urllib3'))\n"
        "print('LOADED', bad)\n"
    )
    if argv[0] == "report":
        argv = [*argv, "--state-dir", str(tmp_path)]
    p = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )
    assert "LOADED []" in p.stdout, (p.stdout[-2000:], p.stderr[-2000:])
