"""File events from the OS (inotify, FSEvents) through one watchdog observer.

Events only say "look at this path"; what changed is found by reading from the
cursor, so a dropped or duplicated event costs nothing but a stat. Roots that
do not exist yet are watched from their parent until they appear.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from ccotel.sources.discovery import projects_dir

log = structlog.get_logger()

RESCAN = "<rescan>"  # a directory appeared or vanished: walk again


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
                with contextlib.suppress(KeyError, ValueError):
                    self.observer.unschedule(self._watches.pop(path))
        for path, recursive in wanted.items():
            if path in self._watches:
                continue
            try:
                self._watches[path] = self.observer.schedule(
                    self.handler, str(path), recursive=recursive
                )
            except OSError as exc:
                log.warning(
                    "cannot watch folder; the periodic rescan covers it",
                    path=str(path),
                    error=str(exc),
                )
        return set(self._watches) != before

    def stop(self) -> None:
        self.observer.stop()
        if self._started:
            self.observer.join(timeout=5)
