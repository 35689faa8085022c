"""What the spend bought, counted once: lines written, commits, pull requests, turn time.

The digest hands over ``outcomes.OutcomeEntry`` items; the accountant passes each chunk's on to
the ``OutcomeLedger``, which keeps what is new in the batch and writes it with the batch's one
commit (``Store.commit`` calls :func:`write`). Like responses, an outcome is known by a key
(the hash of its tool_use id, of its line's uuid for a turn): a resumed session's copy of an
edit, a commit read again after a failed commit or a restart, counts nothing.

A call that may commit or open a pull request is kept (``outcome_call``) until its result
arrives, however much later, in another batch or after a restart: a successful result counts
(with the hash or URL when the digest still knew the call), a failed one drops it.

``OutcomeTotals`` are what the sinks show, per working directory, restored from the state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ccotel.outcomes import CALL, CALL_COMMIT, CALL_PR, COMMIT, LINES, PR, RESULT, TURN
from ccotel.state import schema as sql

if TYPE_CHECKING:
    from ccotel.digest import Digest
    from ccotel.state.seen import Seen
    from ccotel.state.store import Store

SEEN_KIND = 0x3C6EF372FE94F82B  # outcome keys in the accountant's Seen filter
_PR_SALT = 0x5BD1E9955BD1E995  # a call's pull request row beside its commit row
_U64 = (1 << 64) - 1
HISTORY_META = "outcomes_history"  # in meta until read_history has read the old transcripts
MARKS_META = "marks_history"  # likewise, for the block marks of lines read before they existed
# Per working directory: lines added, lines removed, commits, pull requests, turn milliseconds.
ADDED, REMOVED, COMMITS, PRS, TURN_MS = range(5)
FIELDS = 5
# outcome: (key, kind, session, cwd, ts, added, removed, ref)
OutcomeRow = tuple[int, int, str, str, float, int, int, str | None]
# outcome_call: (key, kinds, session, cwd, ts)
CallRow = tuple[int, int, str, str, float]


def row_key(kind: int, key: int) -> int:
    """The state's key of an outcome: a call that commits and opens a pull request has two."""
    if kind != PR:
        return key
    k = (key ^ _PR_SALT) & _U64
    return k - (1 << 64) if k >> 63 else k


def _add(into: dict[str, list[float]], cwd: str, kind: int, added: int, removed: int) -> None:
    row = into.setdefault(cwd, [0] * FIELDS)
    if kind == LINES:
        row[ADDED] += added
        row[REMOVED] += removed
    elif kind == COMMIT:
        row[COMMITS] += 1
    elif kind == PR:
        row[PRS] += 1
    elif kind == TURN:
        row[TURN_MS] += added


@dataclass
class OutcomeTotals:
    by_cwd: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, db: sqlite3.Connection) -> OutcomeTotals:
        t = cls()
        for cwd, kind, n, added, removed in db.execute(sql.OUTCOME_BY_CWD):
            row = t.by_cwd.setdefault(cwd, [0] * FIELDS)
            if kind == LINES:
                row[ADDED] += added or 0
                row[REMOVED] += removed or 0
            elif kind == COMMIT:
                row[COMMITS] += n
            elif kind == PR:
                row[PRS] += n
            elif kind == TURN:
                row[TURN_MS] += added or 0
        return t

    def merge(self, delta: dict[str, list[float]]) -> None:
        with self.lock:
            for cwd, values in delta.items():
                row = self.by_cwd.setdefault(cwd, [0] * FIELDS)
                for i, v in enumerate(values):
                    row[i] += v

    def snapshot(self) -> dict[str, list[float]]:
        with self.lock:
            return {k: list(v) for k, v in self.by_cwd.items()}

    def total(self) -> list[float]:
        out = [0.0] * FIELDS
        with self.lock:
            for v in self.by_cwd.values():
                for i, x in enumerate(v):
                    out[i] += x
        return out


@dataclass
class Writes:
    """What a batch adds to the state: new outcome rows, calls now waiting, calls resolved."""

    rows: dict[int, OutcomeRow] = field(default_factory=dict)
    calls: dict[int, CallRow] = field(default_factory=dict)
    resolved: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.rows or self.calls or self.resolved)


def write(db: sqlite3.Connection, w: Writes) -> None:
    """Inside Store.commit's transaction."""
    db.executemany(sql.OUTCOME_PUT, w.rows.values())
    db.executemany(sql.OUTCOME_CALL_PUT, w.calls.values())
    db.executemany(sql.OUTCOME_CALL_DELETE, [(k,) for k in w.resolved])


class OutcomeLedger:
    def __init__(self, store: Store, seen: Seen) -> None:
        self.store, self.seen = store, seen
        db = store.db
        seen.update((k for (k,) in db.execute(sql.OUTCOME_KEYS)), SEEN_KIND)
        # calls waiting for their result: few (a call's result follows it within minutes)
        self.waiting: dict[int, CallRow] = {r[0]: r for r in db.execute(sql.OUTCOME_CALLS)}
        self.totals = OutcomeTotals.load(db)
        self.begin()

    def begin(self) -> None:
        """A new batch (after a commit, or instead of one that failed: forget its outcomes)."""
        self.w = Writes()
        self.delta: dict[str, list[float]] = {}

    def writes(self) -> Writes | None:
        return self.w if self.w else None

    def committed(self) -> None:
        w = self.w
        self.seen.update(w.rows, SEEN_KIND)
        for k in w.resolved:
            self.waiting.pop(k, None)
        self.waiting.update(w.calls)
        self.totals.merge(self.delta)

    def _counted(self, rk: int) -> bool:
        if rk in self.w.rows:
            return True
        return self.seen.has(rk, SEEN_KIND) and bool(self.store.query(sql.OUTCOME_GET, (rk,)))

    def _count(
        self,
        kind: int,
        key: int,
        session: str,
        cwd: str,
        ts: float,
        added: int = 0,
        removed: int = 0,
        ref: str | None = None,
    ) -> None:
        rk = row_key(kind, key)
        if self._counted(rk):
            return
        self.w.rows[rk] = (rk, kind, session, cwd, ts, added, removed, ref)
        _add(self.delta, cwd, kind, added, removed)

    def _waiting(self, key: int) -> CallRow | None:
        if key in self.w.resolved:
            return None
        return self.w.calls.get(key) or self.waiting.get(key)

    def _resolve(self, key: int) -> None:
        self.w.calls.pop(key, None)
        if key in self.waiting:
            self.w.resolved.add(key)

    def apply(self, d: Digest, cwd_of: Callable[[str], str]) -> None:
        """One digested chunk: its outcomes, then the results of calls still waiting."""
        for e in d.outcomes:
            cwd = e.cwd or cwd_of(e.session)
            if e.kind == CALL:
                done = (e.added & CALL_COMMIT and self._counted(row_key(COMMIT, e.key))) or (
                    e.added & CALL_PR and self._counted(row_key(PR, e.key))
                )
                if not done and self._waiting(e.key) is None:
                    self.w.calls[e.key] = (e.key, e.added, e.session, cwd, e.ts)
                continue
            if e.kind in (COMMIT, PR, RESULT):
                call = self._waiting(e.key) if e.kind == RESULT and e.added else None
                self._resolve(e.key)
                if call is not None:  # a call read elsewhere: what its output showed
                    for bit, kind in ((CALL_COMMIT, COMMIT), (CALL_PR, PR)):
                        if call[1] & e.added & bit:
                            self._count(kind, e.key, call[2], call[3], e.ts, ref=e.ref)
                if e.kind == RESULT:
                    continue
            self._count(e.kind, e.key, e.session, cwd, e.ts, e.added, e.removed, e.ref)
        if not (self.waiting or self.w.calls):
            return
        for t in d.tools:
            if t.end is None:
                continue
            call = self._waiting(t.key)
            if call is None:
                continue
            self._resolve(t.key)
            if t.is_error:
                continue  # a failed commit or pull request counts nothing
            _, kinds, session, cwd, _ = call
            for bit, kind in ((CALL_COMMIT, COMMIT), (CALL_PR, PR)):
                if kinds & bit:
                    self._count(kind, t.key, session, cwd, t.end)
