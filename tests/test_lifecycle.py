"""Start and stop (issue 9, silent loss 4 and 5).

- A failure or a stop request at every phase of the daemon's start: it ends cleanly (the
  injected error, not another one raised on the way out such as "cannot join thread
  before it is started"), leaves no thread, descriptor, lock or port behind, and a later
  run counts exactly what ccusage counts.
- SIGTERM/SIGINT: the handler takes no lock, so a signal that lands while the main thread
  holds the event lock cannot deadlock; bursts of signals while the daemon is busy with
  a flood of file events, or while it catches up, stop it promptly every time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ccotel import app
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.server.httpd import HttpServer
from ccotel.sources.watch import Watcher
from ccotel.state.store import Store
from ccotel.traces.service import Exporters
from ccotel.wakeup import Wakeup
from tests.conftest import assert_equal_totals, free_port
from tests.corpus import generate
from tests.oracle import ccusage_totals
from tests.test_faults_commit import committed
from tests.test_live import start


class Injected(Exception):
    pass


# (where, attribute): each phase of the start, in order.
PHASES = [
    (app, "Store"),
    (app, "Ingest"),
    (app, "Exporters"),
    (app, "HttpServer"),
    (HttpServer, "start"),
    (Watcher, "start"),
    (app, "catch_up"),
    (Ingest, "ingest"),  # the third file of the catch-up
    (Exporters, "start"),
    (Wakeup, "wait"),  # the loop's first wait
]
IDS = [f"{getattr(o, '__name__', o)}.{a}" for o, a in PHASES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("claude")
    generate(root, files=12, seed=6)
    return root, ccusage_totals(root)


def _inject(monkeypatch, where, attr, action, nth: int = 1) -> list[int]:
    calls = [0]
    orig = getattr(where, attr)

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            action()
        return orig(*args, **kwargs)

    monkeypatch.setattr(where, attr, wrapped)
    return calls


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _settled(threads_before: set, fds_before: set, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        leaked = _fds() - fds_before
        if not extra and not leaked:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: threads {extra}, descriptors {leaked}")
        time.sleep(0.05)


def _cfg(root: Path, state: Path) -> Config:
    # traces on (towards nothing listening), the page on (any free port): every part starts
    # and stops
    return Config(
        claude_dirs=[str(root)], state_dir=str(state), http_addr="127.0.0.1:0",
        otlp_endpoint=f"http://127.0.0.1:{free_port()}", rescan_interval=0.2,
    )  # fmt: skip


def _after(state: Path) -> None:
    """The lock is free, and no daemon.json is left (its listening socket is one of the
    descriptors _settled checks)."""
    Store(state).close()
    assert not (state / "daemon.json").exists()


@pytest.mark.parametrize("mode", ["fail", "stop"])
@pytest.mark.parametrize("phase", PHASES, ids=IDS)
def test_each_start_phase(corpus, tmp_path, monkeypatch, phase, mode):
    """At that phase an exception (fail) or a stop request (stop, what SIGTERM does)."""
    root, want = corpus
    threads, fds = set(threading.enumerate()), _fds()
    wake = Wakeup()

    def fail():
        raise Injected(f"at {IDS[PHASES.index(phase)]}")

    nth = 3 if phase == (Ingest, "ingest") else 1
    calls = _inject(monkeypatch, *phase, fail if mode == "fail" else wake.request_stop, nth=nth)
    t0 = time.monotonic()
    if mode == "fail":
        with pytest.raises(Injected):
            app.Daemon(_cfg(root, tmp_path / "state"), wake=wake).run()
    else:
        app.Daemon(_cfg(root, tmp_path / "state"), wake=wake).run()
        assert time.monotonic() - t0 < 10
    assert calls[0] >= nth  # it came at that phase
    wake.close()
    monkeypatch.undo()
    _settled(threads, fds)
    _after(tmp_path / "state")
    if (tmp_path / "state" / "state.db").exists():  # what was committed is consistent
        app.backfill(_cfg(root, tmp_path / "state"))
        assert_equal_totals(committed(tmp_path / "state")[0], want)


@pytest.mark.timeout(30)
def test_the_signal_handler_takes_no_lock(corpus, tmp_path):
    """A SIGTERM that lands while the main thread holds the loop's event lock (as it does
    in every wait) returns at once and stops the daemon: a handler that took that lock, as
    queue.Queue.put does, would deadlock here (the test would time out)."""
    root, _want = corpus
    wake = Wakeup()
    d = app.Daemon(_cfg(root, tmp_path / "state"), wake=wake)
    with app.stop_on_signals(wake):
        for lock in (wake._lock,):
            with lock:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs here, in this thread, lock held
        assert wake.stop_requested
        t0 = time.monotonic()
        d.run()
        assert time.monotonic() - t0 < 5
    wake.close()


def _busy_writer(root: Path, stop: threading.Event) -> threading.Thread:
    """Appends lines to 20 files as fast as it can: a flood of file events."""
    lines = [p.read_bytes().splitlines(keepends=True)[:1] for p in sorted(root.rglob("*.jsonl"))]

    def run():
        files = sorted(root.rglob("*.jsonl"))[:20]
        i = 0
        while not stop.is_set():
            p = files[i % len(files)]
            with open(p, "ab") as f:
                f.write(lines[i % len(lines)][0])
            i += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_bursts_while_busy_stop_promptly(tmp_path, sig):
    """`ccotel run` while a writer floods it with events; 100 signals in a burst: it exits 0
    within 10 s, with "ccotel stopped" and no traceback. Three times."""
    root = tmp_path / "claude"
    generate(root, files=24, seed=8)
    for i in range(3):
        proc = start(root, tmp_path / f"state{i}")
        stop = threading.Event()
        w = _busy_writer(root, stop)
        try:
            time.sleep(0.5)
            for _ in range(100):
                proc.send_signal(sig)
                time.sleep(0.001)
            out, _ = proc.communicate(timeout=10)
        finally:
            stop.set()
            w.join()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, out.decode()[-2000:]
        assert b"ccotel stopped" in out and b"Traceback" not in out, out.decode()[-2000:]


@pytest.mark.timeout(300)
def test_sigterm_during_catch_up_stops_it_early(tmp_path):
    """A SIGTERM while the daemon reads a long history stops it within seconds, with what
    was read committed; the next start finishes the job exactly."""
    root = tmp_path / "claude"
    generate(root, files=400, target_bytes=60 << 20, seed=9)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    args = [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(root),
            "--state-dir", str(tmp_path / "state"), "--http-addr", "127.0.0.1:0"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        head = b""
        while b"ccotel running" not in head:  # the catch-up starts right after this line
            line = proc.stdout.readline()
            assert line, head.decode()
            head += line
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        out = head + out
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and b"Traceback" not in out, out.decode()[-2000:]
    assert b"caught up" not in out  # it stopped before the end of the history
    assert took < 10, took
    proc = start(root, tmp_path / "state", timeout=120)
    proc.terminate()
    proc.wait(30)
    assert_equal_totals(committed(tmp_path / "state")[0], ccusage_totals(root))


@pytest.mark.timeout(300)
def test_ctrl_c_during_a_backfill_commits_what_was_read(tmp_path):
    """SIGINT during `ccotel backfill`, right after its first commit: exit 130 with one line
    (no KeyboardInterrupt traceback), what was read committed; the next run is exact."""
    from tests.test_faults_kill import committed_lines, stop_after_a_commit

    root = tmp_path / "claude"
    generate(root, files=300, target_bytes=60 << 20, seed=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    state = tmp_path / "state"
    args = [sys.executable, "-m", "ccotel", "backfill", "--claude-dir", str(root),
            "--state-dir", str(state)]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, env=env, text=True)
    stop_after_a_commit(proc, state)  # the signal lands right after a commit
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err
    assert committed_lines(state) > 0
    subprocess.run(args, check=True, env=env, capture_output=True)
    assert_equal_totals(committed(state)[0], ccusage_totals(root))
