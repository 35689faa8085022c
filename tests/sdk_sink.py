"""ccotel's spans through the OpenTelemetry SDK: ``to_readable`` and a sink for any SDK
SpanExporter (the in-memory one catches what the builder makes; bench/traces.py
times the SDK's OTLP exporters with it). Test and benchmark code, not ccotel's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ccotel import __version__
from ccotel.otlp import ExportError
from ccotel.otlp.protowire import SCOPE
from ccotel.traces.model import Span

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def to_readable(
    s: Span, resource: Resource, scope: InstrumentationScope | None = None
) -> ReadableSpan:
    """A Span as the SDK's ReadableSpan, with ccotel's ids and times."""
    ctx = SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=_SAMPLED)
    parent = (
        SpanContext(s.trace_id, s.parent_id, is_remote=False, trace_flags=_SAMPLED)
        if s.parent_id
        else None
    )
    return ReadableSpan(
        name=s.name,
        context=ctx,
        parent=parent,
        resource=resource,
        attributes={
            k: (tuple(v) if isinstance(v, list) else v) for k, v in s.attrs.items() if v is not None
        },
        events=[Event(n, {k: v for k, v in a.items() if v is not None}, t) for n, t, a in s.events],
        kind=SpanKind(s.kind),
        status=Status(StatusCode.ERROR, s.error)
        if s.error is not None
        else Status(StatusCode.UNSET),
        start_time=s.start,
        end_time=s.end,
        instrumentation_scope=scope,
    )


class SdkSpanSink:
    """The shipper's sink over an SDK SpanExporter (FAILURE: a transient ExportError)."""

    def __init__(self, exporter, resource_attrs: Mapping[str, str]):
        self.exporter = exporter
        self.resource = Resource(dict(resource_attrs))
        self.scope = InstrumentationScope(SCOPE, __version__)

    def export(self, spans: Sequence[Span]) -> None:
        res = self.exporter.export([to_readable(s, self.resource, self.scope) for s in spans])
        if res is not SpanExportResult.SUCCESS:
            raise ExportError("span exporter returned FAILURE")

    def probe(self) -> None:
        pass

    def shutdown(self) -> None:
        self.exporter.shutdown()
