"""The state: one SQLite database (WAL) per state dir, and every SQL statement ccotel runs.

Which module owns what (no SQL lives outside this package):

- ``schema``: every table, index and view, created and changed only by ``MIGRATIONS``
  (versioned together with ``PRAGMA user_version``), and the statements ``Store`` runs;
- ``store``: ``Store``, the one writer of the metrics' tables (``files``, ``names``,
  ``response``, ``response_alias``, ``usage``, ``sessions``, ``session_cwds``,
  ``tool_call``, ``tool_agg``, ``spend_minutes``, ``counters``), one transaction
  per batch, and the lock that makes it the only one;
- ``traces``: ``TraceState``, the trace shipper's own connection: the one writer of
  ``trace_files``, ``trace_sessions``, ``trace_chats`` and ``trace_meta`` (it reads
  ``files`` and ``responses``);
- ``queries``: the read-only queries of the page and ``ccotel report``;
- ``limits``: ``plan_history`` (the plan's use as the status line reported it) and the
  billing blocks' entries (responses and ``block_marks``), read and written by
  ``ccotel.statusline`` and ``ccotel.blocks``;
- ``rebuild``: ``backfill --rebuild``, which reads an old state beside the new one and
  carries its ``trace_*`` rows over;
- ``ledger``: what the spend bought (``outcome``, ``outcome_call``): ``OutcomeLedger`` writes
  in ``Store``'s transaction, ``OutcomeTotals`` keeps the sums;
- ``seen``: the in-memory filter of the keys the state holds (no SQL);
- ``running``: ``daemon.json``, where the running daemon serves (no SQL).

Other packages import from here (``from ccotel.state import Store``), not from the modules;
importing it loads only ``readonly`` (the rest on first use: `ccotel report` stays light).
"""

from typing import TYPE_CHECKING

from ccotel.lazy import loader
from ccotel.state.readonly import (
    DB_NAME,
    StateError,
    StateLocked,
    connect_readonly,
    db_error_message,
)

if TYPE_CHECKING:
    from ccotel.state import ledger, limits, queries, seen
    from ccotel.state.ledger import (
        ADDED,
        COMMITS,
        FIELDS,
        PRS,
        REMOVED,
        TURN_MS,
        OutcomeLedger,
        OutcomeTotals,
    )
    from ccotel.state.rebuild import rebuild_state
    from ccotel.state.running import (
        RUNNING_NAME,
        Running,
        clear_running,
        read_running,
        write_running,
    )
    from ccotel.state.store import StateLock, Store, open_lock, open_readonly
    from ccotel.state.traces import TraceState

__all__ = [
    "ADDED",
    "COMMITS",
    "DB_NAME",
    "FIELDS",
    "PRS",
    "REMOVED",
    "RUNNING_NAME",
    "TURN_MS",
    "OutcomeLedger",
    "OutcomeTotals",
    "Running",
    "StateError",
    "StateLock",
    "StateLocked",
    "Store",
    "TraceState",
    "clear_running",
    "connect_readonly",
    "db_error_message",
    "ledger",
    "limits",
    "open_lock",
    "open_readonly",
    "queries",
    "read_running",
    "rebuild_state",
    "seen",
    "write_running",
]

# Each loads its module on first use: `ccotel report` needs only `readonly` and `queries`.
__getattr__ = loader(
    __name__,
    {
        **{m: m for m in ("ledger", "limits", "queries", "seen")},
        "rebuild_state": "rebuild",  # logs: loads structlog
        "TraceState": "traces",
        **dict.fromkeys(("StateLock", "Store", "open_lock", "open_readonly"), "store"),
        **dict.fromkeys(
            ("RUNNING_NAME", "Running", "clear_running", "read_running", "write_running"), "running"
        ),
        **dict.fromkeys(
            (
                "ADDED",
                "COMMITS",
                "FIELDS",
                "PRS",
                "REMOVED",
                "TURN_MS",
                "OutcomeLedger",
                "OutcomeTotals",
            ),
            "ledger",
        ),
    },
)
