"""kill -9 at random points (issue 5, state): during a backfill and during live ingest,
with a writer appending (sometimes half a line) while the daemon dies and while it is
down. After each restart the totals equal ccusage's over the same files.

The suite runs a few iterations (CCOTEL_KILL_LOOPS, default 4 each); bench/faults.py
runs 50 and prints the figures."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import as_ccusage, assert_equal_totals, free_port, report_totals
from tests.corpus import (
    HAIKU45,
    SONNET46,
    Usage,
    append_lines,
    assistant_record,
    generate,
    session_meta,
    write_session,
)
from tests.oracle import ccusage_totals
from tests.test_live import start, wait_equal

LOOPS = int(os.environ.get("CCOTEL_KILL_LOOPS", "4"))


def _backfill_proc(config: Path, state: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "ccotel", "backfill", "--claude-dir", str(config), "--state-dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


def kill_during_backfill(tmp: Path, loops: int, seed: int = 0, log=print) -> dict:
    config = tmp / "claude"
    if not config.exists():
        generate(config, files=120, target_bytes=40 << 20, seed=seed)
    want = ccusage_totals(config)
    t0 = time.monotonic()
    p = _backfill_proc(config, tmp / "timing")
    p.wait()
    full = time.monotonic() - t0  # startup included: kills land anywhere from import to exit
    shutil.rmtree(tmp / "timing")
    rng = random.Random(seed)
    killed_mid = 0
    for i in range(loops):
        state = tmp / f"state{i}"
        for _ in range(rng.randint(1, 3)):  # kill it one to three times, at random points
            p = _backfill_proc(config, state)
            time.sleep(rng.uniform(0.0, full))
            if p.poll() is None:
                killed_mid += 1
            p.send_signal(signal.SIGKILL)
            p.wait()
        p = _backfill_proc(config, state)
        assert p.wait(300) == 0, p.stderr.read().decode()
        assert_equal_totals(as_ccusage(report_totals(state)), want)
        shutil.rmtree(state)
        log(f"backfill kill loop {i + 1}/{loops}: equal")
    return {"loops": loops, "kills_while_running": killed_mid, "backfill_seconds": round(full, 2)}


class Writer(threading.Thread):
    """Appends assistant lines to a few sessions, now and then in two writes (half a line first)."""

    def __init__(self, config: Path, n_sessions: int, seed: int):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.paths = [
            write_session(config, cwd=f"/home/user/kill{i}", seed=seed * 100 + i)[0]
            for i in range(n_sessions)
        ]
        self.metas = [session_meta(p) for p in self.paths]
        self.go = threading.Event()
        self.stop_ = threading.Event()
        self.lines = 0

    def run(self) -> None:
        while not self.stop_.is_set():
            if not self.go.wait(0.05):
                continue
            k = self.rng.randrange(len(self.paths))
            m = self.metas[k]
            u = Usage(
                self.rng.randint(1, 50),
                self.rng.randint(1, 900),
                self.rng.randint(0, 3000),
                0,
                self.rng.randint(0, 90000),
            )
            rec = assistant_record(session_id=m["sessionId"], cwd=m["cwd"], usage=u, model=self.rng.choice([SONNET46, HAIKU45]),
                                   parent_uuid=m.get("lastUuid"), rng=self.rng)  # fmt: skip
            split = self.rng.randint(1, 200) if self.rng.random() < 0.3 else None
            append_lines(self.paths[k], [rec], split_at=split)
            m["lastUuid"] = rec["uuid"]
            self.lines += 1
            time.sleep(self.rng.uniform(0, 0.01))


def kill_during_live(tmp: Path, loops: int, seed: int = 0, log=print) -> dict:
    config = tmp / "claude"
    generate(config, files=10, seed=seed)
    state = tmp / "state"
    port = free_port()
    w = Writer(config, 6, seed)
    w.start()
    rng = random.Random(seed)
    try:
        for i in range(loops):
            proc = start(config, state, port)
            w.go.set()
            time.sleep(rng.uniform(0.05, 1.5))  # written while it runs
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(rng.uniform(0, 0.3))  # written while it is down
            w.go.clear()
            time.sleep(0.05)
            proc = start(config, state, port)
            try:
                wait_equal(port, config, timeout=60)
            finally:
                proc.kill()
                proc.wait()
            log(f"live kill loop {i + 1}/{loops}: equal after {w.lines} lines written")
    finally:
        w.stop_.set()
        w.join()
    return {"loops": loops, "lines_written": w.lines}


@pytest.mark.timeout(900)
def test_kill9_during_backfill(tmp_path):
    r = kill_during_backfill(tmp_path, LOOPS)
    assert r["loops"] == LOOPS


@pytest.mark.timeout(900)
def test_kill9_during_live_ingest(tmp_path):
    r = kill_during_live(tmp_path, LOOPS)
    assert r["lines_written"] > 0
