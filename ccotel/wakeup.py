"""What wakes the daemon's loop: transcript events from the watcher thread, and a stop
request from a signal handler.

A signal handler runs in the main thread between any two bytecodes, possibly while that
thread holds a lock (a queue.Queue's, for one): a handler that takes a lock can deadlock.
``request_stop`` takes none: it sets a flag and writes a byte to a pipe, which wakes the
``select`` the loop sleeps in.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time


class Wakeup:
    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self.stop_requested = False
        self._paths: set[str] = set()
        self._lock = threading.Lock()  # between the watcher thread and the loop, never a handler

    def add(self, path: str) -> None:
        """A path to look at (from the watcher thread)."""
        with self._lock:
            self._paths.add(path)
        self._poke()

    def request_stop(self, *_args: object) -> None:
        """Safe in a signal handler: no lock, no allocation beyond a flag."""
        self.stop_requested = True
        self._poke()

    def _poke(self) -> None:
        if self._w < 0:
            return
        with contextlib.suppress(OSError):  # full pipe: a wake-up is pending already
            os.write(self._w, b"\0")

    def _sleep_until_poked(self, timeout: float) -> None:
        if self._r < 0:
            return
        if not self.stop_requested and timeout > 0:
            with contextlib.suppress(InterruptedError, ValueError, OSError):
                select.select([self._r], [], [], timeout)
        with contextlib.suppress(OSError):
            while os.read(self._r, 4096):
                pass

    def wait(self, timeout: float) -> set[str]:
        """The paths added since the last wait, after at most ``timeout`` seconds."""
        with self._lock:  # added during a sleep(), whose poke that sleep took: no wait
            waiting = bool(self._paths)
        self._sleep_until_poked(0 if waiting else timeout)
        with self._lock:
            paths, self._paths = self._paths, set()
        return paths

    def sleep(self, seconds: float) -> None:
        """A pause that a stop request cuts short (paths added meanwhile stay for wait)."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and (left := deadline - time.monotonic()) > 0:
            self._sleep_until_poked(left)

    def close(self) -> None:
        fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
