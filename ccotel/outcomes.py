"""What a tool result says the spend bought: lines written, commits, pull requests, turn time.

``records.decode`` keeps the raw pieces this needs (Raw slices of ``toolUseResult``, a Bash
call's kind, a ``turn_duration`` line's milliseconds) without decoding them; ``digest``
calls :func:`take` for the records that carry one, and only here is anything decoded: an
Edit's patch, a Write's new file, a commit's output. Counting each outcome once (copies in
resumed sessions, restarts) is ``ccotel.state.ledger``'s.

The rules are Claude Code's own telemetry's (2.1.x), so that ccotel's counts and the native
ones mean the same:

- lines: the ``+`` and ``-`` lines of ``toolUseResult.structuredPatch`` (Edit, MultiEdit,
  Write): the patch of what was written, after any change the user made to the proposal. A
  Write that created a file counts its lines as git does (native adds one when the file ends
  with a newline). A failed or rejected call has no patch and counts nothing.
- a commit: a successful Bash call whose command runs ``git [-c k=v|-C dir|--opt[=v]]* commit``
  (``--amend`` included, as native counts it) and whose output shows the commit (Claude Code's
  ``gitOperation.commit``, or git's ``[branch hash]`` line) or is empty (``-q``); its hash
  kept where printed. Native counts any successful such command, ``echo "git commit"`` too.
- a pull request: a successful ``gh pr create`` whose output shows its URL (or is empty), or
  an MCP tool named create_pull_request (or merge request); the URL kept where printed.
- turn time: ``system`` ``turn_duration`` lines' ``durationMs`` (what Claude Code writes in
  interactive use), the native ``claude_code.active_time.total`` where transcripts allow.

Commands, file contents and output are read here and dropped: only counts, a commit hash and
a pull request URL (kept in the local state, never a label or log field) go further.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import msgspec
from msgspec import Raw, Struct

from ccotel.keys import h64

# Entry kinds (OutcomeEntry.kind; the state's outcome.kind)
LINES, COMMIT, PR, TURN, CALL, RESULT = 1, 2, 3, 4, 5, 6
# What a call may produce (a bit set: `git commit && gh pr create` makes both)
CALL_COMMIT, CALL_PR = 1, 2

# `git` as a word of its own (not the `git` of `--git`: starts there made the search quadratic)
_GIT = r"(?<![\w-])git(?:\s+-[cC]\s+\S+|\s+--[\w-]+(?:=\S+)?)*\s+"
_COMMIT_CMD = re.compile(_GIT + r"commit(?![\w-])")
_PR_CMD = re.compile(r"\bgh\s+pr\s+create\b")
_MCP_PR = re.compile(
    r"^create[_-]?(pull[_-]?request|merge[_-]?request)$"
    r"|^(pull[_-]?request|merge[_-]?request)[_-]?create$",
    re.I,
)
_HASH = re.compile(r"\[[\w./-]+(?: \(root-commit\))? ([0-9a-f]{4,64})\]")
_PR_URL = re.compile(r"https?://[^/\s\"]+/[^\s\"]+?/(?:pull|pull-requests|-/merge_requests)/\d+")
_SHA = re.compile(r"[0-9a-f]{4,64}")
MAX_REF = 300
_URL_TAIL = 4096  # gh prints the pull request's URL last: the URL search reads this much
_MEMORY = 4096  # Bash calls that may commit, remembered until their result (a live session)


class _Hunk(Struct):
    lines: list[str] = []


class _Command(Struct):
    command: str = ""


class _GitCommit(Struct):
    sha: str | None = None


class _GitPr(Struct):
    url: str | None = None
    action: str | None = None


class _GitOperation(Struct):
    commit: _GitCommit | None = None
    pr: _GitPr | None = None


_hunks = msgspec.json.Decoder(list[_Hunk])
_command = msgspec.json.Decoder(_Command)
_git = msgspec.json.Decoder(_GitOperation)
_text = msgspec.json.Decoder(str)
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)


class OutcomeEntry(Struct, array_like=True, gc=False):
    """One outcome of a chunk, for the ledger. ``key``: records.h64 of the tool_use id (of the
    turn line's uuid for TURN). LINES: ``added``/``removed``; TURN: ``added`` = milliseconds;
    CALL: a Bash or MCP call that may commit or open a pull request, ``added`` its CALL_* bits;
    COMMIT, PR: that call made one, ``ref`` the hash or URL when printed; RESULT: the call has
    its (successful) result; when this process did not see the call, ``added`` holds the
    CALL_* bits its output shows (and ``ref`` the hash or URL), for the ledger to settle a call
    waiting in the state."""

    kind: int
    key: int
    session: str
    cwd: str
    ts: float
    added: int = 0
    removed: int = 0
    ref: str | None = None


# --- what records.decode asks (cheap: no decoding unless a call may matter) -----------------


def call_kind(name: str, raw_input: Raw) -> int:
    """CALL_* bits of a tool_use: a Bash command that commits or opens a pull request, an MCP
    tool that creates one; 0 for everything else (most calls: two substring tests)."""
    if name == "Bash":
        if not raw_input:
            return 0
        data = bytes(raw_input)
        if b"commit" not in data and b"create" not in data:
            return 0
        try:
            cmd = _command.decode(data).command
        except _DECODE_ERRORS:
            return 0
        return (CALL_COMMIT if _COMMIT_CMD.search(cmd) else 0) | (
            CALL_PR if _PR_CMD.search(cmd) else 0
        )
    if name.startswith("mcp__") and _MCP_PR.search(name.rsplit("__", 1)[-1]):
        return CALL_PR
    return 0


def turn_ms(subtype: Raw, duration: Raw) -> int | None:
    """A turn_duration line's milliseconds."""
    if not duration or bytes(subtype) != b'"turn_duration"':
        return None
    try:
        ms = msgspec.json.decode(duration)
    except _DECODE_ERRORS:
        return None
    return int(ms) if isinstance(ms, int | float) and 0 <= ms < 1e12 else None


# --- what digest does with them ------------------------------------------------------------


def _line_count(text: str) -> int:
    """Lines as git counts them: a last line without a newline counts."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def patch_lines(tur: Any) -> tuple[int, int] | None:
    """(added, removed) of an Edit/MultiEdit/Write result, None when it is not one."""
    if tur.type and bytes(tur.type) == b'"create"' and tur.content:
        try:
            return _line_count(_text.decode(tur.content)), 0
        except _DECODE_ERRORS:
            return None
    if not tur.structuredPatch:
        return None
    try:
        hunks = _hunks.decode(tur.structuredPatch)
    except _DECODE_ERRORS:
        return None
    added = removed = 0
    for h in hunks:
        for line in h.lines:
            if line[:1] == "+":
                added += 1
            elif line[:1] == "-":
                removed += 1
    return added, removed


def _git_op(tur: Any) -> _GitOperation | None:
    if not tur.gitOperation:
        return None
    try:
        return _git.decode(tur.gitOperation)
    except _DECODE_ERRORS:
        return None


def _stdout(tur: Any) -> str:
    if not tur.stdout:
        return ""
    try:
        return _text.decode(tur.stdout)
    except _DECODE_ERRORS:
        return ""


def _may_show(raw: bytes) -> bool:
    """Whether a result's raw stdout may show a commit or pull request (or be empty), before
    decoding it: most outputs of calls read elsewhere are long and show neither."""
    return len(raw) <= 64 or b"] " in raw or b"/pull" in raw or b"merge_requests" in raw


def commit_hash(op: _GitOperation | None, stdout: str) -> str | None:
    sha = op.commit.sha if op and op.commit else None
    if sha is None:
        m = _HASH.search(stdout)
        sha = m.group(1) if m else None
    return sha if sha and _SHA.fullmatch(sha) else None


def pr_url(op: _GitOperation | None, stdout: str) -> str | None:
    url = op.pr.url if op and op.pr else None
    if url is None:
        found = _PR_URL.findall(stdout[-_URL_TAIL:])  # bounded: the search is quadratic
        url = found[-1] if found else None
    return url if url and len(url) <= MAX_REF and _PR_URL.fullmatch(url) else None


class Calls:
    """The calls that may commit or open a pull request, by tool_use id, in this process: a
    result read later (a live session) still finds its call's kind and parses its output.
    A result whose call is not here (read before a restart, or by a decode worker) says what
    its output shows, and the ledger settles the call the state has waiting from that."""

    def __init__(self, size: int = _MEMORY):
        self.size = size
        self.kinds: OrderedDict[str, int] = OrderedDict()

    def add(self, tool_id: str, kinds: int) -> None:
        self.kinds[tool_id] = kinds
        if len(self.kinds) > self.size:
            self.kinds.popitem(last=False)

    def get(self, tool_id: str) -> int:
        return self.kinds.get(tool_id, 0)


CALLS = Calls()


def take(rec: Any, session: str, cwd: str, ts: float, out: list[OutcomeEntry]) -> None:
    """The outcomes of one record (digest's loop calls this for records that carry any)."""
    for t in rec.tool_uses or ():
        if t.outcome:
            CALLS.add(t.id, t.outcome)
            out.append(OutcomeEntry(CALL, h64(t.id), session, cwd, ts, t.outcome))
    if rec.turn_ms is not None and rec.uuid:
        out.append(OutcomeEntry(TURN, h64("turn\x00" + rec.uuid), session, cwd, ts, rec.turn_ms))
    tur = rec.result
    if tur is None or not rec.tool_results or len(rec.tool_results) != 1:
        return  # toolUseResult describes the line's one tool result
    r = rec.tool_results[0]
    if r.is_error:
        return
    key = h64(r.tool_use_id)
    lines = patch_lines(tur)
    if lines is not None:
        out.append(OutcomeEntry(LINES, key, session, cwd, ts, *lines))
    kinds = CALLS.get(r.tool_use_id)
    if not kinds and not (tur.stdout or tur.gitOperation):
        return
    # A successful call counts when it printed its commit (pull request), or nothing at all
    # (`git commit -q`); not when its output shows none (`echo "git commit"`, `--dry-run`,
    # `gh pr create --web`), where native counts one.
    op = _git_op(tur)
    if not kinds and op is None and not _may_show(bytes(tur.stdout)):
        out.append(OutcomeEntry(RESULT, key, session, cwd, ts))  # shows nothing: settled
        return
    text = _stdout(tur)
    quiet = not text.strip()
    sha = commit_hash(op, text)
    url = pr_url(op, text)
    if not kinds:
        # The call was read by another process (a decode worker, before a restart): what the
        # output shows, for the ledger to settle a call the state has waiting (and nothing else).
        shows = (CALL_COMMIT if sha or quiet else 0) | (CALL_PR if url or quiet else 0)
        out.append(OutcomeEntry(RESULT, key, session, cwd, ts, shows, ref=sha or url))
        return
    if kinds & CALL_COMMIT and (sha or quiet):
        out.append(OutcomeEntry(COMMIT, key, session, cwd, ts, ref=sha))
    if kinds & CALL_PR and (url or quiet):
        out.append(OutcomeEntry(PR, key, session, cwd, ts, ref=url))
    out.append(OutcomeEntry(RESULT, key, session, cwd, ts))  # the call is settled
