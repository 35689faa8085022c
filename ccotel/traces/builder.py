"""Transcript records -> spans, one trace per session.

    invoke_agent claude-code                 root, INTERNAL (exported when the session closes)
      turn N                                 one per real user prompt
        chat {model}                         CLIENT, one per de-duplicated API response
        execute_tool {tool}                  INTERNAL, tool_use -> tool_result
          invoke_agent {subagent_type}       the subagent an Agent/Task call spawned
            chat {model} / execute_tool ...  the subagent's own calls (nested agents nest)

Children are emitted as soon as they are complete: a response when the next
one in its thread (or a new prompt, the end of the turn, the session's close)
shows that no more of its lines can come; a tool call at its result; a
subagent when the call that spawned it has its result. Turns are emitted when
the next prompt starts and at close, the root once, at close.

Usage and cost on chat spans are those of the response's kept copy in the
accounting state (the ``responses`` table), and only the kept copy gets a
span. A chat span is sent once its response is final: a final stop reason, a
later response of its thread, a new prompt or the end of the turn, its subagent
done; or the session closing with the response's last line RESPONSE_GRACE old.
When a copy found afterwards moves the kept usage (a late line of the
response, a better copy in another file), the difference is sent as a
correction span (``ccotel.usage.correction``): chat spans, corrections
included, sum to exactly what the metrics (and ccusage) count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ccotel.batch import Response
from ccotel.records import Record, ToolResult, ToolUse, response_key
from ccotel.traces import ids
from ccotel.traces.model import (
    U_CACHE_READ,
    U_CACHE_WRITE,
    U_COST,
    U_INPUT,
    U_OUTPUT,
    U_REQUESTS,
    Agent,
    Event,
    Resp,
    Sent,
    Session,
    Span,
    Thread,
    Tool,
)
from ccotel.traces.redact import clean

INTERNAL, CLIENT = 0, 2
PROVIDER = "anthropic"
AGENT_TOOLS = ("Agent", "Task")
MAIN = ""
_NS = 1_000_000
_FINAL_STOPS = ("end_turn", "stop_sequence", "max_tokens", "refusal")
_TURN_END = (b'"subtype":"turn_duration"', b'"subtype":"stop_hook_summary"')
_SDK = b'"entrypoint":"sdk-'
# A finished non-interactive run: its last-prompt record, the main thread's last record a
# response, no tool call open, and nothing written for this long. Claude Code re-appends
# last-prompt every 32 KiB written too, possibly between two lines of one response.
FINISH_GRACE = 5.0
# A response still being read when its session closes is sent once its last line is this old
# (a session_idle shorter than this waits for it): lines of one response come seconds apart.
RESPONSE_GRACE = 10.0


def ns(ts: float) -> int:
    """Epoch seconds -> ns, on the millisecond grid transcripts use (stable across runs)."""
    return round(ts * 1000) * _NS


@dataclass
class FileInfo:
    path: str
    session: str  # from the path (lines may name it better)
    agent: str | None = None  # subagent id from the file name
    agent_type: str | None = None  # .meta.json agentType
    tool_use_id: str | None = None  # .meta.json toolUseId


@dataclass
class Options:
    capture_content: bool = False
    tool_details: bool = False
    max_chars: int = 4096
    project: Callable[[str], str] = lambda cwd: cwd.rstrip("/").rsplit("/", 1)[-1] or cwd
    include_cwd: bool = True


# --- content decoding (only when capture is on) --------------------------------


class _TextBlock(msgspec.Struct):
    type: str = ""
    text: str | None = None


class _ContentMsg(msgspec.Struct):
    content: str | list[_TextBlock] | None = None


class _ContentLine(msgspec.Struct):
    message: _ContentMsg | None = None


_content_dec = msgspec.json.Decoder(_ContentLine)
_blocks_dec = msgspec.json.Decoder(str | list[_TextBlock] | None)
_any_dec = msgspec.json.Decoder()


def _line_text(raw: bytes) -> str | None:
    try:
        m = _content_dec.decode(raw).message
    except msgspec.DecodeError:
        return None
    return _join(m.content) if m else None


def _join(content: str | list[_TextBlock] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    parts = [b.text for b in content if b.type == "text" and b.text]
    return "\n".join(parts) if parts else None


def _result_text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        return _join(_blocks_dec.decode(raw))
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace")


def _input(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        v = _any_dec.decode(raw)
    except msgspec.DecodeError:
        return {}
    return v if isinstance(v, dict) else {}


def mcp_split(name: str) -> tuple[str, str] | None:
    """mcp__server__tool -> (server, tool)."""
    if not name.startswith("mcp__"):
        return None
    server, sep, tool = name[5:].partition("__")
    return (server, tool) if sep and server and tool else None


class Builder:
    """Feeds records into per-session state and collects finished spans in ``out``."""

    def __init__(
        self,
        opts: Options,
        response_row: Callable[[int], Response | None],
        chat_sent: Callable[[int], Sent | None],
        load_session: Callable[[str], Session | None] = lambda sid: None,
    ):
        self.o = opts
        self.row = response_row
        self.chat_sent = chat_sent  # what a response's chat span carried, None: not sent
        self.load_session = load_session
        self.sessions: dict[str, Session] = {}
        self.touched: set[str] = set()
        self.new_chats: dict[int, Sent] = {}  # sent since the last commit
        self.out: list[Span] = []
        self._tids: dict[str, int] = {}

    # --- sessions ------------------------------------------------------------

    def session(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.load_session(sid) or Session(sid)
            self.sessions[sid] = s
        self.touched.add(sid)
        return s

    def _tid(self, sid: str) -> int:
        t = self._tids.get(sid)
        if t is None:
            if len(self._tids) > 4096:
                self._tids.clear()
            t = self._tids[sid] = ids.trace_id(sid)
        return t

    def _emit(self, s: Session, sid_: int, parent: int, name: str, kind: int, start: float, end: float,
              attrs: dict[str, Any], error: str | None = None,
              events: list[Event] | None = None) -> None:  # fmt: skip
        a, b = ns(start), ns(end)
        self.out.append(
            Span(
                self._tid(s.id), sid_, parent, name, kind, a, max(a, b), attrs, error, events or []
            )
        )

    def _emit_tool(self, s: Session, t: Tool, end: float, attrs: dict[str, Any],
                   error: str | None, events: list[Event] | None = None) -> None:  # fmt: skip
        self._emit(s, ids.tool_id(s.id, t.id), t.parent, f"execute_tool {t.name}", INTERNAL,
                   t.start, end, attrs, error, events)  # fmt: skip

    def _base(self, s: Session) -> dict[str, Any]:
        return {"gen_ai.provider.name": PROVIDER, "gen_ai.conversation.id": s.id}

    # --- feeding -------------------------------------------------------------

    def feed(self, fi: FileInfo, rec: Record, raw: bytes) -> None:
        sid = rec.session or fi.session
        ts = rec.ts
        if ts is None:
            return
        s = self.session(sid)
        if s.closed:  # the session continues: same trace, same root
            s.closed = False
        s.finished = False
        s.first = ts if s.first is None else min(s.first, ts)
        s.last = ts if s.last is None else max(s.last, ts)
        if rec.cwd and not s.cwd:
            s.cwd = rec.cwd
        if rec.branch:
            s.branch = rec.branch
        if rec.version:
            s.version = rec.version
        agent = (
            fi.agent
            or (rec.agent_id if rec.sidechain else None)
            or ("sidechain" if rec.sidechain else None)
        )
        thread_key = agent or MAIN
        th = s.threads.get(thread_key)
        if th is None:
            th = s.threads[thread_key] = Thread()
        a: Agent | None = None
        if agent is not None:
            a = s.agents.get(agent)
            if a is None:
                a = s.agents[agent] = self._agent(s, agent, self._main_parent(s))
            if fi.agent == agent:
                a.type = a.type or fi.agent_type
                a.tool = a.tool or fi.tool_use_id
            a.first = ts if a.first is None else min(a.first, ts)
            a.last = ts if a.last is None else max(a.last, ts)
            parent = ids.agent_id(s.id, agent)
        else:
            if rec.prompt:
                self._new_turn(s, th, rec, raw)
            parent = self._main_parent(s)
            s.main_last = rec.type
            if not s.sdk and _SDK in raw:
                s.sdk = True

        if rec.type == "assistant" and rec.usage is not None:
            self._response(s, th, rec, raw, parent, thread_key)
        if rec.tool_uses:
            for t in rec.tool_uses:
                if t.id not in s.tools:
                    s.tools[t.id] = self._tool(t, ts, parent, thread_key)
        if rec.tool_results:
            for r in rec.tool_results:
                self._tool_result(s, r, rec, ts)
        if thread_key == MAIN and rec.type == "system" and any(m in raw for m in _TURN_END):
            self._finish_resp(s, th, thread_key)
        th.last = ts
        if s.turn_open:
            s.turn_last = ts if s.turn_last is None else max(s.turn_last, ts)

    def finished(self, sid: str) -> None:
        """The run wrote its closing record (last-prompt): close at the end of the pass."""
        s = self.sessions.get(sid) or self.load_session(sid)
        if s is not None and not s.closed:
            self.sessions[sid] = s
            self.touched.add(sid)
            s.finished = True

    def _main_parent(self, s: Session) -> int:
        return s.turn or ids.root_id(s.id)

    def _new_turn(self, s: Session, th: Thread, rec: Record, raw: bytes) -> None:
        tid = ids.turn_id(s.id, rec.uuid or f"line-{rec.line_no}-{rec.ts}")
        if tid in s.turn_ids:
            return  # the same prompt read again (a rewritten file)
        self._finish_resp(s, th, MAIN)
        self._end_turn(s)
        s.turn_no += 1
        s.turn = tid
        s.turn_ids.append(tid)
        s.turn_start = s.turn_last = rec.ts
        s.turn_open = True
        s.turn_prompt = clean(_line_text(raw), self.o.max_chars) if self.o.capture_content else None

    def _end_turn(self, s: Session) -> None:
        if not s.turn_open or s.turn_start is None:
            return
        attrs = self._base(s)
        attrs["ccotel.turn.number"] = s.turn_no
        if s.turn_prompt is not None:
            attrs["gen_ai.input.messages"] = msgspec.json.encode(
                [{"role": "user", "parts": [{"type": "text", "content": s.turn_prompt}]}]
            ).decode()
        self._emit(
            s,
            s.turn,
            ids.root_id(s.id),
            f"turn {s.turn_no}",
            INTERNAL,
            s.turn_start,
            s.turn_last or s.turn_start,
            attrs,
        )
        s.turn_open = False
        s.turn_prompt = None

    # --- responses -----------------------------------------------------------

    def _response(
        self, s: Session, th: Thread, rec: Record, raw: bytes, parent: int, thread_key: str
    ) -> None:
        u = rec.usage
        assert u is not None and rec.ts is not None
        key = response_key(u, s.id, rec.ts, rec.line_no)
        r = th.resp
        if r is not None and r.key != key:
            self._finish_resp(s, th, thread_key)
            r = None
        if r is None:
            if key == th.done:  # a late line of a response already finished
                self._correct(s, key, rec.ts, parent, thread_key)
                return
            start = rec.ts if th.last is None else min(th.last, rec.ts)
            r = th.resp = Resp(
                key, u.message_id, u.request_id, u.model, start, rec.ts, rec.stop_reason, parent
            )
            a = s.agents.get(thread_key) if thread_key != MAIN else None
            if a is not None and (a.work is None or start < a.work):
                a.work = start
        r.last = max(r.last, rec.ts)
        r.stop = rec.stop_reason or r.stop
        if self.o.capture_content:
            text = _line_text(raw)
            if text:
                r.text = clean(text if r.text is None else f"{r.text}\n{text}", self.o.max_chars)
        if rec.stop_reason in _FINAL_STOPS:
            self._finish_resp(s, th, thread_key)

    def _finish_resp(self, s: Session, th: Thread, thread_key: str) -> None:
        r = th.resp
        if r is None:
            return
        th.resp = None
        th.done = r.key
        row = self.row(r.key)
        if row is None:
            return
        if row.key != r.key or row.session != s.id or self._sent(row.key) is not None:
            # another file or session holds the kept copy, or its span was sent: this copy
            # may have moved its usage since
            self._correct(s, row.key, r.last, r.parent, thread_key, row)
            return
        inp, out, cr, w5, w1 = row.input, row.output, row.cache_read, row.cw5m, row.cw1h
        model = row.model or r.model or "unknown"
        attrs = self._chat_attrs(s, model, inp, out, cr, w5, w1, row.cost, row.priced)
        attrs["gen_ai.request.model"] = r.model or model
        if r.mid:
            attrs["gen_ai.response.id"] = r.mid
        if r.rid:
            attrs["ccotel.request_id"] = r.rid
        if r.stop:
            attrs["gen_ai.response.finish_reasons"] = [r.stop]
        if row.web_search:
            attrs["ccotel.web_search_requests"] = row.web_search
        if thread_key != MAIN:
            attrs["gen_ai.agent.id"] = thread_key
        if r.text is not None:
            attrs["gen_ai.output.messages"] = msgspec.json.encode(
                [{"role": "assistant", "parts": [{"type": "text", "content": r.text}]}]
            ).decode()
        span = ids.chat_id(s.id, r.key)
        self._emit(s, span, r.parent, f"chat {model}", CLIENT, r.start, r.last, attrs)
        self.new_chats[r.key] = Sent(span, inp, out, cr, w5, w1, row.web_search, row.cost)
        self._add_usage(s, thread_key, (inp + cr + w5 + w1, out, cr, w5 + w1, row.cost, 1))

    def _chat_attrs(self, s: Session, model: str, inp: int, out: int, cr: int, w5: int, w1: int,
                    cost: float, priced: int) -> dict[str, Any]:  # fmt: skip
        """A chat span's (or correction's) attributes: its usage as GenAI names it (input
        includes the cache) and ccotel's uncached parts, and its cost."""
        attrs = self._base(s)
        attrs.update({
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": inp + cr + w5 + w1,
            "gen_ai.usage.output_tokens": out,
            "gen_ai.usage.cache_read.input_tokens": cr,
            "gen_ai.usage.cache_creation.input_tokens": w5 + w1,
            "ccotel.usage.uncached_input_tokens": inp,
            "ccotel.usage.cache_creation_5m.input_tokens": w5,
            "ccotel.usage.cache_creation_1h.input_tokens": w1,
            "gen_ai.usage.cost.amount": cost,
            "gen_ai.usage.cost.currency": "USD",
            "gen_ai.usage.cost.source": "local",
            "ccotel.cost_usd": cost,
            "ccotel.priced": bool(priced),
        })  # fmt: skip
        return attrs

    def _sent(self, key: int) -> Sent | None:
        sent = self.new_chats.get(key)
        return sent if sent is not None else self.chat_sent(key)

    def _correct(self, s: Session, key: int, ts: float, parent: int, thread_key: str,
                 row: Response | None = None) -> None:  # fmt: skip
        """A copy of a response whose chat span was sent: when the kept usage moved since
        (a late line, a better copy), send the difference as a correction span, under the
        chat span when it is in this trace. Chat spans and corrections sum to the kept row."""
        row = row or self.row(key)
        if row is None:
            return
        key = row.key
        sent = self._sent(key)
        if sent is None or not sent.span:  # not sent yet, or sent without a record of it
            return
        now = (row.input, row.output, row.cache_read, row.cw5m, row.cw1h, row.web_search)
        was = (sent.input, sent.output, sent.cache_read, sent.cw5m, sent.cw1h, sent.web_search)
        d = [a - b for a, b in zip(now, was, strict=True)]
        dcost = row.cost - sent.cost
        if not any(d) and abs(dcost) < 1e-12:
            return
        n = sent.corrections + 1
        mine = sent.span == ids.chat_id(s.id, key)
        inp, out, cr, w5, w1, ws = d
        model = row.model or "unknown"
        attrs = self._chat_attrs(s, model, inp, out, cr, w5, w1, dcost, row.priced)
        attrs["ccotel.usage.correction"] = n
        attrs["ccotel.usage.corrects_span_id"] = f"{sent.span:016x}"
        if ws:
            attrs["ccotel.web_search_requests"] = ws
        if thread_key != MAIN:
            attrs["gen_ai.agent.id"] = thread_key
        span = ids.span_id("chat-correction", s.id, str(key), str(n))
        self._emit(s, span, sent.span if mine else parent, f"chat {model} correction", CLIENT,
                   ts, ts, attrs)  # fmt: skip
        self.new_chats[key] = Sent(sent.span, *now, row.cost, n)
        if mine:
            self._add_usage(s, thread_key, (inp + cr + w5 + w1, out, cr, w5 + w1, dcost, 0))

    def _add_usage(
        self, s: Session, thread_key: str, vals: tuple[float, float, float, float, float, int]
    ) -> None:
        """Into the sums of the root and of the subagent (each sent once, at its end)."""
        targets = [s.usage]
        a = s.agents.get(thread_key) if thread_key != MAIN else None
        if a is not None:
            targets.append(a.usage)
        for tgt in targets:
            for i, v in zip(
                (U_INPUT, U_OUTPUT, U_CACHE_READ, U_CACHE_WRITE, U_COST, U_REQUESTS),
                vals,
                strict=True,
            ):
                tgt[i] += v

    # --- tools ---------------------------------------------------------------

    def _tool(self, t: ToolUse, ts: float, parent: int, thread_key: str) -> Tool:
        tool = Tool(t.id, t.name, ts, parent, thread_key)
        o = self.o
        if t.input is not None and (o.capture_content or o.tool_details or t.name in AGENT_TOOLS):
            args = _input(t.input)
            if t.name in AGENT_TOOLS and isinstance(args.get("subagent_type"), str):
                tool.agent_type = args["subagent_type"]
            if o.capture_content:
                tool.args = clean(t.input.decode("utf-8", "replace"), o.max_chars)
            if o.capture_content or o.tool_details:
                cmd = args.get("command")
                if isinstance(cmd, str):
                    tool.command = clean(cmd, o.max_chars)
                for k in ("file_path", "notebook_path", "path"):
                    if isinstance(args.get(k), str):
                        tool.path = clean(args[k], o.max_chars)
                        break
        return tool

    def _tool_attrs(self, s: Session, t: Tool) -> dict[str, Any]:
        attrs = self._base(s)
        attrs.update(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": t.name,
                "gen_ai.tool.call.id": t.id,
            }
        )
        mcp = mcp_split(t.name)
        if mcp:
            attrs["gen_ai.tool.type"] = "extension"
            attrs["ccotel.mcp.server"], attrs["ccotel.mcp.tool"] = mcp
        else:
            attrs["gen_ai.tool.type"] = "function"
        if t.thread != MAIN:
            attrs["gen_ai.agent.id"] = t.thread
        if t.args is not None:
            attrs["gen_ai.tool.call.arguments"] = t.args
        if t.command is not None:
            attrs["ccotel.tool.command"] = t.command
        if t.path is not None:
            attrs["ccotel.tool.file_path"] = t.path
        return attrs

    def _tool_result(self, s: Session, r: ToolResult, rec: Record, ts: float) -> None:
        t = s.tools.pop(r.tool_use_id, None)
        if t is None:
            return  # a result without its call (another file or session had it)
        attrs = self._tool_attrs(s, t)
        error = None
        if r.is_error:
            attrs["error.type"] = "tool_error"
            error = "tool_error"
            s.tool_errors += 1
        if self.o.capture_content and r.content is not None:
            attrs["gen_ai.tool.call.result"] = clean(_result_text(r.content), self.o.max_chars)
        s.tool_calls += 1
        self._emit_tool(s, t, ts, attrs, error)
        if t.name in AGENT_TOOLS:
            aid = rec.result_agent_id or (rec.agent_id if not rec.sidechain else None)
            a = s.agents.get(aid) if aid else None
            if a is None:
                a = next((x for x in s.agents.values() if x.tool == t.id), None)
            if a is None and aid:
                a = s.agents[aid] = self._agent(s, aid, t.parent)
            if a is not None:
                a.tool = a.tool or t.id
                a.type = a.type or t.agent_type
                a.linked = True
                self._finish_agent(s, a)

    def _agent(self, s: Session, aid: str, parent: int) -> Agent:
        """A subagent met for the first time since its session was loaded: one whose span was
        sent before the session closed is done already (its span id is sent once)."""
        return Agent(aid, parent=parent, done=aid in s.agents_sent)

    def _finish_agent(self, s: Session, a: Agent, force: bool = False) -> None:
        if a.done or a.first is None or not (a.linked or force):
            return
        th = s.threads.get(a.id)
        if th is not None:
            self._finish_resp(s, th, a.id)
        a.done = True
        kind = a.type or ("compact" if a.id.startswith("acompact") else "subagent")
        attrs = self._base(s)
        attrs.update({
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": kind,
            "gen_ai.agent.id": a.id,
            "gen_ai.usage.input_tokens": int(a.usage[U_INPUT]),
            "gen_ai.usage.output_tokens": int(a.usage[U_OUTPUT]),
            "gen_ai.usage.cache_read.input_tokens": int(a.usage[U_CACHE_READ]),
            "gen_ai.usage.cache_creation.input_tokens": int(a.usage[U_CACHE_WRITE]),
            "ccotel.cost_usd": a.usage[U_COST],
            "ccotel.requests": int(a.usage[U_REQUESTS]),
        })  # fmt: skip
        if a.tool:
            attrs["gen_ai.tool.call.id"] = a.tool
        parent = ids.tool_id(s.id, a.tool) if a.tool else (a.parent or ids.root_id(s.id))
        start = a.work if a.id.startswith("acompact") and a.work is not None else a.first
        self._emit(
            s,
            ids.agent_id(s.id, a.id),
            parent,
            f"invoke_agent {kind}",
            INTERNAL,
            start,
            a.last or a.first,
            attrs,
        )

    # --- passes and closing -------------------------------------------------------

    def settle(self, sid: str) -> None:
        """After a pass over a session's files: subagents whose call has its result."""
        s = self.sessions.get(sid)
        if s is None:
            return
        for a in s.agents.values():
            if a.linked and not a.done:
                self._finish_agent(s, a)

    def close(self, sid: str) -> None:
        """The session is idle or its run finished: end everything, emit turn and root."""
        s = self.sessions.get(sid)
        if s is None or s.closed:
            return
        self.touched.add(sid)
        for key, th in s.threads.items():
            self._finish_resp(s, th, key)
        end = s.last or s.first or 0.0
        for t in list(s.tools.values()):
            attrs = self._tool_attrs(s, t)
            attrs["ccotel.tool.interrupted"] = True
            ev = [
                (
                    "interrupted",
                    ns(max(end, t.start)),
                    {"reason": "no tool_result before the session closed"},
                )
            ]
            self._emit_tool(s, t, max(end, t.start), attrs, None, ev)
            s.tool_calls += 1
        s.tools = {}
        for a in s.agents.values():
            self._finish_agent(s, a, force=True)
        self._end_turn(s)
        if not s.root_done and s.first is not None:
            self._emit_root(s)
        s.closed = True
        s.finished = False
        s.trim()

    def _emit_root(self, s: Session) -> None:
        attrs = self._base(s)
        u = s.usage
        attrs.update({
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "claude-code",
            "gen_ai.usage.input_tokens": int(u[U_INPUT]),
            "gen_ai.usage.output_tokens": int(u[U_OUTPUT]),
            "gen_ai.usage.cache_read.input_tokens": int(u[U_CACHE_READ]),
            "gen_ai.usage.cache_creation.input_tokens": int(u[U_CACHE_WRITE]),
            "ccotel.cost_usd": u[U_COST],
            "ccotel.requests": int(u[U_REQUESTS]),
            "ccotel.tool_calls": s.tool_calls,
            "ccotel.tool_errors": s.tool_errors,
            "ccotel.turns": s.turn_no,
            "session.id": s.id,
        })  # fmt: skip
        if s.cwd:
            attrs["ccotel.project"] = self.o.project(s.cwd)
            if self.o.include_cwd:
                attrs["ccotel.cwd"] = s.cwd
        if s.branch:
            attrs["vcs.ref.head.name"] = s.branch
        if s.version:
            attrs["gen_ai.agent.version"] = s.version
        assert s.first is not None
        self._emit(
            s,
            ids.root_id(s.id),
            0,
            "invoke_agent claude-code",
            INTERNAL,
            s.first,
            s.last or s.first,
            attrs,
        )
        s.root_done = True

    def due(self, now: float, idle: float) -> list[str]:
        """Open sessions to close: idle for ``idle`` seconds (and each response still being
        read RESPONSE_GRACE old), or their -p run finished."""
        return [sid for sid, s in self.sessions.items() if _due_at(s, idle) <= now]

    def next_due(self, idle: float) -> float | None:
        """When (on the clock ``due`` is given) the first open session becomes due; None when
        no session is open: until a line arrives, nothing is."""
        return min((_due_at(s, idle) for s in self.sessions.values() if not s.closed), default=None)

    def take(self) -> list[Span]:
        out, self.out = self.out, []
        return out


def _due_at(s: Session, idle: float) -> float:
    """The time ``due`` closes an open session from: idle for ``idle`` seconds with every
    response being read RESPONSE_GRACE old, or (a -p run that finished) FINISH_GRACE after its
    last line; never for a closed one."""
    if s.closed:
        return math.inf
    idle_at = -math.inf if s.last is None or idle <= 0 else s.last + idle
    settled_at = max(
        (th.resp.last + RESPONSE_GRACE for th in s.threads.values() if th.resp is not None),
        default=-math.inf,
    )
    at = max(idle_at, settled_at)
    if s.finished and s.sdk and s.main_last == "assistant" and not s.tools:
        at = min(at, -math.inf if s.last is None else s.last + min(idle, FINISH_GRACE))
    return at
