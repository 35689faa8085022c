#!/usr/bin/env python3
"""Where an append's time goes, from the write to the scrape that shows it (issue 13).

    python bench/append_stages.py                 # 200 appends on the bench corpus
    python bench/append_stages.py --appends 50 --state DIR

Runs ``ccotel run`` with timestamps patched in (time.perf_counter, CLOCK_MONOTONIC: the same
clock in both processes) at each stage an append passes through: the watchdog thread's read
of the inotify fd, the observer thread's handler, the daemon loop's wake-up, the read and
accounting (``Ingest.ingest``), the SQLite commit, the totals merge, the end of the flush,
the end of the loop's pass; and, on the HTTP side, the worker taking the request and the
rendered body. Appends one assistant line at a time and polls /metrics back to back as
bench/run.py does, then prints, per stage, the p50/p99/max of the time from the previous
stage. The corpus and a backfilled state come from bench/run.py's (generated under
bench/out/ on first use).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# --------------------------------------------------------------------------- daemon side

_T: list[tuple[str, float, int]] = []


def _stamp(name: str) -> None:
    import threading

    _T.append((name, time.perf_counter(), threading.get_ident()))


def _wrap(cls, attr: str, before: str | None, after: str | None, only_if=None) -> None:
    fn = getattr(cls, attr)

    def wrapped(*a, **kw):
        if before:
            _stamp(before)
        r = fn(*a, **kw)
        if after and (only_if is None or only_if(r)):
            _stamp(after)
        return r

    setattr(cls, attr, wrapped)


def run_daemon(out: str, argv: list[str]) -> None:
    """The daemon with stamps; they are written to ``out`` at exit."""
    import atexit

    from watchdog.observers import inotify_c

    from ccotel import pipeline, totals, wakeup
    from ccotel.server import httpd
    from ccotel.sources import watch
    from ccotel.state import store
    from ccotel.traces import service

    _wrap(inotify_c.InotifyFD, "read_events", None, "inotify", bool)
    _wrap(watch._Handler, "on_any_event", "handler", None)
    _wrap(wakeup.Wakeup, "wait", None, "wake", bool)
    _wrap(pipeline.Ingest, "ingest", "ingest", "ingested")
    _wrap(store.Store, "commit", "commit", "committed")
    _wrap(totals.Totals, "merge", None, "merged")
    _wrap(pipeline.Ingest, "flush", None, "flushed")
    _wrap(service.Exporters, "notify", "loop_end", None)
    _wrap(httpd._Handler, "do_GET", "http_get", "http_sent")
    _wrap(httpd._App, "_exposition", None, "rendered")

    def dump() -> None:
        with open(out, "w") as f:
            json.dump(_T, f)

    atexit.register(dump)
    sys.argv = ["ccotel", *argv]
    from ccotel.cli import main

    main()


# --------------------------------------------------------------------------- bench side

STAGES = ("inotify", "handler", "wake", "ingest", "commit", "committed", "merged", "flushed",
          "loop_end")  # fmt: skip


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--daemon":
        run_daemon(sys.argv[2], sys.argv[3:])
        return 0
    from bench.run import (
        OUT,
        Scraper,
        free_port,
        metric_sum,
        pct,
        phase_corpus,
        pick_targets,
    )
    from tests.corpus import SONNET46, Usage, append_assistant, session_meta

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--state", help="a backfilled state dir (default: backfill one)")
    ap.add_argument("--files", type=int, default=3500)
    ap.add_argument("--bytes", type=int, default=450_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the per-append stamps here")
    args = ap.parse_args()
    ns = argparse.Namespace(files=args.files, bytes=args.bytes, seed=args.seed, fresh_corpus=False)
    info = phase_corpus(ns, {})
    home = tempfile.mkdtemp(prefix="stages-home-")
    env = {"PATH": os.environ["PATH"], "HOME": home, "TZ": "UTC", "NO_COLOR": "1",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    env |= {k: v for k, v in os.environ.items() if k.startswith(("CCOTEL_", "OTEL_"))}
    state = args.state
    if state is None:
        state = tempfile.mkdtemp(prefix="stages-state-", dir=OUT)
        subprocess.run([sys.executable, "-m", "ccotel", "backfill", "--claude-dir", info.root,
                        "--state-dir", state], env=env, check=True, capture_output=True)  # fmt: skip
    port = free_port()
    stamps = tempfile.mktemp(prefix="stamps-", suffix=".json")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--daemon", stamps, "run", "--claude-dir", info.root,
         "--state-dir", state, "--http-addr", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    targets = pick_targets(Path(info.root), 4)
    sizes = {p: p.stat().st_size for p in targets}
    mtimes = {p: p.stat().st_mtime_ns for p in targets}
    sc = Scraper(port)
    appends: list[dict] = []
    try:
        while True:
            try:
                if sc.get("/healthz", 2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        time.sleep(2)
        rng = random.Random(args.seed)
        metas = {p: session_meta(p) for p in targets}
        for i in range(args.appends):
            p = targets[i % len(targets)]
            u = Usage(rng.randint(1, 20), rng.randint(10, 900), rng.randint(0, 4000),
                      rng.randint(0, 2000), rng.randint(1000, 90000))  # fmt: skip
            before = metric_sum(sc.get("/metrics")[1], "ccotel_lines_total") or 0.0
            t_w = time.perf_counter()
            append_assistant(p, u, model=SONNET46, meta=metas[p], rng=rng)
            t_done = time.perf_counter()
            while True:
                t_req = time.perf_counter()
                v = metric_sum(sc.get("/metrics")[1], "ccotel_lines_total") or 0.0
                if v > before:
                    break
                time.sleep(0.001)
            appends.append({"write": t_w, "written": t_done, "req": t_req,
                            "seen": time.perf_counter()})  # fmt: skip
            time.sleep(rng.uniform(0.005, 0.03))
    finally:
        sc.close()
        proc.terminate()
        proc.wait(30)
        for p, n in sizes.items():
            os.truncate(p, n)
            os.utime(p, ns=(mtimes[p], mtimes[p]))
    with open(stamps) as f:
        daemon = json.load(f)
    os.unlink(stamps)
    rows = breakdown(appends, daemon)
    names = ["write", *STAGES, "req", "seen"]
    print(f"{len(appends)} appends; ms from the previous stage (p50 / p90 / p99 / max)")
    for a, b in itertools.pairwise(names):
        xs = [r[b] - r[a] for r in rows if a in r and b in r]
        if xs:
            print(f"  {a:>10} -> {b:<10} {pct(xs, .5) * 1e3:7.2f} {pct(xs, .9) * 1e3:7.2f} "
                  f"{pct(xs, .99) * 1e3:7.2f} {max(xs) * 1e3:7.2f}")  # fmt: skip
    tot = [r["seen"] - r["write"] for r in rows]
    print(f"  {'write':>10} -> {'seen':<10} {pct(tot, .5) * 1e3:7.2f} {pct(tot, .9) * 1e3:7.2f} "
          f"{pct(tot, .99) * 1e3:7.2f} {max(tot) * 1e3:7.2f}")  # fmt: skip
    slow = sorted(rows, key=lambda r: r["seen"] - r["write"])[-5:]
    print("slowest appends (ms after the write):")
    for r in slow:
        print("  " + ", ".join(f"{k} {(r[k] - r['write']) * 1e3:.1f}" for k in names if k in r))
    if args.json:
        Path(args.json).write_text(json.dumps({"appends": rows, "stamps": daemon}))
    print(f"load average {os.getloadavg()}")
    return 0


def breakdown(appends: list[dict], daemon: list) -> list[dict]:
    """Per append, the first stamp of each stage after its write (stages in order)."""
    stamps = sorted((t, name) for name, t, _tid in daemon)
    rows = []
    j = 0
    for k, a in enumerate(appends):
        end = appends[k + 1]["write"] if k + 1 < len(appends) else float("inf")
        row = dict(a)
        while j < len(stamps) and stamps[j][0] < a["write"]:
            j += 1
        last = a["write"]
        i = j
        for st in STAGES:
            while i < len(stamps) and stamps[i][0] < end:
                t, name = stamps[i]
                i += 1
                if name == st and t >= last:
                    row[st], last = t, t
                    break
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
