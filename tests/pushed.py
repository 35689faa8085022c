"""What the compose stack's collector does with the metrics every ccotel pushes, on loopback.

The stack (deploy/compose/otel-collector/config.yaml) receives OTLP/HTTP on 4318, copies the
resource attributes host.name / user.name to the labels `host` / `user` (transform/host_user)
and serves the latest value of every series to Prometheus with the `prometheus` exporter:
job = service.name, monotonic sums get `_total`, histograms `_bucket` / `_sum` / `_count`.
The collector binary is not packaged for this machine, so `Collector` does those three steps
(and the exporter's naming: `prometheus_name`, `label_name`, service.instance.id -> `instance`)
in Python over the real pushed payload (decoded with opentelemetry-proto, served with
prometheus_client's exposition); Prometheus then scrapes it with the stack's own job config.

    with Collector() as c:                # c.endpoint -> CCOTEL_OTLP_ENDPOINT of a daemon
        c.target                          # host:port for the Prometheus job otel-collector-ccotel
"""

from __future__ import annotations

import gzip
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)


def _attrs(kvs) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


def prometheus_name(name: str, unit: str, monotonic_sum: bool) -> str:
    """The exporter's name for a metric (otlptranslator, with suffixes): words of the name, the
    unit's word appended unless the name has it, `total` moved to the end of a counter.
    claude_code.cost.usage [USD] -> claude_code_cost_usage_USD_total; ccotel_tokens ->
    ccotel_tokens_total; claude_code.active_time.total [s] -> claude_code_active_time_seconds_total."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    unit = _UNITS.get(unit, re.sub(r"\{.*?\}", "", unit))
    unit_words = [w for w in re.split(r"[^A-Za-z0-9]+", unit) if w]
    if unit_words and words[-len(unit_words) :] != unit_words:
        words += unit_words
    if monotonic_sum:
        words = [w for w in words if w != "total"] + ["total"]
    return "_".join(words)


def label_name(key: str) -> str:
    """user.id -> user_id, as the exporter sanitizes attribute keys."""
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


class Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (metric name, sorted labels) -> (kind, description, labels, data point)
        self.series: dict[tuple, tuple] = {}
        self.pushes = 0
        self.span_batches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/metrics":
                    outer._receive(ExportMetricsServiceRequest.FromString(body))
                    reply = ExportMetricsServiceResponse()
                elif self.path == "/v1/traces":
                    with outer.lock:
                        outer.span_batches += 1
                    reply = ExportTraceServiceResponse()
                else:
                    self.send_error(404)
                    return
                self._send(reply.SerializeToString(), "application/x-protobuf")

            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                self._send(generate_latest(outer.registry), "text/plain; version=0.0.4")

            def _send(self, data: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.target = f"127.0.0.1:{port}"

    def __enter__(self) -> Collector:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _receive(self, req: ExportMetricsServiceRequest) -> None:
        with self.lock:
            self.pushes += 1
            for rm in req.resource_metrics:
                res = _attrs(rm.resource.attributes)
                base = {"job": res.get("service.name", "")}
                if "service.instance.id" in res:
                    base["instance"] = res["service.instance.id"]
                # transform/host_user: only when the attribute is there
                if "host.name" in res:
                    base["host"] = res["host.name"]
                if "user.name" in res:
                    base["user"] = res["user.name"]
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        name = prometheus_name(m.name, m.unit, kind == "sum" and m.sum.is_monotonic)
                        for p in getattr(m, kind).data_points:
                            attrs = {label_name(k): v for k, v in _attrs(p.attributes).items()}
                            labels = {**attrs, **base}
                            key = (name, tuple(sorted(labels.items())))
                            self.series[key] = (kind, m.description, labels, p)

    def collect(self):
        """The prometheus exporter's view: one family per metric name."""
        names: dict[str, list[tuple]] = {}
        with self.lock:
            for (name, _), value in self.series.items():
                names.setdefault(name, []).append(value)
        for name, points in sorted(names.items()):
            kind, desc = points[0][0], points[0][1]
            keys = sorted({k for _, _, labels, _ in points for k in labels})
            if kind == "sum":
                fam = CounterMetricFamily(name, desc or name, labels=keys)
            elif kind == "histogram":
                fam = HistogramMetricFamily(name, desc or name, labels=keys)
            else:
                fam = GaugeMetricFamily(name, desc or name, labels=keys)
            for _, _, labels, p in points:
                values = [labels.get(k, "") for k in keys]
                if kind == "histogram":
                    cum, buckets = 0, []
                    for bound, count in zip(
                        [*p.explicit_bounds, float("inf")], p.bucket_counts, strict=False
                    ):
                        cum += count
                        buckets.append((_le(bound), cum))
                    fam.add_metric(values, buckets, p.sum)
                else:
                    fam.add_metric(values, p.as_double if p.HasField("as_double") else p.as_int)
            yield fam


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
