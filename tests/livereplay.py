"""Many live sessions at once from what the real CLI wrote.

:func:`record_sources` drives the real Claude Code once interactively (a prompt held in
flight, a tool, an answer, a second turn, /exit) and once with ``-p`` (an Agent whose subagent
runs Bash). :func:`replay` writes sessions from those transcripts, each cut after a chosen
line, under new session ids, with their times moved to just before now, all at once (a
thread a session, a line at a time). :func:`expected` derives what the board must show from
a session's written lines alone, by the documented rules (docs/notes/live-states.md), as an
oracle independent of ccotel's code.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakeapi import FakeAnthropic, Step, ToolCall
from tests.interactive import InteractiveClaude, gate_command, wait_for
from tests.realcli import run_claude, scenario

Lines = list[dict[str, Any]]


def _ts(x: dict) -> float | None:
    t = x.get("timestamp")
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() if t else None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read(path: Path) -> Lines:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@dataclass
class Sources:
    interactive: Lines  # the main transcript of the interactive session
    agent: Lines  # the -p run's main transcript
    sub: Lines  # its subagent's
    sub_name: str  # agent-<id>
    sub_meta: bytes


def record_sources(work: Path) -> Sources:
    """Run the real CLI twice; the transcripts it wrote."""
    gate = work / "gate"
    with FakeAnthropic(seed=f"live-replay:{work.name}") as api:
        s = InteractiveClaude(
            work / "ihome",
            api,
            [
                Step(
                    text="Running it.", tools=(ToolCall("Bash", {"command": gate_command(gate)}),)
                ),
                Step(text="Released."),
                Step(text="Second answer."),
            ],
            settings={"permissions": {"allow": ["Bash"]}},
        )
        s.start()
        try:
            held = api.hold(s.tag, 0)
            s.submit("Run the gated command")
            wait_for(lambda: 0 in api.held(s.tag), "the request to be held")
            s.wait_transcript(lambda ls: any(x.get("type") == "user" for x in ls), "the prompt")
            held.set()
            wait_for(lambda: any("until [ -e" in p for p in s.processes()), "the gated command")
            gate.touch()
            s.wait_idle()
            s.submit("Again")
            s.wait_idle()
            assert s.exit() == 0
            s.wait_transcript(lambda ls: any("lastPrompt" in x for x in ls), "the exit mark")
            interactive = read(s.transcript)
        finally:
            s.close()
    run = run_claude(work / "phome", scenario=scenario("agent"))
    (sub,) = run.subagent_files
    return Sources(interactive, read(Path(run.transcript)), read(sub), sub.stem,
                   sub.with_name(sub.stem + ".meta.json").read_bytes())  # fmt: skip


# --- what the board must show, from the lines alone --------------------------------------

INTERRUPT = "[Request interrupted by user"
_TURN_ENDS = ("end_turn", "stop_sequence", "max_tokens", "refusal")


def _content(x: dict) -> Any:
    return (x.get("message") or {}).get("content")


def _blocks(x: dict, kind: str) -> list[dict]:
    c = _content(x)
    return [b for b in c if b.get("type") == kind] if isinstance(c, list) else []


def _conversation(x: dict) -> bool:
    if x.get("type") == "assistant":
        return True
    if x.get("type") != "user" or x.get("isMeta") or x.get("isCompactSummary"):
        return False
    c = _content(x)
    return not (isinstance(c, str) and c.lstrip().startswith("<"))


def expected(lines: Lines, sub: bool = False) -> dict:
    """state, state_since, tool (name, since) of a thread from its written lines."""
    talk = [(i, x) for i, x in enumerate(lines) if _conversation(x)]
    marks = [i for i, x in enumerate(lines) if x.get("type") == "last-prompt" and "lastPrompt" in x]
    if marks and (not talk or marks[-1] > talk[-1][0]):
        return {"state": "ended", "tool": None}
    _, leaf = max(talk, key=lambda ix: (_ts(ix[1]), ix[0]))
    uses = {b["id"]: (b["name"], _ts(x)) for x in lines for b in _blocks(x, "tool_use")}
    done = {b["tool_use_id"] for x in lines for b in _blocks(x, "tool_result")}
    pending = sorted((t, n) for k, (n, t) in uses.items() if k not in done)
    stop = (leaf.get("message") or {}).get("stop_reason")
    if (leaf["type"] == "assistant" and stop in _TURN_ENDS) or INTERRUPT in json.dumps(
        _content(leaf)
    ):
        return {"state": "ended" if sub else "waiting", "state_since": _ts(leaf), "tool": None}
    if pending:
        return {"state": "tool", "state_since": pending[0][0], "tool": pending[0][1]}
    return {"state": "working", "state_since": _ts(leaf), "tool": None}


def last_usage(lines: Lines) -> int | None:
    """input + cache tokens of the newest request (the context estimate's numerator)."""
    best = None
    for x in lines:
        u = (x.get("message") or {}).get("usage") if x.get("type") == "assistant" else None
        if u and (best is None or _ts(x) >= best[0]):
            n = u["input_tokens"] + u.get("cache_read_input_tokens", 0)
            best = (_ts(x), n + u.get("cache_creation_input_tokens", 0))
    return best[1] if best else None


# --- writing sessions at once -------------------------------------------------------------


@dataclass
class Session:
    """One replayed session: ``main`` and ``sub`` lines to write (already cut)."""

    id: str
    main: Lines
    sub: Lines = field(default_factory=list)
    sub_name: str = ""
    sub_meta: bytes = b""
    age: float = 5.0  # seconds before now of its newest line
    context: float | None = None  # the last request's context use, as a share of 200k


def cut(lines: Lines, pred, after: int = 0) -> Lines:
    """The lines up to and including the first one for which ``pred`` holds (and ``after``
    more)."""
    i = next(i for i, x in enumerate(lines) if pred(x))
    return lines[: i + 1 + after]


def _rewrite(lines: Lines, sid: str, old: str, shift: float, context: float | None) -> Lines:
    """The lines under session id ``sid``, their API responses made its own (ccotel counts a
    response once across sessions, as ccusage does), moved by ``shift`` seconds."""
    out = []
    for x in lines:
        x = json.loads(json.dumps(x).replace(old, sid))
        msg = x.get("message") if x.get("type") == "assistant" else None
        if isinstance(msg, dict) and msg.get("id"):
            msg["id"] = f"{msg['id']}-{sid[:8]}"
        if x.get("requestId"):
            x["requestId"] = f"{x['requestId']}-{sid[:8]}"
        t = _ts(x)
        if t is not None:
            x["timestamp"] = _iso(t + shift)
        u = (x.get("message") or {}).get("usage") if x.get("type") == "assistant" else None
        if u and context is not None:
            u["input_tokens"], u["cache_creation_input_tokens"] = 10, 0
            u["cache_read_input_tokens"] = round(context * 200_000) - 10
            u.pop("cache_creation", None)
        out.append(x)
    return out


def replay(projects: Path, sessions: list[Session], now: float | None = None) -> None:
    """Write every session at once, a thread each, a line at a time in file order."""
    now = time.time() if now is None else now
    folder = projects / "-home-user-live"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for s in sessions:
        old = next(x["sessionId"] for x in s.main if x.get("sessionId"))
        newest = max(t for x in s.main + s.sub if (t := _ts(x)) is not None)
        shift = now - s.age - newest
        s.main = _rewrite(s.main, s.id, old, shift, s.context)
        s.sub = _rewrite(s.sub, s.id, old, shift, None)
        main_path = folder / f"{s.id}.jsonl"
        jobs.append((main_path, s.main))
        if s.sub:
            sub_dir = folder / s.id / "subagents"
            sub_dir.mkdir(parents=True, exist_ok=True)
            (sub_dir / f"{s.sub_name}.meta.json").write_bytes(s.sub_meta)
            jobs.append((sub_dir / f"{s.sub_name}.jsonl", s.sub))
    rnd = random.Random(1)
    go = threading.Barrier(len(jobs))

    def write(path: Path, lines: Lines, pause: float) -> None:
        go.wait()
        with open(path, "a") as f:
            for x in lines:
                f.write(json.dumps(x, separators=(",", ":")) + "\n")
                f.flush()
                time.sleep(pause)

    threads = [threading.Thread(target=write, args=(p, ls, rnd.uniform(0, 0.01))) for p, ls in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def new_id() -> str:
    return str(uuid.uuid4())
