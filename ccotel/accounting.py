"""De-duplication, pricing, sessions and tool-call pairing.

Every API response is counted once across all files, the way ccusage 20 does:
keyed on (message.id, requestId), the copy with the largest token total kept,
a main-thread copy preferred over a sidechain replay. A later, better copy
moves the totals by its difference only.
"""

from __future__ import annotations

import contextlib
import sqlite3
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from ccotel.batch import Batch, Interval, Response, SessionInfo, ToolAgg, ToolCall
from ccotel.digest import Digest, UsageEntry, rank
from ccotel.keys import h64
from ccotel.log import get_logger
from ccotel.pricing import PriceTable
from ccotel.records import Usage
from ccotel.state import OutcomeLedger, Store, seen

log = get_logger()

TOOL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_CACHE = 20_000
# A state that held nothing at start (a first backfill): what it holds is what this process
# committed, kept whole in memory, so nothing is looked up (no seen filter, no SELECT) until
# this many responses and tool calls; then the seen filter takes over (Accountant.warm).
COLD_KEYS = 100_000
K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class FileContext:
    """What a file tells about its lines beyond the lines themselves."""

    path: str
    session: str  # from the file name (subagent files: their parent folder)
    cwd: str | None = None  # as of the last line read
    committed_cwd: str | None = None  # as of the last line committed


def _remember(cache: OrderedDict[K, V], key: K, row: V) -> None:
    cache[key] = row
    cache.move_to_end(key)
    if len(cache) > _CACHE:
        cache.popitem(last=False)


def _trim(cache: OrderedDict[Any, Any]) -> None:
    while len(cache) > _CACHE:
        cache.popitem(last=False)


def _remember_all(cache: OrderedDict[K, V], rows: dict[K, V]) -> None:
    """The newest rows, keeping at most _CACHE."""
    for key, row in rows.items():
        cache[key] = row
        cache.move_to_end(key)
    _trim(cache)


def _place_key(sid: str, cwd: str) -> int:
    return h64(f"{sid}\x00{cwd}")


def _usage_key(r: Response) -> tuple[str, int, str, str]:
    return (r.session or "", int(r.ts // 3600), r.model or "unknown", r.cwd or "")


def _better(new: Usage, old: Response) -> bool:
    return rank(new) > (not old.sidechain, old.tokens, bool(old.has_speed))


class Accountant:
    def __init__(self, store: Store, prices: PriceTable, clock: Callable[[], float]):
        self.store, self.prices, self.clock = store, prices, clock
        self.seen = seen.Seen()  # what the state holds (a "maybe" is looked up)
        keys = list(store.response_keys())
        self.seen.update(k for k, _ in keys)
        self.seen.update((m for _, m in keys if m is not None), seen.MESSAGE)
        del keys
        self.seen.update(store.tool_keys(), seen.TOOL)
        self.seen.update((h64(s) for s in store.session_ids()), seen.SESSION)
        self.seen.update((_place_key(s, c) for s, c in store.places()), seen.PLACE)
        self.tool_agg = store.tool_agg()
        self.outcomes = OutcomeLedger(store, self.seen)  # what the spend bought
        self._rows: OrderedDict[int, Response] = OrderedDict()
        self._tools: OrderedDict[int, ToolCall] = OrderedDict()
        self._cwds: OrderedDict[str, str] = OrderedDict()  # session -> its first cwd
        self._places: OrderedDict[tuple[str, str], bool] = OrderedDict()  # known (session, cwd)
        self._warned: set[str] = set()
        # Cold: the state held nothing at start, and the caches above (and the two below)
        # hold every row committed since: whatever is not in them is not in the state.
        self.cold = self.seen.keys == 0
        self._aliases: dict[int, int] = {}  # cold: committed alias -> its response's key
        # cold: committed message key -> its response's key (a list for the few with several)
        self._mkeys: dict[int, int | list[int]] = {}
        self.begin()

    # --- batch lifecycle -----------------------------------------------------

    def begin(self) -> Batch:
        """A new, empty batch (after a commit, or instead of one that failed)."""
        self.batch = Batch()
        self._batch_mkeys: dict[int, list[int]] = {}
        self._prior: dict[int, Response | None] = {}  # key -> its committed row (None: new)
        self.new_sessions: dict[str, str] = {}  # session -> cwd, not in the state before
        self.new_places: set[tuple[str, str]] = set()  # (session, cwd), not in the state before
        self.outcomes.begin()
        return self.batch

    def finish(self) -> Batch:
        """Turn the batch's kept responses into usage and spend deltas, once per batch."""
        b = self.batch
        for key, row in b.responses.items():
            self._add(row, +1)
            prior = self._prior.get(key)
            if prior is not None:
                self._add(prior, -1)
        b.outcomes = self.outcomes.writes()
        return b

    def committed(self) -> None:
        """The batch is durable: remember what it holds (never before: a failed commit
        must leave nothing behind that says these lines were counted)."""
        b = self.batch
        if self.cold:
            self._keep_all(b)
        else:
            self.seen.update(b.responses)
            self.seen.update(b.aliases)
            self.seen.update((r.mkey for r in b.responses.values()), seen.MESSAGE)
            self.seen.update(b.tools, seen.TOOL)
            self.seen.update((h64(sid) for sid in self.new_sessions), seen.SESSION)
            self.seen.update((_place_key(s, c) for s, c in self.new_places), seen.PLACE)
            _remember_all(self._rows, b.responses)
            _remember_all(self._tools, b.tools)
            for sid in self.new_sessions:
                _remember(self._cwds, sid, b.sessions[sid].cwd or "")
            for place in self.new_places:
                _remember(self._places, place, True)
        self.tool_agg.update(b.tool_agg)
        self.outcomes.committed()

    def _keep_all(self, b: Batch) -> None:
        """Cold: keep every committed row (what the seen filter and the lookups would find)."""
        self._rows.update(b.responses)
        self._tools.update(b.tools)
        self._aliases.update(b.aliases)
        mkeys = self._mkeys
        for key, prior in self._prior.items():
            if prior is None:  # a new response (a replaced one keeps its key and message key)
                mkey = b.responses[key].mkey
                had = mkeys.get(mkey)
                if had is None:
                    mkeys[mkey] = key
                elif isinstance(had, int):
                    mkeys[mkey] = [had, key]
                else:
                    had.append(key)
        for sid in self.new_sessions:
            self._cwds[sid] = b.sessions[sid].cwd or ""
        for place in self.new_places:
            self._places[place] = True
        if len(self._rows) + len(self._tools) > COLD_KEYS:
            self.warm()

    def warm(self) -> None:
        """Leave the cold mode: the seen filter learns every committed key (all in memory),
        the caches shrink to their size."""
        if not self.cold:
            return
        self.seen.update(self._rows)
        self.seen.update(self._aliases)
        self.seen.update(self._mkeys, seen.MESSAGE)
        self.seen.update(self._tools, seen.TOOL)
        self.seen.update((h64(sid) for sid in self._cwds), seen.SESSION)
        self.seen.update((_place_key(s, c) for s, c in self._places), seen.PLACE)
        for cache in (self._rows, self._tools, self._cwds, self._places):
            _trim(cache)
        self._aliases, self._mkeys = {}, {}
        self.cold = False
        with contextlib.suppress(sqlite3.Error):  # lookups by message key from now on
            self.store.restore_indexes()

    def spend_changes(self) -> Iterator[tuple[str | None, float, float]]:
        """(session, response time, USD) of the batch's kept responses, and the same negated
        for the copies they replace: what each session's cost moves by (the live board)."""
        for key, row in self.batch.responses.items():
            yield row.session, row.ts, row.cost
            prior = self._prior.get(key)
            if prior is not None:
                yield prior.session, prior.ts, -prior.cost

    # --- records -------------------------------------------------------------

    def apply(self, d: Digest, ctx: FileContext) -> None:
        """Account one digested chunk of a file."""
        b = self.batch
        b.lines += d.lines
        if d.errors:
            b.count("parse_errors", len(d.errors))
        if d.last_ts is not None and (b.last_event_ts is None or d.last_ts > b.last_event_ts):
            b.last_event_ts = d.last_ts
        if d.cwd:
            ctx.cwd = d.cwd
        for sid, info in d.sessions.items():
            self._touch_session(sid, info)
        for sid, cwd, first, last in d.places:
            self._touch_place(sid, cwd, first, last)
        for e in d.usage:
            self._usage(e, e.cwd or self._session_cwd(e.session))
        for key, ts in d.marks.items():
            b.marks[key] = min(ts, b.marks.get(key, ts))
        for t in d.tools:
            if t.name is not None and t.start is not None:  # a call (with its result or not)
                self._tool_use(
                    t.key, t.name, t.start, t.session, t.cwd or self._session_cwd(t.session)
                )
            if t.end is not None:
                self._tool_result(t.key, t.is_error, t.end)
        self.outcomes.apply(d, self._session_cwd)

    def _session_cwd(self, sid: str) -> str:
        """A session's first cwd: for a line of a file that has not named its own yet."""
        cur = self.batch.sessions.get(sid)
        cwd = cur.cwd if cur else None
        if not cwd:
            cwd = self._cwds.get(sid)
            if cwd is None and not self.cold and self.seen.has(h64(sid), seen.SESSION):
                cwd = self.store.session_cwd(sid)
                if cwd is not None:
                    _remember(self._cwds, sid, cwd)
        return cwd or ""

    def _session_known(self, sid: str) -> bool:
        if sid in self._cwds:
            return True
        if self.cold:
            return False
        cwd = self.store.session_cwd(sid) if self.seen.has(h64(sid), seen.SESSION) else None
        if cwd is not None:
            _remember(self._cwds, sid, cwd)
        return cwd is not None

    def _touch_session(self, sid: str, s: SessionInfo) -> None:
        b = self.batch
        cur = b.sessions.get(sid)
        if cur is None:
            b.sessions[sid] = SessionInfo(s.cwd or None, s.branch, s.version, s.first, s.last)
            if not self._session_known(sid):
                self.new_sessions[sid] = s.cwd or ""
            return
        cur.update(s.cwd, s.branch, s.version, s.first, s.last)

    def _touch_place(self, sid: str, cwd: str, first: float, last: float) -> None:
        """Activity of a session in a working directory: the session counts in that project."""
        b = self.batch
        cur = b.places.get((sid, cwd))
        if cur is not None:
            cur.first, cur.last = min(cur.first, first), max(cur.last, last)
            return
        b.places[(sid, cwd)] = Interval(first, last)
        if (sid, cwd) in self._places:
            return
        if (
            not self.cold
            and self.seen.has(_place_key(sid, cwd), seen.PLACE)
            and self.store.has_place(sid, cwd)
        ):
            _remember(self._places, (sid, cwd), True)
        else:
            self.new_places.add((sid, cwd))

    # --- usage ---------------------------------------------------------------

    def _row(self, key: int) -> Response | None:
        b = self.batch
        row = b.responses.get(key)
        if row is not None:
            return row
        target = b.aliases.get(key)
        if target is not None:
            return self._row(target)
        row = self._rows.get(key)
        if row is None:
            if self.cold:
                target = self._aliases.get(key)
                row = None if target is None else self._rows[target]
            elif self.seen.has(key):
                row = self.store.response(key)
        if row is not None and row.key != key:  # found by an alias: the batch may have it better
            return b.responses.get(row.key, row)
        return row

    def _sidechain_match(self, mkey: int, candidate_side: bool) -> Response | None:
        """A /btw sidechain replay of a parent message under a new request id."""
        rows = [self.batch.responses[k] for k in self._batch_mkeys.get(mkey, ())]
        committed: list[Response] = []
        if self.cold:
            keys = self._mkeys.get(mkey)
            if isinstance(keys, int):
                committed = [self._rows[keys]]
            elif keys:  # in the order the state's index returns them
                committed = [self._rows[k] for k in sorted(keys)]
        elif self.seen.has(mkey, seen.MESSAGE):
            committed = self.store.responses_by_mkey(mkey)
        if committed:
            have = {r.key for r in rows}
            rows += [self.batch.responses.get(r.key, r) for r in committed if r.key not in have]
        for r in rows:
            if candidate_side or r.sidechain:
                return r
        return None

    def _usage(self, e: UsageEntry, cwd: str) -> None:
        b = self.batch
        u, ts, session, key, mkey = e.usage, e.ts, e.session, e.key, e.mkey
        old = self._row(key)
        if old is None and u.message_id is not None:
            old = self._sidechain_match(mkey, u.sidechain)
            if old is not None:
                b.aliases[key] = old.key
        if old is not None and not _better(u, old):
            return  # most lines: another copy of a response already counted
        cost = self.prices.cost(u)
        if cost is None and u.total and u.model and u.model not in self._warned:
            self._warned.add(u.model)
            log.warning("unpriced model: its tokens count, its cost is 0", model=u.model)
        if old is not None:  # the kept entry keeps its identity
            key, mkey = old.key, old.mkey
        new = Response(
            key, mkey, session, cwd, u.model, ts, u.input, u.output, u.cache_read,
            u.cache_write_5m, u.cache_write_1h, u.web_search, int(u.sidechain), int(u.has_speed),
            cost or 0.0, int(cost is not None),
        )  # fmt: skip
        b.responses[key] = new
        if old is None:
            self._prior.setdefault(key, None)
            self._batch_mkeys.setdefault(mkey, []).append(key)
        else:
            self._prior.setdefault(key, old)  # first touch in this batch: the committed row

    def _add(self, r: Response, sign: int) -> None:
        b = self.batch
        b.add_usage(_usage_key(r), r, sign)
        minute = int(r.ts // 60)
        b.spend[minute] = b.spend.get(minute, 0.0) + sign * r.cost

    # --- tools ---------------------------------------------------------------

    def _tool(self, key: int) -> ToolCall | None:
        row = self.batch.tools.get(key) or self._tools.get(key)
        if row is None and not self.cold and self.seen.has(key, seen.TOOL):
            row = self.store.tool(key)
        return row

    def _tool_use(self, key: int, name: str, ts: float, session: str, cwd: str) -> None:
        if self._tool(key) is None:
            self.batch.tools[key] = ToolCall(key, name, session, cwd, ts)

    def _tool_result(self, key: int, is_error: bool, ts: float) -> None:
        call = self._tool(key)
        if call is None or call.status is not None:
            return  # a result without its call, or a copy of one already counted
        status = "error" if is_error else "ok"
        self.batch.tools[key] = msgspec.structs.replace(call, end=ts, status=status)
        agg_key = (call.name, call.cwd or "", status)
        agg = self.batch.tool_agg.get(agg_key) or self.tool_agg.get(agg_key)
        if agg is None:
            agg = ToolAgg(0, 0.0, [0] * (len(TOOL_BUCKETS) + 1))
        dur = max(0.0, ts - call.start) if call.start is not None else 0.0
        buckets = list(agg.buckets)
        buckets[bisect_left(TOOL_BUCKETS, dur)] += 1
        self.batch.tool_agg[agg_key] = ToolAgg(agg.count + 1, agg.dur_sum + dur, buckets)
