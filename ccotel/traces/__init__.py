"""OpenTelemetry traces from transcripts: one trace per session (docs/traces.md)."""

from ccotel.traces.service import Exporters, backfill_traces

__all__ = ["Exporters", "backfill_traces"]
