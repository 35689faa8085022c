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
import gzip
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
TYPICAL = (20, 4)  # the typical laptop: projects, models
TEAM_PROJECTS = 5  # metrics_push_projects' default: the team profile names that many projects
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


def host_mix() -> list[tuple[int, int, str]]:
    """(projects, models, profile) per host, in the order hosts take them: the typical laptop
    (20 projects, 4 models) first, then every other pair with both numbers changing from one
    pair to the next, each pair in both profiles, so that a few hosts already vary both (the
    fit needs that) and 30 hosts cover every pair. Walks k -> (PROJECTS[k % 5],
    MODEL_COUNTS[k % 3]): 5 and 3 are coprime, so 15 steps meet all 15 pairs once."""
    n = len(PROJECTS) * len(MODEL_COUNTS)
    start = next(k for k in range(n) if (PROJECTS[k % 5], MODEL_COUNTS[k % 3]) == TYPICAL)
    pairs = [(PROJECTS[k % 5], MODEL_COUNTS[k % 3]) for k in range(start, start + n)]
    return [(p, m, prof) for p, m in pairs for prof in PROFILES]


# --- the receiver ------------------------------------------------------------------------------


def series_of(req: ExportMetricsServiceRequest) -> tuple[dict[str, int], dict]:
    """(Prometheus series a collector makes of it, by metric name; monotonic sums' values by
    series). A histogram point makes one series per bucket (+Inf included), _sum and _count;
    each resource makes one target_info."""
    n: dict[str, int] = defaultdict(int)
    sums = {}
    for rm in req.resource_metrics:
        n["target_info"] += 1
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                for p in getattr(m, kind).data_points:
                    if kind == "histogram":
                        n[m.name] += len(p.bucket_counts) + 2
                        continue
                    n[m.name] += 1
                    if kind == "sum" and m.sum.is_monotonic:
                        key = (
                            m.name,
                            tuple(sorted((a.key, a.value.string_value) for a in p.attributes)),
                        )
                        sums[key] = p.as_double
    return dict(n), sums


class Receiver:
    def __init__(self, port: int):
        self.port = port
        self.lock = threading.Lock()
        self.stats = defaultdict(lambda: defaultdict(float))  # host -> figure -> value
        self.latest: dict[str, dict] = {}  # host -> monotonic sums of its last metrics push
        self.series: dict[str, dict[str, int]] = {}  # host -> series of its last push, by name
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
            gz = len(gzip.compress(body, 6))  # what otlp_compression = "gzip" would send
            with self.lock:
                s = self.stats[host]
                s["metric_requests"] += 1
                s["metric_bytes"] += len(body)
                s["metric_bytes_gzip"] += gz
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
                s["trace_bytes_gzip"] += len(gzip.compress(body, 6))
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
           str(state), "--http-addr", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
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

    load = {"before": os.getloadavg()}
    work = OUT / "team"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    combos = host_mix()
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
        load["during"] = os.getloadavg()
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
        load["end"] = os.getloadavg()
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
    res = figures(laps, recv, net0, net1, cpu0, cpu1, rss, hwm, elapsed, args, load)
    res["checks"] = {"failed": failed, "hosts_exact": exact, "restart_lower": len(recv.lower),
                     "hosts_checked_after_restart": len(recv.checked)}  # fmt: skip
    report(res)
    (OUT / "team.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwrote {OUT / 'team.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def pushed_projects(projects: int, profile: str) -> int:
    """Projects a host pushes by name (+1 for "other" when the team profile folds some)."""
    if profile == "team" and projects > TEAM_PROJECTS:
        return TEAM_PROJECTS + 1
    return projects


def figures(laps, recv, net0, net1, cpu0, cpu1, rss, hwm, elapsed, args, load) -> dict:
    per_host = []
    for lap in laps:
        h = f"host-{lap.n:03d}"
        a, b = net0.get(h, {}), net1.get(h, {})
        d = {
            k: b.get(k, 0) - a.get(k, 0)
            for k in ("metric_requests", "metric_bytes", "metric_bytes_gzip", "trace_requests",
                      "trace_bytes", "trace_bytes_gzip", "spans")
        }  # fmt: skip
        fam = recv.series.get(h, {})
        per_host.append({
            "host": h, "projects": lap.projects, "models": len(lap.models), "profile": lap.profile,
            "series": sum(fam.values()), "series_by_metric": fam,
            "metric_bytes_per_hour": d["metric_bytes"] * 3600 / elapsed,
            "trace_bytes_per_hour": d["trace_bytes"] * 3600 / elapsed,
            "gzip_ratio": (d["metric_bytes_gzip"] + d["trace_bytes_gzip"])
            / max(1, d["metric_bytes"] + d["trace_bytes"]),
            "spans_per_hour": d["spans"] * 3600 / elapsed,
            "requests_per_hour": (d["metric_requests"] + d["trace_requests"]) * 3600 / elapsed,
            "cpu_pct": (cpu1[lap.n] - cpu0[lap.n]) / HZ / elapsed * 100,
            "rss_mb": rss[lap.n], "rss_peak_mb": hwm[lap.n],
        })  # fmt: skip
    pushed = [r for r in per_host if r["series"] > 0]
    by: dict[tuple, list] = defaultdict(list)
    for r in pushed:
        by[(r["profile"], r["projects"], r["models"])].append(r)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    table = {
        f"{p}/{pr}p/{m}m": {
            "hosts": len(v),
            "series": mean([r["series"] for r in v]),
            "metric_bytes_per_hour": mean([r["metric_bytes_per_hour"] for r in v]),
        }
        for (p, pr, m), v in sorted(by.items())
    }
    fits = {prof: _fit([r for r in pushed if r["profile"] == prof]) for prof in PROFILES}
    # the typical laptop: measured on the hosts that had 20 projects and 4 models, else fitted
    typical = {}
    for prof in PROFILES:
        hs = by.get((prof, *TYPICAL), [])
        f = fits[prof]
        if hs:
            typical[prof] = {
                "source": f"measured on {len(hs)} host(s)",
                "series": mean([r["series"] for r in hs]),
                "series_by_metric": hs[0]["series_by_metric"],
                "metric_bytes_per_hour": mean([r["metric_bytes_per_hour"] for r in hs]),
                "gzip_ratio": mean([r["gzip_ratio"] for r in hs]),
            }
        elif f:
            # no such host: the fit's series, bytes in proportion to the hosts' bytes per series
            series = _fitted(f, *TYPICAL, prof)
            rows = [r for r in pushed if r["profile"] == prof]
            bps = sum(r["metric_bytes_per_hour"] for r in rows) / sum(r["series"] for r in rows)
            typical[prof] = {"source": "fitted", "series": series, "series_by_metric": {},
                             "metric_bytes_per_hour": series * bps,
                             "gzip_ratio": mean([r["gzip_ratio"] for r in rows])}  # fmt: skip
        else:
            typical[prof] = None
    total_req = sum(r["requests_per_hour"] for r in per_host) / 3600
    hosts = len(per_host)
    bytes_per_span = sum(r["trace_bytes_per_hour"] for r in per_host) / max(
        1, sum(r["spans_per_hour"] for r in per_host)
    )
    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args), "hosts": hosts, "hosts_pushed": len(pushed),
        "measured_s": round(elapsed, 1), "load_average": load, "cores": os.cpu_count(),
        "series_by_profile_projects_models": table, "series_fit": fits,
        "typical_laptop": typical,  # 20 projects, 4 models
        "metric_bytes_per_host_hour": mean([r["metric_bytes_per_hour"] for r in per_host]),
        "trace_bytes_per_host_hour": mean([r["trace_bytes_per_hour"] for r in per_host]),
        "spans_per_host_hour": mean([r["spans_per_hour"] for r in per_host]),
        "bytes_per_span": bytes_per_span,
        "gzip_ratio": mean([r["gzip_ratio"] for r in per_host if r["gzip_ratio"]]),
        "receiver_requests_per_s": total_req, "requests_per_host_s": total_req / hosts,
        "daemon_cpu_pct": {"mean": mean([r["cpu_pct"] for r in per_host]), "max": max(r["cpu_pct"] for r in per_host)},
        "daemon_rss_mb": {"mean": mean([r["rss_mb"] for r in per_host]), "max": max(r["rss_peak_mb"] for r in per_host)},
        "per_host": per_host,
    }  # fmt: skip
    out["at_1000_hosts"] = extrapolate(out)
    return out


FIT_TERMS = ("a", "b", "c", "d")  # series = a + b*P*models + c*P + d*models, P: pushed projects


def _fitted(f: dict, projects: int, models: int, profile: str) -> float:
    p = pushed_projects(projects, profile)
    return f["a"] + f["b"] * p * models + f["c"] * p + f["d"] * models


def _fit(rows: list[dict]) -> dict | None:
    """series = a + b*P*models + c*P + d*models by least squares, where P is the projects the
    host pushes by name (the team profile folds all but 5 into "other"); with the residuals'
    largest relative error. None when the hosts do not vary enough to determine the four."""
    pts = {(pushed_projects(r["projects"], r["profile"]), r["models"]) for r in rows}
    if len(pts) < len(FIT_TERMS) + 1:
        return None
    xs = [
        (1.0, p * m, p, m)
        for r in rows
        for p, m in [(pushed_projects(r["projects"], r["profile"]), r["models"])]
    ]
    ys = [r["series"] for r in rows]
    k = len(FIT_TERMS)
    ata = [[sum(x[i] * x[j] for x in xs) for j in range(k)] for i in range(k)]
    aty = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(k)]
    sol = _solve(ata, aty)
    if sol is None:
        return None
    f = dict(zip(FIT_TERMS, sol, strict=True))
    err = max(
        abs(_fitted(f, r["projects"], r["models"], r["profile"]) - r["series"]) / r["series"]
        for r in rows
    )
    return f | {"max_rel_error": err, "points": len(pts)}


def _solve(m: list[list[float]], v: list[float]) -> list[float] | None:
    """Gauss-Jordan with partial pivoting; None for a singular system."""
    n = len(v)
    a = [[*row, v[i]] for i, row in enumerate(m)]
    for i in range(n):
        p = max(range(i, n), key=lambda r: abs(a[r][i]))
        a[i], a[p] = a[p], a[i]
        if abs(a[i][i]) < 1e-9 * max(1.0, max(abs(x) for row in m for x in row)):
            return None
        for r in range(n):
            if r != i:
                f = a[r][i] / a[i][i]
                a[r] = [x - f * y for x, y in zip(a[r], a[i], strict=True)]
    return [a[i][n] / a[i][i] for i in range(n)]


BYTES_PER_SAMPLE = 2.0  # Prometheus TSDB: 1-2 bytes per sample after compression (upper end)
MONTH = 30 * DAY
WORK_HOURS_MONTH = 8 * 22  # a laptop busy 8 hours a day, 22 days a month
SCRAPE = 15.0  # the stack scrapes the collector every 15 s (the push interval's default too)


def extrapolate(r: dict) -> dict:
    """1,000 laptops like the typical one (20 projects, 4 models), in each profile. Metrics
    are pushed every interval whether the laptop is busy or not (while ccotel runs); spans
    come with activity, measured here at the benchmark's rate (busy all the time)."""
    out: dict = {}
    for prof in PROFILES:
        t = r["typical_laptop"][prof]
        if t is None:
            out[prof] = None
            continue
        series = t["series"] * 1000
        samples_s = series / SCRAPE
        mb = t["metric_bytes_per_hour"] * 1000
        out[prof] = {
            "active_series": round(series),
            "samples_per_s": round(samples_s),
            "prometheus_storage_gb_month": round(samples_s * MONTH * BYTES_PER_SAMPLE / 1e9, 1),
            "otlp_metrics_mb_per_hour": round(mb / 1e6, 1),
            "otlp_metrics_kb_per_s": round(mb / 3600 / 1e3, 1),
            "otlp_metrics_kb_per_s_gzip": round(mb * t["gzip_ratio"] / 3600 / 1e3, 1),
        }
    tb = r["trace_bytes_per_host_hour"] * 1000
    out["collector"] = {
        "requests_per_s": round(r["requests_per_host_s"] * 1000, 1),
        "otlp_traces_mb_per_busy_hour": round(tb / 1e6, 1),
        "otlp_traces_kb_per_s_busy": round(tb / 3600 / 1e3, 1),
    }
    spans_s = r["spans_per_host_hour"] * 1000 / 3600
    out["tempo"] = {
        "spans_per_s_busy": round(spans_s, 1),
        "otlp_gb_month_busy_always": round(tb * 24 * 30 / 1e9, 1),
        "otlp_gb_month_8h_22d": round(tb * WORK_HOURS_MONTH / 1e9, 1),
    }
    return out


def report(r: dict) -> None:
    la = r["load_average"]
    print(f"\nccotel team benchmark  {r['when']}  {r['hosts']} daemons ({r['hosts_pushed']} pushed),"
          f" {r['measured_s']:.0f} s measured, {r['cores']} cores; 1-min load average before"
          f" {la['before'][0]:.1f}, during {la['during'][0]:.1f}, end {la['end'][0]:.1f}")  # fmt: skip
    print("\nseries per host (latest push, as a collector's Prometheus exporter makes them):")
    print(f"  {'profile/projects/models':<24} {'hosts':>5} {'series':>8} {'metrics MB/h':>13}")
    for k, v in r["series_by_profile_projects_models"].items():
        print(f"  {k:<24} {v['hosts']:5d} {v['series']:8.0f} {v['metric_bytes_per_hour'] / 1e6:13.2f}")  # fmt: skip
    for prof, f in r["series_fit"].items():
        if f is None:
            print(
                f"  fit {prof}: not enough hosts with different projects and models (needs 5 pairs)"
            )
            continue
        print(f"  fit {prof}: {f['a']:.1f} + {f['b']:.2f} P x models + {f['c']:.2f} P + {f['d']:.2f}"
              f" models (P: projects pushed by name{', at most 5 + other' if prof == 'team' else ''});"
              f" {f['points']} points, max error {f['max_rel_error']:.1%}")  # fmt: skip
    for prof, t in r["typical_laptop"].items():
        if t is None:
            print(
                f"  typical laptop (20 projects, 4 models), {prof}: unknown (no such host, no fit)"
            )
            continue
        top = sorted(t["series_by_metric"].items(), key=lambda kv: -kv[1])
        print(f"  typical laptop (20 projects, 4 models), {prof}: {t['series']:.0f} series"
              f" ({t['source']}), {t['metric_bytes_per_hour'] / 1e6:.2f} MB/h of metrics"
              f" ({t['gzip_ratio']:.0%} of that with gzip)")  # fmt: skip
        if top:
            print("    " + ", ".join(f"{k} {v}" for k, v in top))
    print(f"\nOTLP per host per hour (all hosts): metrics {r['metric_bytes_per_host_hour'] / 1e6:.2f} MB,"
          f" traces {r['trace_bytes_per_host_hour'] / 1e6:.2f} MB ({r['spans_per_host_hour']:.0f} spans,"
          f" {r['bytes_per_span']:.0f} B/span); with otlp_compression = \"gzip\""
          f" {r['gzip_ratio']:.0%} of that")  # fmt: skip
    print(
        f"receiver: {r['receiver_requests_per_s']:.2f} requests/s ({r['requests_per_host_s'] * 3600:.0f} per host per hour)"
    )
    print(f"daemon CPU: mean {r['daemon_cpu_pct']['mean']:.2f} % of a core, max {r['daemon_cpu_pct']['max']:.2f} %;"
          f" RSS mean {r['daemon_rss_mb']['mean']:.0f} MB, peak {r['daemon_rss_mb']['max']:.0f} MB")  # fmt: skip
    print("\nat 1,000 hosts (typical laptops):")
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
