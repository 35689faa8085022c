"""File events from the OS (inotify, FSEvents) through one watchdog observer.

Events only say "look at this path"; what changed is found by reading from the
cursor, so a dropped or duplicated event costs nothing but a stat. Roots that
do not exist yet are watched from their parent until they appear.
"""

from __future__ import annotations

import contextlib
import queue
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ccotel.sources.discovery import projects_dir

log = structlog.get_logger()

RESCAN = "<rescan>"  # a directory appeared or vanished: walk again


class _Handler(FileSystemEventHandler):
    def __init__(self, q: queue.Queue[str]):
        self.q = q

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "closed"):
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            p = p.decode(errors="surrogateescape") if isinstance(p, bytes) else p
            if p.endswith(".jsonl"):
                self.q.put(p)
            elif event.is_directory and event.event_type in ("created", "moved", "deleted"):
                self.q.put(RESCAN)


class Watcher:
    def __init__(self, roots: list[Path], q: queue.Queue[str]):
        self.roots = roots
        self.q = q
        self.observer = Observer()
        self.handler = _Handler(q)
        self._watches: dict[Path, object] = {}

    def start(self) -> None:
        self.refresh()
        self.observer.start()

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
        self.observer.join(timeout=5)
