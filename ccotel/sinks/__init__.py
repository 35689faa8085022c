"""Where the totals are shown: the Prometheus exposition (``TotalsCollector``)."""

from ccotel.sinks.prometheus import TotalsCollector

__all__ = ["TotalsCollector"]
