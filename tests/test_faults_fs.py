"""Filesystem faults while the daemon runs (issue 5): a transcript truncated and rewritten,
replaced by an atomic rename, renamed, deleted; the claude folder deleted and recreated;
event times going backwards. Totals never go down, nothing is counted twice: after each
fault they equal ccusage over every transcript that existed (deleted ones are kept in a
side folder for the oracle; counters do not forget what was spent)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.corpus import Usage, append_assistant, generate, session_meta, write_session
from tests.test_live import scrape, start, wait_equal


@pytest.mark.timeout(600)
def test_files_changed_under_the_daemon(tmp_path):
    config = tmp_path / "claude"
    gone = tmp_path / "gone"  # what was deleted, so the oracle still sees it
    (gone / "projects" / "x").mkdir(parents=True)
    generate(config, files=10, seed=41)
    dirs = [config, gone]
    files = sorted(f for f in config.rglob("*.jsonl") if "subagents" not in f.parts)
    proc = start(config, tmp_path / "state")
    port = proc.port
    try:
        wait_equal(port, dirs)
        n = 0

        def bury(f: Path) -> None:
            nonlocal n
            n += 1
            shutil.copy(f, gone / "projects" / "x" / f"{n}-{f.name}")

        # truncated to nothing, then the same bytes and one more line written again
        f = files[0]
        body = f.read_bytes()
        bury(f)  # while it is empty, ccusage sees the side copy; ccotel remembers
        os.truncate(f, 0)
        wait_equal(port, dirs)
        f.write_bytes(body)
        append_assistant(f, Usage(7, 70, 700, 0, 7000))
        wait_equal(port, dirs)
        # replaced by an atomic rename (an editor's save): old lines and a new one
        f = files[1]
        tmp = f.with_suffix(".tmp")
        tmp.write_bytes(f.read_bytes())
        append_assistant(tmp, Usage(3, 30, 0, 300, 3000))
        os.replace(tmp, f)
        wait_equal(port, dirs)
        # renamed within its project, then appended to under the new name
        f = files[2]
        new = f.with_name("renamed-" + f.name)
        os.rename(f, new)
        append_assistant(new, Usage(1, 10, 100, 0, 1000))
        wait_equal(port, dirs)
        # deleted: what it cost stays counted
        bury(files[3])
        files[3].unlink()
        write_session(config, cwd="/home/user/after-delete", seed=5)
        wait_equal(port, dirs)
        # event times going backwards: lines stamped hours and days before the last one
        f = files[4]
        meta = session_meta(f)
        for back in (timedelta(hours=3), timedelta(days=2), timedelta(minutes=1)):
            append_assistant(
                f, Usage(2, 20, 0, 0, 200), meta=meta, timestamp=datetime.now(UTC) - back
            )
        wait_equal(port, dirs)
        # the whole claude folder deleted, then recreated with a copy of one old session
        # (counted once) and a new one
        keep = tmp_path / "keep.jsonl"
        shutil.copy(files[5], keep)
        for g in config.rglob("*.jsonl"):
            bury(g)
        shutil.rmtree(config)
        wait_equal(port, [gone])
        (config / "projects" / "-home-user-back").mkdir(parents=True)
        shutil.copy(keep, config / "projects" / "-home-user-back" / keep.name)
        write_session(config, cwd="/home/user/recreated", seed=6)
        got = wait_equal(port, dirs, timeout=120)
        assert proc.poll() is None
        assert scrape(port)["lines"] == got["lines"]
    finally:
        proc.kill()
        proc.wait(10)
