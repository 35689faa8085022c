#!/usr/bin/env python3
"""A team on one collector: N real `ccotel run` daemons pushing OTLP to one receiver.

    python bench/team.py                       # 60 daemons, 8 minutes measured (~12 min)
    python bench/team.py --hosts 50 --minutes 5 --response-seconds 10

Each daemon is a laptop: its own ~/.claude with history (every project used with every one of
its models and 12 tools, days ago) and live activity written while it runs (an API response
every --response-seconds on average, Poisson, with a tool call; some edits, commits, turns);
its own state; the default push interval (15 s); native metrics on; traces on. Laptops differ
in projects (2, 5, 10, 20, 40), models (1, 2, 4) and push profile (full, team).

The receiver (this process, OTLP/HTTP) counts, per host, requests and bytes of metrics and
traces, the Prometheus series a collector makes of the latest push (histograms: one per bucket,
_sum, _count), and spans. Halfway, it stops for --down-seconds and comes back empty, as a
restarted collector does: no counter may come back lower than it was (cumulative counters carry
on), and at the end every host's pushed counters equal its own /metrics.

Measured: series per host by projects, models and profile; OTLP bytes per host per hour; receiver
requests per second; each daemon's CPU and memory. Then the same for 1,000 hosts: what one
collector, Prometheus (or Mimir) and Tempo take (ingestion, active series, storage per month).
Prints a report and writes bench/out/team.json. Exits 0 (a report), 1 if a check failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.run import cpu_ticks, free_port, proc_tree, rss_mb  # noqa: E402

OUT = REPO / "bench" / "out"
MODELS = ("claude-sonnet-4-5", "claude-opus-4-6", "claude-haiku-4-5", "claude-sonnet-4-6")
TOOLS = ("Bash", "Read", "Edit", "Write", "Grep", "Glob", "TodoWrite", "Task", "WebFetch",
         "WebSearch", "MultiEdit", "mcp__github__get_issue")  # fmt: skip
PROJECTS = (2, 5, 10, 20, 40)
MODEL_COUNTS = (1, 2, 4)
PROFILES = ("full", "team")
HZ = os.sysconf("SC_CLK_TCK")
# What the push must carry exactly (the export's own health counters move on their own).
COMPARED = frozenset({"ccotel_tokens", "ccotel_cost_usd", "ccotel_requests", "ccotel_tool_calls",
                      "ccotel_sessions", "ccotel_code_lines", "ccotel_commits", "ccotel_lines"})  # fmt: skip
DAY = 86400


def log(msg: str) -> None:
    print(f"[team {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- a laptop's transcripts ------------------------------------------------------------------


class Laptop:
    """One host's ~/.claude: history written at once, live responses appended while it runs."""

    def __init__(self, root: Path, n: int, projects: int, models: int, profile: str, seed: int):
        self.root, self.n, self.projects, self.profile = root, n, projects, profile
        self.models = MODELS[:models]
        self.rng = random.Random(seed)
        self.cwds = [f"/home/dev{n}/src/proj-{j:02d}" for j in range(projects)]
        self.sessions: dict[int, tuple[str, Path, int]] = {}  # project -> (id, file, responses)
        self.k = 0
        self.tokens = 0  # tokens written live (the daemon must count all of them)
        self.lines = 0

    def _file(self, j: int) -> tuple[str, Path]:
        sid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        d = self.root / "projects" / self.cwds[j].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        return sid, d / f"{sid}.jsonl"

    def _response(self, sid: str, cwd: str, ts: float, model: str, tool: str) -> list[dict]:
        self.k += 1
        rng, k = self.rng, self.k
        iso = (
            datetime.fromtimestamp(ts, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        base = {"sessionId": sid, "cwd": cwd, "version": "2.1.197", "gitBranch": "main",
                "isSidechain": False, "userType": "external", "timestamp": iso}  # fmt: skip
        usage = {"input_tokens": rng.randint(1, 40), "output_tokens": rng.randint(50, 2000),
                 "cache_read_input_tokens": rng.randint(10_000, 120_000),
                 "cache_creation_input_tokens": rng.randint(200, 6000)}  # fmt: skip
        tid = f"toolu_{self.n:03d}{k:08d}"
        inp, tur = {"description": "d"}, {"stdout": "ok", "stderr": "", "interrupted": False}
        if tool == "Bash" and rng.random() < 0.1:
            inp["command"] = "git commit -am 'step'"
            tur = {
                "stdout": f"[main {k:07x}] step\n 1 file changed",
                "stderr": "",
                "interrupted": False,
            }
        elif tool == "Bash":
            inp["command"] = "pytest -q"
        elif tool in ("Edit", "MultiEdit"):
            tur = {"filePath": f"{cwd}/a.py", "structuredPatch": [{"oldStart": 1, "oldLines": 2, "newStart": 1,
                   "newLines": 3, "lines": [" a", "-b", "+c", "+d"]}]}  # fmt: skip
        elif tool == "Write":
            tur = {
                "type": "create",
                "filePath": f"{cwd}/n{k}.py",
                "content": "x = 1\ny = 2\n",
                "structuredPatch": [],
            }
        error = rng.random() < 0.08
        self.tokens += sum(usage.values())
        out = [
            base | {"type": "assistant", "uuid": f"a{self.n}-{k}", "requestId": f"req_{self.n}_{k}",
                    "message": {"id": f"msg_{self.n}_{k}", "role": "assistant", "model": model, "usage": usage,
                                "content": [{"type": "tool_use", "id": tid, "name": tool, "input": inp}]}},
            base | {"type": "user", "uuid": f"u{self.n}-{k}",
                    "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid,
                                "content": "Error: no" if error else "done", "is_error": error}]},
                    "toolUseResult": "Error: no" if error else tur},
        ]  # fmt: skip
        if k % 5 == 0:
            out.append(base | {"type": "system", "subtype": "turn_duration", "uuid": f"t{self.n}-{k}",
                               "durationMs": rng.randint(5_000, 300_000)})  # fmt: skip
        return out

    def _append(self, path: Path, recs: list[dict]) -> None:
        with open(path, "a") as f:
            f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs))
        self.lines += len(recs)

    def history(self, now: float) -> None:
        """Every project with every model and tool, 2 to 20 days ago (outside the trace lookback,
        as a laptop's history is when ccotel starts)."""
        for j, cwd in enumerate(self.cwds):
            sid, path = self._file(j)
            t = now - self.rng.uniform(2, 20) * DAY
            recs = []
            for i in range(len(TOOLS)):
                recs += self._response(
                    sid, cwd, t + 30 * i, self.models[i % len(self.models)], TOOLS[i]
                )
            self._append(path, recs)
        self.tokens = 0

    def live(self, now: float) -> None:
        """One API response now, in a project chosen like a developer's week: most in a few."""
        j = min(int(self.rng.expovariate(0.5)), self.projects - 1)
        sid, path, count = self.sessions.get(j) or (*self._file(j), 0)
        if count >= 40:  # a new session now and then
            sid, path = self._file(j)
            count = 0
        self.sessions[j] = (sid, path, count + 1)
        model = self.models[0] if self.rng.random() < 0.7 else self.rng.choice(self.models)
        self._append(path, self._response(sid, self.cwds[j], now, model, self.rng.choice(TOOLS)))


# --- the receiver ------------------------------------------------------------------------------


def series_of(req: ExportMetricsServiceRequest) -> tuple[int, dict]:
    """(Prometheus series a collector makes of it, monotonic sums' values by series)."""
    n, sums = 0, {}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    if kind == "histogram":
                        n += len(p.bucket_counts) + 2
                        continue
                    n += 1
                    if kind == "sum" and m.sum.is_monotonic:
                        key = (
                            m.name,
                            tuple(sorted((a.key, a.value.string_value) for a in p.attributes)),
                        )
                        sums[key] = p.as_double
    return n, sums


class Receiver:
    def __init__(self, port: int):
        self.port = port
        self.lock = threading.Lock()
        self.stats = defaultdict(lambda: defaultdict(float))  # host -> figure -> value
        self.latest: dict[str, dict] = {}  # host -> monotonic sums of its last metrics push
        self.series: dict[str, int] = {}  # host -> series of its last push
        self.before: dict[str, dict] | None = None  # self.latest when it went down
        self.lower: list[tuple] = []  # counters that came back lower after the restart
        self.checked: set[str] = set()
        self.server: ThreadingHTTPServer | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.take(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down, as a collector being restarted: what it held is gone."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            self.before, self.latest = dict(self.latest), {}

    def take(self, path: str, body: bytes) -> None:
        if path == "/v1/metrics":
            req = ExportMetricsServiceRequest.FromString(body)
            host = _host(req.resource_metrics)
            n, sums = series_of(req)
            with self.lock:
                s = self.stats[host]
                s["metric_requests"] += 1
                s["metric_bytes"] += len(body)
                self.series[host] = n
                if self.before is not None and host not in self.checked and host in self.before:
                    self.checked.add(host)
                    for k, v in self.before[host].items():
                        if k in sums and sums[k] < v - 1e-9 * max(1, abs(v)):
                            self.lower.append((host, k, v, sums[k]))
                self.latest[host] = sums
        elif path == "/v1/traces":
            req = ExportTraceServiceRequest.FromString(body)
            host = _host(req.resource_spans)
            spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            with self.lock:
                s = self.stats[host]
                s["trace_requests"] += 1
                s["trace_bytes"] += len(body)
                s["spans"] += spans

    def snapshot(self) -> dict:
        with self.lock:
            return {h: dict(v) for h, v in self.stats.items()}


def _host(resources) -> str:
    for r in resources:
        for a in r.resource.attributes:
            if a.key == "host.name":
                return a.value.string_value
    return "?"


# --- daemons -----------------------------------------------------------------------------------


def start_daemon(lap: Laptop, state: Path, port: int, endpoint: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env |= {
        "CCOTEL_OTLP_ENDPOINT": endpoint, "CCOTEL_RESOURCE_HOST": f"host-{lap.n:03d}",
        "CCOTEL_RESOURCE_USER": f"dev{lap.n:03d}", "CCOTEL_NATIVE_METRICS": "1",
        "CCOTEL_METRICS_PUSH_PROFILE": lap.profile, "CCOTEL_WORKERS": "1", "CCOTEL_WEB": "false",
        "OTEL_RESOURCE_ATTRIBUTES": f"team.id=team-{lap.n % 5}", "PYTHONPATH": str(REPO),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(lap.root), "--state-dir",
           str(state), "--metrics-addr", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
    log_file = open(state.parent / f"daemon-{lap.n:03d}.log", "w")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen(
        cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read()).get("ok") is True
    except (OSError, ValueError):
        return False


def scrape_sums(port: int) -> dict:
    """The daemon's own counters, keyed as the push names them (family name, labels)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for f in text_string_to_metric_families(body):
        if f.type != "counter":
            continue
        for s in f.samples:
            if s.name.endswith("_total"):
                out[(f.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=60)
    ap.add_argument("--minutes", type=float, default=8.0, help="measured time")
    ap.add_argument("--response-seconds", type=float, default=15.0,
                    help="mean time between a laptop's API responses while it is busy")  # fmt: skip
    ap.add_argument("--down-seconds", type=float, default=30.0, help="the receiver's restart")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--keep", action="store_true", help="keep bench/out/team/ (transcripts, states)"
    )
    args = ap.parse_args(argv)
    if args.hosts < 1 or args.minutes <= 0:
        ap.error("--hosts >= 1 and --minutes > 0")

    work = OUT / "team"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    combos = list(itertools.product(PROJECTS, MODEL_COUNTS, PROFILES))
    laps = []
    now = time.time()
    for n in range(args.hosts):
        p, m, prof = combos[n % len(combos)]
        lap = Laptop(work / f"host-{n:03d}" / "claude", n, p, m, prof, args.seed * 1000 + n)
        lap.history(now)
        laps.append(lap)
    log(f"{len(laps)} laptops' history written ({sum(x.lines for x in laps):,} lines)")

    recv = Receiver(free_port())
    recv.start()
    endpoint = f"http://127.0.0.1:{recv.port}"
    procs: dict[int, tuple[subprocess.Popen, int]] = {}
    failed: list[str] = []
    try:
        for lap in laps:
            port = free_port()
            state = work / f"host-{lap.n:03d}" / "state"
            state.mkdir()
            procs[lap.n] = (start_daemon(lap, state, port, endpoint), port)
            time.sleep(0.3)  # staggered, as laptops are
        deadline = time.monotonic() + 300
        waiting = set(procs)
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if not healthy(procs[n][1])}
            for n in waiting:
                if procs[n][0].poll() is not None:
                    raise SystemExit(
                        f"daemon {n} exited: see {work}/host-{n:03d}/daemon-{n:03d}.log"
                    )
            time.sleep(1)
        if waiting:
            raise SystemExit(f"{len(waiting)} daemons not ready after 300 s")
        log(f"{len(procs)} daemons ready; warming up one push interval")

        stop = threading.Event()
        rng = random.Random(args.seed)

        def write() -> None:
            due = {
                lap.n: time.monotonic() + rng.expovariate(1 / args.response_seconds) for lap in laps
            }
            while not stop.is_set():
                t = time.monotonic()
                for lap in laps:
                    if due[lap.n] <= t:
                        lap.live(time.time())
                        due[lap.n] = t + rng.expovariate(1 / args.response_seconds)
                stop.wait(0.05)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(20)
        pids = {n: proc_tree(p.pid) for n, (p, _) in procs.items()}
        t0, cpu0, net0 = (
            time.monotonic(),
            {n: cpu_ticks(v) for n, v in pids.items()},
            recv.snapshot(),
        )
        measured = args.minutes * 60
        time.sleep(measured / 2)
        log(f"receiver down for {args.down_seconds:.0f} s (a collector restart)")
        recv.stop()
        time.sleep(args.down_seconds)
        recv.start()
        time.sleep(max(0.0, measured - (time.monotonic() - t0)))
        t1, cpu1, net1 = (
            time.monotonic(),
            {n: cpu_ticks(v) for n, v in pids.items()},
            recv.snapshot(),
        )
        rss = {n: rss_mb(v) for n, v in pids.items()}
        hwm = {n: rss_mb(v, "VmHWM") for n, v in pids.items()}
        stop.set()
        writer.join()
        log("activity stopped; waiting for the last pushes")
        time.sleep(40)  # more than two push intervals: everything read, pushed
        exact = 0
        for lap in laps:
            own = scrape_sums(procs[lap.n][1])
            with recv.lock:
                pushed = recv.latest.get(f"host-{lap.n:03d}", {})
            if lap.profile == "full":
                mine = {k: v for k, v in own.items() if k[0] in COMPARED}
                bad = [
                    k
                    for k, v in mine.items()
                    if k in pushed and abs(pushed[k] - v) > 1e-6 * max(1, v)
                ]
                missing = [k for k in mine if k not in pushed]
                if bad or missing:
                    failed.append(
                        f"host-{lap.n:03d}: {len(bad)} counters differ, {len(missing)} missing"
                    )
                else:
                    exact += 1
            tok = sum(v for (name, _), v in own.items() if name == "ccotel_tokens")
            ptok = sum(v for (name, _), v in pushed.items() if name == "ccotel_tokens")
            if abs(tok - ptok) > 1e-6 * max(1, tok):
                failed.append(f"host-{lap.n:03d}: pushed tokens {ptok} != /metrics {tok}")
        if recv.lower:
            failed.append(f"{len(recv.lower)} counters came back lower after the receiver restart")
        if len(recv.checked) < len(laps):
            failed.append(f"only {len(recv.checked)} of {len(laps)} hosts pushed after the restart")
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if recv.server:
            recv.server.shutdown()

    elapsed = t1 - t0
    res = figures(laps, recv, net0, net1, cpu0, cpu1, rss, hwm, elapsed, args)
    res["checks"] = {"failed": failed, "hosts_exact": exact, "restart_lower": len(recv.lower),
                     "hosts_checked_after_restart": len(recv.checked)}  # fmt: skip
    report(res)
    (OUT / "team.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwrote {OUT / 'team.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def figures(laps, recv, net0, net1, cpu0, cpu1, rss, hwm, elapsed, args) -> dict:
    per_host = []
    for lap in laps:
        h = f"host-{lap.n:03d}"
        a, b = net0.get(h, {}), net1.get(h, {})
        d = {
            k: b.get(k, 0) - a.get(k, 0)
            for k in ("metric_requests", "metric_bytes", "trace_requests", "trace_bytes", "spans")
        }
        per_host.append({
            "host": h, "projects": lap.projects, "models": len(lap.models), "profile": lap.profile,
            "series": recv.series.get(h, 0),
            "metric_bytes_per_hour": d["metric_bytes"] * 3600 / elapsed,
            "trace_bytes_per_hour": d["trace_bytes"] * 3600 / elapsed,
            "spans_per_hour": d["spans"] * 3600 / elapsed,
            "requests_per_hour": (d["metric_requests"] + d["trace_requests"]) * 3600 / elapsed,
            "cpu_pct": (cpu1[lap.n] - cpu0[lap.n]) / HZ / elapsed * 100,
            "rss_mb": rss[lap.n], "rss_peak_mb": hwm[lap.n],
        })  # fmt: skip
    by: dict[tuple, list] = defaultdict(list)
    for r in per_host:
        by[(r["profile"], r["projects"], r["models"])].append(r["series"])
    table = {f"{p}/{pr}p/{m}m": sum(v) / len(v) for (p, pr, m), v in sorted(by.items())}
    # series per host ~ a + b * projects * models + c * projects, per profile (least squares)
    fits = {prof: _fit([r for r in per_host if r["profile"] == prof]) for prof in PROFILES}
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    # the typical laptop: measured where hosts had 20 projects and 4 models, else the fit
    typical = {
        prof: table.get(
            f"{prof}/20p/4m", fits[prof]["a"] + fits[prof]["b"] * 80 + fits[prof]["c"] * 20
        )
        for prof in PROFILES
    }
    total_req = sum(r["requests_per_hour"] for r in per_host) / 3600
    hosts = len(per_host)
    metric_bph = mean([r["metric_bytes_per_hour"] for r in per_host])
    trace_bph = mean([r["trace_bytes_per_hour"] for r in per_host])
    spans_ph = mean([r["spans_per_hour"] for r in per_host])
    bytes_per_span = sum(r["trace_bytes_per_hour"] for r in per_host) / max(
        1, sum(r["spans_per_hour"] for r in per_host)
    )
    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args), "hosts": hosts, "measured_s": round(elapsed, 1),
        "series_by_profile_projects_models": table, "series_fit": fits,
        "typical_laptop_series": typical,  # 20 projects, 4 models
        "metric_bytes_per_host_hour": metric_bph, "trace_bytes_per_host_hour": trace_bph,
        "spans_per_host_hour": spans_ph, "bytes_per_span": bytes_per_span,
        "receiver_requests_per_s": total_req, "requests_per_host_s": total_req / hosts,
        "daemon_cpu_pct": {"mean": mean([r["cpu_pct"] for r in per_host]), "max": max(r["cpu_pct"] for r in per_host)},
        "daemon_rss_mb": {"mean": mean([r["rss_mb"] for r in per_host]), "max": max(r["rss_peak_mb"] for r in per_host)},
        "per_host": per_host,
    }  # fmt: skip
    out["at_1000_hosts"] = extrapolate(out, fits)
    return out


def _fit(rows: list[dict]) -> dict:
    """series = a + b*projects*models + c*projects, least squares (3x3 normal equations)."""
    xs = [(1.0, r["projects"] * r["models"], r["projects"]) for r in rows]
    ys = [r["series"] for r in rows]
    ata = [[sum(x[i] * x[j] for x in xs) for j in range(3)] for i in range(3)]
    aty = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(3)]
    sol = _solve(ata, aty)
    return {"a": sol[0], "b": sol[1], "c": sol[2]}


def _solve(m: list[list[float]], v: list[float]) -> list[float]:
    n = len(v)
    a = [[*row, v[i]] for i, row in enumerate(m)]
    for i in range(n):
        p = max(range(i, n), key=lambda r: abs(a[r][i]))
        a[i], a[p] = a[p], a[i]
        if abs(a[i][i]) < 1e-12:
            return [0.0] * n
        for r in range(n):
            if r != i:
                f = a[r][i] / a[i][i]
                a[r] = [x - f * y for x, y in zip(a[r], a[i], strict=True)]
    return [a[i][n] / a[i][i] for i in range(n)]


BYTES_PER_SAMPLE = 2.0  # Prometheus TSDB: 1-2 bytes per sample after compression (upper end)
MONTH = 30 * DAY
PUSH = 15.0  # the default push interval; the stack scrapes the collector every 15 s too


def extrapolate(r: dict, fits: dict) -> dict:
    """1,000 laptops like the typical one (20 projects, 4 models), in each profile."""
    out = {}
    for prof in PROFILES:
        series = r["typical_laptop_series"][prof] * 1000
        samples_s = series / PUSH
        out[prof] = {
            "active_series": round(series),
            "samples_per_s": round(samples_s),
            "prometheus_storage_gb_month": round(samples_s * MONTH * BYTES_PER_SAMPLE / 1e9, 1),
        }
    mb = r["metric_bytes_per_host_hour"] * 1000
    tb = r["trace_bytes_per_host_hour"] * 1000
    out["collector"] = {
        "otlp_metrics_mb_per_hour": round(mb / 1e6, 1),
        "otlp_traces_mb_per_hour": round(tb / 1e6, 1),
        "otlp_bytes_per_s": round((mb + tb) / 3600),
        "requests_per_s": round(r["requests_per_host_s"] * 1000, 1),
    }
    spans_s = r["spans_per_host_hour"] * 1000 / 3600
    out["tempo"] = {
        "spans_per_s": round(spans_s, 1),
        "otlp_gb_month": round(tb * 24 * 30 / 1e9, 1),
    }
    return out


def report(r: dict) -> None:
    print(
        f"\nccotel team benchmark  {r['when']}  {r['hosts']} daemons, {r['measured_s']:.0f} s measured"
    )
    print("\nseries per host (latest push, as a collector's Prometheus exporter makes them):")
    for k, v in r["series_by_profile_projects_models"].items():
        print(f"  {k:<16} {v:8.0f}")
    for prof, f in r["series_fit"].items():
        print(f"  fit {prof}: {f['a']:.0f} + {f['b']:.2f} x projects x models + {f['c']:.2f} x projects"
              f"  -> typical laptop (20 projects, 4 models): {r['typical_laptop_series'][prof]:.0f}")  # fmt: skip
    print(f"\nOTLP per host per hour: metrics {r['metric_bytes_per_host_hour'] / 1e6:.2f} MB, traces "
          f"{r['trace_bytes_per_host_hour'] / 1e6:.2f} MB ({r['spans_per_host_hour']:.0f} spans, "
          f"{r['bytes_per_span']:.0f} B/span)")  # fmt: skip
    print(
        f"receiver: {r['receiver_requests_per_s']:.2f} requests/s ({r['requests_per_host_s'] * 3600:.0f} per host per hour)"
    )
    print(f"daemon CPU: mean {r['daemon_cpu_pct']['mean']:.2f} % of a core, max {r['daemon_cpu_pct']['max']:.2f} %;"
          f" RSS mean {r['daemon_rss_mb']['mean']:.0f} MB, peak {r['daemon_rss_mb']['max']:.0f} MB")  # fmt: skip
    print("\nat 1,000 hosts:")
    for k, v in r["at_1000_hosts"].items():
        print(f"  {k:<10} {json.dumps(v)}")
    c = r["checks"]
    print(f"\nchecks: {c['hosts_exact']} full-profile hosts pushed exactly their /metrics; "
          f"{c['restart_lower']} counters lower after the receiver restart; "
          f"{c['hosts_checked_after_restart']} hosts pushed again after it")  # fmt: skip
    for f in c["failed"]:
        print(f"  FAILED: {f}")


if __name__ == "__main__":
    sys.exit(main())
