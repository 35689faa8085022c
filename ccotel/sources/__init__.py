"""Where transcripts come from, and reading them.

- ``discovery``: the Claude config roots, the transcripts under them, and what a
  transcript's path says (``parse_path``, ``session_of``, ``agent_of``);
- ``tail``: complete lines from a cursor (``read_new`` for the metrics, ``read_lines`` for
  the traces), noticing truncated, replaced and rewritten files;
- ``watch``: one watchdog observer over the roots (``Watcher``; loaded on first use).

Other packages import these names from here, not from the modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccotel.lazy import loader
from ccotel.sources.discovery import (
    TranscriptPath,
    TreeWalker,
    agent_of,
    claude_roots,
    flat_sessions,
    is_flat_agent,
    parse_path,
    projects_dir,
    session_of,
    transcript_files,
)
from ccotel.sources.tail import (
    CHUNK,
    Chunk,
    NotAFile,
    marker_at,
    open_regular,
    read_head,
    read_lines,
    read_new,
)

if TYPE_CHECKING:
    from ccotel.sources.watch import FULL_RESCAN, RESCAN, Watcher

__all__ = [
    "CHUNK",
    "FULL_RESCAN",
    "RESCAN",
    "Chunk",
    "NotAFile",
    "TranscriptPath",
    "TreeWalker",
    "Watcher",
    "agent_of",
    "claude_roots",
    "flat_sessions",
    "is_flat_agent",
    "marker_at",
    "open_regular",
    "parse_path",
    "projects_dir",
    "read_head",
    "read_lines",
    "read_new",
    "session_of",
    "transcript_files",
]

__getattr__ = loader(__name__, {"FULL_RESCAN": "watch", "RESCAN": "watch", "Watcher": "watch"})
