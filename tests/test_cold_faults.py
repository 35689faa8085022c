"""A first backfill (the cold state) that leaves the cold mode mid-fill, with its Nth commit
failing for every N (the switch before, at and after the failure; the deferred indexes
dropped, then built by the switch), then a new process on that state reading copies of old
responses (one the same, one larger, one a /btw replay): totals equal ccusage's each time,
every line committed once. (test_faults_commit runs every N on fills that stay cold.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ccotel import accounting
from ccotel.pipeline import Ingest
from ccotel.state.store import Store
from tests.oracle import ccusage_totals
from tests.test_cold_state import corpus  # noqa: F401
from tests.test_faults_commit import BATCH, CHUNK, CLOCK, Faults, cfg_for, check


def _fill(root: Path, state: Path, workers: int) -> Ingest:
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK, chunk_bytes=CHUNK,
                     batch_lines=BATCH, sleep=lambda s: None)  # fmt: skip
        ing.backfill(ing.scan(), workers, sleep=lambda s: None)
        assert not ing.retry and not ing.broken
        return ing
    finally:
        store.close()


def _old_copies(root: Path) -> bytes:
    out = []
    for p in sorted(root.rglob("*.jsonl"))[:6]:
        for raw in p.read_bytes().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if rec.get("type") == "assistant" and (rec.get("message") or {}).get("usage"):
                out.append(rec)
    a, b, c = out[5], out[25], out[45]
    b["message"]["usage"]["output_tokens"] += 333
    c["isSidechain"], c["requestId"] = True, "req_btw_late"
    return b"".join(json.dumps(r).encode() + b"\n" for r in (a, b, c))


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_nth_commit_fails_in_a_fill_leaving_the_cold_mode(corpus, tmp_path, monkeypatch, workers):  # noqa: F811
    full, want, lines = corpus
    monkeypatch.setattr(accounting, "COLD_KEYS", 150)  # a few commits in
    monkeypatch.setattr(accounting, "_CACHE", 1)  # then every look beyond the batch: a lookup
    faults = Faults().install(monkeypatch)
    assert not _fill(full, tmp_path / "clean", workers).acct.cold
    commits = faults.n
    assert commits > 6, commits
    for n in range(1, commits + 2):
        root = tmp_path / f"r{n}"
        shutil.copytree(full, root)
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        state = tmp_path / f"s{n}"
        ing = _fill(root, state, workers)
        check(state, want, lines, ing.totals)
        faults.fail = lambda k: False
        extra = root / "projects" / "-home-u-late" / "aaaaaaaa-0000-4000-8000-00000000000a.jsonl"
        extra.parent.mkdir(parents=True)
        body = _old_copies(root)
        extra.write_bytes(body)
        ing = _fill(root, state, 1)
        check(state, ccusage_totals(root), lines + body.count(b"\n"), ing.totals)
        shutil.rmtree(state)
        shutil.rmtree(root)


def test_the_daemon_s_first_catch_up_then_live_copies_of_old_responses(
    corpus,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """A daemon on an empty state catches up cold, leaves the cold mode (caches of one row:
    what follows is looked up), then reads appended copies of responses its catch-up
    committed, its second commit having failed: nothing counted twice."""
    import threading
    import time

    from ccotel import app
    from tests.test_rescan import wait_lines
    from tests.test_traces import cfg_for as daemon_cfg

    full, _want, lines = corpus
    root = tmp_path / "claude"
    shutil.copytree(full, root)
    monkeypatch.setattr(accounting, "_CACHE", 1)
    Faults(lambda k: k == 2).install(monkeypatch)
    cfg = daemon_cfg(root, tmp_path / "state", http_addr="127.0.0.1:0", rescan_interval=0.1,
                     web=False, traces=False)  # fmt: skip
    d = app.Daemon(cfg)
    t = threading.Thread(target=d.run)
    t.start()

    try:
        assert d.ready.wait(120)
        wait_lines(d, lines, 120)
        assert not d.ingest.acct.cold
        body = _old_copies(root)
        extra = root / "projects" / "-home-u-late" / "bbbbbbbb-0000-4000-8000-00000000000b.jsonl"
        extra.parent.mkdir(parents=True)
        extra.write_bytes(body[: len(body) // 2])  # a partial line first
        time.sleep(0.3)
        with open(extra, "ab") as f:
            f.write(body[len(body) // 2 :])
        wait_lines(d, lines + body.count(b"\n"), 120)
        time.sleep(0.3)
    finally:
        d.stop()
        t.join(30)
    assert not t.is_alive()
    check(tmp_path / "state", ccusage_totals(root), lines + body.count(b"\n"), d.ingest.totals)
