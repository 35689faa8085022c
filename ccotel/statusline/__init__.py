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

TYPE_CHECKING = False  # typing imports re: the client stays lighter without it
if TYPE_CHECKING:
    from ccotel.statusline.cli import statusline
    from ccotel.statusline.client import main
    from ccotel.statusline.daemon import Hub
    from ccotel.statusline.reports import KEEP_SECONDS, MAX_SESSIONS, Reports

__all__ = ["KEEP_SECONDS", "MAX_SESSIONS", "Hub", "Reports", "main", "statusline"]
_HOMES = {"KEEP_SECONDS": "reports", "MAX_SESSIONS": "reports", "Reports": "reports",
          "Hub": "daemon", "main": "client", "statusline": "cli"}  # fmt: skip


def __getattr__(name: str) -> object:
    # Lazy (not ccotel.lazy, which imports typing): `ccotel statusline` loads the client only.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = __import__(f"{__name__}.{home}", fromlist=[name])
    return getattr(module, name)
