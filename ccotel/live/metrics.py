"""The board in Prometheus: sessions per live state, and how long sessions waited for you."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ccotel.live.board import WAIT_BUCKETS, LiveBoard


class LiveCollector:
    def __init__(self, board: LiveBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "ccotel_sessions_by_state",
            "Claude Code sessions with a line in the live window, by live state "
            "(working, tool, waiting, idle, ended)",
            labels=["state"],
        )
        for state, n in self.board.counts().items():
            g.add_metric([state], n)
        yield g
        counts, total = self.board.histogram()
        cum, buckets = 0, []
        for le, n in zip((*map(floatToGoString, WAIT_BUCKETS), "+Inf"), counts, strict=True):
            cum += n
            buckets.append((le, cum))
        yield HistogramMetricFamily(
            "ccotel_waiting_sessions_seconds",
            "How long sessions waited for their user, observed when each wait ended (an "
            "answer, the exit, or the session leaving the live window)",
            buckets=buckets,
            sum_value=total,
        )
