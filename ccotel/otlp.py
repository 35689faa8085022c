"""OTLP plumbing shared by traces and metrics: where to send, how, and as whom.

Endpoint, protocol, headers, TLS files, compression and timeout come from the
ccotel config when set there, else from the standard ``OTEL_EXPORTER_OTLP_*``
variables (signal-specific ones first), else the defaults
(``http://localhost:4318``, ``http/protobuf``). The senders do one attempt per
call and never retry or log on their own: the caller owns backoff and the one
warning, and the transcript is the durable queue.
"""

from __future__ import annotations

import contextlib
import getpass
import gzip
import http.client
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pbm
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.util.re import parse_env_headers

from ccotel import __version__

Signal = Literal["traces", "metrics"]
DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}
SCOPE = "ccotel"


class ExportError(Exception):
    """One export attempt failed; the message says why (never the payload)."""

    def __init__(self, msg: str, retryable: bool = True):
        super().__init__(msg)
        self.retryable = retryable


# --- configuration -----------------------------------------------------------


@dataclass(frozen=True)
class Target:
    signal: Signal
    protocol: Literal["http/protobuf", "grpc"]
    url: str  # http: full URL with the signal path; grpc: scheme://host:port
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    compression: Literal["none", "gzip"] = "none"
    timeout: float = 10.0
    insecure: bool = False  # grpc only: no TLS even for a non-http URL


def _env(env: Mapping[str, str], signal: Signal, name: str) -> str:
    """OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>, else OTEL_EXPORTER_OTLP_<NAME>."""
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}")
        or env.get(f"OTEL_EXPORTER_OTLP_{name}")
        or ""
    )


def configured(cfg, signal: Signal, env: Mapping[str, str] | None = None) -> bool:
    """Whether the user named an endpoint for this signal (not just the default)."""
    env = os.environ if env is None else env
    return bool(
        cfg.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def target(cfg, signal: Signal, env: Mapping[str, str] | None = None) -> Target:
    """Resolve where one signal goes. cfg is ccotel's Config (its otlp_* keys win)."""
    env = os.environ if env is None else env
    protocol = (
        (cfg.otlp_protocol or _env(env, signal, "PROTOCOL") or "http/protobuf").strip().lower()
    )
    if protocol not in ("http/protobuf", "grpc"):
        raise ValueError(
            f"OTLP protocol {protocol!r} (otlp_protocol, OTEL_EXPORTER_OTLP_PROTOCOL) is not supported: use http/protobuf or grpc"
        )
    if cfg.otlp_endpoint:
        base, specific = cfg.otlp_endpoint, ""
    else:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "")
    if protocol == "grpc":
        url = specific or base or DEFAULT_GRPC_ENDPOINT
        if "://" not in url:
            url = "https://" + url
    elif specific:
        url = specific  # used as is, per the specification
    else:
        url = (base or DEFAULT_ENDPOINT).rstrip("/") + _PATHS[signal]
    headers = dict(parse_env_headers(_env(env, signal, "HEADERS"), liberal=True))
    if cfg.otlp_headers:
        headers.update(parse_env_headers(cfg.otlp_headers, liberal=True))
    compression = (cfg.otlp_compression or _env(env, signal, "COMPRESSION") or "none").lower()
    if compression not in ("none", "gzip"):
        raise ValueError(
            f"OTLP compression {compression!r} (otlp_compression, OTEL_EXPORTER_OTLP_COMPRESSION) is not supported: use none or gzip"
        )
    timeout_ms = _env(env, signal, "TIMEOUT")
    timeout = cfg.otlp_timeout or (float(timeout_ms) / 1000 if timeout_ms else 10.0)
    insecure = _env(env, signal, "INSECURE").lower() == "true"
    return Target(
        signal,
        protocol,  # type: ignore[arg-type]
        url,
        headers,
        cfg.otlp_certificate or _env(env, signal, "CERTIFICATE"),
        cfg.otlp_client_certificate or _env(env, signal, "CLIENT_CERTIFICATE"),
        cfg.otlp_client_key or _env(env, signal, "CLIENT_KEY"),
        compression,  # type: ignore[arg-type]
        timeout,
        insecure,
    )


def resource_attributes(cfg, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """service.name=ccotel, service.version, host.name, user.name, then OTEL_RESOURCE_ATTRIBUTES."""
    env = os.environ if env is None else env
    attrs: dict[str, str] = {"service.name": "ccotel", "service.version": __version__}
    host = cfg.resource_host
    if host == "auto":
        host = socket.gethostname()
    if host and host != "off":
        attrs["host.name"] = host
    user = cfg.resource_user
    if user == "auto":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = ""
    if user and user != "off":
        attrs["user.name"] = user
    for k, v in parse_env_headers(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), liberal=True).items():
        attrs[k.strip()] = v.strip()
    if env.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = env["OTEL_SERVICE_NAME"]
    return attrs


def pb_resource(attrs: Mapping[str, str]) -> PbResource:
    return PbResource(
        attributes=[KeyValue(key=k, value=AnyValue(string_value=str(v))) for k, v in attrs.items()]
    )


# --- transport ---------------------------------------------------------------


class Sender:
    """Sends one serialized Export*ServiceRequest; raises ExportError on failure."""

    def __init__(self, t: Target):
        self.t = t
        self._conn: http.client.HTTPConnection | None = None
        self._grpc = None
        u = urlsplit(t.url)
        self._https = u.scheme == "https"
        self._host = u.hostname or "localhost"
        self._port = u.port or (443 if self._https else 80)
        self._path = (u.path or "/") + (f"?{u.query}" if u.query else "")

    # http/protobuf
    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.t.ca_file or None)
        if self.t.client_cert:
            ctx.load_cert_chain(self.t.client_cert, self.t.client_key or None)
        return ctx

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.t.timeout, context=self._ssl()
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.t.timeout
                )
        return self._conn

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": f"ccotel/{__version__}"}
        headers.update(self.t.headers)
        if self.t.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        for attempt in (0, 1):  # a pooled connection the server closed: one fresh try
            conn = self._connection()
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 0 and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                raise ExportError(f"{type(exc).__name__}: {exc}") from None
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if 200 <= resp.status < 300:
                return
            retryable = resp.status in (408, 429, 502, 503, 504) or resp.status >= 500
            raise ExportError(f"HTTP {resp.status} {resp.reason}: {payload[:200]!r}", retryable)

    # grpc
    def _stub(self):
        if self._grpc is None:
            import grpc

            target_ = f"{self._host}:{self._port}"
            if self._https and not self.t.insecure:
                root, key, chain = (
                    Path(f).read_bytes() if f else None
                    for f in (self.t.ca_file, self.t.client_key, self.t.client_cert)
                )
                chan = grpc.secure_channel(target_, grpc.ssl_channel_credentials(root, key, chain))
            else:
                chan = grpc.insecure_channel(target_)
            if self.t.signal == "traces":
                from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as svc

                method = svc.TraceServiceStub(chan).Export
            else:
                from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as svc

                method = svc.MetricsServiceStub(chan).Export
            self._grpc = (chan, method)
        return self._grpc[1]

    def _rpc(self, msg) -> None:
        import grpc

        meta = [(k.lower(), v) for k, v in self.t.headers.items()]
        comp = grpc.Compression.Gzip if self.t.compression == "gzip" else None
        try:
            self._stub()(msg, metadata=meta, timeout=self.t.timeout, compression=comp)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            # RESOURCE_EXHAUSTED without RetryInfo is most often "message larger than max":
            # not retryable as is (the shipper splits the batch).
            retryable = code in (
                grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.DATA_LOSS,
            )  # fmt: skip
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise ExportError(f"gRPC {code.name if code else '?'}: {detail}", retryable) from None

    def send(self, msg: ExportTraceServiceRequest | ExportMetricsServiceRequest) -> None:
        if self.t.protocol == "grpc":
            self._rpc(msg)
        else:
            self._post(msg.SerializeToString())

    def send_bytes(self, body: bytes) -> None:
        """An already serialized request (http/protobuf only)."""
        self._post(body)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def shutdown(self) -> None:
        self.close()
        if self._grpc is not None:
            self._grpc[0].close()
            self._grpc = None


# --- protobuf wire format, written directly (several times faster than the classes) ---


_SMALL = [bytes([i]) for i in range(128)]


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, s: str) -> bytes:
    return _ld(field, s.encode("utf-8", "surrogatepass"))


_DOUBLE = struct.Struct("<d")


def _any_bytes(v: Any) -> bytes:
    if isinstance(v, bool):
        return b"\x10" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x18" + _varint(v)
    if isinstance(v, float):
        return b"\x21" + _DOUBLE.pack(v)
    if isinstance(v, list | tuple):
        return _ld(5, b"".join(_ld(1, _any_bytes(x)) for x in v))
    return _str(1, v if isinstance(v, str) else str(v))


_KV_CACHE: dict[tuple[int, str, Any], bytes] = {}
_KEY_CACHE: dict[str, bytes] = {}


def _kv_bytes(field: int, k: str, v: Any) -> bytes:
    t = type(v)
    cacheable = t is str or t is bool
    if cacheable:
        kv = _KV_CACHE.get((field, k, v))
        if kv is not None:
            return kv
    key = _KEY_CACHE.get(k)
    if key is None:
        key = _str(1, k)
        if len(_KEY_CACHE) < 1024:
            _KEY_CACHE[k] = key
    if t is int:
        val = b"\x18" + _varint(v)
        body = key + b"\x12" + _varint(len(val)) + val
    else:
        body = key + _ld(2, _any_bytes(v))
    kv = _varint(field << 3 | 2) + _varint(len(body)) + body
    if cacheable and len(_KV_CACHE) < 4096:
        _KV_CACHE[(field, k, v)] = kv
    return kv


# --- metrics: Prometheus families -> OTLP, cumulative --------------------------


def _kv(labels: Mapping[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels.items()]


def _bucket_key(labels: Mapping[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _histogram_points(fam) -> list[tuple[dict, list[float], list[int], float, int]]:
    """(labels, explicit bounds, per-bucket counts, sum, count) per series of a histogram family."""
    groups: dict[tuple, dict] = {}
    for s in fam.samples:
        g = groups.setdefault(
            _bucket_key(s.labels),
            {"labels": {k: v for k, v in s.labels.items() if k != "le"}, "b": []},
        )
        if s.name.endswith("_bucket"):
            g["b"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            g["sum"] = s.value
        elif s.name.endswith("_count"):
            g["count"] = s.value
    out = []
    for g in groups.values():
        b = sorted(g["b"])
        counts, prev = [], 0.0
        for _le, c in b:
            counts.append(int(c - prev))
            prev = c
        bounds = [le for le, _ in b if le != float("inf")]
        out.append(
            (g["labels"], bounds, counts, float(g.get("sum", 0.0)), int(g.get("count", prev)))
        )
    return out


def metrics_request(
    families: Iterable, resource: PbResource, start_ns: int, now_ns: int | None = None
) -> ExportMetricsServiceRequest:
    """The families one Prometheus scrape shows, as OTLP metrics with the same names.

    Counters become cumulative monotonic sums named like the family (a Prometheus
    exporter in the collector adds ``_total`` back), gauges gauges, histograms
    cumulative explicit-bucket histograms.
    """
    now_ns = now_ns or time.time_ns()
    cum = pbm.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    out: list[pbm.Metric] = []
    for fam in families:
        m = pbm.Metric(name=fam.name, description=fam.documentation or "")
        if fam.type == "counter":
            pts = [
                pbm.NumberDataPoint(
                    attributes=_kv(s.labels),
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    as_double=float(s.value),
                )
                for s in fam.samples
                if s.name.endswith("_total")
            ]
            m.sum.CopyFrom(pbm.Sum(data_points=pts, aggregation_temporality=cum, is_monotonic=True))
        elif fam.type == "histogram":
            pts = []
            for labels, bounds, counts, total, count in _histogram_points(fam):
                pts.append(
                    pbm.HistogramDataPoint(
                        attributes=_kv(labels), start_time_unix_nano=start_ns, time_unix_nano=now_ns,
                        count=count, sum=total, bucket_counts=counts, explicit_bounds=bounds,
                    )
                )  # fmt: skip
            m.histogram.CopyFrom(pbm.Histogram(data_points=pts, aggregation_temporality=cum))
        else:  # gauge, info, unknown
            pts = [
                pbm.NumberDataPoint(
                    attributes=_kv(s.labels), time_unix_nano=now_ns, as_double=float(s.value)
                )
                for s in fam.samples
            ]
            m.gauge.CopyFrom(pbm.Gauge(data_points=pts))
        out.append(m)
    scope = InstrumentationScope(name=SCOPE, version=__version__)
    return ExportMetricsServiceRequest(
        resource_metrics=[
            pbm.ResourceMetrics(
                resource=resource, scope_metrics=[pbm.ScopeMetrics(scope=scope, metrics=out)]
            )
        ]
    )


class Backoff:
    """Exponential backoff with a cap; one warning when failing starts, one info when it ends."""

    def __init__(
        self,
        log,
        what: str,
        where: str,
        cap: float,
        clock: Callable[[], float] = time.monotonic,
        note: str = "",
    ):
        self.log, self.what, self.where, self.cap, self.clock = (
            log,
            what,
            where,
            max(cap, 0.05),
            clock,
        )
        self.note = note
        self.failures = 0
        self.next_try = 0.0
        self.last_error = ""

    def ready(self) -> bool:
        return self.clock() >= self.next_try

    def wait_time(self) -> float:
        return max(0.0, self.next_try - self.clock())

    def failed(self, err: str) -> None:
        self.failures += 1
        self.last_error = err
        delay = min(self.cap, 0.5 * 2 ** min(self.failures, 20))
        self.next_try = self.clock() + delay
        if self.failures == 1:
            self.log.warning(
                f"cannot export {self.what}{self.note}; retrying quietly with backoff",
                endpoint=self.where, error=err[:300],
            )  # fmt: skip
        else:
            self.log.debug(
                f"{self.what} export still failing",
                endpoint=self.where,
                error=err[:300],
                retry_in=round(delay, 1),
            )

    def ok(self) -> None:
        if self.failures:
            self.log.info(
                f"{self.what} export works again",
                endpoint=self.where,
                failed_attempts=self.failures,
            )
        self.failures = 0
        self.next_try = 0.0


def _dp_common(start_ns: int, now_ns: int) -> bytes:
    return (
        (b"\x11" + start_ns.to_bytes(8, "little") if start_ns else b"")
        + b"\x19"
        + now_ns.to_bytes(8, "little")
    )


def _labels(field: int, labels: Mapping[str, str]) -> bytes:
    return b"".join(_kv_bytes(field, k, v) for k, v in labels.items())


def metrics_request_bytes(
    families: Iterable, resource_attrs: Mapping[str, str], start_ns: int, now_ns: int | None = None
) -> bytes:
    """metrics_request(...).SerializeToString(), written directly (a push every 15 s stays cheap)."""
    now_ns = now_ns or time.time_ns()
    cum = b"\x10\x02"  # aggregation_temporality = CUMULATIVE
    metrics = []
    for fam in families:
        head = _str(1, fam.name) + (_str(2, fam.documentation) if fam.documentation else b"")
        if fam.type == "counter":
            pts = b"".join(
                _ld(
                    1,
                    _dp_common(start_ns, now_ns)
                    + b"\x21"
                    + _DOUBLE.pack(float(s.value))
                    + _labels(7, s.labels),
                )
                for s in fam.samples
                if s.name.endswith("_total")
            )
            metrics.append(_ld(2, head + _ld(7, pts + cum + b"\x18\x01")))
        elif fam.type == "histogram":
            pts = []
            for labels, bounds, counts, total, count in _histogram_points(fam):
                body = (
                    _dp_common(start_ns, now_ns)
                    + (b"\x21" + count.to_bytes(8, "little") if count else b"")
                    + b"\x29" + _DOUBLE.pack(total)
                    + (_ld(6, b"".join(c.to_bytes(8, "little") for c in counts)) if counts else b"")
                    + (_ld(7, b"".join(_DOUBLE.pack(x) for x in bounds)) if bounds else b"")
                    + _labels(9, labels)
                )  # fmt: skip
                pts.append(_ld(1, body))
            metrics.append(_ld(2, head + _ld(9, b"".join(pts) + cum)))
        else:
            pts = b"".join(
                _ld(
                    1,
                    b"\x19"
                    + now_ns.to_bytes(8, "little")
                    + b"\x21"
                    + _DOUBLE.pack(float(s.value))
                    + _labels(7, s.labels),
                )
                for s in fam.samples
            )
            metrics.append(_ld(2, head + _ld(5, pts)))
    scope = _ld(1, _str(1, SCOPE) + _str(2, __version__))
    resource = _ld(1, b"".join(_kv_bytes(1, k, v) for k, v in resource_attrs.items()))
    return _ld(1, resource + _ld(2, scope + b"".join(metrics)))
