#!/usr/bin/env python3
"""Trace benchmark: spans built and exported per second, and the daemon's memory
while it holds open sessions.

    python bench/traces.py                         # 2,000 files (~250 MB)
    python bench/traces.py --files 300 --bytes 40000000
    python bench/traces.py --rate 5000             # also time the default rate limit

Phases, on one corpus from tests/corpus.py (cached in bench/out/traces/):

backfill  ``ccotel backfill --traces --since 60d`` into a fresh state dir, the
          collector a receiver in this process (HTTP/protobuf, answers 200 and
          counts spans without keeping them): wall time of the metrics part and
          of the traces part (the CLI prints both), spans/s, requests, peak RSS.
          ``--rate`` adds a run with that rate limit (CCOTEL_TRACE_RATE).
hold      ``ccotel run`` on the corpus with session_idle so long that no
          session closes by idleness: once every span is delivered (healthz),
          the daemon's VmRSS/VmHWM and its open sessions, against the same
          daemon with traces off.

compare   ccotel's own OTLP writer and sender against the OpenTelemetry SDK's exporters,
          on the same corpus and the same receiver, runs alternated (best of --runs):
          * a cold backfill --traces, traces part (wall, CPU, peak RSS of the process),
            through ccotel's sink and through the SDK's OTLPSpanExporter (http/protobuf)
            fed ReadableSpans that carry ccotel's ids and times;
          * a live daemon (``ccotel run``; the SDK variant is the same daemon with its span
            sink swapped): RSS once settled, then the CPU it spends while --appends new
            responses are written (each one a chat span, one small request);
          * the OTLP metrics push, over the registry of that daemon: CPU per push through
            ccotel's encoder + sender and through the SDK's OTLPMetricExporter fed MetricsData
            converted from the same families.
          The receiver checks that both deliver the same span ids.

Prints a table and writes bench/out/traces/results.json. Always exits 0 (a report).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from tests.corpus import generate_cached  # noqa: E402

OUT = REPO / "bench" / "out" / "traces"


class Collector:
    """A minimal OTLP/HTTP sink: 200 for everything, spans counted (decoded on a sample)."""

    def __init__(self, keep_ids: bool = False):
        self.spans = 0
        self.requests = 0
        self.metric_requests = 0
        self.bytes = 0
        self.ids: set[bytes] | None = set() if keep_ids else None
        self.lock = threading.Lock()
        me = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n, ids = 0, []
                if self.path.startswith("/v1/traces"):
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    ids = [
                        s.span_id
                        for rs in req.resource_spans
                        for ss in rs.scope_spans
                        for s in ss.spans
                    ]
                    n = len(ids)
                with me.lock:
                    if self.path.startswith("/v1/metrics"):
                        me.metric_requests += 1
                    else:
                        me.requests += 1
                    me.spans += n
                    me.bytes += len(body)
                    if me.ids is not None:
                        me.ids.update(ids)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def env_for(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def timed(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run, return (proc, wall s, peak RSS MB of the child)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out, err = p.stdout.read(), p.stderr.read()
    rc = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(cmd, rc, out, err), wall, ru.ru_maxrss / 1024


def parse_backfill(stderr: str) -> dict:
    out = {}
    for line in stderr.splitlines():
        if line.startswith("backfill:"):
            out["metrics_seconds"] = float(line.split(" in ")[1].split(" s")[0])
        elif line.startswith("traces:"):
            parts = line.split()
            out["spans"] = int(parts[1])
            out["trace_seconds"] = float(line.split(" batches in ")[1].split(" s")[0])
    return out


def backfill_run(corpus: Path, rate: float) -> dict:
    col = Collector()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=OUT))
    try:
        cmd = [sys.executable, "-m", "ccotel", "backfill", "--traces", "--since", "60d", "--claude-dir", str(corpus),
               "--state-dir", str(state), "--otlp-endpoint", col.url]  # fmt: skip
        p, wall, rss = timed(cmd, env_for(CCOTEL_TRACE_RATE=rate))
        if p.returncode != 0:
            return {"error": p.stderr[-2000:]}
        r = parse_backfill(p.stderr)
        r.update(wall=round(wall, 2), peak_rss_mb=round(rss, 1), received_spans=col.spans, requests=col.requests,
                 otlp_mb=round(col.bytes / 1e6, 1), rate_limit=rate)  # fmt: skip
        r["spans_per_s"] = (
            round(r["spans"] / r["trace_seconds"]) if r.get("trace_seconds") else None
        )
        r["spans_per_s_end_to_end"] = round(r["spans"] / wall)
        return r
    finally:
        col.close()
        subprocess.run(["rm", "-rf", str(state)], check=False)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def rss(pid: int) -> tuple[float, float]:
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            vals[k] = int(v.split()[0]) / 1024
    return vals["VmRSS"], vals["VmHWM"]


def hold_run(corpus: Path, traces: bool, timeout: float) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    col = Collector()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=OUT))
    env = env_for(CCOTEL_TRACES=str(traces).lower(), CCOTEL_SESSION_IDLE=10**9, CCOTEL_TRACE_RATE=0,
                  CCOTEL_TRACE_LOOKBACK=10**9, CCOTEL_METRICS_PUSH_INTERVAL=0)  # fmt: skip
    cmd = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(corpus), "--state-dir", str(state),
           "--http-addr", f"127.0.0.1:{port}", "--otlp-endpoint", col.url, "--log-format", "json"]  # fmt: skip
    log = open(OUT / f"daemon-{'traces' if traces else 'plain'}.log", "w")  # noqa: SIM115
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.perf_counter()
    try:
        h: dict = {}
        last, stable_since = -1, None
        while time.perf_counter() - t0 < timeout:
            time.sleep(0.5)
            try:
                h = _get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                continue
            if not h.get("ok"):
                continue
            if not traces:
                time.sleep(3)
                break
            tr = h["traces"]
            if tr["spans_exported"] == last and tr["backlog_bytes"] == 0:
                stable_since = stable_since or time.perf_counter()
                if time.perf_counter() - stable_since > 6:  # more than one idle tick
                    break
            else:
                last, stable_since = tr["spans_exported"], None
        cur, hwm = rss(p.pid)
        tr = h.get("traces", {})
        return {"traces": traces, "rss_mb": round(cur, 1), "hwm_mb": round(hwm, 1), "open_sessions": tr.get("open_sessions"),
                "spans_exported": tr.get("spans_exported"), "seconds_to_settle": round(time.perf_counter() - t0, 1)}  # fmt: skip
    finally:
        p.terminate()
        p.wait(60)
        log.close()
        col.close()
        subprocess.run(["rm", "-rf", str(state)], check=False)


# --- compare: ccotel's writer and sender against the OpenTelemetry SDK's exporters --------


def _cpu() -> float:
    return time.process_time()  # this process's user+system CPU, at clock resolution


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sdk_span_sink(url: str, cfg):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from ccotel.otlp import resource_attributes
    from tests.sdk_sink import SdkSpanSink

    return SdkSpanSink(
        OTLPSpanExporter(endpoint=url + "/v1/traces", timeout=10), resource_attributes(cfg)
    )


def _bench_cfg(corpus: str, state: str, url: str):
    from ccotel.config import load

    return load(env={}, flags={"claude_dirs": [corpus], "state_dir": state, "trace_rate": 0, "otlp_endpoint": url,
                               "session_idle": 600, "metrics_push_interval": 0})  # fmt: skip


def driver_backfill(corpus: str, state: str, url: str, exporter: str) -> dict:
    """In a fresh process: the metrics backfill, then the traces part through one exporter."""
    from ccotel import app
    from ccotel.traces.service import backfill_traces

    cfg = _bench_cfg(corpus, state, url)
    t0 = time.perf_counter()
    app.backfill(cfg)
    metrics_s = time.perf_counter() - t0
    sink = _sdk_span_sink(url, cfg) if exporter == "sdk" else None
    c0, t0 = _cpu(), time.perf_counter()
    r = backfill_traces(cfg, cfg.resolved_state_dir() / "state.db", since=0, sink=sink)
    return {"exporter": exporter, "spans": r["spans"], "metrics_seconds": round(metrics_s, 2),
            "trace_seconds": round(time.perf_counter() - t0, 3), "trace_cpu_seconds": round(_cpu() - c0, 3),
            "peak_rss_mb": round(_hwm_mb(), 1)}  # fmt: skip


def driver_daemon(corpus: str, state: str, url: str, exporter: str, port: int) -> None:
    """``ccotel run``, its span sink swapped for the SDK's when asked."""
    from ccotel import cli
    from ccotel.traces import service

    if exporter == "sdk":
        service.span_sink = lambda cfg: _sdk_span_sink(url, cfg)
    cli.main(["run", "--claude-dir", corpus, "--state-dir", state, "--http-addr", f"127.0.0.1:{port}",
              "--otlp-endpoint", url, "--log-format", "json"])  # fmt: skip


def sdk_metrics_data(families, resource_attrs, start_ns: int, now_ns: int):
    """Prometheus families as the SDK's MetricsData (what a MetricReader over our registry
    would have to build): the same names, cumulative."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from ccotel import __version__
    from ccotel.otlp.metrics import histogram_points

    cum = AggregationTemporality.CUMULATIVE
    out = []
    for fam in families:
        if fam.type == "counter":
            pts = [NumberDataPoint(dict(s.labels), start_ns, now_ns, float(s.value))
                   for s in fam.samples if s.name.endswith("_total")]  # fmt: skip
            data = Sum(pts, cum, True)
        elif fam.type == "histogram":
            pts = [HistogramDataPoint(labels, start_ns, now_ns, count, total, counts, bounds, None, None)
                   for labels, bounds, counts, total, count in histogram_points(fam)]  # fmt: skip
            data = Histogram(pts, cum)
        else:
            data = Gauge(
                [NumberDataPoint(dict(s.labels), 0, now_ns, float(s.value)) for s in fam.samples]
            )
        out.append(Metric(fam.name, fam.documentation or "", "", data))
    scope = ScopeMetrics(InstrumentationScope("ccotel", __version__), out, None)
    return MetricsData([ResourceMetrics(Resource(dict(resource_attrs)), [scope], None)])


def driver_push(corpus: str, state: str, url: str, n: int) -> dict:
    """CPU per metrics push over the daemon's registry, each way, alternated."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from prometheus_client import CollectorRegistry

    from ccotel.app import budgets_of, roots_of
    from ccotel.otlp import Sender, encode_metrics, resource_attributes, target
    from ccotel.pipeline import Ingest
    from ccotel.projects import project_labeler
    from ccotel.sinks.prometheus import TotalsCollector
    from ccotel.state.store import Store

    cfg = _bench_cfg(corpus, state, url)
    store = Store(cfg.resolved_state_dir())
    ing = Ingest(cfg, store, roots_of(cfg), time.time)
    ing.backfill(ing.scan(), 1)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(
        TotalsCollector(ing.totals, project_labeler(cfg.project_label), budgets_of(cfg), time.time)
    )
    res, start = resource_attributes(cfg), time.time_ns()
    sender = Sender(target(cfg, "metrics"))
    sdk = OTLPMetricExporter(endpoint=url + "/v1/metrics", timeout=10)
    ours = lambda: sender.send(encode_metrics(list(reg.collect()), res, start))  # noqa: E731
    theirs = lambda: sdk.export(sdk_metrics_data(list(reg.collect()), res, start, time.time_ns()))  # noqa: E731
    cpu = {"ccotel": 0.0, "sdk": 0.0}
    for _ in range(n):
        for name, f in (("ccotel", ours), ("sdk", theirs)):
            c0 = _cpu()
            f()
            cpu[name] += _cpu() - c0
    fams = list(reg.collect())
    store.close()
    return {"pushes_each": n, "families": len(fams), "samples": sum(len(f.samples) for f in fams),
            "bytes": len(encode_metrics(fams, res, start)),
            "cpu_ms_per_push": {k: round(v / n * 1000, 2) for k, v in cpu.items()}}  # fmt: skip


def _driver(kind: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--driver", kind, *args]
    return subprocess.Popen(
        cmd, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _driver_json(kind: str, *args: str) -> dict:
    p = _driver(kind, *args)
    out, err = p.communicate(timeout=3600)
    if p.returncode != 0:
        return {"error": err[-2000:]}
    return json.loads(out.strip().splitlines()[-1])


def _proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def compare_backfill(corpus: Path, runs: int) -> dict:
    out: dict = {"ccotel": [], "sdk": []}
    ids: dict = {}
    for i in range(runs):
        for exporter in ("ccotel", "sdk") if i % 2 == 0 else ("sdk", "ccotel"):
            col = Collector(keep_ids=True)
            state = Path(tempfile.mkdtemp(prefix="state-", dir=OUT))
            try:
                r = _driver_json("backfill", str(corpus), str(state), col.url, exporter)
                r["received_spans"] = col.spans
                out[exporter].append(r)
                ids[exporter] = col.ids
            finally:
                col.close()
                subprocess.run(["rm", "-rf", str(state)], check=False)
            print(f"  backfill via {exporter}: {json.dumps(r)}", flush=True)
    out["same_span_ids"] = ids.get("ccotel") == ids.get("sdk") and bool(ids.get("ccotel"))
    return out


def compare_live(corpus: Path, appends: int, settle_timeout: float) -> dict:
    """A daemon per exporter on a state already caught up; then appended responses."""
    import random

    from tests.corpus import Usage, append_assistant, session_meta

    base = Path(tempfile.mkdtemp(prefix="state-live-", dir=OUT))
    col = Collector()
    try:  # one caught-up state (metrics and traces), copied for each daemon
        _driver_json("backfill", str(corpus), str(base), col.url, "ccotel")
    finally:
        col.close()
    files = sorted(corpus.rglob("*.jsonl"), key=lambda p: p.stat().st_size)[-4:]
    out = {}
    for exporter in ("ccotel", "sdk", "ccotel", "sdk"):
        state = Path(tempfile.mkdtemp(prefix="state-", dir=OUT))
        subprocess.run(["cp", "-a", f"{base}/.", str(state)], check=True)
        sizes = {f: f.stat().st_size for f in files}
        col = Collector()
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        p = _driver("daemon", str(corpus), str(state), col.url, exporter, str(port))
        try:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < settle_timeout:
                time.sleep(0.5)
                try:
                    h = _get(f"http://127.0.0.1:{port}/healthz")
                except OSError:
                    continue
                if (
                    h.get("ok")
                    and h["traces"]["backlog_bytes"] == 0
                    and time.perf_counter() - t0 > 8
                ):
                    break
            rss0, _ = rss(p.pid)
            cpu0, got0, req0 = _proc_cpu(p.pid), col.spans, col.requests
            rng = random.Random(7)
            metas = {f: session_meta(f) for f in files}
            t1 = time.perf_counter()
            for i in range(appends):
                f = files[i % len(files)]
                append_assistant(
                    f, Usage(input=10, output=5, cache_read=100), meta=metas[f], rng=rng
                )
                time.sleep(0.05)
            while col.spans < got0 + appends and time.perf_counter() - t1 < 120:
                time.sleep(0.1)
            time.sleep(1)
            cpu = _proc_cpu(p.pid) - cpu0
            rss1, _hwm = rss(p.pid)
            r = {"exporter": exporter, "rss_settled_mb": round(rss0, 1), "rss_after_mb": round(rss1, 1),
                 "spans_received": col.spans - got0, "requests": col.requests - req0,
                 "cpu_ms_per_appended_span": round(cpu / max(1, col.spans - got0) * 1000, 2)}  # fmt: skip
        finally:
            p.terminate()
            p.wait(60)
            col.close()
            for f, n in sizes.items():  # the corpus stays as generated
                os.truncate(f, n)
            subprocess.run(["rm", "-rf", str(state)], check=False)
        print(f"  live via {exporter}: {json.dumps(r)}", flush=True)
        out.setdefault(exporter, []).append(r)
    col = Collector()
    try:
        out["push"] = _driver_json("push", str(corpus), str(base), col.url, "20")
        out["push"]["received_pushes"] = col.metric_requests
    finally:
        col.close()
        subprocess.run(["rm", "-rf", str(base)], check=False)
    print(f"  metrics push: {json.dumps(out['push'])}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--bytes", type=int, default=None, help="target corpus size (default: natural)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rate", type=float, default=0, help="also run backfill with this rate limit (spans/s)"
    )
    ap.add_argument("--only", default="backfill,hold,compare")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--runs", type=int, default=2, help="compare: runs per exporter (best of)")
    ap.add_argument("--appends", type=int, default=200, help="compare: responses appended live")
    ap.add_argument("--driver", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.driver:
        kind, *args = a.driver
        if kind == "daemon":
            driver_daemon(*args[:4], int(args[4]))
            return 0
        f = {"backfill": driver_backfill, "push": lambda c, s, u, n: driver_push(c, s, u, int(n))}[
            kind
        ]
        print(json.dumps(f(*args)), flush=True)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info, reused = generate_cached(OUT, files=a.files, target_bytes=a.bytes, seed=a.seed)
    corpus = Path(info.root)
    res: dict = {"corpus": {"root": str(corpus), "files": info.files, "bytes": info.bytes, "reused": reused,
                            "seconds": round(time.perf_counter() - t0, 1)}}  # fmt: skip
    print(
        f"corpus: {info.files} files, {info.bytes / 1e6:.0f} MB ({'cached' if reused else 'generated'})",
        flush=True,
    )
    phases = a.only.split(",")
    if "backfill" in phases:
        res["backfill"] = backfill_run(corpus, 0)
        print("backfill --traces (no rate limit):", json.dumps(res["backfill"]), flush=True)
        if a.rate:
            res["backfill_rate"] = backfill_run(corpus, a.rate)
            print(
                f"backfill --traces (rate {a.rate:g}/s):",
                json.dumps(res["backfill_rate"]),
                flush=True,
            )
    if "hold" in phases:
        res["hold_plain"] = hold_run(corpus, False, a.timeout)
        res["hold_traces"] = hold_run(corpus, True, a.timeout)
        print("daemon, traces off:", json.dumps(res["hold_plain"]), flush=True)
        print("daemon, traces on :", json.dumps(res["hold_traces"]), flush=True)
    if "compare" in phases:
        print(
            "compare: ccotel's OTLP writer/sender vs the OpenTelemetry SDK's exporters", flush=True
        )
        res["compare_backfill"] = compare_backfill(corpus, a.runs)
        res["compare_live"] = compare_live(corpus, a.appends, a.timeout)
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    b, hp, ht = res.get("backfill", {}), res.get("hold_plain", {}), res.get("hold_traces", {})
    print()
    print(f"{'figure':52} value")
    if b and "spans" in b:
        print(f"{'spans exported (cold backfill --traces)':52} {b['spans']:,}")
        print(
            f"{'traces part: spans/s built+exported':52} {b['spans_per_s']:,}  ({b['trace_seconds']} s)"
        )
        print(f"{'metrics part of the same backfill':52} {b['metrics_seconds']} s")
        print(f"{'whole command: wall / peak RSS':52} {b['wall']} s / {b['peak_rss_mb']} MB")
        print(f"{'OTLP requests / payload':52} {b['requests']} / {b['otlp_mb']} MB")
    if ht and hp:
        print(f"{'daemon RSS, traces off':52} {hp['rss_mb']} MB (peak {hp['hwm_mb']})")
        print(
            f"{'daemon RSS, traces on, holding open sessions':52} {ht['rss_mb']} MB (peak {ht['hwm_mb']}), {ht['open_sessions']} open sessions"
        )
        if ht.get("open_sessions"):
            per = (ht["rss_mb"] - hp["rss_mb"]) * 1024 / ht["open_sessions"]
            print(f"{'  extra per open session':52} {per:.1f} KB")
    cb, cl = res.get("compare_backfill"), res.get("compare_live")
    if (
        cb
        and cb.get("ccotel")
        and cb.get("sdk")
        and all("trace_seconds" in r for r in cb["ccotel"] + cb["sdk"])
    ):
        best = {k: min(cb[k], key=lambda r: r["trace_seconds"]) for k in ("ccotel", "sdk")}
        o, d = best["ccotel"], best["sdk"]
        print(
            f"{'backfill --traces, traces part: ccotel / SDK wall':52} {o['trace_seconds']} s / {d['trace_seconds']} s"
            f"  ({d['trace_seconds'] / o['trace_seconds']:.2f}x)"
        )
        print(
            f"{'  CPU':52} {o['trace_cpu_seconds']} s / {d['trace_cpu_seconds']} s"
            f"  ({d['trace_cpu_seconds'] / o['trace_cpu_seconds']:.2f}x)"
        )
        print(
            f"{'  spans/s':52} {o['spans'] / o['trace_seconds']:,.0f} / {d['spans'] / d['trace_seconds']:,.0f}"
        )
        print(f"{'  peak RSS of the process':52} {o['peak_rss_mb']} MB / {d['peak_rss_mb']} MB")
        print(f"{'  same span ids received':52} {cb['same_span_ids']}")
    if cl and cl.get("ccotel") and cl.get("sdk"):
        for k in ("ccotel", "sdk"):
            rs = cl[k]
            print(
                f"{'live daemon via ' + k + ': RSS settled / CPU ms per span':52} "
                f"{min(r['rss_settled_mb'] for r in rs)} MB / {min(r['cpu_ms_per_appended_span'] for r in rs)} ms"
            )
        pu = cl.get("push", {})
        if "cpu_ms_per_push" in pu:
            print(
                f"{'metrics push CPU per push: ccotel / SDK':52} {pu['cpu_ms_per_push']['ccotel']} ms / "
                f"{pu['cpu_ms_per_push']['sdk']} ms ({pu['samples']} samples, {pu['bytes']} bytes)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
