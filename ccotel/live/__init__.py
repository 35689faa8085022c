"""The live board (issue 15): which sessions work, run a tool, wait for you, sit idle or
ended; their subagents, context use, cost and cost per hour. Derived as the daemon reads
lines (``board``, from ``state``), served as ``/api/live`` and as server-sent events
(``stream``), in Prometheus (``metrics``) and in the terminal (``ccotel live``, ``term``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ccotel.lazy import loader
from ccotel.live.board import Costs, LiveBoard
from ccotel.live.stream import Stream

if TYPE_CHECKING:
    from ccotel.config import Config
    from ccotel.live.metrics import LiveCollector
    from ccotel.live.term import Feed, run
    from ccotel.pipeline import Ingest
    from ccotel.statusline import Reports

__all__ = ["Costs", "Feed", "LiveBoard", "LiveCollector", "Stream", "board_for", "run"]
__getattr__ = loader(__name__, {"LiveCollector": "metrics", "Feed": "term", "run": "term"})


def board_for(cfg: Config, ingest: Ingest, clock: Callable[[], float],
              project: Callable[[str], str], statusline: Callable[[], Reports | None]) -> LiveBoard:  # fmt: skip
    """The daemon's board, over its ingest's prices and state."""
    from ccotel.state import queries as Q

    db = ingest.store.db

    def committed(ids: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for sid, _model, _cwd, u in Q.usage_by_session(db, ids):
            out[sid] = out.get(sid, 0.0) + u.cost
        return out

    def recent(since: float) -> list[tuple[str, float, float]]:
        return Q.spend_since(db, since)

    return LiveBoard(
        clock,
        window=cfg.live_window,
        project=project,
        price=ingest.prices.cost,
        costs=Costs(committed, recent),
        statusline=statusline,
    )
