"""OTLP settings (ccotel keys and the standard variables) and the metrics as OTLP."""

from __future__ import annotations

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pbm
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ccotel.config import ConfigError, load
from ccotel.otlp import metrics_request, pb_resource, resource_attributes, target


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


def test_standard_variables():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://metrics.example/custom/path",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=abc,team=a%20b",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=traces-only",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/client.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/client.key",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
    }
    t = target(cfg(), "traces", env=env)
    assert t.url == "https://collector.example:4318/v1/traces"
    assert t.headers == {"x-api-key": "traces-only"}
    assert (t.ca_file, t.client_cert, t.client_key, t.compression, t.timeout) == (
        "/etc/ca.pem",
        "/etc/client.pem",
        "/etc/client.key",
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
    req = metrics_request(
        reg.collect(), pb_resource({"service.name": "ccotel"}), start_ns=100, now_ns=200
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


def test_wire_encoder_writes_what_protobuf_writes():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from ccotel.traces.export import encode, encode_bytes
    from ccotel.traces.model import Span

    spans = [
        Span(2**127 + 5, 2**63 + 7, 12345, "chat claude-opus-4-6", 2, 10**18, 10**18 + 5,
             {"s": "é", "n": -3, "big": 2**40, "f": 1.5, "t": True, "no": False, "l": ["end_turn"], "none": None},
             "tool_error", [("interrupted", 99, {"reason": "z"})]),
        Span(1, 2, 0, "invoke_agent claude-code", 0, 1, 2, {}, None, []),
    ]  # fmt: skip
    res = {"service.name": "ccotel", "host.name": "h"}
    assert encode_bytes(spans, res) == encode(spans, res).SerializeToString()
    back = ExportTraceServiceRequest.FromString(encode_bytes(spans, res))
    s = back.resource_spans[0].scope_spans[0].spans[0]
    assert s.status.code == 2 and s.kind == 3 and s.parent_span_id == (12345).to_bytes(8, "big")
    assert {kv.key: kv.value.WhichOneof("value") for kv in s.attributes}["n"] == "int_value"


def test_metrics_wire_encoder_writes_what_protobuf_writes():
    from ccotel.otlp import metrics_request_bytes

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
    want = metrics_request(fams, pb_resource(attrs), start_ns=100, now_ns=200).SerializeToString()
    assert metrics_request_bytes(fams, attrs, start_ns=100, now_ns=200) == want
