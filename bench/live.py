#!/usr/bin/env python3
"""Live board benchmark: how long from a transcript line being written to /api/live (and to
the event stream) showing the state it changed, with 10 busy sessions writing meanwhile.

    python bench/live.py                       # 10 busy sessions, 200 probes
    python bench/live.py --busy 20 --probes 500 --rate 20

``ccotel run`` reads a fresh Claude config folder. ``--busy`` sessions each write a turn
after turn (prompt, tool call, a few KB of tool result, answer) at ``--rate`` lines a second,
lines shaped like the real CLI's (tests/livereplay.py's source, the 2.1.197 fixture). A probe
session alternates a prompt (state ``working``) and an answer (``waiting``): each write is
timed until a back-to-back poll of /api/live shows the new state, and, separately, until the
event stream sends it. p50/p95/p99/max in ms. The latency includes one /api/live request
(its own cost is reported). Writes bench/out/live/results.json. Always exits 0 (a report).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conftest import FIXTURES, free_port  # noqa: E402

OUT = REPO / "bench" / "out" / "live"
SOURCE = next((FIXTURES / "claude-2.1.197" / "projects").glob("*/c16a9a56-*.jsonl"))
TARGET_P99_MS = 100.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Writer:
    """One session's transcript, written with the real CLI's line shapes."""

    def __init__(self, folder: Path, template: list[dict]):
        self.id = str(uuid.uuid4())
        self.path = folder / f"{self.id}.jsonl"
        self.t = {k: next(x for x in template if pred(x)) for k, pred in _KINDS.items()}
        self.n = 0

    def line(self, kind: str, **extra) -> bytes:
        x = json.loads(json.dumps(self.t[kind]))
        self.n += 1
        x |= {"sessionId": self.id, "uuid": str(uuid.uuid4()), "timestamp": now_iso()}
        if kind in ("tool_use", "answer"):
            x["message"]["id"] = f"msg_{self.id[:8]}_{self.n}"
            x["requestId"] = f"req_{self.id[:8]}_{self.n}"
        if kind == "result" and extra.get("pad"):
            x["message"]["content"][0]["content"] = "x" * extra["pad"]
        return (json.dumps(x, separators=(",", ":")) + "\n").encode()

    def write(self, *lines: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(b"".join(lines))


_KINDS = {
    "prompt": lambda x: x.get("type") == "user" and isinstance(x["message"]["content"], str),
    "tool_use": lambda x: (
        x.get("type") == "assistant" and x["message"]["stop_reason"] == "tool_use"
    ),
    "result": lambda x: x.get("type") == "user" and isinstance(x["message"]["content"], list),
    "answer": lambda x: x.get("type") == "assistant" and x["message"]["stop_reason"] == "end_turn",
}
TURN = ("prompt", "tool_use", "result", "answer")


def busy(w: Writer, rate: float, stop: threading.Event, rnd: random.Random) -> None:
    i = 0
    while not stop.is_set():
        kind = TURN[i % len(TURN)]
        w.write(w.line(kind, pad=rnd.randint(500, 8000)))
        i += 1
        stop.wait(rnd.expovariate(rate))


class Api:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.port = port

    def live(self) -> dict:
        # HTTP/1.0 server: one request a connection
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/api/live")
            return json.loads(c.getresponse().read())
        finally:
            c.close()


def state_of(board: dict, sid: str) -> str | None:
    return next((r["state"] for r in board["sessions"] if r["id"] == sid), None)


class Stream(threading.Thread):
    """The event stream: when each probe's new state first arrived."""

    def __init__(self, port: int, sid: str):
        super().__init__(daemon=True)
        self.port, self.sid = port, sid
        self.seen: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", "/api/live/events")
        r = c.getresponse()
        last = None
        while True:
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                st = state_of(json.loads(line[6:]), self.sid)
                if st != last:
                    with self.lock:
                        self.seen.append((time.perf_counter(), st))
                    last = st


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def figures(xs: list[float]) -> dict:
    return {k: round(v, 2) for k, v in (("p50", pct(xs, 0.5)), ("p95", pct(xs, 0.95)),
            ("p99", pct(xs, 0.99)), ("max", max(xs)))}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=10, help="busy sessions (default 10)")
    ap.add_argument("--rate", type=float, default=10.0, help="lines a second each (default 10)")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds before a probe is lost")
    args = ap.parse_args()

    template = [json.loads(x) for x in SOURCE.read_text().splitlines()]
    work = Path(tempfile.mkdtemp(prefix="ccotel-bench-live-"))
    folder = work / "claude" / "projects" / "-home-user-bench"
    folder.mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env |= {"CCOTEL_TRACES": "false", "PYTHONPATH": str(REPO)}
    log = open(work / "daemon.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(work / "claude"),
         "--state-dir", str(work / "state"), "--metrics-addr", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    api = Api(port)
    stop = threading.Event()
    res: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "args": vars(args),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "load_before": os.getloadavg()}}  # fmt: skip
    try:
        for _ in range(400):
            try:
                api.live()
                break
            except OSError:
                time.sleep(0.05)
        writers = [Writer(folder, template) for _ in range(args.busy)]
        rnd = random.Random(1)
        threads = [
            threading.Thread(target=busy, args=(w, args.rate, stop, random.Random(i)), daemon=True)
            for i, w in enumerate(writers)
        ]
        for t in threads:
            t.start()
        probe = Writer(folder, template)
        probe.write(probe.line("prompt"))
        while state_of(api.live(), probe.id) != "working":
            time.sleep(0.01)
        stream = Stream(port, probe.id)
        stream.start()
        time.sleep(1.0)  # the stream is open, the busy sessions are going
        polled, streamed, lost, req = [], [], 0, []
        for i in range(args.probes):
            kind, want = (("answer", "waiting"), ("prompt", "working"))[i % 2]
            with stream.lock:
                mark = len(stream.seen)
            line = probe.line(kind)
            t0 = time.perf_counter()
            probe.write(line)
            while True:
                a = time.perf_counter()
                st = state_of(api.live(), probe.id)
                req.append((time.perf_counter() - a) * 1000)
                if st == want:
                    polled.append((time.perf_counter() - t0) * 1000)
                    break
                if time.perf_counter() - t0 > args.timeout:
                    lost += 1
                    polled.append(args.timeout * 1000)
                    break
            deadline = time.perf_counter() + args.timeout
            while time.perf_counter() < deadline:
                with stream.lock:
                    hit = next((t for t, s in stream.seen[mark:] if s == want), None)
                if hit is not None:
                    streamed.append((hit - t0) * 1000)
                    break
                time.sleep(0.001)
            time.sleep(rnd.uniform(0.02, 0.1))
        busy_lines = sum(w.n for w in writers)
        res["poll_ms"] = figures(polled)
        res["stream_ms"] = figures(streamed) if streamed else None
        res["api_live_request_ms"] = figures(req)
        res["lost"] = lost
        res["busy_lines_written"] = busy_lines
        res["target_p99_ms"] = TARGET_P99_MS
        res["met"] = res["poll_ms"]["p99"] <= TARGET_P99_MS and lost == 0
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"{args.busy} busy sessions at {args.rate:g} lines/s each; {args.probes} probes")
    print(f"line -> /api/live shows it (ms): {res['poll_ms']}")
    print(f"line -> the stream sends it (ms): {res['stream_ms']}")
    print(f"one /api/live request (ms):       {res['api_live_request_ms']}")
    print(
        f"lost: {res['lost']}; p99 target {TARGET_P99_MS:g} ms: {'MET' if res['met'] else 'NOT MET'}"
    )
    print(f"wrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
