"""The rescan (the daemon's safety net for missed file events) lists only the folders whose
mtime moved, and still finds every new file, append, truncation and deletion."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.sources import TreeWalker, discovery, transcript_files
from ccotel.state.store import Store
from tests.lines import SID, assistant


def record_scans(monkeypatch) -> list[bool]:
    """The ``full`` argument of every Ingest.scan from now on."""
    from ccotel import app

    scans: list[bool] = []
    real_scan = app.Ingest.scan
    monkeypatch.setattr(
        app.Ingest, "scan", lambda self, full=True: scans.append(full) or real_scan(self, full)
    )
    return scans


@contextlib.contextmanager
def running(root: Path, state: Path):
    """ccotel's daemon on ``root`` (a 0.1 s rescan, no page) in a thread, ready; then stopped."""
    import threading

    from ccotel import app
    from tests.test_traces import cfg_for

    cfg = cfg_for(root, state, http_addr="127.0.0.1:0", rescan_interval=0.1, web=False)
    d = app.Daemon(cfg)
    t = threading.Thread(target=d.run)
    t.start()
    try:
        assert d.ready.wait(30)
        yield d, t
    finally:
        d.stop()
        t.join(30)
    assert not t.is_alive()


def wait_lines(d, n: float, timeout: float) -> None:
    """Until the daemon has counted ``n`` lines; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while d.ingest.totals.counters.get("lines", 0) < n:
        assert time.monotonic() < deadline, (d.ingest.totals.counters, n)
        time.sleep(0.02)


NOW = 1_795_000_000.0
OLD = time.time() - 3600  # folder mtimes far from "just changed": the walker trusts them


def age(*paths: Path) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD))


def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "claude"
    proj = root / "projects" / "-home-u-proj"
    sub = proj / SID / "subagents"
    sub.mkdir(parents=True)
    (proj / f"{SID}.jsonl").write_text(assistant() + "\n")
    (sub / "agent-a1.jsonl").write_text(assistant("msg_2", "req_2") + "\n")
    (proj / "notes.txt").write_text("not a transcript\n")
    age(root / "projects", proj, proj / SID, sub)
    return root, proj, sub


def counting(monkeypatch) -> list[str]:
    listed: list[str] = []
    real = discovery._list

    def spy(top, on_error):
        listed.append(top)
        return real(top, on_error)

    monkeypatch.setattr(discovery, "_list", spy)
    return listed


def test_walker_lists_only_changed_folders_and_finds_what_os_walk_finds(tmp_path, monkeypatch):
    root, proj, sub = tree(tmp_path)
    listed = counting(monkeypatch)
    w = TreeWalker()
    errors: list[OSError] = []
    first = sorted(w.files([root], errors.append))
    want = sorted(
        os.path.join(d, f)
        for d, _, fs in os.walk(root / "projects")
        for f in fs
        if f.endswith(".jsonl")
    )
    assert first == want and len(first) == 2 and not errors
    assert len(listed) == 4  # projects, the project, the session folder, subagents

    listed.clear()
    assert sorted(w.files([root], errors.append)) == first
    assert listed == []  # nothing moved: stat only

    (sub / "agent-a2.jsonl").write_text("")  # a new file: its folder's mtime moves
    (proj / "new-session").mkdir()
    (proj / "new-session" / "x.jsonl").write_text("")
    got = sorted(w.files([root], errors.append))
    assert str(sub / "agent-a2.jsonl") in got and str(proj / "new-session" / "x.jsonl") in got
    assert set(listed) == {str(sub), str(proj), str(proj / "new-session")}

    os.remove(sub / "agent-a1.jsonl")
    assert str(sub / "agent-a1.jsonl") not in w.files([root], errors.append)
    assert sorted(transcript_files(root)) == sorted(w.files([root], errors.append))


def test_walker_lists_a_just_changed_folder_again(tmp_path, monkeypatch):
    """A folder changed within SETTLE seconds of its listing is not trusted from cache: a
    coarse mtime could hide a file added in the same tick."""
    root, proj, _sub = tree(tmp_path)
    w = TreeWalker()
    w.files([root], lambda e: None)
    os.utime(proj, None)  # now
    listed = counting(monkeypatch)
    w.files([root], lambda e: None)
    w.files([root], lambda e: None)
    assert listed == [str(proj), str(proj)]


def test_walker_reports_a_missing_root_and_lists_again_after_a_chmod(tmp_path, monkeypatch):
    """A chmod moves a folder's ctime, not its mtime: the folder is listed again, so one that
    became unreadable is reported (and cleared) by the next rescan, not served from cache.
    (The refusal itself is tested on a daemon without root's override: test_cli_mistakes.)"""
    errors: list[OSError] = []
    assert TreeWalker().files([tmp_path / "absent"], errors.append) == []
    assert len(errors) == 1 and isinstance(errors[0], FileNotFoundError)
    root, proj, _sub = tree(tmp_path)
    w = TreeWalker()
    w.files([root], errors.append)
    listed = counting(monkeypatch)
    proj.chmod(0o700)
    os.utime(proj, (OLD, OLD))
    w.files([root], errors.append)
    assert listed == [str(proj)]


def test_rescan_finds_missed_appends_truncations_new_and_deleted_files(tmp_path):
    root, proj, sub = tree(tmp_path)
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: NOW)
    main, agent = str(proj / f"{SID}.jsonl"), str(sub / "agent-a1.jsonl")
    assert sorted(ing.scan()) == sorted([main, agent])
    for p in ing.scan():
        ing.ingest(p)
    assert ing.flush() and ing.scan() == []

    with open(main, "a") as f:  # an append no event told of
        f.write(assistant("msg_3", "req_3") + "\n")
    assert ing.scan() == [main]
    ing.ingest(main)
    assert ing.flush() and ing.scan() == []

    os.truncate(agent, 10)  # a truncation
    assert ing.scan() == [agent]

    age(proj)
    ing.scan()  # the project folder is trusted from cache now
    late = proj / "late.jsonl"  # a new file no event told of: its folder's mtime moved
    late.write_text(assistant("msg_4", "req_4") + "\n")
    assert str(late) in ing.scan()

    os.remove(main)
    ing.scan()
    assert main in ing.acct.batch.forgotten
    store.close()


def test_a_light_rescan_finds_new_files_and_changed_folders_and_a_full_one_every_append(tmp_path):
    """scan(full=False), the daemon's rescan while file events cover the roots: a stat per
    folder, and per file only for new files and the files of folders that changed. An append
    no event told of waits for the next full scan."""
    root, proj, sub = tree(tmp_path)
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: NOW)
    main, agent = str(proj / f"{SID}.jsonl"), str(sub / "agent-a1.jsonl")
    assert sorted(ing.scan(full=False)) == sorted([main, agent])  # no cursors yet
    for p in ing.scan():
        ing.ingest(p)
    assert ing.flush() and ing.scan(full=False) == []
    age(proj, sub)
    ing.scan()  # the folders are trusted from cache now

    with open(main, "a") as f:  # an append no event told of, in a folder that did not change
        f.write(assistant("msg_3", "req_3") + "\n")
    assert ing.scan(full=False) == []
    assert ing.totals.pending_bytes == 0
    assert ing.scan() == [main] and ing.totals.pending_bytes > 0  # the full scan finds it
    assert ing.scan(full=False) == [] and ing.totals.pending_bytes > 0  # still pending

    late = proj / "late.jsonl"  # a new file: its folder's mtime moved
    late.write_text(assistant("msg_4", "req_4") + "\n")
    assert sorted(ing.scan(full=False)) == sorted([main, str(late)])  # its folder changed
    os.replace(late, sub / "agent-b2.jsonl")  # renamed: gone here, new there
    assert str(sub / "agent-b2.jsonl") in ing.scan(full=False)
    os.remove(agent)
    os.utime(sub, (OLD, OLD))  # a folder whose mtime went back: its inode and ctime moved
    ing.scan(full=False)
    assert agent in ing.acct.batch.forgotten

    # A link to a transcript elsewhere: no event on its folder tells of an append to the
    # target, so every light rescan stats it.
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(assistant("msg_5", "req_5") + "\n")
    linked = proj / "linked.jsonl"
    linked.symlink_to(elsewhere)
    todo = ing.scan()
    assert str(linked) in todo
    for path in todo:
        ing.ingest(path)
    assert ing.flush()
    age(proj, sub)
    ing.scan()
    assert ing.scan(full=False) == []
    with open(elsewhere, "a") as f:
        f.write(assistant("msg_6", "req_6") + "\n")
    assert ing.scan(full=False) == [str(linked)]
    store.close()


def test_watcher_reports_lost_events_and_whether_it_covers_every_root(tmp_path):
    """watchdog rebuilds its watches after the kernel's queue overflowed without telling a
    handler; its warning is what asks the daemon for a full rescan. A root whose projects
    folder does not exist yet is watched from its parent: not complete."""
    import logging

    from ccotel.sources import FULL_RESCAN, Watcher

    root, _proj, _sub = tree(tmp_path)
    missing = tmp_path / "other"
    got: list[str] = []
    w = Watcher([root, missing], got.append)
    w.start()
    try:
        assert not w.complete
        (missing / "projects").mkdir(parents=True)
        assert w.refresh() and w.complete
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        assert FULL_RESCAN in got
    finally:
        w.stop()
    assert not w.complete  # a stopped observer tells of nothing
    got.clear()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    assert got == []  # a stopped watcher's filter is gone


def test_the_daemon_finds_an_append_its_watcher_missed(tmp_path, monkeypatch):
    """The rescan is the safety net: events for one transcript are dropped (as an overflow
    or an unwatched mount would), and its append is still counted, by a full rescan (every
    FULL_RESCAN_EVERY rescans); a new file no event told of is found by the next rescan."""

    from ccotel.sources import watch

    root, proj, _sub = tree(tmp_path)
    main = str(proj / f"{SID}.jsonl")
    real = watch._Handler.on_any_event

    def deaf(self, event):  # the watcher misses everything in the project folder
        if not str(event.src_path).startswith(str(proj)):
            real(self, event)

    monkeypatch.setattr(watch._Handler, "on_any_event", deaf)
    scans = record_scans(monkeypatch)
    with running(root, tmp_path / "state") as (d, _t):
        assert d.watcher is not None and d.watcher.complete
        wait_lines(d, 2, 60)
        with open(main, "a") as f:
            f.write(assistant("msg_3", "req_3") + "\n")
        wait_lines(d, 3, 60)
        assert False in scans and True in scans[1:]  # light rescans, and a full one found it
        (proj / "late.jsonl").write_text(assistant("msg_4", "req_4") + "\n")
        wait_lines(d, 4, 60)


def test_an_append_in_a_folder_watchdog_could_not_watch_is_counted(tmp_path, monkeypatch):
    """watchdog skips a subfolder whose inotify watch fails (ENOSPC: the watch limit reached)
    without a word, so the watch still looks complete; appends there send no event. The
    rescan sees the folder without a watch and stats every transcript: the append counts
    at the next rescan, not only at the rare full one."""
    import errno

    from watchdog.observers import inotify_c

    from ccotel import app
    from ccotel.sources import Watcher

    root, _proj, sub = tree(tmp_path)
    agent = str(sub / "agent-a1.jsonl")
    real = inotify_c.InotifyFD.add_callback

    def limited(self, path, *args, **kwargs):
        if os.fsdecode(path) == str(sub):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(inotify_c.InotifyFD, "add_callback", limited)
    w = Watcher([root], lambda p: None)
    w.start()
    try:
        walker = TreeWalker()
        walker.files([root], lambda exc: None)
        assert w.complete and len(walker.folders) == 4
        assert not w.covers(walker.folders)
        assert w.covers(walker.folders - {os.stat(sub).st_ino})
    finally:
        w.stop()

    monkeypatch.setattr(app, "FULL_RESCAN_EVERY", 10**6)  # no scheduled full rescan
    with running(root, tmp_path / "state") as (d, _t):
        assert d.watcher is not None and d.watcher.complete
        wait_lines(d, 2, 60)
        with open(agent, "a") as f:
            f.write(assistant("msg_3", "req_3") + "\n")
        wait_lines(d, 3, 30)


def test_appends_under_a_linked_projects_folder_are_counted(tmp_path, monkeypatch):
    """<root>/projects a link to a folder elsewhere: watchdog watches the link itself, so a
    project folder made later gets no watch and its appends send no event. The rescan sees
    it and stats every transcript: a project made after the start, and an append to it, count
    at the next rescans, not only at the rare full one."""

    from ccotel import app

    real = tmp_path / "elsewhere"
    (real / "-home-u-a").mkdir(parents=True)
    (real / "-home-u-a" / f"{SID}.jsonl").write_text(assistant() + "\n")
    root = tmp_path / "claude"
    root.mkdir()
    (root / "projects").symlink_to(real)
    monkeypatch.setattr(app, "FULL_RESCAN_EVERY", 10**6)  # no scheduled full rescan
    scans = record_scans(monkeypatch)
    with running(root, tmp_path / "state") as (d, t):
        wait_lines(d, 1, 30)
        late = real / "-home-u-b" / "11111111-2222-4333-8444-555555555555.jsonl"
        late.parent.mkdir()
        late.write_text(assistant("msg_2", "req_2") + "\n")
        wait_lines(d, 2, 30)  # a new file: the light rescan finds it
        age(late.parent)
        seen, deadline = len(scans), time.monotonic() + 30
        while len(scans) < seen + 3:  # rescans list the folder again, settled: trusted then
            assert time.monotonic() < deadline and t.is_alive()
            time.sleep(0.02)
        with open(late, "a") as f:
            f.write(assistant("msg_3", "req_3") + "\n")
        wait_lines(d, 3, 30)
