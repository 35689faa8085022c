"""``daemon.json`` in the state dir: where the running daemon serves (its pid and URL).

Written once the HTTP server listens, removed when the daemon stops. It tells ``ccotel
status`` (and tests) the port a daemon got when ``http_addr`` asked for port 0. The daemon's
lock (``store.StateLock``) is what proves it runs: a file left by a killed daemon names a
pid that no longer holds the lock, and is reported as stale by its reader.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

RUNNING_NAME = "daemon.json"


class Running(msgspec.Struct):
    pid: int
    url: str  # scheme://host:port, with the port the server got


def write_running(state_dir: Path, url: str) -> None:
    """Atomically (a reader never sees half a file)."""
    path = state_dir / RUNNING_NAME
    tmp = path.with_name(f".{RUNNING_NAME}.{os.getpid()}")
    tmp.write_bytes(msgspec.json.encode(Running(os.getpid(), url)))
    os.replace(tmp, path)


def read_running(state_dir: Path) -> Running | None:
    """What the file says, or None when there is none (or it cannot be read)."""
    try:
        return msgspec.json.decode((state_dir / RUNNING_NAME).read_bytes(), type=Running)
    except (OSError, msgspec.DecodeError):
        return None


def clear_running(state_dir: Path) -> None:
    """Remove the file if it is this process's (a newer daemon's stays)."""
    found = read_running(state_dir)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            (state_dir / RUNNING_NAME).unlink()
