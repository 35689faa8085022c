"""Logging: structlog, JSON lines when the stream is not a terminal, console lines when it is."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO


def _structlog() -> Any:
    """structlog without rich: its console renderer imports rich (when installed) only to
    pretty-print tracebacks, which ccotel prints plainly, and that import costs every start
    ~65 ms (a fifth of a backfill's imports). Commands that draw with rich import it later."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog
    else:
        sys.modules["rich"] = None  # type: ignore[assignment]  # import rich -> ImportError
        try:
            import structlog
        finally:
            del sys.modules["rich"]
    return structlog


structlog = _structlog()


def get_logger() -> Any:
    return structlog.get_logger()


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """The daemon logs on stdout (the journal's); one-shot commands pass stderr, so that their
    output stays apart from their warnings."""
    stream = sys.stdout if stream is None else stream
    tty = stream.isatty()
    if fmt == "auto":
        fmt = "console" if tty else "json"
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=tty)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
