"""The status line: Claude Code's statusLine JSON in, one line out, plan limits kept.

``ccotel statusline`` (``client``, a small client with no heavy imports) reads the JSON
Claude Code pipes to it, hands it to the running daemon over an owner-only Unix socket in
the state dir (``server``), and prints the line the daemon renders from its state.

The daemon's side is one object, ``Daemon.statusline`` (a :class:`Reports`), which other
parts of the daemon read (the live board of issue 15 among them). Its public interface:

``Reports.report(session_id) -> dict | None``
    The latest status-line JSON Claude Code sent for that session, as it sent it (parsed,
    unknown keys kept), plus ``"received_at"`` (epoch seconds, the daemon's clock). None
    when no status line of that session reached the daemon since it started (reports are
    kept in memory only, at most ``MAX_SESSIONS`` sessions, the least recently reported
    dropped first, and none older than ``KEEP_SECONDS``).

``Reports.context(session_id) -> tuple[float, int] | None``
    The session's context use from its latest report: ``(used_ratio, window_tokens)``,
    ``used_ratio`` in 0..1 (``context_window.used_percentage`` / 100, else the last
    request's input + cache tokens over ``context_window_size``), ``window_tokens`` =
    ``context_window_size``. None when unknown (no report, or Claude Code had no usage yet).

``Reports.sessions() -> list[str]``
    The session ids with a report, most recent first.

All three are thread-safe and cost no I/O (a dict lookup under a lock).
"""

from __future__ import annotations

__all__ = ["KEEP_SECONDS", "MAX_SESSIONS", "Reports"]


def __getattr__(name: str):
    # Lazy: `ccotel statusline` imports ccotel.statusline.client, and nothing else.
    if name in __all__:
        from ccotel.statusline import reports

        return getattr(reports, name)
    raise AttributeError(name)
