#!/usr/bin/env python3
"""The HTTP server, library against hand-written: ccotel's server (ccotel.server.httpd: the
standard library's request parsing, a selector thread and a bounded pool of its own) against
prometheus-client's own server (``start_http_server``: wsgiref on a thread per connection) and
the standard library's ``ThreadingHTTPServer`` (what ccotel used before), each serving
prometheus-client's exposition of the same registry, in a process of its own.

    python bench/server.py                 # 2,000 series
    python bench/server.py --series 20000

Per server: /metrics latency (sequential, median and p99), throughput with 8 clients, and under
attack: threads with 200 idle connections open, the latency of a scrape while 20 slowloris
connections trickle bytes, and whether those are closed within 15 s.
Writes bench/out/server/results.json. Always exits 0 (a report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "server"
KINDS = ("ccotel", "prometheus_client", "stdlib_threading")


def registry(series: int):
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily

    class Many:
        def collect(self):
            c = CounterMetricFamily("bench_cost_usd", "Cost", labels=["model", "project", "type"])
            for i in range(series):
                c.add_metric([f"model-{i % 7}", f"project-{i // 35}", f"type-{i % 5}"], i * 0.001)
            yield c

    r = CollectorRegistry(auto_describe=False)
    r.register(Many())
    return r


def serve(kind: str, port: int, series: int) -> None:
    """Run one server until killed (in its own process)."""
    reg = registry(series)
    if kind == "ccotel":
        from ccotel.server.httpd import HttpServer

        s = HttpServer("127.0.0.1", port, reg, lambda: {"ok": True})
        s.start()
    elif kind == "prometheus_client":
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1", registry=reg)
    else:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from prometheus_client.exposition import choose_encoder

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                enc, ctype = choose_encoder(self.headers.get("Accept"))
                body = enc(reg)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def scrape(port: int, timeout: float = 10.0) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        n = 0
        while chunk := s.recv(1 << 16):
            n += len(chunk)
    assert n > 100
    return (time.perf_counter() - t0) * 1000


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def measure(kind: str, series: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--series", str(series)],
                         stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    assert p.stdout.readline().strip() == "ready"
    res: dict = {}
    try:
        for _ in range(20):
            scrape(port)
        lat = sorted(scrape(port) for _ in range(300))
        res["scrape_ms_median"] = round(statistics.median(lat), 2)
        res["scrape_ms_p99"] = round(lat[int(len(lat) * 0.99)], 2)
        done = [0]
        stop = time.monotonic() + 5

        def client():
            while time.monotonic() < stop:
                scrape(port)
                done[0] += 1

        ts = [threading.Thread(target=client) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        res["scrapes_per_s_8_clients"] = round(done[0] / 5, 1)
        res["threads_idle"] = threads_of(p.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        time.sleep(1)
        res["threads_200_idle_connections"] = threads_of(p.pid)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: ")
        worst, t_end = 0.0, time.monotonic() + 15
        while time.monotonic() < t_end:
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"a")
            try:
                worst = max(worst, scrape(port, timeout=5))
            except OSError:
                worst = float("inf")
            time.sleep(1)
        res["scrape_ms_worst_during_slowloris"] = (
            round(worst, 1) if worst != float("inf") else "timed out"
        )
        closed = 0
        for s in slow + idle:
            s.settimeout(0.2)
            try:
                closed += s.recv(10) == b""
            except ConnectionResetError:
                closed += 1
            except OSError:
                pass
            s.close()
        res["slow_or_idle_closed_after_15s"] = f"{closed} of {len(slow) + len(idle)}"
    finally:
        p.kill()
        p.wait()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--serve")
    ap.add_argument("--port", type=int)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve, a.port, a.series)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    res = {"series": a.series, "cpus": os.cpu_count()}
    for kind in KINDS:
        res[kind] = measure(kind, a.series)
        print(kind, json.dumps(res[kind]), flush=True)
    (OUT / "results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    main()
