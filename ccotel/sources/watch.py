"""File events from the OS (inotify, FSEvents) through one watchdog observer.

Events only say "look at this path"; what changed is found by reading from the
cursor, so a dropped or duplicated event costs nothing but a stat. Roots that
do not exist yet are watched from their parent until they appear.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from ccotel.log import get_logger
from ccotel.sources.discovery import projects_dir

log = get_logger()

RESCAN = "<rescan>"  # a directory appeared or vanished: walk again
FULL_RESCAN = "<full rescan>"  # events were lost (the kernel's queue overflowed): stat all
_INOTIFY_LOG = "watchdog.observers.inotify_c"  # where watchdog says the queue overflowed


class _Overflow(logging.Filter):
    """Sees watchdog's warning that the kernel dropped events (inotify's queue overflowed:
    watchdog rebuilds its watches but tells no handler); lets the record through."""

    def __init__(self, notify: Callable[[str], None]):
        super().__init__()
        self.notify = notify

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in str(record.msg).lower():
            self.notify(FULL_RESCAN)
        return True


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[str], None]):
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "closed"):
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            p = p.decode(errors="surrogateescape") if isinstance(p, bytes) else p
            if p.endswith(".jsonl"):
                self.notify(p)
            elif event.is_directory and event.event_type in ("created", "moved", "deleted"):
                self.notify(RESCAN)


class Watcher:
    """Calls ``notify(path)`` from its own thread for each transcript event (RESCAN for a
    folder that appeared or vanished)."""

    def __init__(self, roots: list[Path], notify: Callable[[str], None]):
        self.roots = roots
        self.observer = Observer()
        self.handler = _Handler(notify)
        self._started = False
        self._watches: dict[Path, ObservedWatch] = {}
        self._recursive: set[Path] = set()  # the roots' projects folders, watched with all below
        self._overflow = _Overflow(notify)
        self._missing_told = False
        logging.getLogger(_INOTIFY_LOG).addFilter(self._overflow)

    @property
    def complete(self) -> bool:
        """Every root's projects folder is watched with everything below it: events tell of
        each append, and a rescan need only look for new files (``Ingest.scan(full=False)``)."""
        return (self._started and self.observer.is_alive()
                and all(projects_dir(r) in self._recursive for r in self.roots))  # fmt: skip

    def covers(self, folders: set[int]) -> bool:
        """Every one of these folders (inode numbers) has an inotify watch. watchdog skips a
        subfolder it cannot watch (the inotify watch limit reached) without a word, and
        watches a projects folder that is a link as the link (no event from the folder it
        points to, no watch on a project folder made later): appends there send no event, so
        a rescan must stat every transcript. True where the watches cannot be listed."""
        watched = inotify_watches()
        if watched is None:
            return True
        missing = len(folders - watched)
        if missing and not self._missing_told:
            self._missing_told = True
            log.warning(
                "folders without a file watch (a linked projects folder, or the inotify "
                "watch limit: fs.inotify.max_user_watches); every rescan stats every transcript",
                folders=missing,
            )
        return not missing

    def start(self) -> None:
        self.refresh()
        self.observer.start()
        self._started = True

    def refresh(self) -> bool:
        """Watch each root's projects folder, or the nearest existing parent until it exists.

        Returns whether the watches changed: folders made before a watch was in place
        sent no event, so the caller refreshes again until nothing changes.
        """
        before = set(self._watches)
        wanted: dict[Path, bool] = {}
        for root in self.roots:
            proj = projects_dir(root)
            if proj.is_dir():
                wanted[proj] = True
            else:
                parent = proj
                while not parent.is_dir() and parent != parent.parent:
                    parent = parent.parent
                wanted.setdefault(parent, False)
        for path in list(self._watches):
            if path not in wanted or not path.is_dir():
                self._recursive.discard(path)
                with contextlib.suppress(KeyError, ValueError):
                    self.observer.unschedule(self._watches.pop(path))
        for path, recursive in wanted.items():
            if path in self._watches:
                continue
            try:
                self._watches[path] = self.observer.schedule(
                    self.handler, str(path), recursive=recursive
                )
                if recursive:
                    self._recursive.add(path)
            except OSError as exc:
                log.warning(
                    "cannot watch folder; the periodic rescan covers it",
                    path=str(path),
                    error=str(exc),
                )
        return set(self._watches) != before

    def stop(self) -> None:
        logging.getLogger(_INOTIFY_LOG).removeFilter(self._overflow)
        self.observer.stop()
        if self._started:
            self.observer.join(timeout=5)


def inotify_watches() -> set[int] | None:
    """The inode number of every folder this process's inotify instances watch, from
    /proc/self/fdinfo; None where there is none to read (not Linux)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    out: set[int] = set()
    found = False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:  # closed meanwhile
            continue
        found = True
        for m in _WATCH.finditer(info):
            out.add(int(m.group(1), 16))
    return out if found else None


# ino only: its sdev is the superblock's, which stat's st_dev is not on btrfs subvolumes
_WATCH = re.compile(r"^inotify wd:\S+ ino:([0-9a-f]+) ", re.M)
