"""OpenTelemetry traces from transcripts: one trace per session (docs/traces.md).

The public face (other packages import these names from here, not from the modules):

- ``Exporters``, ``backfill_traces``, ``options`` (``service``): the daemon's trace thread
  and OTLP metrics push, the history's export, trace options from the config;
- ``Builder``, ``Options``, ``FileInfo`` (``builder``) and ``Span`` (``model``): records to
  spans, for the page's waterfall;
- ``file_info`` (``shipper``): what a transcript's path says about its session and agent;
- ``ids``: the trace and span ids.

Each is loaded on first use, so importing ``ccotel.traces.ids`` alone stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccotel.lazy import loader

if TYPE_CHECKING:
    from ccotel.traces import ids
    from ccotel.traces.builder import Builder, FileInfo, Options
    from ccotel.traces.model import Span
    from ccotel.traces.service import Exporters, backfill_traces, options
    from ccotel.traces.shipper import file_info

__all__ = [
    "Builder",
    "Exporters",
    "FileInfo",
    "Options",
    "Span",
    "backfill_traces",
    "file_info",
    "ids",
    "options",
]

__getattr__ = loader(
    __name__,
    {
        "Builder": "builder",
        "Exporters": "service",
        "FileInfo": "builder",
        "Options": "builder",
        "Span": "model",
        "backfill_traces": "service",
        "file_info": "shipper",
        "ids": "ids",
        "options": "service",
    },
)
