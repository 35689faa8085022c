"""Where transcripts live: the Claude config roots and the JSONL files under them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path


def claude_roots(env: Mapping[str, str], home: Path) -> list[Path]:
    """Like ccusage: CLAUDE_CONFIG_DIR (comma-separated), else ~/.config/claude and ~/.claude."""
    configured = [p.strip() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    if configured:
        return [Path(p).expanduser() for p in configured]
    return [home / ".config" / "claude", home / ".claude"]


def projects_dir(root: Path) -> Path:
    return root / "projects"


def transcript_files(root: Path, on_error=None) -> Iterator[str]:
    """Every *.jsonl regular file below root/projects, subagents included. Links to folders
    are not followed; a link to a file is read as the file. A FIFO, socket, device or folder
    named *.jsonl is not a transcript (opening a FIFO would wait for a writer for ever)."""
    todo = [str(projects_dir(root))]
    while todo:
        top = todo.pop()
        try:
            with os.scandir(top) as it:
                entries = list(it)
        except OSError as exc:
            if on_error is not None:
                on_error(exc)
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
                elif e.name.endswith(".jsonl") and e.is_file():
                    yield e.path
            except OSError:  # gone meanwhile, or a link that cannot be followed
                continue


def session_of(path: str) -> str:
    """The session a file belongs to, from its place in the tree.

    <project>/<session>.jsonl, <project>/<session>/subagents/agent-x.jsonl,
    and the legacy flat <project>/agent-x.jsonl (its lines name the session).
    """
    p = Path(path)
    name = p.parent.parent.name if p.parent.name == "subagents" else p.stem
    return _text(name)


def _text(name: str) -> str:
    """A file name as text that can be stored (bytes not UTF-8 written as \\xNN)."""
    try:
        name.encode()
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def agent_of(path: str) -> str | None:
    """The agent id of a subagent transcript (agent-<id>.jsonl), else None."""
    stem = Path(path).stem
    return stem[len("agent-") :] if stem.startswith("agent-") else None
