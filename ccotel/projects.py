"""Project labels: a session's working directory as the name a report, metric or page shows."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import PurePath


def project_labeler(mode: str) -> Callable[[str], str]:
    """cwd -> the project label: its last component, the path, a hash, or nothing."""

    @lru_cache(maxsize=4096)
    def label(cwd: str) -> str:
        if mode == "off":
            return ""
        if not cwd:
            return "unknown"
        if mode == "path":
            return cwd
        if mode == "hash":
            import hashlib  # only for this mode: `ccotel report` starts without it

            return hashlib.sha256(cwd.encode()).hexdigest()[:12]
        return PurePath(cwd).name or cwd

    return label


def shown_labeler(mode: str) -> Callable[[str], str]:
    """The project names a report, the page and spans show: ``project_label`` "off" hides
    projects from metric labels only, so there they are named as "name" names them."""
    return project_labeler(mode if mode != "off" else "name")
