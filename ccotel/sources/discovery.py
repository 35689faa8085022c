"""Where transcripts live: the Claude config roots and the JSONL files under them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple


def claude_roots(env: Mapping[str, str], home: Path) -> list[Path]:
    """Like ccusage: CLAUDE_CONFIG_DIR (comma-separated), else ~/.config/claude and ~/.claude."""
    configured = [p.strip() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    if configured:
        return [Path(p).expanduser() for p in configured]
    return [home / ".config" / "claude", home / ".claude"]


def projects_dir(root: Path) -> Path:
    return root / "projects"


def transcript_files(
    root: Path, on_error: Callable[[OSError], object] | None = None
) -> Iterator[str]:
    """Every *.jsonl below root/projects, subagents included. Links are not followed."""
    yield from TreeWalker().files([root], on_error or (lambda exc: None))


class TreeWalker:
    """``transcript_files`` for a rescan: a folder is listed again only when its mtime, ctime
    (a chmod) or inode moved since it was last listed, so a rescan of an unchanged tree costs
    one stat per folder. A folder whose mtime was within SETTLE seconds of its listing is listed
    again next time (a coarse-mtime filesystem could hide a change made in that second)."""

    SETTLE = 2.0

    def __init__(self) -> None:
        # folder -> ((dev, ino, mtime_ns, ctime_ns), its subfolders to walk, its .jsonl files)
        self._dirs: dict[str, tuple[tuple[int, ...], list[str], list[str]]] = {}

    def files(self, roots: list[Path], on_error: Callable[[OSError], object]) -> list[str]:
        out: list[str] = []
        listed: dict[str, tuple[tuple[int, ...], list[str], list[str]]] = {}
        stack = [str(projects_dir(r)) for r in reversed(roots)]
        while stack:
            top = stack.pop()
            try:
                st = os.stat(top)
            except OSError as exc:
                on_error(exc)
                continue
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)  # ctime: chmod
            cached = self._dirs.get(top)
            if cached is not None and cached[0] == stamp:
                entry = cached
            else:
                got = _list(top, on_error)
                if got is None:
                    continue
                settled = st.st_mtime_ns < (time.time() - self.SETTLE) * 1e9
                entry = (stamp if settled else (), *got)
            listed[top] = entry
            out.extend(entry[2])
            stack.extend(reversed(entry[1]))
        self._dirs = listed
        return out


def _list(top: str, on_error: Callable[[OSError], object]) -> tuple[list[str], list[str]] | None:
    """A folder's subfolders to walk into and its .jsonl files, as os.walk sees them (links
    are listed, not followed); None when it cannot be read."""
    dirs: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(top) as it:
            for e in it:
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not e.is_symlink():
                        dirs.append(e.path)
                elif e.name.endswith(".jsonl"):
                    files.append(e.path)
    except OSError as exc:
        on_error(exc)
        return None
    return dirs, files


class TranscriptPath(NamedTuple):
    """What a transcript's place in the tree says: <project>/<session>.jsonl,
    <project>/<session>/subagents/agent-<id>.jsonl, or the legacy flat
    <project>/agent-<id>.jsonl (whose lines name the session: ``session`` is then the
    file's own name, and ``flat_agent`` is true)."""

    project: str  # the project folder
    session: str
    agent: str | None  # the subagent id, for a subagent's file
    flat_agent: bool


def parse_path(path: str) -> TranscriptPath:
    parent, _, name = path.rpartition(os.sep)
    grand, _, parent_name = parent.rpartition(os.sep)
    sub = parent_name == "subagents"
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # Path(path).stem
    agent = stem[len("agent-") :] if stem.startswith("agent-") else None
    if sub:
        great, _, grand_name = grand.rpartition(os.sep)
        project, session = great, grand_name
    else:
        project, session = parent, stem
    return TranscriptPath(project or os.sep, _text(session), agent, agent is not None and not sub)


def session_of(path: str) -> str:
    """The session a file belongs to, from its place in the tree (``parse_path``)."""
    return parse_path(path).session


def _text(name: str) -> str:
    """A file name as text that can be stored (bytes not UTF-8 written as \\xNN)."""
    try:
        name.encode()
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def agent_of(path: str) -> str | None:
    """The agent id of a subagent transcript (agent-<id>.jsonl), else None."""
    return parse_path(path).agent
