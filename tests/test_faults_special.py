"""Names that are not transcripts: a FIFO, a socket, a device, a folder, a link to a FIFO or
to /dev/zero, each named *.jsonl under projects/. Opening a FIFO for reading waits for a
writer: on ca2edcb backfill hung on one, and so did the daemon's loop and its SIGTERM.
Only regular files are read; every other kind is skipped, the rest counted."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ccotel.config import Config
from ccotel.pipeline import Ingest, _digest_file
from ccotel.sources.discovery import transcript_files
from ccotel.state.store import Store
from tests.conftest import as_ccusage, assert_equal_totals, free_port, report_totals
from tests.corpus import Usage, append_assistant, generate
from tests.oracle import ccusage_totals
from tests.test_cli_mistakes import clean_env
from tests.test_live import start, wait_equal

KINDS = ("fifo", "socket", "device", "folder", "link-to-fifo", "link-to-dev-zero")


def make_special(path: Path, kind: str) -> socket.socket | None:
    """Put something that is not a regular file at ``path``; a socket is returned (bound)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        here = os.getcwd()
        os.chdir(path.parent)  # a socket's path is limited to 108 bytes
        try:
            s.bind(path.name)
        finally:
            os.chdir(here)
        return s
    elif kind == "device":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    elif kind == "folder":
        (path / "inner").mkdir(parents=True)
    elif kind == "link-to-fifo":
        os.mkfifo(path.with_suffix(".fifo"))
        path.symlink_to(path.with_suffix(".fifo").name)
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    return None


def specials(root: Path, tag: str) -> tuple[list[Path], list]:
    paths, socks = [], []
    for i, kind in enumerate(KINDS):
        # beside real transcripts, as a session's name, and as a subagent file
        for where in (f"-home-u-{tag}/{kind}.jsonl", f"-home-u-{tag}/s{i}/subagents/agent-{kind}.jsonl"):  # fmt: skip
            p = root / "projects" / where
            s = make_special(p, kind)
            paths.append(p)
            if s is not None:
                socks.append(s)
    return paths, socks


def test_discovery_yields_regular_files_only(tmp_path):
    root = tmp_path / "claude"
    generate(root, files=3, seed=3)
    real = sorted(str(p) for p in root.rglob("*.jsonl"))
    (root / "projects" / "-home-u-l").mkdir()
    (root / "projects" / "-home-u-l" / "link.jsonl").symlink_to(real[0])  # a link to a file
    _, socks = specials(root, "x")
    try:
        got = sorted(transcript_files(root))
    finally:
        for s in socks:
            s.close()
    assert got == sorted([*real, str(root / "projects" / "-home-u-l" / "link.jsonl")])


@pytest.mark.timeout(120)
def test_backfill_skips_what_is_not_a_file(tmp_path):
    root, state = tmp_path / "claude", tmp_path / "state"
    generate(root, files=12, seed=5)
    want = ccusage_totals(root)  # ccusage itself would wait on the FIFO
    paths, socks = specials(root, "x")
    try:
        args = [sys.executable, "-m", "ccotel", "backfill", "--claude-dir", str(root),
                "--state-dir", str(state)]  # fmt: skip
        try:
            p = subprocess.run(
                args, env=clean_env(tmp_path), capture_output=True, text=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            pytest.fail("backfill hung on a name that is not a regular file")
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert_equal_totals(as_ccusage(report_totals(state)), want)
        # A file swapped for one after discovery: the check is on the opened descriptor, in
        # this process and in a decode worker.
        cfg = Config(claude_dirs=[str(root)], state_dir=str(state), traces=False, web=False)
        store = Store(state)
        try:
            ingest = Ingest(cfg, store, [root], lambda: 1.8e9)
            for path in paths:
                assert ingest.ingest(str(path)) == 0
                out, error, bug = _digest_file((str(path), None, 1 << 20, None, 1 << 20))
                assert out == [] and error and "not a regular file" in error and not bug
            assert ingest.flush() and not ingest.broken and not ingest.retry
        finally:
            store.close()
        assert_equal_totals(as_ccusage(report_totals(state)), want)
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(180)
def test_daemon_skips_what_is_not_a_file_and_stops_on_sigterm(tmp_path):
    """Made while the daemon runs (the watcher names them, no discovery in between), and a
    transcript already counted (and to be traced) replaced by a FIFO."""
    root, state = tmp_path / "claude", tmp_path / "state"
    generate(root, files=4, seed=8)
    port = free_port()
    proc = start(root, state, port, clean_env(tmp_path, CCOTEL_TRACES="true"))
    socks = []
    try:
        wait_equal(port, root)
        want_dir = tmp_path / "want"  # what ccusage reads: the regular files, and the victim
        os.makedirs(want_dir / "projects" / "x")
        victim, target = sorted(transcript_files(root))[:2]
        shutil.copy(victim, want_dir / "projects" / "x" / "victim.jsonl")
        os.unlink(victim)
        os.mkfifo(victim)
        _, socks = specials(root, "live")
        append_assistant(Path(target), Usage(3, 30, 300, 0, 3000))
        for i, f in enumerate(transcript_files(root)):
            os.link(f, want_dir / "projects" / "x" / f"{i}.jsonl")
        wait_equal(port, want_dir)
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        except subprocess.TimeoutExpired:
            pytest.fail("the daemon did not stop on SIGTERM")
        out = proc.stdout.read().decode()
        assert "Traceback" not in out and "not a file" in out, out[-2000:]
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
