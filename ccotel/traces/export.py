"""Spans out: ccotel's spans as one OTLP ExportTraceServiceRequest, and the sink that sends it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ccotel.otlp import TOO_LARGE, ExportError, Reply, Sender, Target, protowire
from ccotel.traces.model import Span

_FLAGS = (0x01 | 0x100).to_bytes(4, "little")  # sampled; HAS_IS_REMOTE with is_remote false
# The collector's gRPC receiver refuses messages over 4 MiB by default; captured content
# can make 512 spans larger than that. Over this, a batch is split before it is sent.
MAX_REQUEST_BYTES = 4_000_000


class SpanSink(Protocol):
    def export(self, spans: Sequence[Span]) -> Reply | None:
        """Deliver, or raise ExportError when the collector took none of them. A Reply
        with ``rejected`` says how many it refused in a partial success (None: none)."""

    def probe(self) -> None:
        """Send a request holding no span; raise ExportError if even that is refused."""

    def shutdown(self) -> None: ...


def _span(s: Span) -> bytes:
    parts = [
        b"\x0a\x10" + s.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + s.span_id.to_bytes(8, "big"),
    ]
    if s.parent_id:
        parts.append(b"\x22\x08" + s.parent_id.to_bytes(8, "big"))
    parts.append(protowire.string(5, s.name))
    parts.append(b"\x30" + protowire.varint(s.kind + 1))  # SDK INTERNAL=0 -> OTLP INTERNAL=1
    parts.append(b"\x39" + s.start.to_bytes(8, "little"))
    parts.append(b"\x41" + s.end.to_bytes(8, "little"))
    parts.append(protowire.attributes(9, s.attrs))
    for name, t, attrs in s.events:
        ev = (
            b"\x09"
            + t.to_bytes(8, "little")
            + protowire.string(2, name)
            + protowire.attributes(3, attrs)
        )
        parts.append(protowire.ld(11, ev))
    if s.error is not None:
        parts.append(
            protowire.ld(15, protowire.string(2, s.error) + b"\x18\x02")
        )  # STATUS_CODE_ERROR
    parts.append(b"\x85\x01" + _FLAGS)
    return protowire.ld(2, b"".join(parts))


def encode_spans(spans: Sequence[Span], resource_attrs: Mapping[str, str]) -> bytes:
    """A serialized ExportTraceServiceRequest: one resource, ccotel's scope, the spans."""
    return protowire.request(resource_attrs, b"".join(_span(s) for s in spans))


class OtlpSpanSink:
    """OTLP/HTTP (protobuf) or gRPC: one request per call, no retries of its own."""

    def __init__(self, target: Target, resource_attrs: Mapping[str, str]):
        self.target = target
        self.sender = Sender(target)
        self.resource = dict(resource_attrs)

    def export(self, spans: Sequence[Span]) -> Reply:
        body = encode_spans(spans, self.resource)
        if len(body) > MAX_REQUEST_BYTES and len(spans) > 1:
            raise ExportError(
                f"request of {len(body)} bytes", TOO_LARGE, f"over {MAX_REQUEST_BYTES}"
            )
        return self.sender.send(body)

    def probe(self) -> None:
        self.sender.send(encode_spans([], self.resource))  # our resource and scope, no span

    def shutdown(self) -> None:
        self.sender.shutdown()
