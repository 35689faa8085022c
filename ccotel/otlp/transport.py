"""Sending one OTLP request, over HTTP/protobuf or gRPC, and what the answer means.

One attempt per call: no retries, no logging. The caller owns backoff and the
one warning, and the transcripts are the durable queue. Every failure is an
``ExportError`` whose ``kind`` says what the caller may do with the data:

- ``TRANSIENT`` (no answer, HTTP 408/429/5xx, gRPC UNAVAILABLE...): try the same again later;
- ``REFUSED`` (HTTP 401/403/404 and other 4xx, gRPC UNAUTHENTICATED, PERMISSION_DENIED,
  UNIMPLEMENTED...): the collector or its configuration is unusable; keep everything
  and try again later;
- ``TOO_LARGE`` (HTTP 413, gRPC RESOURCE_EXHAUSTED): send less at once;
- ``MALFORMED`` (HTTP 400, gRPC INVALID_ARGUMENT): something in this request is
  invalid; only then may a caller drop data, one item at a time.

A success may still be partial: ``Reply.rejected`` is what the collector's
``partial_success`` says it refused (OTLP: such a request must not be retried).
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccotel import __version__
from ccotel.otlp.settings import Target

TRANSIENT, REFUSED, TOO_LARGE, MALFORMED = "transient", "refused", "too_large", "malformed"
_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


class ExportError(Exception):
    """One attempt failed. ``str()`` is the status and a short reason, never the payload.

    ``answered``: something that speaks the protocol answered (as opposed to no
    listener, no route, a timeout), i.e. there is a collector and it is failing.
    ``local``: the fault is on this machine (the state database), not the collector's.
    """

    def __init__(
        self,
        status: str,
        kind: str = TRANSIENT,
        detail: str = "",
        *,
        answered: bool = False,
        retry_after: float | None = None,
        local: bool = False,
    ):
        super().__init__(f"{status}: {detail}" if detail else status)
        self.status, self.kind, self.detail = status, kind, detail
        self.answered, self.retry_after, self.local = answered, retry_after, local


@dataclass(frozen=True)
class Reply:
    rejected: int = 0  # items the collector refused (partial_success)
    message: str = ""  # its error_message


def _http_kind(status: int) -> str:
    if status == 400:
        return MALFORMED
    if status == 413:
        return TOO_LARGE
    if status in (408, 429) or (500 <= status < 600 and status != 501):
        return TRANSIENT
    return REFUSED  # 3xx (redirects are not followed), 401, 403, 404, 405, 415, 501...


_GRPC_KINDS = {
    "INVALID_ARGUMENT": MALFORMED,
    "RESOURCE_EXHAUSTED": TOO_LARGE,
    "UNAUTHENTICATED": REFUSED,
    "PERMISSION_DENIED": REFUSED,
    "UNIMPLEMENTED": REFUSED,
    "NOT_FOUND": REFUSED,
    "FAILED_PRECONDITION": REFUSED,
    "ALREADY_EXISTS": REFUSED,
}
_GRPC_NO_ANSWER = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def _printable(b: bytes) -> str:
    return re.sub(r"\s+", " ", re.sub(rb"[^\x20-\x7e]+", b" ", b[:400]).decode()).strip()[:200]


def partial_success(signal: str, body: bytes) -> Reply:
    """The partial_success of an Export*ServiceResponse (empty body: full success)."""
    if not body:
        return Reply()
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse as Resp,
        )
    else:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceResponse as Resp,
        )
    from google.protobuf.message import DecodeError

    try:
        ps = Resp.FromString(body).partial_success
    except DecodeError:  # not a protobuf answer (a proxy's page): the status said success
        return Reply()
    n = ps.rejected_spans if signal == "traces" else ps.rejected_data_points
    return Reply(max(0, int(n)), ps.error_message[:300])


class Sender:
    """Sends one serialized Export*ServiceRequest; raises ExportError on failure."""

    def __init__(self, t: Target):
        self.t = t
        self._conn: http.client.HTTPConnection | None = None
        self._grpc: tuple[Any, Callable[..., bytes]] | None = None  # (channel, method)
        u = urlsplit(t.url)
        self._https = u.scheme == "https"
        self._host = u.hostname or "localhost"
        self._port = u.port or (443 if self._https else 80)
        self._path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"ccotel/{__version__}",
            **t.headers,
        }

    def send(self, body: bytes) -> Reply:
        if self.t.protocol == "grpc":
            return partial_success(self.t.signal, self._rpc(body))
        return partial_success(self.t.signal, self._post(body))

    def _clean(self, text: str) -> str:
        """A collector's words, without anything we sent it in confidence."""
        for s in self.t.secrets:
            text = text.replace(s, "[REDACTED]")
        return text

    # --- http/protobuf -------------------------------------------------------

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

    def _post(self, body: bytes) -> bytes:
        headers = self._headers
        if self.t.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
            headers = {**headers, "Content-Encoding": "gzip"}
        for attempt in (0, 1):  # a pooled connection the server closed: one fresh try
            try:
                conn = self._connection()
                conn.request("POST", self._path, body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 0 and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    continue
                raise _connection_error(exc) from None
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if 200 <= resp.status < 300:  # a body that is not protobuf says nothing more
                ctype = (resp.getheader("Content-Type") or "application/x-protobuf").lower()
                return payload if "protobuf" in ctype else b""
            retry_after = None
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(resp.getheader("Retry-After") or "")
            raise ExportError(
                f"HTTP {resp.status} {resp.reason}".strip(),
                _http_kind(resp.status),
                self._clean(_printable(payload)),
                answered=True,
                retry_after=retry_after,
            )
        raise AssertionError("unreachable")

    # --- grpc ----------------------------------------------------------------

    def _call(self) -> Callable[..., bytes]:
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
            # bytes in, bytes out: the request is already serialized
            self._grpc = (chan, chan.unary_unary(_GRPC_METHODS[self.t.signal]))
        return self._grpc[1]

    def _rpc(self, body: bytes) -> bytes:
        import grpc

        meta = [(k.lower(), v) for k, v in self.t.headers.items()]
        comp = grpc.Compression.Gzip if self.t.compression == "gzip" else None
        try:
            return self._call()(body, metadata=meta, timeout=self.t.timeout, compression=comp)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            name = code.name if code is not None else "UNKNOWN"
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise ExportError(
                f"gRPC {name}",
                _GRPC_KINDS.get(name, TRANSIENT),
                self._clean(str(detail or ""))[:200],
                answered=name not in _GRPC_NO_ANSWER,
            ) from None
        except (OSError, ValueError) as exc:  # certificate files that cannot be read
            raise ExportError("TLS settings", REFUSED, str(exc)[:200]) from None

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


def _connection_error(exc: BaseException) -> ExportError:
    if isinstance(exc, ssl.SSLError):  # an untrusted certificate, or TLS to a plain port
        return ExportError("TLS", REFUSED, f"{type(exc).__name__}: {exc}", answered=True)
    if isinstance(exc, http.client.HTTPException) and not isinstance(
        exc, http.client.RemoteDisconnected
    ):
        return ExportError(
            "not an HTTP/1.1 answer",
            REFUSED,
            f'{type(exc).__name__} (an OTLP/gRPC port? then set otlp_protocol = "grpc")',
            answered=True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return ExportError("connection refused")
    if isinstance(exc, socket.gaierror):
        return ExportError("unknown host", detail=str(exc))
    if isinstance(exc, TimeoutError):
        return ExportError("no answer in time", detail=str(exc))
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return ExportError("TLS settings", REFUSED, str(exc)[:200])  # CA or client cert files
    return ExportError(type(exc).__name__, detail=str(exc)[:200])
