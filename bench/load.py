#!/usr/bin/env python3
"""Load: N sessions written concurrently at a total rate, while `ccotel run` ingests them.

    python bench/load.py                                   # 50 sessions, 10 MB/s, 180 s
    python bench/load.py --sessions 50 --mbps 10 --seconds 300 --oracle

A writer process appends assistant lines (unique responses, ~4 KB each, a third of them
written in two parts to imitate a writer caught mid-line) round-robin over the sessions,
paced to the total rate, and notes when each line was written. The monitor polls the
daemon's /metrics every 50 ms and its /proc entry every second.

Reports: lines written and ingested (lost = written - ingested, must be 0), tokens and
cost against the writer's ground truth (and ccusage's with --oracle), ingest lag per line
(time its count first shows in ccotel_lines_total minus the time it was written; p50,
p99, max), daemon peak RSS and CPU (% of one core, mean over the run). Prints JSON.
tests/test_load.py runs a short version and asserts no line is lost.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.corpus import SONNET46, Usage, _ts, cost_usd, encode_cwd  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _writer(config: str, sessions: int, mbps: float, seconds: float, line_bytes: int, out) -> None:
    """Child process: write, then send (marks, totals) back: marks are (time, lines so far)."""
    import random

    rng = random.Random(1)
    paths, sids = [], []
    for i in range(sessions):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        cwd = f"/home/user/load{i:02d}"
        p = Path(config) / "projects" / encode_cwd(cwd) / f"{sid}.jsonl"
        p.parent.mkdir(parents=True, exist_ok=True)
        paths.append((os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), cwd))
        sids.append(sid)
    pad = "x" * line_bytes
    rate = mbps * 1e6
    t0 = time.time()
    written = 0
    lines = 0
    marks: list[tuple[float, int]] = []
    tokens = {"input": 0, "output": 0, "cache_write": 0, "cache_read": 0}
    cost = 0.0
    k = 0
    while True:
        now = time.time()
        if now - t0 >= seconds:
            break
        if written > rate * (now - t0):  # ahead of pace
            time.sleep(0.002)
            continue
        fd, cwd = paths[k % sessions]
        sid = sids[k % sessions]
        u = Usage(
            rng.randint(1, 50), rng.randint(1, 900), rng.randint(0, 3000), 0, rng.randint(0, 90000)
        )
        rec = {
            "parentUuid": None, "isSidechain": False, "type": "assistant", "uuid": str(uuid.uuid4()),
            "timestamp": _ts(int(now * 1000)), "requestId": f"req_load{k:09d}", "cwd": cwd, "sessionId": sid,
            "version": "2.1.197", "userType": "external", "entrypoint": "cli", "gitBranch": "main",
            "message": {"id": f"msg_load{k:09d}", "type": "message", "role": "assistant", "model": SONNET46,
                        "content": [{"type": "text", "text": pad}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": u.input, "output_tokens": u.output,
                                  "cache_creation_input_tokens": u.cache_write, "cache_read_input_tokens": u.cache_read,
                                  "cache_creation": {"ephemeral_5m_input_tokens": u.cache_5m, "ephemeral_1h_input_tokens": 0}}},
        }  # fmt: skip
        data = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        if rng.random() < 0.33:
            cut = rng.randint(1, len(data) - 1)
            os.write(fd, data[:cut])
            os.write(fd, data[cut:])
        else:
            os.write(fd, data)
        written += len(data)
        lines += 1
        k += 1
        tokens["input"] += u.input
        tokens["output"] += u.output
        tokens["cache_write"] += u.cache_write
        tokens["cache_read"] += u.cache_read
        cost += cost_usd(SONNET46, u)
        if not marks or now - marks[-1][0] >= 0.01:
            marks.append((time.time(), lines))
    marks.append((time.time(), lines))
    for fd, _ in paths:
        os.close(fd)
    out.send({"marks": marks, "lines": lines, "bytes": written, "tokens": tokens, "cost": cost,
              "seconds": time.time() - t0})  # fmt: skip


def _scrape(port: int) -> dict:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {
        "lines": 0.0,
        "input": 0.0,
        "output": 0.0,
        "cache_read": 0.0,
        "cache_write": 0.0,
        "cost": 0.0,
        "errors": 0.0,
    }
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name == "ccotel_lines_total":
            out["lines"] = float(value)
        elif name == "ccotel_parse_errors_total":
            out["errors"] = float(value)
        elif name.startswith("ccotel_cost_usd_total{"):
            out["cost"] += float(value)
        elif name.startswith("ccotel_tokens_total{"):
            typ = name.split('type="', 1)[1].split('"', 1)[0]
            out["cache_write" if typ.startswith("cache_write") else typ] += float(value)
    return out


def _proc_sample(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    cpu = (int(parts[11]) + int(parts[12])) / TICK
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    return cpu, rss


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def run_load(root: Path, sessions: int = 50, mbps: float = 10.0, seconds: float = 180.0, line_bytes: int = 4000,
             settle: float = 120.0, oracle: bool = False, log=print) -> dict:  # fmt: skip
    config = root / "claude"
    (config / "projects").mkdir(parents=True, exist_ok=True)
    state = root / "state"
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["CCOTEL_TRACES"] = "false"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(config), "--state-dir", str(state),
         "--http-addr", f"127.0.0.1:{port}"],
        stdout=open(root / "daemon.log", "wb"),  # noqa: SIM115 (lives as long as the daemon) stderr=subprocess.STDOUT, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                if json.loads(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                )["ok"]:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("daemon did not become ready")
        base = _scrape(port)["lines"]
        cpu0, _ = _proc_sample(daemon.pid)
        t_start = time.time()
        recv, send = mp.Pipe(duplex=False)
        w = mp.get_context("fork").Process(
            target=_writer, args=(str(config), sessions, mbps, seconds, line_bytes, send)
        )
        w.start()
        polls: list[tuple[float, float]] = []
        peak_rss = 0
        last_proc = 0.0
        result = None
        deadline = None
        while True:
            now = time.time()
            got = _scrape(port)
            polls.append((now, got["lines"] - base))
            if now - last_proc >= 1.0:
                peak_rss = max(peak_rss, _proc_sample(daemon.pid)[1])
                last_proc = now
            if result is None and recv.poll():
                result = recv.recv()
                deadline = now + settle
            if result is not None and (got["lines"] - base >= result["lines"] or now > deadline):
                break
            time.sleep(0.05)
        w.join()
        t_end = time.time()
        cpu1, rss = _proc_sample(daemon.pid)
        peak_rss = max(peak_rss, rss)
        final = _scrape(port)
        # lag per line: first poll showing its count, minus when it was written
        marks = result["marks"]
        lags: list[float] = []
        j = 0
        for t_w, n in marks:
            while j < len(polls) and polls[j][1] < n:
                j += 1
            if j == len(polls):
                break
            lags.append(max(0.0, polls[j][0] - t_w))
        ingested = int(final["lines"] - base)
        truth = result["tokens"]
        rep = {
            "sessions": sessions,
            "target_mb_per_s": mbps,
            "seconds_written": round(result["seconds"], 1),
            "mb_written": round(result["bytes"] / 1e6, 1),
            "mb_per_s_achieved": round(result["bytes"] / 1e6 / result["seconds"], 2),
            "lines_written": result["lines"],
            "lines_ingested": ingested,
            "lines_lost": result["lines"] - ingested,
            "parse_errors": int(final["errors"]),
            "tokens_equal_ground_truth": all(int(final[k]) == truth[k] for k in truth),
            "cost_equal_ground_truth": abs(final["cost"] - result["cost"])
            <= 1e-6 * max(1.0, result["cost"]),
            "lag_p50_s": round(_pct(lags, 50), 3),
            "lag_p99_s": round(_pct(lags, 99), 3),
            "lag_max_s": round(max(lags, default=0.0), 3),
            "lag_samples": len(lags),
            "daemon_peak_rss_mb": round(peak_rss / 2**20, 1),
            "daemon_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t_end - t_start), 1),
        }
        if oracle:
            from tests.oracle import ccusage_totals

            o = ccusage_totals(config)
            rep["oracle_equal"] = (
                int(final["input"]) == o["inputTokens"] and int(final["output"]) == o["outputTokens"]
                and int(final["cache_read"]) == o["cacheReadTokens"] and int(final["cache_write"]) == o["cacheCreationTokens"]
                and abs(final["cost"] - o["totalCost"]) <= 1e-6 * max(1.0, o["totalCost"])
            )  # fmt: skip
        return rep
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--mbps", type=float, default=10.0, help="total MB/s written")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--line-bytes", type=int, default=4000)
    ap.add_argument("--oracle", action="store_true", help="also compare with ccusage at the end")
    ap.add_argument("--keep", action="store_true", help="keep the written transcripts")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ccotel-load-"))
    try:
        rep = run_load(root, a.sessions, a.mbps, a.seconds, a.line_bytes, oracle=a.oracle)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
