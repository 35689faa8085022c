"""Prometheus metric families -> one OTLP ExportMetricsServiceRequest, cumulative.

Counters become cumulative monotonic sums named like the family (a Prometheus
exporter in the collector adds ``_total`` back), gauges gauges, histograms
cumulative explicit-bucket histograms: what one scrape of /metrics shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ccotel.otlp.protowire import DOUBLE, attributes, fixed64, ld, request, string

if TYPE_CHECKING:
    from prometheus_client import Metric

_CUMULATIVE = b"\x10\x02"  # aggregation_temporality = CUMULATIVE


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


def _metric(fam: Metric, start_ns: int, now_ns: int) -> bytes:
    times = (b"\x11" + fixed64(start_ns) if start_ns else b"") + b"\x19" + fixed64(now_ns)
    head = string(1, fam.name) + (string(2, fam.documentation) if fam.documentation else b"")
    if fam.type == "counter":
        pts = b"".join(
            ld(1, times + b"\x21" + DOUBLE.pack(float(s.value)) + attributes(7, s.labels))
            for s in fam.samples
            if s.name.endswith("_total")
        )
        return ld(2, head + ld(7, pts + _CUMULATIVE + b"\x18\x01"))  # Sum, is_monotonic
    if fam.type == "histogram":
        points = []
        for labels, bounds, counts, total, count in histogram_points(fam):
            body = (
                times
                + (b"\x21" + fixed64(count) if count else b"")
                + b"\x29" + DOUBLE.pack(total)
                + (ld(6, b"".join(fixed64(c) for c in counts)) if counts else b"")
                + (ld(7, b"".join(DOUBLE.pack(x) for x in bounds)) if bounds else b"")
                + attributes(9, labels)
            )  # fmt: skip
            points.append(ld(1, body))
        return ld(2, head + ld(9, b"".join(points) + _CUMULATIVE))
    # gauge, info, unknown: a gauge, without a start time
    pts = b"".join(
        ld(1, b"\x19" + fixed64(now_ns) + b"\x21" + DOUBLE.pack(float(s.value)) + attributes(7, s.labels))
        for s in fam.samples
    )  # fmt: skip
    return ld(2, head + ld(5, pts))


def encode_metrics(
    families: Iterable[Metric],
    resource_attrs: Mapping[str, str],
    start_ns: int,
    now_ns: int | None = None,
) -> bytes:
    """The families one Prometheus scrape shows, as a serialized ExportMetricsServiceRequest."""
    now_ns = now_ns or time.time_ns()
    return request(resource_attrs, b"".join(_metric(f, start_ns, now_ns) for f in families))
