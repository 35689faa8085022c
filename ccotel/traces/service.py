"""The daemon's exporters: a trace thread and an OTLP metrics push thread.

Neither ever blocks the metrics path: the daemon only calls ``notify()``
(sets an event) after each committed batch. Each thread owns an ExportHealth:
backoff with jitter, the state /healthz shows, one warning when a collector the
user configured (or one that answered) fails, one line when it is back, and
only an info line while no collector was configured or has answered yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ccotel.log import get_logger
from ccotel.otlp import (
    PUSH_STATE,
    REFUSED,
    TOO_LARGE,
    TRANSIENT,
    ExportError,
    ExportHealth,
    MetricsEncoder,
    PushState,
    Sender,
    TeamProfile,
    configured,
    display_url,
    hint,
    off,
    push_interval,
    push_temporality,
    resource_attributes,
    target,
)
from ccotel.projects import shown_labeler
from ccotel.traces.builder import Options
from ccotel.traces.export import OtlpSpanSink, SpanSink
from ccotel.traces.shipper import Shipper

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Metric

    from ccotel.config import Config
    from ccotel.otlp import Signal, Target

log = get_logger()

TICK = 5.0  # the shortest pause between passes without file events
QUIET_PASS = 3600.0  # the longest: a pass at least hourly (the watermark), even with nothing due
WATERMARK = "traces_watermark"
WAITING_NOTE = (
    "; spans wait in the transcripts until one answers (otlp_endpoint names another; "
    "traces = false turns tracing off)"
)
FAILING_NOTE = " (metrics keep counting; spans wait in the transcripts)"


def options(cfg: Config) -> Options:
    return Options(
        capture_content=cfg.capture_content,
        tool_details=cfg.tool_details,
        max_chars=cfg.content_max_chars,
        project=shown_labeler(cfg.project_label),
        include_cwd=cfg.project_label not in ("hash", "off"),
    )


def span_sink(cfg: Config) -> OtlpSpanSink:
    """The OTLP sink the settings name; ValueError (naming the key) when they cannot work."""
    return OtlpSpanSink(target(cfg, "traces"), resource_attributes(cfg))


def _where(sink: SpanSink | None, cfg: Config, signal: Signal) -> str:
    t: Target | None = getattr(sink, "target", None)  # an OtlpSpanSink's
    if t is not None:
        return t.where
    try:
        return target(cfg, signal).where
    except ValueError:
        return display_url(cfg.otlp_endpoint) if cfg.otlp_endpoint else ""


class TraceThread:
    def __init__(self, shipper: Shipper, health: ExportHealth, tick: float = TICK):
        self.shipper = shipper
        self.health = health
        self.tick = tick
        self.ev = threading.Event()
        self._mark_at = -1e9
        self.thread = threading.Thread(target=self._run, name="ccotel-traces", daemon=True)

    def start(self) -> None:
        self.ev.set()  # a first pass at once
        self.thread.start()

    def notify(self) -> None:
        self.ev.set()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop; False when the thread is still in a request after ``timeout``."""
        self.shipper.stop.set()
        self.ev.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        sh, h = self.shipper, self.health
        while not sh.stop.is_set():
            self.ev.wait(h.wait_time() if h.backoff.failures else self._quiet())
            self.ev.clear()
            if sh.stop.is_set():
                break
            if not h.ready() or not self._reachable():
                continue
            try:
                self._once()
            except Exception as exc:  # never let the thread die: log and retry later
                log.exception("trace pass failed", error=str(exc))
                h.failed(ExportError("internal error", TRANSIENT, str(exc)[:200], local=True))

    def _reachable(self) -> bool:
        """While nothing has ever answered at the endpoint (no collector yet), a retry is an
        empty request first: a refused connection then costs no reading of transcripts."""
        h = self.health
        if not h.backoff.failures or h.answered or h.last_local:
            return True
        try:
            self.shipper.sink.probe()
        except ExportError as exc:
            h.failed(exc)
            return False
        except Exception:  # a sink that cannot probe: the pass finds out
            return True
        return True

    def _quiet(self) -> float:
        """How long to sleep when nothing failed: until notified (new lines), or until the
        first open session is due to close, but not sooner than ``tick``."""
        due = self.shipper.next_pass_in()
        return QUIET_PASS if due is None else min(QUIET_PASS, max(self.tick, due))

    def _once(self) -> None:
        sh, h = self.shipper, self.health
        if not sh.run_pass():
            if sh.failure is not None:  # None: stopping
                h.failed(sh.failure)
            return
        if sh.requests or h.last_local:  # the collector accepted (or the state works again)
            h.ok(contacted=sh.requests > 0)
        if time.monotonic() - self._mark_at >= 60:  # the daemon ran up to here (coarse)
            sh.state.set_meta(WATERMARK, str(sh.clock()))
            self._mark_at = time.monotonic()


class MetricsPusher:
    """Every ``interval`` s, what /metrics shows (the team profile's fold of it), cumulative
    by default, to the configured endpoint.

    A failed push is not retried as such: the next one carries the cumulative values (with
    delta temporality, what the collector has not accepted yet). While pushes fail, they are
    spaced by the backoff (at least ``interval``). ``identity``: the counters' start time and
    the service.instance.id, kept in the state (settings.push_identity); ``state_dir``: where
    push_state.json lives (profile.PushState).
    """

    def __init__(
        self,
        cfg: Config,
        collect: Callable[[], list[Metric]],
        interval: float,
        identity: tuple[int, str] | None = None,
        state_dir: Path | None = None,
    ):
        self.t = target(cfg, "metrics")
        self.sender = Sender(self.t)
        self.start_ns, instance = identity or (time.time_ns(), None)
        self.resource = resource_attributes(cfg, instance_id=instance)
        self.collect, self.interval = collect, interval
        self.state = PushState(Path(state_dir) / PUSH_STATE if state_dir else None)
        self.encoder = MetricsEncoder(
            self.resource, self.start_ns, push_temporality(cfg), self.state.baseline
        )
        self.profile = (
            TeamProfile(cfg.metrics_push_projects, self.state)
            if cfg.metrics_push_profile == "team"
            else None
        )
        self.health = ExportHealth(
            log, "metrics", self.t.where, True, max(cfg.otlp_retry_max, interval),
            failing_note=" over OTLP (/metrics still serves them)",
        )  # fmt: skip
        self.stop_ev = threading.Event()
        self.pushed = 0  # pushes the collector accepted
        self.rejected_points = 0  # data points it refused in partial successes
        self._told: set[str] = set()
        self.thread = threading.Thread(target=self._run, name="ccotel-metrics-push", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_ev.set()
        if self.thread.is_alive():
            self.thread.join(10)
        if self.pushed and not self.thread.is_alive() and self.health.state == "ok":
            self.push()  # the last values, to a collector that took the previous push
        self.sender.shutdown()

    def push(self) -> bool:
        try:
            families = list(self.collect())
            self._send(self.profile.apply(families) if self.profile else families)
        except ExportError as exc:
            self.health.failed(exc)
            return False
        except Exception as exc:  # a bug: never let the push thread die
            log.exception("metrics push failed", error=str(exc))
            self.health.failed(ExportError("internal error", TRANSIENT, str(exc)[:200], local=True))
            return False
        self.health.ok()
        self.pushed += 1
        return True

    def _send(self, families: list[Any]) -> None:
        body, sent = self.encoder.encode(families)
        try:
            reply = self.sender.send(body)
        except ExportError as exc:
            if exc.kind == TOO_LARGE and len(families) > 1:  # send less at once
                mid = len(families) // 2
                self._send(families[:mid])
                self._send(families[mid:])
                return
            raise
        if sent:  # delta temporality: what the collector has now
            self.encoder.accepted(sent)
            self.state.save()
        if reply.rejected:
            self.rejected_points += reply.rejected
            if reply.message not in self._told and len(self._told) < 20:
                self._told.add(reply.message)
                log.warning("the collector refused some pushed data points", endpoint=self.t.where,
                            points=reply.rejected, error=reply.message[:300])  # fmt: skip

    def _run(self) -> None:
        while not self.stop_ev.wait(max(self.interval, self.health.wait_time())):
            self.push()


class Exporters:
    """What the daemon runs besides its metrics: traces and the OTLP metrics push."""

    def __init__(
        self,
        cfg: Config,
        state_db: Path,
        clock: Callable[[], float] = time.time,
        sink: SpanSink | None = None,
    ):
        self.cfg = cfg
        self.traces: TraceThread | None = None
        self.pusher: MetricsPusher | None = None
        self._off: dict[str, str | None] = {"traces": None, "metrics": None}  # why not running
        if not cfg.traces:
            return
        chosen = sink is not None  # a sink handed in (tests) counts as configured
        try:
            sink = sink or span_sink(cfg)
        except (ValueError, OSError) as exc:
            log.error("traces are off: the OTLP settings cannot work", error=str(exc))
            self._off["traces"] = f"settings: {exc}"
            return
        now = clock()
        shipper = Shipper(
            state_db, sink, options(cfg), clock=clock, session_idle=cfg.session_idle,
            batch=cfg.trace_batch_spans, rate=cfg.trace_rate, max_line=cfg.max_line_bytes,
        )  # fmt: skip
        mark = shipper.state.meta(WATERMARK)
        since = now - cfg.trace_lookback
        if mark:
            since = min(since, float(mark))
        else:  # the first start: what it does not trace is left to backfill --traces, and
            # what it does stays due even if no collector answers for weeks (waiting)
            shipper.state.set_meta(WATERMARK, str(since))
        shipper.since = since
        health = ExportHealth(
            log, "traces", _where(sink, cfg, "traces"), chosen or configured(cfg, "traces"),
            cfg.otlp_retry_max, waiting_note=WAITING_NOTE, failing_note=FAILING_NOTE,
        )  # fmt: skip
        self.traces = TraceThread(shipper, health)

    def attach_registry(
        self,
        registry: CollectorRegistry,
        identity: tuple[int, str] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """The metrics to push over OTLP: what /metrics shows.

        Pushed only to an endpoint the user named: with the default one, the local stack
        scrapes /metrics, and a daemon reaching Prometheus both ways would count twice.
        """
        if configured(self.cfg, "metrics"):
            try:
                interval = push_interval(self.cfg)
                if interval <= 0:
                    return
                self.pusher = MetricsPusher(
                    self.cfg, lambda: list(registry.collect()), interval, identity, state_dir
                )
            except (ValueError, OSError) as exc:
                log.error("OTLP metrics push is off: the OTLP settings cannot work", error=str(exc))
                self._off["metrics"] = f"settings: {exc}"

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
            if self.traces.stop():
                self.traces.shipper.sink.shutdown()
                self.traces.shipper.close()
            else:  # still in a request: its commit cannot happen once the process exits
                log.warning(
                    "the trace exporter did not stop in time; its batch is sent again next start"
                )
        if self.pusher:
            self.pusher.stop()

    def health(self) -> dict[str, Any]:
        """The /healthz blocks ``traces`` and ``metrics_push`` (contract in HELPERS.md)."""
        cfg = self.cfg
        if self.traces:
            st = self.traces.shipper.stats
            traces = {
                **self.traces.health.as_dict(),
                "spans_exported": st.spans_exported,
                "spans_dropped": st.dropped,
                "queue_spans": st.queue,
                "backlog_bytes": st.backlog_bytes,
                "open_sessions": st.sessions_open,
            }
        else:
            traces = off(
                configured(cfg, "traces"), _where(None, cfg, "traces"), self._off["traces"]
            )
        if self.pusher:
            push = {
                **self.pusher.health.as_dict(),
                "pushes": self.pusher.pushed,
                "rejected_points": self.pusher.rejected_points,
                "interval_seconds": self.pusher.interval,
            }
        else:
            push = off(
                configured(cfg, "metrics"), _where(None, cfg, "metrics"), self._off["metrics"]
            )
        return {"traces": traces, "metrics_push": push}

    def metrics(self) -> list[Metric]:
        """Health metrics for TotalsCollector(extra=...)."""
        errs = CounterMetricFamily(
            "ccotel_export_errors",
            "Failed OTLP export attempts to a collector that is configured or has answered",
            labels=["signal"],
        )
        tr = self.traces.shipper.stats if self.traces else None
        errs.add_metric(["traces"], self.traces.health.errors if self.traces else 0)
        errs.add_metric(["metrics"], self.pusher.health.errors if self.pusher else 0)
        out: list[Metric] = [errs]
        for family, name, doc, stat in _SHIPPER_STATS:
            out.append(family(name, doc, value=getattr(tr, stat) if tr else 0))
        return out


# The shipper's Stats shown in /metrics: (family, name, help, Stats field).
_SHIPPER_STATS = (
    (CounterMetricFamily, "ccotel_spans_exported", "Spans the collector accepted",
     "spans_exported"),
    (CounterMetricFamily, "ccotel_spans_dropped",
     "Spans the collector refused as malformed (dropped)", "dropped"),
    (GaugeMetricFamily, "ccotel_export_queue_spans",
     "Spans built and not yet confirmed by the collector", "queue"),
    (GaugeMetricFamily, "ccotel_trace_backlog_bytes",
     "Transcript bytes counted by the metrics and not yet traced", "backlog_bytes"),
    (GaugeMetricFamily, "ccotel_trace_open_sessions",
     "Sessions whose root span waits for idleness or the end of the run", "sessions_open"),
)  # fmt: skip


def backfill_traces(
    cfg: Config, state_db: Path, since: float, clock: Callable[[], float] = time.time, sink: SpanSink | None = None,
    max_failures: int = 6, sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:  # fmt: skip
    """Export the history: files changed since ``since``, rate-limited, retrying with backoff.

    Returns counts of what the collector accepted (``spans``) and refused as malformed
    (``dropped``). Raises ExportError when the collector stayed unreachable (after
    ``max_failures`` tries) or refused the credentials or the endpoint (after two):
    what was confirmed stays confirmed, and running again continues.
    """
    if sink is None:
        try:
            sink = span_sink(cfg)
        except ValueError as exc:
            raise ExportError("settings", REFUSED, str(exc), local=True) from None
    shipper = Shipper(
        state_db, sink, options(cfg), clock=clock, session_idle=cfg.session_idle, since=since,
        batch=cfg.trace_batch_spans, rate=cfg.trace_rate, max_line=cfg.max_line_bytes,
    )  # fmt: skip
    where = _where(sink, cfg, "traces")
    health = ExportHealth(log, "traces", where, True, cfg.otlp_retry_max)
    t0 = time.perf_counter()
    start, start_dropped = shipper.stats.spans_exported, shipper.stats.dropped
    try:
        while not shipper.run_pass():
            fail = shipper.failure or ExportError("stopped", local=True)
            health.failed(fail)
            refused = fail.kind == REFUSED
            if health.backoff.failures >= (min(2, max_failures) if refused else max_failures):
                done = shipper.stats.spans_exported - start
                raise ExportError(
                    fail.status if fail.local else f"{fail.status} from {where}", fail.kind,
                    f"{fail.detail + '; ' if fail.detail else ''}{hint(fail)}; "
                    f"{done} spans were delivered before; run again to continue",
                    answered=fail.answered, local=fail.local,
                )  # fmt: skip
            sleep(health.wait_time())
        if shipper.requests or health.last_local:
            health.ok(contacted=shipper.requests > 0)
        return {
            "spans": shipper.stats.spans_exported - start,
            "dropped": shipper.stats.dropped - start_dropped,
            "batches": shipper.stats.batches,
            "open_sessions": shipper.stats.sessions_open,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    finally:
        sink.shutdown()
        shipper.close()
