"""The daemon's exporters: a trace thread and an OTLP metrics push thread.

Neither ever blocks the metrics path: the daemon only calls ``notify()``
(sets an event) after each committed batch. Each thread owns its backoff and
logs one warning when its collector becomes unreachable and one line when it
is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ccotel.otlp import (
    Backoff,
    ExportError,
    Sender,
    configured,
    metrics_request_bytes,
    resource_attributes,
    target,
)
from ccotel.sinks.prometheus import project_labeler
from ccotel.traces.builder import Options
from ccotel.traces.export import OtlpSpanSink, SpanSink
from ccotel.traces.shipper import Shipper

log = structlog.get_logger()

TICK = 5.0  # seconds between passes without file events (idle sessions, retries)
WATERMARK = "traces_watermark"


def options(cfg) -> Options:
    return Options(
        capture_content=cfg.capture_content,
        tool_details=cfg.tool_details,
        max_chars=cfg.content_max_chars,
        project=project_labeler(cfg.project_label if cfg.project_label != "off" else "name"),
        include_cwd=cfg.project_label not in ("hash", "off"),
    )


def span_sink(cfg) -> SpanSink:
    return OtlpSpanSink(target(cfg, "traces"), resource_attributes(cfg))


class TraceThread:
    def __init__(self, shipper: Shipper, where: str, retry_max: float, tick: float = TICK):
        self.shipper = shipper
        self.tick = tick
        self.backoff = Backoff(
            log,
            "traces",
            where,
            retry_max,
            note=" (metrics keep counting; spans wait in the transcripts)",
        )
        self.ev = threading.Event()
        self._mark_at = -1e9
        self.thread = threading.Thread(target=self._run, name="ccotel-traces", daemon=True)

    def start(self) -> None:
        self.ev.set()  # a first pass at once
        self.thread.start()

    def notify(self) -> None:
        self.ev.set()

    def stop(self, timeout: float = 15.0) -> None:
        self.shipper.stop.set()
        self.ev.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        sh = self.shipper
        while not sh.stop.is_set():
            self.ev.wait(self.backoff.wait_time() if self.backoff.failures else self.tick)
            self.ev.clear()
            if sh.stop.is_set():
                break
            if not self.backoff.ready():
                continue
            try:
                ok = sh.run_pass()
            except Exception as exc:  # never let the thread die: log and retry later
                log.exception("trace pass failed", error=str(exc))
                sh._rollback()
                ok = False
            if ok:
                self.backoff.ok()
                if (
                    time.monotonic() - self._mark_at >= 60
                ):  # the daemon ran up to here (coarse, rarely written)
                    sh.set_meta(WATERMARK, str(sh.clock()))
                    self._mark_at = time.monotonic()
            else:
                self.backoff.failed(sh.stats.last_error)


class MetricsPusher:
    def __init__(self, cfg, collect: Callable[[], list], interval: float, errors: dict):
        self.t = target(cfg, "metrics")
        self.sender = Sender(self.t)
        self.resource = resource_attributes(cfg)
        self.collect, self.interval, self.errors = collect, interval, errors
        self.start_ns = time.time_ns()
        self.backoff = Backoff(
            log,
            "metrics",
            self.t.url,
            cfg.otlp_retry_max,
            note=" over OTLP (/metrics still serves them)",
        )
        self.stop_ev = threading.Event()
        self.pushed = 0
        self.thread = threading.Thread(target=self._run, name="ccotel-metrics-push", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_ev.set()
        self.thread.join(10)
        self.push()  # the last values
        self.sender.shutdown()

    def push(self) -> bool:
        try:
            body = metrics_request_bytes(self.collect(), self.resource, self.start_ns)
            if self.t.protocol == "grpc":
                self.sender.send(ExportMetricsServiceRequest.FromString(body))
            else:
                self.sender.send_bytes(body)
        except Exception as exc:  # never let the push thread die: count, back off, retry next time
            self.errors["metrics"] = self.errors.get("metrics", 0) + 1
            self.backoff.failed(str(exc))
            return False
        self.backoff.ok()
        self.pushed += 1
        return True

    def _run(self) -> None:
        while not self.stop_ev.wait(self.interval):
            self.push()


class Exporters:
    """What the daemon runs besides its metrics: traces and the OTLP metrics push."""

    def __init__(
        self,
        cfg,
        state_db: Path,
        clock: Callable[[], float] = time.time,
        sink: SpanSink | None = None,
    ):
        self.cfg = cfg
        self.errors: dict[str, int] = {}
        self.traces: TraceThread | None = None
        self.pusher: MetricsPusher | None = None
        self._registry = None
        if cfg.traces:
            try:
                sink = sink or span_sink(cfg)
            except (ValueError, OSError) as exc:
                log.error("traces are off: the OTLP settings cannot work", error=str(exc))
                return
            where = getattr(getattr(sink, "target", None), "url", "") or "?"
            now = clock()
            shipper = Shipper(
                state_db, sink, options(cfg), clock=clock, session_idle=cfg.session_idle,
                batch=cfg.trace_batch_spans, rate=cfg.trace_rate, max_line=cfg.max_line_bytes,
            )  # fmt: skip
            mark = shipper._meta(WATERMARK)
            since = now - cfg.trace_lookback
            if mark:
                since = min(since, float(mark))
            shipper.since = since
            self.traces = TraceThread(shipper, where, cfg.otlp_retry_max)

    def attach_registry(self, registry) -> None:
        """The metrics to push over OTLP: what /metrics shows.

        Pushed only to an endpoint the user named: with the default one, the local stack
        scrapes /metrics, and a daemon reaching Prometheus both ways would count twice.
        """
        self._registry = registry
        if self.cfg.metrics_push_interval > 0 and configured(self.cfg, "metrics"):
            try:
                self.pusher = MetricsPusher(
                    self.cfg,
                    lambda: list(registry.collect()),
                    self.cfg.metrics_push_interval,
                    self.errors,
                )
            except (ValueError, OSError) as exc:
                log.error("OTLP metrics push is off: the OTLP settings cannot work", error=str(exc))

    def start(self) -> None:
        if self.traces:
            self.traces.start()
        if self.pusher:
            self.pusher.start()

    def notify(self) -> None:
        if self.traces:
            self.traces.notify()

    def stop(self) -> None:
        if self.traces:
            self.traces.stop()
            self.traces.shipper.sink.shutdown()
            self.traces.shipper.close()
        if self.pusher:
            self.pusher.stop()

    def health(self) -> dict:
        if not self.traces:
            return {"enabled": False}
        st = self.traces.shipper.stats
        return {
            "enabled": True,
            "endpoint": self.traces.backoff.where,
            "spans_exported": st.spans_exported,
            "failing": self.traces.backoff.failures > 0,
            "backlog_bytes": st.backlog_bytes,
            "open_sessions": st.sessions_open,
        }

    def metrics(self) -> list:
        """Health metrics for TotalsCollector(extra=...)."""
        errs = CounterMetricFamily(
            "ccotel_export_errors", "Failed OTLP export attempts", labels=["signal"]
        )
        tr = self.traces.shipper.stats if self.traces else None
        errs.add_metric(["traces"], tr.errors if tr else 0)
        errs.add_metric(["metrics"], self.errors.get("metrics", 0))
        out = [errs]
        out.append(
            CounterMetricFamily(
                "ccotel_spans_exported",
                "Spans the collector confirmed",
                value=tr.spans_exported if tr else 0,
            )
        )
        out.append(
            CounterMetricFamily(
                "ccotel_spans_dropped",
                "Spans the collector refused as invalid (dropped)",
                value=tr.dropped if tr else 0,
            )
        )
        out.append(
            GaugeMetricFamily(
                "ccotel_export_queue_spans",
                "Spans built and not yet confirmed by the collector",
                value=tr.queue if tr else 0,
            )
        )
        out.append(
            GaugeMetricFamily(
                "ccotel_trace_backlog_bytes",
                "Transcript bytes counted by the metrics and not yet traced",
                value=tr.backlog_bytes if tr else 0,
            )
        )
        out.append(
            GaugeMetricFamily(
                "ccotel_trace_open_sessions",
                "Sessions whose root span waits for idleness or the end of the run",
                value=tr.sessions_open if tr else 0,
            )
        )
        return out


def backfill_traces(
    cfg, state_db: Path, since: float, clock: Callable[[], float] = time.time, sink: SpanSink | None = None,
    max_failures: int = 6, progress: Callable[[int], None] | None = None,
) -> dict:  # fmt: skip
    """Export the history: files changed since ``since``, rate-limited, retrying with backoff.

    Returns counts; raises ExportError when the collector stayed unreachable
    (what was confirmed stays confirmed: running again continues).
    """
    sink = sink or span_sink(cfg)
    shipper = Shipper(
        state_db, sink, options(cfg), clock=clock, session_idle=cfg.session_idle, since=since,
        batch=cfg.trace_batch_spans, rate=cfg.trace_rate, max_line=cfg.max_line_bytes,
    )  # fmt: skip
    where = getattr(getattr(sink, "target", None), "url", "") or "?"
    backoff = Backoff(log, "traces", where, cfg.otlp_retry_max)
    t0 = time.perf_counter()
    start_spans = shipper.stats.spans_exported
    try:
        while True:
            if shipper.run_pass():
                backoff.ok()
                break
            backoff.failed(shipper.stats.last_error)
            if backoff.failures >= max_failures:
                raise ExportError(
                    f"collector at {where} unreachable ({shipper.stats.last_error}); "
                    f"{shipper.stats.spans_exported - start_spans} spans were delivered; run again to continue"
                )
            time.sleep(backoff.wait_time())
        return {
            "spans": shipper.stats.spans_exported - start_spans,
            "batches": shipper.stats.batches,
            "open_sessions": shipper.stats.sessions_open,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    finally:
        sink.shutdown()
        shipper.close()
