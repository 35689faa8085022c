"""The live board: every session with activity in the last ``live_window`` seconds, its
state, subagents, context use, cost and cost rate, kept up to date as lines are read.

The daemon's ingest hands each chunk of new lines to :meth:`LiveBoard.lines` (records
already decoded) and each committed batch's spend to :meth:`LiveBoard.spent`; nothing is
read again per request. After a restart :meth:`LiveBoard.rebuild` reads the tail of each
recent transcript (up to its committed cursor) and the costs from the state.

Rules beyond ``ccotel.live.state``:

- ``idle``: working or tool with no line for ``idle`` seconds (the active-session window
  of ``ccotel_active_sessions``), counting the session's subagents' lines. A session
  waiting for its user stays ``waiting``: it is still the user's turn.
- ``ended``: only from the exit mark, a ``last-prompt`` line with ``lastPrompt``. Claude
  Code writes the same line when it re-appends its metadata after every 32 KiB it writes,
  and writes none at exit when the file already ends with such a block. So a mark that
  follows fewer than 32 KiB of other lines since the previous mark is an exit; one after
  more is a re-append, which may also have been the last thing written before an exit: a
  ``claude -p`` (or Agent SDK) run that answered and has one has ended (it never waits for
  a user); an interactive session stays ``waiting``, with ``may_have_exited``. A
  conversation line after a mark (``claude --resume``) revives the session. A killed
  process (SIGKILL) writes nothing: its session ends as idle, or stays waiting.
- A subagent whose turn ended, or whose result reached its parent, is ``ended``.
- Waits for the user are observed in a histogram when they end (an answer, the exit, or the
  session leaving the window), with the transcript's times.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ccotel.digest import rank
from ccotel.live.state import (
    ENDED,
    IDLE,
    STATES,
    TOOL,
    WAITING,
    WORKING,
    Thread,
    assistant_kind,
    user_kind,
)
from ccotel.log import get_logger
from ccotel.records import Record, Usage, decode, response_key
from ccotel.sources import agent_of, session_of
from ccotel.totals import ACTIVE_SECONDS

if TYPE_CHECKING:
    from ccotel.statusline import Reports

log = get_logger()

DEFAULT_WINDOW = 7200.0
RATE_SECONDS = 900.0  # cost per hour over the last 15 minutes
REAPPEND_BYTES = 32768  # Claude Code re-appends its metadata after this many bytes written
TAIL_BYTES = 512 << 10  # read back per recent transcript after a restart
CONTEXT_WINDOW, LONG_CONTEXT = 200_000, 1_000_000
CONTEXT_AMBER, CONTEXT_RED = 0.70, 0.85
WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
FUTURE_SKEW = 60.0  # seconds a line's time may run ahead of the daemon's clock
MAX_ROWS = 200  # sessions in /api/live (the most pressing first); the rest are counted
_MARK = b'{"type":"last-prompt"'
# system lines the interactive CLI writes when a turn is over (after its answer, if any)
_TURN_OVER = (b'"subtype":"turn_duration"', b'"subtype":"stop_hook_summary"')
_MAX_FILES = 20_000

Lines = Sequence[tuple[int, bytes]]


class Costs:
    """What the state says a session spent: the committed cost of some sessions, and the
    spend of every response since a time (read once after a restart)."""

    def __init__(self, committed: Callable[[list[str]], dict[str, float]],
                 recent: Callable[[float], Iterable[tuple[str, float, float]]]):  # fmt: skip
        self.committed, self.recent = committed, recent


class _File:
    __slots__ = ("agent", "entry", "marked", "session", "type")

    def __init__(self, session: str, agent: str | None, type_: str | None):
        # the session: the file's name until its lines name one (its exit marks are that one's)
        self.session, self.agent, self.type = session, agent, type_
        self.entry: bytes | None = None  # the lines' entrypoint ("cli", "sdk-cli", …)
        # bytes written since the last last-prompt line (or since the first line read: a
        # mark that few bytes into a file read from its middle is taken as an exit)
        self.marked = 0


class _Session:
    __slots__ = ("agents", "cost", "done", "id", "main", "spend")

    def __init__(self, sid: str):
        self.id = sid
        self.main = Thread()
        self.agents: dict[str, Thread] = {}
        self.done: set[str] = set()  # subagents whose result reached the main thread
        self.cost = 0.0
        self.spend: list[tuple[float, float]] = []  # (ts, cost) in the rate window

    def threads(self) -> Iterable[Thread]:
        yield self.main
        yield from self.agents.values()

    def last(self) -> float:
        return max((t.last for t in self.threads() if t.last is not None), default=0.0)

    def first(self) -> float | None:
        return min((t.first for t in self.threads() if t.first is not None), default=None)


class LiveBoard:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        window: float = DEFAULT_WINDOW,
        idle: float = ACTIVE_SECONDS,
        project: Callable[[str], str] = lambda cwd: cwd,
        price: Callable[[Usage], float | None] = lambda u: None,
        costs: Costs | None = None,
        statusline: Callable[[], Reports | None] = lambda: None,
    ) -> None:
        self.clock, self.window, self.idle = clock, window, idle
        self.project, self.price, self.costs, self.statusline = project, price, costs, statusline
        self.ready = False
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._files: dict[str, _File] = {}
        self.version = 0  # moves with every change of the lines (the stream compares snapshots)
        self.waits = [0] * (len(WAIT_BUCKETS) + 1)  # the histogram of ended waits
        self.wait_sum = 0.0
        self._faults = 0
        self.on_change: Callable[[], None] = lambda: None

    # --- what the ingest calls -------------------------------------------------------------

    def lines(self, path: str, lines: Lines, recs: list[Record], restarted: bool = False) -> None:
        """New lines of a transcript, with their records. Never raises: a fault of the board's
        costs the board, never the ingest."""
        try:
            with self._lock:
                self._lines(path, lines, recs, restarted, self.clock(), live=True)
                self.version += 1
        except Exception as exc:
            self._fault("lines", exc)

    def spent(self, changes: Iterable[tuple[str | None, float, float]]) -> None:
        """A committed batch's spend: (session, response time, USD), negative for a copy that a
        better one replaced."""
        try:
            horizon = self.clock() - RATE_SECONDS
            with self._lock:
                for sid, ts, cost in changes:
                    s = self._sessions.get(sid) if sid is not None else None
                    if s is not None and cost:
                        s.cost += cost
                        if ts >= horizon:
                            s.spend.append((ts, cost))
                self.version += 1
        except Exception as exc:
            self._fault("spent", exc)

    def published(self) -> None:
        """The daemon read and committed what woke it: tell the stream (if anyone listens)."""
        self.on_change()

    def _fault(self, where: str, exc: Exception) -> None:
        self._faults += 1
        if self._faults <= 5:
            log.warning("live board: a fault of ccotel's (the rest goes on)", where=where,
                        error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    # --- lines into threads ----------------------------------------------------------------

    def _file(self, path: str) -> _File:
        f = self._files.get(path)
        if f is None:
            if len(self._files) >= _MAX_FILES:
                self._files.clear()
            agent = agent_of(path)
            p = Path(path)
            kind = None
            if agent is not None:
                kind = "compact" if agent.startswith("acompact") else _agent_type(p)
            f = self._files[path] = _File(session_of(path), agent, kind)
        return f

    def _lines(self, path: str, lines: Lines, recs: list[Record], restarted: bool,
               when: float, live: bool) -> None:  # fmt: skip
        if not lines:
            return
        f = self._file(path)
        if restarted:  # rewritten: read again from line 1, the old line numbers mean nothing
            f.marked = 0
            s = self._sessions.get(f.session)
            if s is not None and f.agent is None:
                s.main = Thread()
            elif s is not None and f.agent is not None:
                s.agents.pop(f.agent, None)
        marks = self._marks(f, lines) if f.agent is None else ()
        now = self.clock()
        horizon, future = now - self.window, now + FUTURE_SKEW
        raws: dict[int, bytes] | None = None

        def raw(rec: Record) -> bytes | None:
            nonlocal raws
            if raws is None:
                raws = dict(lines)
            return raws.get(rec.line_no)

        kind: str | None
        for rec in recs:
            ts, t = rec.ts, rec.type
            if ts is None or t not in ("user", "assistant", "system"):
                continue
            ts = min(ts, future)  # a clock ahead (or a bogus year) must not pin it to the board
            sid = rec.session or f.session
            s = self._sessions.get(sid)
            if s is None:
                if ts < horizon:
                    continue  # old lines of a session that is not on the board
                s = self._new(sid, live)
            agent = f.agent or ((rec.agent_id or "sidechain") if rec.sidechain else None)
            th = s.main if agent is None else self._agent(s, agent, f.type)
            if agent is None:
                f.session = sid
                if f.entry is not None:
                    th.sdk = f.entry.startswith(b"sdk-")
            th.touch(rec, ts)
            if t == "assistant":
                th.assistant(rec, ts)
                if agent is not None and rec.usage is not None:
                    self._agent_cost(th, rec.usage, sid, ts, rec.line_no)
                kind = assistant_kind(rec, raw(rec) if rec.stop_reason is None else None)
            elif t == "user":
                if rec.result_agent_id:
                    s.done.add(rec.result_agent_id)
                kind = user_kind(rec, None if rec.tool_results else raw(rec), agent is not None)
            elif (r := raw(rec)) is not None and any(m in r for m in _TURN_OVER):
                kind = WAITING  # the turn is over, even when no answer was written
            else:
                continue  # other system lines: activity only
            th.tools(rec, ts)
            if kind is None:
                continue
            prompt = t == "user" and not rec.tool_results and kind == WORKING
            since = th.event(kind, ts, rec.line_no, prompt)
            if since is not None and live:
                self._waited(ts - since)
        s = self._sessions.get(f.session) if marks else None
        if s is not None:
            for n, sure in marks:
                if not sure:
                    s.main.mark(n, when)
                elif (since := s.main.exit(n, when)) is not None and live:
                    self._waited(when - since)

    def _marks(self, f: _File, lines: Lines) -> list[tuple[int, bool]]:
        """The last-prompt lines with ``lastPrompt`` among a main transcript's lines: (line
        number, whether it is surely an exit: fewer than 32 KiB written since the mark
        before). Also notes the file's entrypoint."""
        out = []
        marked = f.marked
        for n, raw in lines:
            if raw.startswith(_MARK):
                if b'"lastPrompt":' in raw and b'"explicit":true' not in raw:
                    out.append((n, marked < REAPPEND_BYTES))
                marked = 0
            else:
                marked += len(raw) + 1
                if f.entry is None and (i := raw.find(b'"entrypoint":"', 0, 1024)) >= 0:
                    f.entry = raw[i + 14 : raw.find(b'"', i + 14, i + 64)]
        f.marked = marked
        return out

    def _new(self, sid: str, live: bool) -> _Session:
        s = self._sessions[sid] = _Session(sid)
        if live and self.costs is not None:  # before this batch: the batch comes with spent()
            try:
                s.cost = self.costs.committed([sid]).get(sid, 0.0)
            except Exception as exc:  # the state unreadable for a moment: its cost starts at 0
                self._fault("cost", exc)
        return s

    def _agent(self, s: _Session, agent: str, kind: str | None) -> Thread:
        th = s.agents.get(agent)
        if th is None:
            th = s.agents[agent] = Thread(agent, kind)
        return th

    def _agent_cost(self, th: Thread, u: Usage, sid: str, ts: float, line_no: int) -> None:
        """A subagent's own spend, its responses de-duplicated within its file."""
        key = response_key(u, sid, ts, line_no)
        old = th.kept.get(key)
        if old is not None and rank(u) <= old[0]:
            return
        cost = self.price(u) or 0.0
        th.kept[key] = (rank(u), cost, ts)
        delta = cost - (old[1] if old else 0.0)
        th.cost += delta
        if old is not None and old[2] != ts:
            th.spend.append((old[2], -old[1]))
            th.spend.append((ts, cost))
        else:
            th.spend.append((ts, delta))

    def _waited(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.waits[bisect.bisect_left(WAIT_BUCKETS, seconds)] += 1
        self.wait_sum += seconds

    # --- after a restart -------------------------------------------------------------------

    def rebuild(self, cursors: dict[str, Any], max_line: int = 64 << 20) -> int:
        """The board as it stood: the tail of every transcript written to in the window, up to
        its committed cursor (``Ingest.cursors``), and the costs from the state. Returns the
        files read."""
        try:
            return self._rebuild(cursors, max_line)
        except Exception as exc:  # the board starts empty rather than the daemon not at all
            self._fault("rebuild", exc)
            self.ready = True
            return 0

    def _rebuild(self, cursors: dict[str, Any], max_line: int) -> int:
        now = self.clock()
        horizon = now - self.window
        read = 0
        # main transcripts first: a subagent's result in its parent ends it
        for path in sorted(cursors, key=lambda p: (agent_of(p) is not None, p)):
            cur = cursors[path]
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_mtime < horizon or (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
                continue
            try:
                lines = _tail(path, cur.offset, cur.line_no, max_line)
            except OSError:
                continue
            recs = [r for n, raw in lines if (r := decode(raw, n)) is not None]
            with self._lock:
                self._lines(path, lines, recs, False, st.st_mtime, live=False)
            read += 1
        with self._lock:
            ids = list(self._sessions)
        committed = self.costs.committed(ids) if self.costs is not None and ids else {}
        recent = (
            list(self.costs.recent(now - RATE_SECONDS)) if self.costs is not None and ids else []
        )
        with self._lock:
            for sid, cost in committed.items():
                if sid in self._sessions:
                    self._sessions[sid].cost = cost
            for sid, ts, cost in recent:
                s = self._sessions.get(sid)
                if s is not None:
                    s.spend.append((ts, cost))
            self.ready = True
            self.version += 1
        return read

    # --- what readers call -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The board: ``{"now", "ready", "live_window", "idle_after", "states", "more",
        "sessions": [...]}``, sessions sorted waiting first (longest wait first), then tool,
        working, idle, ended; ``states`` counts every session, ``more`` those left out."""
        now = self.clock()
        with self._lock:
            self._prune(now)
            sl = self._statusline()
            rows = [self._row(s, now, sl) for s in self._sessions.values()]
        rows.sort(key=_order)
        return {
            "now": now,
            "ready": self.ready,
            "live_window": self.window,
            "idle_after": self.idle,
            "states": {st: sum(1 for r in rows if r["state"] == st) for st in STATES},
            "more": max(0, len(rows) - MAX_ROWS),  # sessions beyond MAX_ROWS, left out
            "sessions": rows[:MAX_ROWS],
        }

    def payload(self) -> tuple[bytes, bytes]:
        """The board as JSON: without ``now`` (what identifies the board's state), and whole."""
        snap = self.snapshot()
        now = snap.pop("now")
        key = msgspec.json.encode(snap)
        return key, b'{"now":' + msgspec.json.encode(round(now, 3)) + b"," + key[1:]

    def counts(self) -> dict[str, int]:
        """Sessions per state (every state named, 0 when none)."""
        states: dict[str, int] = self.snapshot()["states"]
        return states

    def histogram(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self.waits), self.wait_sum

    def _statusline(self) -> Reports | None:
        try:
            return self.statusline()
        except Exception:
            return None

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        for sid in [sid for sid, s in self._sessions.items() if s.last() < horizon]:
            s = self._sessions.pop(sid)
            if s.main.wait_since is not None:  # a wait that leaves the board ends with it
                self._waited(now - s.main.wait_since)
        cut = now - RATE_SECONDS
        for s in self._sessions.values():
            spenders: list[_Session | Thread] = [s, *s.agents.values()]
            for th in spenders:
                if th.spend and th.spend[0][0] < cut:
                    th.spend = [x for x in th.spend if x[0] >= cut]
        if len(self._files) > 2 * len(self._sessions) + 1000:
            self._files = {p: f for p, f in self._files.items() if f.session in self._sessions}

    def _state(self, th: Thread, now: float, last: float, over: bool = False) -> tuple[str, float]:
        b = th.base()
        if b is None:
            return IDLE, last
        state, since = b
        if th.agent is not None and (state == WAITING or over) and state != ENDED:
            return ENDED, since if state == WAITING else (th.last or since)
        if state in (WORKING, TOOL) and now - last > self.idle:
            return IDLE, last
        return state, since

    def _row(self, s: _Session, now: float, sl: Reports | None) -> dict[str, Any]:
        last = s.last()
        state, since = self._state(s.main, now, last)
        row = self._fields(s.main, state, since, now, last)
        row["id"] = s.id
        row["may_have_exited"] = state == WAITING and s.main.maybe_exited()
        row["cost_usd"] = _usd(s.cost)
        row["cost_rate_usd_per_hour"] = _rate(s.spend, now)
        ctx = None
        if sl is not None:
            try:
                ctx = sl.context(s.id)
            except Exception:
                ctx = None
        if ctx is not None:
            ratio, size = ctx
            row.update(_context(ratio, int(size), "statusline"))
        cwd = s.main.cwd or next((a.cwd for a in s.agents.values() if a.cwd), None)
        row["project"] = self.project(cwd or "")
        row["branch"] = s.main.branch or next(
            (a.branch for a in s.agents.values() if a.branch), None
        )
        row["started"] = _t(s.first())
        subs = []
        for th in s.agents.values():
            a_last = th.last or 0.0
            over = th.agent in s.done or state == ENDED
            a_state, a_since = self._state(th, now, a_last, over)
            if a_state in (WORKING, TOOL) or now - a_last <= self.idle:
                sub = self._fields(th, a_state, a_since, now, a_last)
                sub |= {"id": th.agent, "type": th.type, "cost_usd": _usd(th.cost),
                        "cost_rate_usd_per_hour": _rate(th.spend, now), "started": _t(th.first)}  # fmt: skip
                subs.append(sub)
        subs.sort(key=_order)
        row["subagents"] = subs
        return row

    def _fields(
        self, th: Thread, state: str, since: float, now: float, last: float
    ) -> dict[str, Any]:
        tool = th.running_tool() if state == TOOL else None
        out = {
            "state": state,
            "state_since": _t(since),
            "tool": {"name": tool[0], "since": _t(tool[1]), "running": tool[2]} if tool else None,
            "last_tool": th.last_tool,
            "model": th.model,
            "last_activity": _t(last),
        }
        if th.ctx is not None:
            size = LONG_CONTEXT if _long(th) else CONTEXT_WINDOW
            out.update(_context(th.ctx / size, size, "estimate"))
        else:
            out.update(context_used_ratio=None, context_window=None, context_source=None,
                       context_level=None)  # fmt: skip
        return out


def _long(th: Thread) -> bool:
    """The 1M window: named by the model (``[1m]``), or shown by a request beyond 200k."""
    return th.ctx_max > CONTEXT_WINDOW or "[1m]" in (th.model or "").lower()


def _context(ratio: float, size: int, source: str) -> dict[str, Any]:
    level = "red" if ratio >= CONTEXT_RED else "amber" if ratio >= CONTEXT_AMBER else "ok"
    return {"context_used_ratio": round(ratio, 4), "context_window": size,
            "context_source": source, "context_level": level}  # fmt: skip


def _rate(spend: list[tuple[float, float]], now: float) -> float:
    cut = now - RATE_SECONDS
    return _usd(max(0.0, sum(c for ts, c in spend if ts >= cut)) * 3600.0 / RATE_SECONDS)


def _usd(x: float) -> float:
    # per-token prices reach ~1e-8 USD; float noise of the deltas starts near 1e-15
    return max(0.0, round(x, 10))


def _t(ts: float | None) -> float | None:
    return None if ts is None else round(ts, 3)


def _order(row: dict[str, Any]) -> tuple[int, float, str]:
    st = row["state"]
    key = row["state_since"] if st in (WAITING, TOOL, WORKING) else -row["last_activity"]
    return (STATES.index(st), key, row["id"] or "")


def _agent_type(p: Path) -> str | None:
    """``agentType`` from a subagent's meta file (e.g. "Explore"); never its description."""
    try:
        meta = msgspec.json.decode(p.with_name(p.stem + ".meta.json").read_bytes())
    except (OSError, msgspec.DecodeError, UnicodeDecodeError):
        return None
    t = meta.get("agentType") if isinstance(meta, dict) else None
    return t[:60] if isinstance(t, str) else None


def _tail(path: str, end: int, line_no: int, max_line: int) -> list[tuple[int, bytes]]:
    """The complete lines before ``end`` (numbered back from ``line_no``), at most TAIL_BYTES
    of them, more when that holds no whole line."""
    with open(path, "rb") as fh:
        size = TAIL_BYTES
        while True:
            start = max(0, end - size)
            fh.seek(start)
            data = fh.read(end - start)
            parts = data.split(b"\n")
            parts.pop()  # after the last newline (b"" at a cursor)
            if start > 0:
                parts = parts[1:]  # the partial first line
            if parts or start == 0 or size >= 8 * TAIL_BYTES:
                break
            size *= 4
    first = line_no - len(parts) + 1
    return [(first + i, raw) for i, raw in enumerate(parts) if len(raw) <= max_line]
