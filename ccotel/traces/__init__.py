"""OpenTelemetry traces from transcripts: one trace per session (docs/traces.md).

The public face: ``Exporters`` (the daemon's trace thread and OTLP metrics push),
``backfill_traces``, ``options`` (trace options from the config) and ``file_info``
(what a transcript's path says about its session and agent). Loaded on first use,
so importing ``ccotel.traces.ids`` alone stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Exporters", "backfill_traces", "file_info", "options"]


def __getattr__(name: str) -> Any:
    if name in ("Exporters", "backfill_traces", "options"):
        from ccotel.traces import service

        return getattr(service, name)
    if name == "file_info":
        from ccotel.traces.shipper import file_info

        return file_info
    raise AttributeError(name)
