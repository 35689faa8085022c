"""What the spend bought, read from transcripts the plain way: every line with json, each tool
call counted at its first result, for tests to compare ccotel's outcome counts with.

Written apart from ccotel.outcomes (json.loads and dicts, no msgspec, no Raw, no chunks): per
project (the last component of the result line's working directory), lines added and removed
by results that carry a patch or a created file, commits and pull requests of successful calls
whose output shows them (or is empty), and turn milliseconds per distinct turn line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path, PurePath

COMMIT = re.compile(r"\bgit(?:\s+-[cC]\s+\S+|\s+--[\w-]+(?:=\S+)?)*\s+commit(?![\w-])")
PR = re.compile(r"\bgh\s+pr\s+create\b")
HASH = re.compile(r"\[[\w./-]+(?: \(root-commit\))? ([0-9a-f]{4,64})\]")
URL = re.compile(r"https?://[^/\s\"]+/[^\s\"]+?/(?:pull|pull-requests|-/merge_requests)/\d+")


def _lines(text: str) -> int:
    """git's count: newline-separated, a last line without its newline included."""
    return len(text.split("\n")) - text.endswith("\n") if text else 0


def read(roots: Iterable[Path]) -> dict[str, dict[str, int]]:
    """project -> {added, removed, commits, prs, turn_ms, hashes (a set), urls (a set)}."""
    calls: dict[str, tuple[str, str]] = {}  # tool_use id -> (name, command)
    done: set[str] = set()
    turns: set[str] = set()
    out: dict[str, dict] = {}

    def row(cwd: str | None) -> dict:
        name = PurePath(cwd).name if cwd else "unknown"
        return out.setdefault(
            name,
            {"added": 0, "removed": 0, "commits": 0, "prs": 0, "turn_ms": 0, "hashes": set(),
             "urls": set()},
        )  # fmt: skip

    files = sorted(p for root in roots for p in Path(root).rglob("*.jsonl"))
    for path in files:
        for raw in path.read_bytes().splitlines():
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(d, dict) or "timestamp" not in d:
                continue
            if d.get("type") == "system" and d.get("subtype") == "turn_duration":
                if (
                    d.get("uuid")
                    and d["uuid"] not in turns
                    and isinstance(d.get("durationMs"), int)
                ):
                    turns.add(d["uuid"])
                    row(d.get("cwd"))["turn_ms"] += d["durationMs"]
                continue
            msg = d.get("message")
            if d.get("type") not in ("user", "assistant") or not isinstance(msg, dict):
                continue
            blocks = msg.get("content") if isinstance(msg.get("content"), list) else []
            for b in blocks:
                if isinstance(b, dict) and b.get("type") == "tool_use":
                    cmd = (
                        (b.get("input") or {}).get("command", "") if b.get("name") == "Bash" else ""
                    )
                    calls.setdefault(
                        b.get("id"), (b.get("name"), cmd if isinstance(cmd, str) else "")
                    )
            results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            tur = d.get("toolUseResult")
            if len(results) != 1 or not isinstance(tur, dict):
                continue
            r = results[0]
            tid = r.get("tool_use_id")
            if r.get("is_error") or tid in done:
                continue
            done.add(tid)
            here = row(d.get("cwd"))
            if tur.get("type") == "create" and isinstance(tur.get("content"), str):
                here["added"] += _lines(tur["content"])
            elif isinstance(tur.get("structuredPatch"), list):
                for h in tur["structuredPatch"]:
                    for line in h.get("lines", []):
                        here["added"] += line.startswith("+")
                        here["removed"] += line.startswith("-")
            name, cmd = calls.get(tid, (None, ""))
            stdout = tur.get("stdout") if isinstance(tur.get("stdout"), str) else ""
            if name == "Bash" and COMMIT.search(cmd):
                m = HASH.search(stdout)
                if m or not stdout.strip():
                    here["commits"] += 1
                    if m:
                        here["hashes"].add(m.group(1))
            if name == "Bash" and PR.search(cmd):
                urls = URL.findall(stdout)
                if urls or not stdout.strip():
                    here["prs"] += 1
                    here["urls"].update(urls[-1:])
    return out


def totals(by_project: dict[str, dict]) -> dict[str, int]:
    keys = ("added", "removed", "commits", "prs", "turn_ms")
    return {k: sum(v[k] for v in by_project.values()) for k in keys}
