"""The trace shipper's side of the state: every read and write of the ``trace_*`` tables.

The shipper runs in its own thread with its own connection (this class). It reads the
metrics' ``files`` cursors and kept ``responses``, and writes only ``trace_files`` (how far
spans are delivered), ``trace_sessions`` (what a restart needs to continue a trace),
``trace_chats`` (what each response's chat span and corrections carried) and ``trace_meta`` (its counters and
watermark), one transaction per confirmed batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ccotel.batch import Response
from ccotel.state.schema import CURSOR_UPSERT
from ccotel.state.store import Transaction, response_row

# Files the metrics have read further than the traces (or that were replaced since).
CANDIDATES = """SELECT f.path, f.dev, f.ino, f.offset, t.dev, t.ino, t.offset, t.line_no, t.marker
    FROM files f LEFT JOIN trace_files t ON t.path = f.path
    WHERE t.path IS NULL OR t.offset != f.offset OR t.ino != f.ino OR t.dev != f.dev"""
FORGET_GONE = "DELETE FROM trace_files WHERE path NOT IN (SELECT path FROM files)"
FILE_UPSERT = CURSOR_UPSERT.format(table="trace_files")
SESSIONS_OPEN = "SELECT id, blob FROM trace_sessions WHERE closed=0"
SESSION_GET = "SELECT blob FROM trace_sessions WHERE id=?"
SESSION_PUT = "INSERT OR REPLACE INTO trace_sessions(id, closed, last, blob) VALUES(?,?,?,?)"
CHAT_SENT = """SELECT span, input, output, cache_read, cw5m, cw1h, web_search, cost, corrections
    FROM trace_chats WHERE key=?"""
CHAT_PUT = """INSERT OR REPLACE INTO trace_chats(key, span, input, output, cache_read, cw5m, cw1h,
    web_search, cost, corrections) VALUES(?,?,?,?,?,?,?,?,?,?)"""
META_GET = "SELECT value FROM trace_meta WHERE key=?"
META_PUT = "INSERT OR REPLACE INTO trace_meta(key, value) VALUES(?,?)"

# (path, dev, ino, offset read by the metrics, and the trace cursor's dev, ino, offset,
# line_no, marker: None when the file has none)
Candidate = tuple[str, int, int, int, int | None, int | None, int | None, int | None, bytes | None]


class TraceState:
    def __init__(self, db_path: Path):
        self.db = sqlite3.connect(
            db_path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.execute("PRAGMA busy_timeout=30000")
        with Transaction(self.db):  # transcripts forgotten by the metrics
            self.db.execute(FORGET_GONE)

    def close(self) -> None:
        self.db.close()

    # --- reads ----------------------------------------------------------------------

    def candidates(self) -> list[Candidate]:
        return self.db.execute(CANDIDATES).fetchall()

    def open_sessions(self) -> Iterator[tuple[str, bytes]]:
        yield from self.db.execute(SESSIONS_OPEN)

    def session(self, sid: str) -> bytes | None:
        row = self.db.execute(SESSION_GET, (sid,)).fetchone()
        return row[0] if row else None

    def chat_sent(self, key: int) -> tuple[Any, ...] | None:
        """(span, input, output, cache_read, cw5m, cw1h, web_search, cost, corrections) of a
        response's chat span and its corrections, as sent; span NULL: sent by a ccotel that
        kept the key only. None: not sent."""
        row: tuple[Any, ...] | None = self.db.execute(CHAT_SENT, (key,)).fetchone()
        return row

    def response(self, key: int) -> Response | None:
        return response_row(self.db, key)

    def meta(self, key: str) -> str | None:
        row = self.db.execute(META_GET, (key,)).fetchone()
        return row[0] if row else None

    # --- writes ---------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        """One value; outside ``commit`` it is a transaction of its own."""
        self.db.execute(META_PUT, (key, value))

    def commit(
        self,
        files: Iterable[tuple[str, int, int, int, int, bytes]],
        sessions: Iterable[tuple[str, int, float | None, bytes]],
        chats: Iterable[tuple[Any, ...]],
        meta: Mapping[str, str],
    ) -> None:
        """What one confirmed batch moved: trace cursors (path, dev, ino, offset, line_no,
        marker), sessions (id, closed, last, blob), chat spans sent (rows of CHAT_PUT), and
        counters."""
        with Transaction(self.db):
            self.db.executemany(FILE_UPSERT, files)
            self.db.executemany(SESSION_PUT, sessions)
            self.db.executemany(CHAT_PUT, chats)
            for key, value in meta.items():
                self.set_meta(key, value)
