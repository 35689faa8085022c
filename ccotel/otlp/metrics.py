"""Prometheus metric families -> one OTLP ExportMetricsServiceRequest.

Counters become monotonic sums named like the family (a Prometheus exporter in the collector
adds ``_total`` back), gauges gauges, histograms explicit-bucket histograms: what one scrape of
/metrics shows, cumulative by default. A counter sample's exemplar (the trace of the session
that spent last) goes with its data point.

Families that stand for Claude Code's own metrics (``sinks.native``: they carry ``otlp_name``
and ``otlp_unit``) go under the native meter's scope (``com.anthropic.claude_code``) with the
native names and units, and with the native per-point ``user.id`` (``user.email`` when known),
so a collector's Prometheus exporter names them as it names Claude Code's.

``MetricsEncoder`` adds what a push needs across pushes: the counters' start time (kept in the
state, so it survives restarts) and, with delta temporality, what the collector has already
been sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ccotel import __version__
from ccotel.otlp.protowire import DOUBLE, SCOPE, attributes, fixed64, ld, string

if TYPE_CHECKING:
    from prometheus_client import Metric
    from prometheus_client.samples import Exemplar

_CUMULATIVE, _DELTA = b"\x10\x02", b"\x10\x01"  # aggregation_temporality
NATIVE_SCOPE = "com.anthropic.claude_code"  # the meter of Claude Code's own metrics
TEMPORALITIES = ("cumulative", "delta", "lowmemory")


def _bucket_key(labels: Mapping[str, str]) -> tuple[Any, ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def histogram_points(
    fam: Metric,
) -> list[tuple[dict[str, Any], list[float], list[int], float, int]]:
    """(labels, explicit bounds, per-bucket counts, sum, count) per series of a histogram family."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
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


def _exemplar(ex: Exemplar, now_ns: int) -> bytes:
    """An Exemplar message (NumberDataPoint field 5): time, value, trace id."""
    ts = int(float(ex.timestamp) * 1e9) if ex.timestamp else now_ns  # float or Timestamp
    try:
        tid = bytes.fromhex(ex.labels.get("trace_id", ""))
    except ValueError:
        tid = b""
    body = b"\x11" + fixed64(ts) + b"\x19" + DOUBLE.pack(float(ex.value))
    return ld(5, body + (ld(5, tid) if len(tid) == 16 else b""))


def _times(start_ns: int, now_ns: int) -> bytes:
    return (b"\x11" + fixed64(start_ns) if start_ns else b"") + b"\x19" + fixed64(now_ns)


class _Series:
    """What delta temporality remembers: the cumulative values last sent, per series."""

    @staticmethod
    def key(name: str, labels: Mapping[str, str]) -> str:
        return name + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _metric(
    fam: Metric,
    start_ns: int,
    now_ns: int,
    extra: Mapping[str, str],
    delta: dict[str, Any] | None,
    sent: dict[str, Any],
) -> bytes:
    """One Metric message. ``delta``: the last values sent of a kind sent as deltas (None:
    cumulative); what is sent now is recorded in ``sent`` (kept once the collector accepts)."""
    name = getattr(fam, "otlp_name", None) or fam.name
    unit = getattr(fam, "otlp_unit", "")
    head = (
        string(1, name)
        + (string(2, fam.documentation) if fam.documentation else b"")
        + (string(3, unit) if unit else b"")
    )
    if fam.type == "counter":
        pts = []
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            value, start = float(s.value), start_ns
            if delta is not None:
                k = _Series.key(fam.name, s.labels)
                before, since = delta.get(k, (0.0, start_ns))
                sent[k] = (value, now_ns)
                value = value - before if value >= before else value  # a reset: all of it
                start = since
            body = _times(start, now_ns) + b"\x21" + DOUBLE.pack(value)
            if s.exemplar is not None:
                body += _exemplar(s.exemplar, now_ns)
            pts.append(ld(1, body + attributes(7, {**s.labels, **extra})))
        temporality = _DELTA if delta is not None else _CUMULATIVE
        return ld(2, head + ld(7, b"".join(pts) + temporality + b"\x18\x01"))  # Sum, monotonic
    if fam.type == "histogram":
        pts = []
        for labels, bounds, counts, total, count in histogram_points(fam):
            start = start_ns
            if delta is not None:
                k = _Series.key(fam.name, labels)
                before, since = delta.get(k, ((0, 0.0, [0] * len(counts)), start_ns))
                sent[k] = ((count, total, list(counts)), now_ns)
                b_count, b_total, b_counts = before
                if count >= b_count and len(b_counts) == len(counts):
                    count, total = count - b_count, total - b_total
                    counts = [c - b for c, b in zip(counts, b_counts, strict=True)]
                start = since
            body = (
                _times(start, now_ns)
                + (b"\x21" + fixed64(count) if count else b"")
                + b"\x29" + DOUBLE.pack(total)
                + (ld(6, b"".join(fixed64(c) for c in counts)) if counts else b"")
                + (ld(7, b"".join(DOUBLE.pack(x) for x in bounds)) if bounds else b"")
                + attributes(9, {**labels, **extra})
            )  # fmt: skip
            pts.append(ld(1, body))
        temporality = _DELTA if delta is not None else _CUMULATIVE
        return ld(2, head + ld(9, b"".join(pts) + temporality))
    # gauge, info, unknown: a gauge, without a start time
    gauge_pts = b"".join(
        ld(1, b"\x19" + fixed64(now_ns) + b"\x21" + DOUBLE.pack(float(s.value)) + attributes(7, {**s.labels, **extra}))
        for s in fam.samples
    )  # fmt: skip
    return ld(2, head + ld(5, gauge_pts))


def _scope(name: str, version: str, metrics: bytes) -> bytes:
    return ld(2, ld(1, string(1, name) + (string(2, version) if version else b"")) + metrics)


def native_point_attributes(resource: Mapping[str, Any]) -> dict[str, str]:
    """What Claude Code puts on each data point of its metrics and ccotel can: ``user.id`` (the
    resource's, else the login name) and ``user.email`` (when OTEL_RESOURCE_ATTRIBUTES names
    one). Never a session id: on a counter it splits every series per session."""
    out = {}
    uid = resource.get("user.id") or resource.get("user.name")
    if uid:
        out["user.id"] = str(uid)
    if resource.get("user.email"):
        out["user.email"] = str(resource["user.email"])
    return out


def encode_request(
    families: Iterable[Metric], resource_attrs: Mapping[str, Any], start_ns: int, now_ns: int,
    delta: dict[str, Any] | None = None, sent: dict[str, Any] | None = None,
    delta_types: tuple[str, ...] = (),
) -> bytes:  # fmt: skip
    """The families as a serialized ExportMetricsServiceRequest: ccotel's under ccotel's scope,
    native ones under Claude Code's meter. Families whose type is in ``delta_types`` are sent
    as deltas from ``delta`` (the values last sent), recording what they send in ``sent``."""
    own, native = [], []
    extra = native_point_attributes(resource_attrs)
    sent = {} if sent is None else sent
    for f in families:
        base = delta if f.type in delta_types else None
        if getattr(f, "otlp_name", None):
            native.append(_metric(f, start_ns, now_ns, extra, base, sent))
        else:
            own.append(_metric(f, start_ns, now_ns, {}, base, sent))
    scopes = _scope(SCOPE, __version__, b"".join(own))
    if native:
        scopes += _scope(NATIVE_SCOPE, "", b"".join(native))
    return ld(1, ld(1, attributes(1, resource_attrs)) + scopes)


def encode_metrics(
    families: Iterable[Metric],
    resource_attrs: Mapping[str, str],
    start_ns: int,
    now_ns: int | None = None,
) -> bytes:
    """The families one Prometheus scrape shows, as a serialized ExportMetricsServiceRequest
    (cumulative)."""
    return encode_request(families, resource_attrs, start_ns, now_ns or time.time_ns())


class MetricsEncoder:
    """Requests for one pusher: cumulative from a fixed start, or deltas of what the collector
    accepted. ``temporality`` as OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE names it:
    ccotel's counters are observed (asynchronous) and its histograms are histograms, so
    ``delta`` sends both as deltas and ``lowmemory`` only the histograms."""

    def __init__(self, resource: Mapping[str, Any], start_ns: int, temporality: str = "cumulative",
                 baseline: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.resource, self.start_ns = resource, start_ns
        self.temporality = temporality
        self.baseline: dict[str, Any] = baseline if baseline is not None else {}

    @property
    def delta(self) -> bool:
        return self.temporality != "cumulative"

    def encode(
        self, families: list[Metric], now_ns: int | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """(request, what to record as sent once the collector accepts it)."""
        now_ns = now_ns or time.time_ns()
        types = {"delta": ("counter", "histogram"), "lowmemory": ("histogram",)}
        sent: dict[str, Any] = {}
        body = encode_request(families, self.resource, self.start_ns, now_ns, self.baseline,
                              sent, types.get(self.temporality, ()))  # fmt: skip
        return body, sent

    def accepted(self, sent: dict[str, Any]) -> None:
        self.baseline.update(sent)
