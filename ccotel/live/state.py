"""One thread of a session (its main conversation or a subagent): its live state, derived
line by line from what Claude Code writes (docs/notes/live-states.md).

The state follows the newest conversation line (latest timestamp, then file order: within
one flush the CLI may write an answer before the prompt it answers):

- a user prompt or a tool result: a request is in flight (``working``); ``tool`` while a
  ``tool_use`` has no ``tool_result`` yet (a pending permission prompt looks the same);
- an assistant line: ``tool_use`` stops ask for tools; a turn-ending stop (``end_turn``,
  ``stop_sequence``, ``max_tokens``, ``refusal``) leaves it ``waiting`` for the user. Before
  2.1.x every streamed line had ``stop_reason: null``: a text line with no tool call is
  then taken as the answer, a thinking line as work still going on;
- ``[Request interrupted by user…]``: ``waiting`` (a denied permission writes it too);
- the interactive CLI's ``turn_duration`` and ``stop_hook_summary`` system lines: the turn
  is over (``waiting``), also when it ended without an answer line;
- local command lines (``<command-name>``, ``<local-command-stdout>``, ``!`` shell input),
  meta and compact-summary lines change nothing.

``ended`` comes only from the exit mark (a ``last-prompt`` line with ``lastPrompt``),
``idle`` only from time: both are decided by the board (``ccotel.live.board``).
"""

from __future__ import annotations

import re
from collections import OrderedDict

from ccotel.records import SYNTHETIC_MODEL, Record

WORKING, TOOL, WAITING, IDLE, ENDED = "working", "tool", "waiting", "idle", "ended"
STATES = (WAITING, TOOL, WORKING, IDLE, ENDED)  # the board's order
_TURN_ENDS = frozenset(("end_turn", "stop_sequence", "max_tokens", "refusal"))
_RESOLVED_KEPT = 512  # tool ids whose result was seen (a result read before its call)
# A user line that is no prompt: a slash command, its output, `!` shell input and output
# (what the CLI itself treats so: a string that opens with a tag), or an interruption.
_TAG_OPEN = re.compile(rb'"content":"\s*<[a-z][\w-]*[\s>]')
_INTERRUPT = (b'"content":"[Request interrupted by user', b'"text":"[Request interrupted by user')
_TEXT_BLOCK = b'"type":"text"'


def user_kind(rec: Record, raw: bytes | None, sidechain: bool) -> str | None:
    """What a user line says about its thread: WORKING, WAITING, or None (no change)."""
    if rec.tool_results:
        return WORKING
    if not rec.prompt and not sidechain:  # meta, compact summary, no content
        return None
    if raw is not None:
        if any(m in raw for m in _INTERRUPT):
            return WAITING
        if _TAG_OPEN.search(raw, 0, 4096):
            return None
    return WORKING


def assistant_kind(rec: Record, raw: bytes | None) -> str:
    """What an assistant line says: TOOL (it asks for tools), WAITING (its turn is over) or
    WORKING (more of the response, or of the turn, is coming)."""
    stop = rec.stop_reason
    if stop == "tool_use" or (stop is None and rec.tool_uses):
        return TOOL
    if stop in _TURN_ENDS:
        return WAITING
    if stop is None and raw is not None and _TEXT_BLOCK in raw:  # before 2.1.x: infer
        return WAITING
    return WORKING


class Thread:
    """A session's main thread (``agent`` None) or one of its subagents."""

    __slots__ = (
        "agent",
        "branch",
        "conv_line",
        "cost",
        "ctx",
        "ctx_max",
        "ctx_ts",
        "cwd",
        "ev",
        "ev_ts",
        "exit_line",
        "exit_ts",
        "first",
        "kept",
        "kind",
        "last",
        "last_tool",
        "last_tool_ts",
        "mark_line",
        "mark_ts",
        "model",
        "model_ts",
        "pending",
        "resolved",
        "sdk",
        "spend",
        "type",
        "wait_since",
    )  # fmt: skip

    def __init__(self, agent: str | None = None, type_: str | None = None):
        self.agent, self.type = agent, type_
        self.kind: str | None = None  # what the newest conversation line says
        self.ev: tuple[float, int] = (float("-inf"), -1)  # its (timestamp, line number)
        self.ev_ts = 0.0
        self.pending: dict[str, tuple[str, float]] = {}  # tool_use id -> (name, start)
        self.resolved: OrderedDict[str, None] = OrderedDict()
        self.last_tool: str | None = None
        self.last_tool_ts = float("-inf")
        self.exit_line, self.exit_ts, self.conv_line = -1, 0.0, -1
        self.mark_line, self.mark_ts = -1, 0.0  # the newest re-append mark (maybe an exit)
        self.sdk = False  # written by `claude -p` or the Agent SDK: it never waits for a user
        self.first: float | None = None
        self.last: float | None = None
        self.cwd: str | None = None
        self.branch: str | None = None
        self.model: str | None = None
        self.model_ts = float("-inf")
        self.ctx: int | None = None  # input + cache tokens of the newest request
        self.ctx_ts = float("-inf")
        self.ctx_max = 0
        self.wait_since: float | None = None  # an open wait for the user (main thread)
        # subagents only: their responses priced here (a session's cost comes from the state)
        # key -> (digest.rank, cost, ts)
        self.kept: dict[int, tuple[tuple[bool, int, bool], float, float]] = {}
        self.cost = 0.0
        self.spend: list[tuple[float, float]] = []  # (ts, cost) of the last minutes

    # --- lines ---------------------------------------------------------------------------

    def touch(self, rec: Record, ts: float) -> None:
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts
        if rec.cwd:
            self.cwd = rec.cwd
        if rec.branch:
            self.branch = rec.branch

    def assistant(self, rec: Record, ts: float) -> None:
        if rec.model and rec.model != SYNTHETIC_MODEL and ts >= self.model_ts:
            self.model, self.model_ts = rec.model, ts
        u = rec.usage
        if u is not None:
            n = u.input + u.cache_read + u.cache_write_5m + u.cache_write_1h
            if ts >= self.ctx_ts:
                self.ctx, self.ctx_ts = n, ts
            self.ctx_max = max(self.ctx_max, n)

    def tools(self, rec: Record, ts: float) -> None:
        for t in rec.tool_uses or ():
            if t.id not in self.resolved:
                self.pending[t.id] = (t.name, ts)
            if ts >= self.last_tool_ts:
                self.last_tool, self.last_tool_ts = t.name, ts
        for r in rec.tool_results or ():
            self.pending.pop(r.tool_use_id, None)
            self.resolved[r.tool_use_id] = None
            if len(self.resolved) > _RESOLVED_KEPT:
                self.resolved.popitem(last=False)

    def event(self, kind: str, ts: float, line_no: int, prompt: bool) -> float | None:
        """A conversation line; returns the start of the wait for the user it ended (for the
        histogram), or None. Only a prompt ends a wait: the model going on by itself (a
        text line of an older version's response before its tool call, a background task's
        notification) shows that nobody was waited for."""
        self.conv_line = max(self.conv_line, line_no)
        if (ts, line_no) <= self.ev:
            return None
        ended = None
        if self.wait_since is not None and kind != WAITING:
            ended = self.wait_since if prompt else None
            self.wait_since = None
        if prompt or kind == WAITING:  # the turn before is over: its calls no longer run
            for tid in [k for k, (_, start) in self.pending.items() if start <= ts]:
                del self.pending[tid]
        if not (kind == self.kind == WAITING):  # a wait goes on from its first line
            self.ev_ts = ts
        self.ev, self.kind = (ts, line_no), kind
        if kind == WAITING and self.agent is None and not self.sdk and self.wait_since is None:
            self.wait_since = ts
        return ended

    def exit(self, line_no: int, when: float) -> float | None:
        """The exit mark; returns the start of the wait it ended, or None."""
        if line_no <= self.exit_line:
            return None
        self.exit_line, self.exit_ts = line_no, when
        if self.exit_line > self.conv_line and self.wait_since is not None:
            since, self.wait_since = self.wait_since, None
            return since
        return None

    def mark(self, line_no: int, when: float) -> None:
        """A mark that may be Claude Code's periodic metadata re-append, or its exit: when
        the file already ends with such a block, Claude Code writes none at exit."""
        if line_no > self.mark_line:
            self.mark_line, self.mark_ts = line_no, when

    def maybe_exited(self) -> bool:
        """Waiting after a re-append mark: it may have exited since (see ``mark``)."""
        return self.kind == WAITING and self.mark_line > self.conv_line > self.exit_line

    # --- state ---------------------------------------------------------------------------

    def base(self) -> tuple[str, float] | None:
        """(state, since) from the lines alone; None before any conversation line."""
        if self.exit_line > self.conv_line:
            return ENDED, self.exit_ts
        if self.kind is None:
            return None
        if self.kind == WAITING:
            if self.sdk and self.mark_line > self.conv_line:  # a finished -p run
                return ENDED, self.mark_ts
            return WAITING, self.ev_ts
        if self.pending:
            return TOOL, min(start for _, start in self.pending.values())
        return WORKING, self.ev_ts

    def running_tool(self) -> tuple[str, float, int] | None:
        """(name, start, how many run) of the longest-running pending call."""
        if not self.pending:
            return None
        name, start = min(self.pending.values(), key=lambda v: v[1])
        return name, start, len(self.pending)
