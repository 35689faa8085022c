#!/usr/bin/env python3
"""Fault loops too long for the suite: kill -9 at random points, and a long collector outage.

    python bench/faults.py                      # 50 backfill kills, 50 live kills, 120 s outage
    python bench/faults.py --loops 10 --outage 30

kill    tests/test_faults_kill.py's loops with --loops iterations each: a backfill killed
        one to three times at random points then completed; the daemon killed while a
        writer appends (a third of lines in two parts) and restarted. After every
        restart the totals must equal ccusage's (an AssertionError stops the run).
outage  the daemon with traces on, the collector down (nothing listening) for --outage
        seconds while sessions are written: daemon RSS and export attempts sampled; then
        the collector comes up and every span arrives (compared with a clean run).
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402
from tests.corpus import generate, write_session  # noqa: E402
from tests.test_faults_kill import kill_during_backfill, kill_during_live  # noqa: E402
from tests.test_live import wait_equal  # noqa: E402
from tests.test_traces_receiver import Receiver  # noqa: E402
from tests.test_traces_wire import _health, _reference, clean_env  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def outage(root: Path, seconds: float) -> dict:
    config = root / "claude"
    generate(config, files=40, seed=5)
    otlp, port = free_port(), free_port()
    env = clean_env(
        CCOTEL_OTLP_RETRY_MAX="5",
        CCOTEL_METRICS_PUSH_INTERVAL="0",
        CCOTEL_TRACE_LOOKBACK=str(10 * 365 * 86400),
        CCOTEL_SESSION_IDLE="2",
    )  # sessions written now close soon, as in the reference
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(config), "--state-dir", str(root / "state"),
         "--http-addr", f"127.0.0.1:{port}", "--otlp-endpoint", f"http://127.0.0.1:{otlp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        while True:
            try:
                if _health(port)["ok"]:
                    break
            except OSError:
                time.sleep(0.1)
        rss = []
        t0 = time.monotonic()
        i = 0
        rng = random.Random(2)
        while time.monotonic() - t0 < seconds:
            write_session(
                config, cwd=f"/home/user/outage{i % 20}", seed=1000 + i
            )  # new sessions while it is down
            i += 1
            rss.append(rss_mb(proc.pid))
            time.sleep(rng.uniform(0.5, 1.5))
        wait_equal(port, config, timeout=60)
        h_down = _health(port)["traces"]
        ref = _reference(config, root / "ref")
        with Receiver(port=otlp) as r:
            r.wait(lambda: len({s.span_id for s in r.spans()}) >= len(ref), timeout=600)
            time.sleep(3)
            spans = r.spans()
        ids = Counter(s.span_id for s in spans)
        got = {s.span_id: (s.parent_id, s.name, s.start, s.end) for s in spans}
        return {
            "outage_seconds": seconds,
            "sessions_written_during_outage": i,
            "rss_mb_first": round(rss[0], 1),
            "rss_mb_max": round(max(rss), 1),
            "rss_mb_last": round(rss[-1], 1),
            "health_during_outage": {
                k: h_down.get(k)
                for k in ("failing", "spans_exported", "spans_dropped")
                if k in h_down
            },
            "spans_reference": len(ref),
            "spans_received_unique": len(got),
            "spans_lost": len(set(ref) - set(got)),
            "spans_twice": sum(1 for n in ids.values() if n > 1),
            "equal_to_clean_run": got == ref,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--loops", type=int, default=50)
    ap.add_argument("--outage", type=float, default=120.0)
    ap.add_argument("--only", default="kill,outage")
    a = ap.parse_args()
    out = {}
    only = a.only.split(",")
    with tempfile.TemporaryDirectory(prefix="ccotel-faults-") as tmp:
        root = Path(tmp)
        log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        if "kill" in only:
            t = time.monotonic()
            (root / "b").mkdir()
            out["kill_during_backfill"] = kill_during_backfill(root / "b", a.loops, log=log)
            out["kill_during_backfill"]["seconds"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            (root / "l").mkdir()
            out["kill_during_live"] = kill_during_live(root / "l", a.loops, log=log)
            out["kill_during_live"]["seconds"] = round(time.monotonic() - t, 1)
        if "outage" in only:
            (root / "o").mkdir()
            out["collector_outage"] = outage(root / "o", a.outage)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
