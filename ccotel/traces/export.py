"""Spans out: OTLP protobuf (our own encoder, ids as built) or any SDK SpanExporter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.trace.v1 import trace_pb2 as pbt

from ccotel import __version__
from ccotel.otlp import SCOPE, ExportError, Sender, Target, pb_resource
from ccotel.traces.model import Span

_SPAN_FLAGS_HAS_IS_REMOTE = 0x100  # parent is local


class SpanSink(Protocol):
    def export(self, spans: Sequence[Span]) -> None:
        """Deliver or raise ExportError."""

    def shutdown(self) -> None: ...


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


def encode(spans: Sequence[Span], resource_attrs: Mapping[str, str]) -> ExportTraceServiceRequest:
    out = []
    for s in spans:
        p = pbt.Span(
            trace_id=s.trace_id.to_bytes(16, "big"),
            span_id=s.span_id.to_bytes(8, "big"),
            parent_span_id=s.parent_id.to_bytes(8, "big") if s.parent_id else b"",
            name=s.name,
            kind=s.kind + 1,  # SDK SpanKind INTERNAL=0 -> OTLP SPAN_KIND_INTERNAL=1
            start_time_unix_nano=s.start,
            end_time_unix_nano=s.end,
            attributes=_attrs(s.attrs),
            flags=0x01 | _SPAN_FLAGS_HAS_IS_REMOTE,
        )
        if s.error is not None:
            p.status.code = pbt.Status.STATUS_CODE_ERROR
            p.status.message = s.error
        for name, t, attrs in s.events:
            p.events.append(pbt.Span.Event(name=name, time_unix_nano=t, attributes=_attrs(attrs)))
        out.append(p)
    scope = InstrumentationScope(name=SCOPE, version=__version__)
    return ExportTraceServiceRequest(
        resource_spans=[pbt.ResourceSpans(resource=pb_resource(resource_attrs), scope_spans=[pbt.ScopeSpans(scope=scope, spans=out)])]
    )


class OtlpSpanSink:
    """OTLP/HTTP (protobuf) or gRPC: one request per call, no retries of its own."""

    def __init__(self, target: Target, resource_attrs: Mapping[str, str]):
        self.target = target
        self.sender = Sender(target)
        self.resource = dict(resource_attrs)

    def export(self, spans: Sequence[Span]) -> None:
        self.sender.send(encode(spans, self.resource))

    def shutdown(self) -> None:
        self.sender.shutdown()


def to_readable(s: Span, resource, scope=None):
    """A Span as the SDK's ReadableSpan (for SDK exporters, e.g. the in-memory one)."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    ctx = SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent = (
        SpanContext(s.trace_id, s.parent_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)) if s.parent_id else None
    )
    return ReadableSpan(
        name=s.name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes={k: (tuple(v) if isinstance(v, list) else v) for k, v in s.attrs.items()},
        events=[Event(n, dict(a), t) for n, t, a in s.events],
        kind=SpanKind(s.kind),
        status=Status(StatusCode.ERROR, s.error) if s.error is not None else Status(StatusCode.UNSET),
        start_time=s.start,
        end_time=s.end,
        instrumentation_scope=scope,
    )


class SdkSpanSink:
    """Adapter to any opentelemetry-sdk SpanExporter (InMemorySpanExporter in tests)."""

    def __init__(self, exporter, resource_attrs: Mapping[str, str]):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope as Scope

        self.exporter = exporter
        self.resource = Resource(dict(resource_attrs))
        self.scope = Scope(SCOPE, __version__)

    def export(self, spans: Sequence[Span]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        res = self.exporter.export([to_readable(s, self.resource, self.scope) for s in spans])
        if res is not SpanExportResult.SUCCESS:
            raise ExportError("span exporter returned FAILURE")

    def shutdown(self) -> None:
        self.exporter.shutdown()
