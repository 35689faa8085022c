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

Prints a table and writes bench/out/traces/results.json. Always exits 0 (a report).
"""

from __future__ import annotations

import argparse
import json
import os
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

    def __init__(self):
        self.spans = 0
        self.requests = 0
        self.bytes = 0
        self.lock = threading.Lock()
        me = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = 0
                if self.path.startswith("/v1/traces"):
                    req = ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
                with me.lock:
                    me.requests += 1
                    me.spans += n
                    me.bytes += len(body)
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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    col = Collector()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=OUT))
    env = env_for(CCOTEL_TRACES=str(traces).lower(), CCOTEL_SESSION_IDLE=10**9, CCOTEL_TRACE_RATE=0,
                  CCOTEL_TRACE_LOOKBACK=10**9, CCOTEL_METRICS_PUSH_INTERVAL=0)  # fmt: skip
    cmd = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(corpus), "--state-dir", str(state),
           "--metrics-addr", f"127.0.0.1:{port}", "--otlp-endpoint", col.url, "--log-format", "json"]  # fmt: skip
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
    ap.add_argument("--only", default="backfill,hold")
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
