"""Where the totals are shown: the Prometheus exposition (``TotalsCollector``), what the
spend bought (``OutcomeCollector``) and Claude Code's own metric names (``NativeCollector``)."""

from ccotel.sinks.native import NativeCollector
from ccotel.sinks.outcomes import OutcomeCollector
from ccotel.sinks.prometheus import TotalsCollector

__all__ = ["NativeCollector", "OutcomeCollector", "TotalsCollector"]
