"""Where transcripts live: the Claude config roots and the JSONL files under them."""

from __future__ import annotations

import os
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
    base = projects_dir(root)
    for dirpath, _dirs, files in os.walk(base, onerror=on_error, followlinks=False):
        for name in files:
            if name.endswith(".jsonl"):
                yield os.path.join(dirpath, name)


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
    p = Path(path)
    sub = p.parent.name == "subagents"
    stem = p.stem
    agent = stem[len("agent-") :] if stem.startswith("agent-") else None
    return TranscriptPath(
        str(p.parent.parent.parent if sub else p.parent),
        _text(p.parent.parent.name if sub else stem),
        agent,
        agent is not None and not sub,
    )


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
