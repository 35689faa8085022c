"""Where transcripts live: the Claude config roots and the JSONL files under them."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from ccotel.sources.tail import open_regular, read_head


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
    """Every *.jsonl regular file below root/projects, subagents included. Links to folders
    are not followed; a link to a file is read as the file. A FIFO, socket, device or folder
    named *.jsonl is not a transcript (opening a FIFO would wait for a writer for ever)."""
    yield from TreeWalker().files([root], on_error or (lambda exc: None))


class TreeWalker:
    """``transcript_files`` for a rescan: a folder is listed again only when its mtime, ctime
    (a chmod) or inode moved since it was last listed, so a rescan of an unchanged tree costs
    one stat per folder. A folder whose mtime was within SETTLE seconds of its listing is listed
    again next time (a coarse-mtime filesystem could hide a change made in that second).
    ``relisted``: the folders the last call listed (files were added, removed or renamed in
    them since the call before); ``links``: the files found that are links (an event on the
    folder does not tell of an append to a link's target); ``folders``: the inode numbers of
    every folder the last call walked (what a file watch must cover)."""

    SETTLE = 2.0

    def __init__(self) -> None:
        # folder -> ((dev, ino, mtime_ns, ctime_ns), subfolders to walk, .jsonl files, links)
        self._dirs: dict[str, tuple[tuple[int, ...], list[str], list[str], list[str]]] = {}
        self.relisted: set[str] = set()
        self.links: set[str] = set()
        self.folders: set[int] = set()

    def files(self, roots: list[Path], on_error: Callable[[OSError], object]) -> list[str]:
        out: list[str] = []
        listed: dict[str, tuple[tuple[int, ...], list[str], list[str], list[str]]] = {}
        self.relisted, self.links, self.folders = set(), set(), set()
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
                self.relisted.add(top)
            listed[top] = entry
            self.folders.add(st.st_ino)
            out.extend(entry[2])
            self.links.update(entry[3])
            stack.extend(reversed(entry[1]))
        self._dirs = listed
        return out


def _list(
    top: str, on_error: Callable[[OSError], object]
) -> tuple[list[str], list[str], list[str]] | None:
    """A folder's subfolders to walk into (not links to folders), its *.jsonl regular files
    (a link to a file counts as the file), and which of those are links; None when it cannot
    be read."""
    dirs: list[str] = []
    files: list[str] = []
    links: list[str] = []
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except OSError as exc:
        on_error(exc)
        return None
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                dirs.append(e.path)
            elif e.name.endswith(".jsonl") and e.is_file():
                files.append(e.path)
                if e.is_symlink():
                    links.append(e.path)
        except OSError:  # gone meanwhile, or a link that cannot be followed
            continue
    return dirs, files, links


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


_SESSION_ID = re.compile(rb'"sessionId":"([^"\\]+)"')
_flat: OrderedDict[str, str] = OrderedDict()  # flat agent file -> the session its lines name
_flat_lock = threading.Lock()
_K = TypeVar("_K")
_V = TypeVar("_V")


def session_of(path: str) -> str:
    """The session a file belongs to: the one place it is decided (accounting, traces, the
    page's waterfall all ask here).

    <project>/<session>.jsonl and <project>/<session>/subagents/agent-x.jsonl by their place
    in the tree; a legacy flat <project>/agent-x.jsonl (Claude Code up to 2.0) by the
    sessionId its first lines name, since its name says nothing of it (its stem while it
    names none yet).
    """
    t = parse_path(path)
    if t.flat_agent:
        sid = _flat_session(path)
        if sid:
            return sid
    return t.session


_named: OrderedDict[tuple[str, int, int], frozenset[str]] = OrderedDict()


def flat_sessions(path: str, ino: int, size: int) -> frozenset[str]:
    """Every session the lines of a legacy flat agent file name, up to ``size`` bytes: Claude
    Code 2.0 wrote lines of several sessions into one (a session's waterfall reads each file
    that names it, as accounting counts each line under the session it names). Cached while
    the file does not change."""
    key = (path, ino, size)
    with _flat_lock:
        got = _named.get(key)
    if got is not None:
        return got
    found: set[str] = set()
    tail = b""
    try:
        fd = open_regular(path)
    except OSError:
        return frozenset()
    try:
        at = 0
        while at < size:
            block = os.pread(fd, min(1 << 20, size - at), at)
            if not block:
                break
            at += len(block)
            data = tail + block
            found.update(m.group(1).decode("utf-8", "replace") for m in _SESSION_ID.finditer(data))
            tail = data[-200:]  # a sessionId cut by the block's end is whole in the next
    except OSError:
        pass
    finally:
        os.close(fd)
    got = frozenset(found)
    _remember(_named, key, got, 4096)
    return got


def is_flat_agent(path: str) -> bool:
    return parse_path(path).flat_agent


def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V, size: int) -> None:
    """Keep ``value`` in a bounded cache shared by threads (the oldest entry goes first)."""
    with _flat_lock:
        cache[key] = value
        if len(cache) > size:
            cache.popitem(last=False)


def _flat_session(path: str) -> str | None:
    with _flat_lock:
        sid = _flat.get(path)
    if sid is not None:
        return sid
    m = _SESSION_ID.search(read_head(path, 4096)) or _SESSION_ID.search(read_head(path, 65536))
    if m is None:
        return None
    sid = m.group(1).decode("utf-8", "replace")
    _remember(_flat, path, sid, 20_000)
    return sid


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
