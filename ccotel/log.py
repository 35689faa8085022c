"""Logging: structlog, JSON lines when the stream is not a terminal, console lines when it is."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


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
