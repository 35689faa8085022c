"""The local web page: `/` and a read-only JSON API under `/api/`, served next to /metrics."""
