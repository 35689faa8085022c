"""An OTLP receiver for tests (HTTP/protobuf and gRPC), and the tests that it reads what it must.

It decodes ``ExportTraceServiceRequest`` and ``ExportMetricsServiceRequest``
with the opentelemetry-proto classes, accepts chunked bodies (as Claude Code
itself sends them) and gzip, and can play a collector that is down (503),
absent (not listening), or answers whatever a test scripts: ``answer(n, spans)``
is called for the n-th trace request (1-based) with its decoded spans and
returns an ``Answer`` (an HTTP status or gRPC code, or a partial success that
rejects the request's last ``rejected`` spans) or None for a plain success.
Only the spans a collector would keep are kept in ``got.spans``.
Used by the trace tests, tests/test_faults_collector.py and bench/traces.py.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(v) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class RSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start: int
    end: int
    attrs: dict[str, Any]
    status: int
    status_message: str
    events: list[tuple[str, dict]]
    resource: dict[str, Any]
    scope: str


@dataclass
class Received:
    spans: list[RSpan] = field(default_factory=list)  # the spans kept (accepted)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # every accepted request body, decoded from gzip
    requests: int = 0  # trace requests (metrics: metric_requests)
    chunked: int = 0
    refused: int = 0  # requests answered with an error status
    rejected: int = 0  # spans refused in partial successes
    sizes: list[int] = field(default_factory=list)  # spans per trace request, in order
    metric_requests: int = 0


@dataclass
class Answer:
    """What the scripted collector answers to one request."""

    status: int = 200  # HTTP status
    grpc: str | None = None  # gRPC status code name (GrpcReceiver)
    rejected: int = 0  # with a success: partial_success rejecting the last `rejected` spans
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 300 and self.grpc is None


Script = Callable[[int, list[RSpan]], "Answer | None"]


def _trace_response(a: Answer) -> bytes:
    if not (a.rejected or a.message):
        return ExportTraceServiceResponse().SerializeToString()
    return ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(
            rejected_spans=a.rejected, error_message=a.message
        )
    ).SerializeToString()


def decode_traces(body: bytes) -> list[RSpan]:
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        res = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    RSpan(
                        s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, s.kind,
                        s.start_time_unix_nano, s.end_time_unix_nano,
                        {kv.key: _value(kv.value) for kv in s.attributes}, s.status.code, s.status.message,
                        [(e.name, {kv.key: _value(kv.value) for kv in e.attributes}) for e in s.events],
                        res, ss.scope.name,
                    )
                )  # fmt: skip
    return out


class Receiver:
    """OTLP/HTTP on 127.0.0.1:port. ``fail_status`` set: answer every request with it."""

    def __init__(
        self,
        port: int = 0,
        keep_raw: bool = True,
        decode: bool = True,
        tls: tuple[str, str] | None = None,
        answer: Script | None = None,
        answer_metrics: Callable[[int, ExportMetricsServiceRequest], Answer | None] | None = None,
    ):
        self.got = Received()
        self.lock = threading.Lock()
        self.fail_status: int | None = None
        self.answer, self.answer_metrics = answer, answer_metrics
        self.keep_raw, self.decode = keep_raw, decode
        recv = self

        self.conns: set[socket.socket] = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with recv.lock:
                    recv.conns.add(self.connection)

            def finish(self) -> None:
                with recv.lock:
                    recv.conns.discard(self.connection)
                super().finish()

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    with recv.lock:
                        recv.got.chunked += 1
                    body = b"".join(parts)
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                return body

            def do_POST(self):
                body = self._body()
                path = self.path.split("?", 1)[0]
                if path == "/v1/traces":
                    spans = decode_traces(body) if recv.decode else []
                    with recv.lock:
                        recv.got.requests += 1
                        recv.got.sizes.append(len(spans))
                        n = recv.got.requests
                    a = _decide(recv, n, spans)  # outside the lock: an answer may take its time
                    with recv.lock:
                        if a.ok:
                            keep = spans[: len(spans) - a.rejected] if a.rejected else spans
                            recv.got.spans.extend(keep)
                            recv.got.rejected += len(spans) - len(keep)
                            if recv.keep_raw:
                                recv.got.raw.append(body)
                        else:
                            recv.got.refused += 1
                    if not a.ok:
                        self._send(a.status, a.message.encode() or b"collector says no", a.headers)
                        return
                    self._send(200, _trace_response(a))
                elif path == "/v1/metrics":
                    req = ExportMetricsServiceRequest()
                    req.ParseFromString(body)
                    with recv.lock:
                        recv.got.metric_requests += 1
                        a = Answer(recv.fail_status) if recv.fail_status else None
                        if a is None and recv.answer_metrics:
                            a = recv.answer_metrics(recv.got.metric_requests, req)
                        a = a or Answer()
                        if a.ok:
                            recv.got.metrics.append(req)
                        else:
                            recv.got.refused += 1
                    if not a.ok:
                        self._send(a.status, a.message.encode() or b"collector says no")
                        return
                    resp = ExportMetricsServiceResponse()
                    if a.rejected or a.message:
                        resp.partial_success.rejected_data_points = a.rejected
                        resp.partial_success.error_message = a.message
                    self._send(200, resp.SerializeToString())
                else:
                    self._send(404, b"no such signal")

            def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]  # a client that gave up
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:  # a collector that goes away closes its kept-alive connections too
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def spans(self) -> list[RSpan]:
        with self.lock:
            return list(self.got.spans)

    def wait(self, pred, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver: condition not met in {timeout} s ({self.got.requests} requests, {len(self.got.spans)} spans)"
                )
            time.sleep(0.05)


def _decide(recv, n: int, spans: list[RSpan]) -> Answer:
    if recv.fail_status is not None:
        return Answer(recv.fail_status)
    a = recv.answer(n, spans) if recv.answer else None
    return a or Answer()


class GrpcReceiver:
    """OTLP/gRPC on 127.0.0.1:port (insecure); ``answer`` as for Receiver, with gRPC codes."""

    def __init__(self, answer: Script | None = None):
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as msvc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsvc

        self.got = Received()
        self.lock = threading.Lock()
        self.metadata: list[dict] = []
        self.fail_status: int | None = None
        self.answer = answer
        recv = self

        class Traces(tsvc.TraceServiceServicer):
            def Export(self, request, context):
                spans = decode_traces(request.SerializeToString())
                with recv.lock:
                    recv.got.requests += 1
                    recv.got.sizes.append(len(spans))
                    recv.metadata.append(dict(context.invocation_metadata()))
                    n = recv.got.requests
                a = _decide(recv, n, spans)
                with recv.lock:
                    if a.grpc is None:
                        keep = spans[: len(spans) - a.rejected] if a.rejected else spans
                        recv.got.spans.extend(keep)
                        recv.got.rejected += len(spans) - len(keep)
                    else:
                        recv.got.refused += 1
                if a.grpc is not None:
                    context.abort(
                        getattr(grpc.StatusCode, a.grpc), a.message or "collector says no"
                    )
                return ExportTraceServiceResponse.FromString(_trace_response(a))

        class Metrics(msvc.MetricsServiceServicer):
            def Export(self, request, context):
                with recv.lock:
                    recv.got.metric_requests += 1
                    recv.got.metrics.append(request)
                return ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        tsvc.add_TraceServiceServicer_to_server(Traces(), self.server)
        msvc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(0)

    def spans(self) -> list[RSpan]:
        with self.lock:
            return list(self.got.spans)

    def wait(self, pred, timeout: float = 60.0) -> None:
        Receiver.wait(self, pred, timeout)  # type: ignore[arg-type]


# --- the receiver's own tests --------------------------------------------------


def _one_span_request() -> bytes:
    from opentelemetry.proto.trace.v1 import trace_pb2

    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="x")]
                    )
                ]
            )
        ]
    ).SerializeToString()


def test_receiver_reads_chunked_bodies():
    body = _one_span_request()
    with Receiver() as r:
        s = socket.create_connection(("127.0.0.1", r.port))
        half = len(body) // 2
        chunks = (
            b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in (body[:half], body[half:]))
            + b"0\r\n\r\n"
        )
        s.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()
        r.wait(lambda: len(r.spans()) == 1)
        assert r.got.chunked == 1
        assert r.spans()[0].span_id == "02" * 8


def test_receiver_reads_gzip_and_plays_down():
    body = _one_span_request()
    with Receiver() as r:
        c = http.client.HTTPConnection("127.0.0.1", r.port)
        c.request("POST", "/v1/traces", gzip.compress(body), {"Content-Encoding": "gzip"})
        resp = c.getresponse()
        assert resp.status == 200 and ExportTraceServiceResponse.FromString(resp.read()) == (
            ExportTraceServiceResponse()
        )
        assert [s.span_id for s in r.spans()] == ["02" * 8], "the gzip body was decoded"
        r.fail_status = 503
        c.request("POST", "/v1/traces", body)
        resp = c.getresponse()
        resp.read()
        assert resp.status == 503
        assert len(r.spans()) == 1 and r.got.refused == 1
