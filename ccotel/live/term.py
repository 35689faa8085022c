"""``ccotel live``: the board in the terminal, redrawn as the daemon's stream says it changed
(and every half second for the timers), or polled when no stream is to be had."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

REDRAW = 0.5  # seconds between redraws (the timers)
POLL = 1.0  # seconds between polls of /api/live when no stream is open
MARKS = {
    "waiting": ("◆", "bold black on yellow"),
    "tool": ("⚙", "bold cyan"),
    "working": ("●", "bold green"),
    "idle": ("○", "dim"),
    "ended": ("✕", "dim"),
}
CONTEXT_STYLE = {"ok": "green", "amber": "yellow", "red": "bold red"}


def dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def usd(x: float | None) -> str:
    if x is None:
        return "-"
    return f"${x:,.2f}" if abs(x) >= 1 or x == 0 else f"${x:.4f}"


def _short_model(m: str | None) -> str:
    m = (m or "").removeprefix("claude-")
    return m[:-9] if len(m) > 9 and m[-9] == "-" and m[-8:].isdigit() else m


def _context(row: dict[str, Any]) -> Text:
    r = row.get("context_used_ratio")
    if r is None:
        return Text("-", style="dim")
    width = 10
    full = min(width, round(r * width))
    style = CONTEXT_STYLE.get(row.get("context_level") or "ok", "green")
    t = Text("█" * full, style=style) + Text("░" * (width - full), style="dim")
    t += Text(f" {r * 100:3.0f}%", style=style)
    if row.get("context_source") == "estimate":
        t += Text("~", style="dim")
    return t


def _state(row: dict[str, Any], now: float) -> Text:
    st = row["state"]
    mark, style = MARKS.get(st, ("?", ""))
    since = now - (row.get("state_since") or now)
    if st == "waiting":
        return Text(f" {mark} WAITING FOR YOU {dur(since)} ", style=style)
    if st == "tool" and row.get("tool"):
        tool = row["tool"]
        more = f" +{tool['running'] - 1}" if tool.get("running", 1) > 1 else ""
        return Text(f"{mark} {tool['name']}{more} {dur(now - tool['since'])}", style=style)
    if st in ("idle", "ended"):
        return Text(f"{mark} {st} {dur(since)}", style=style)
    return Text(f"{mark} {st} {dur(since)}", style=style)


def render(board: dict[str, Any] | None, now: float, note: str = "") -> Group | Text:
    """The board as a rich renderable (``now``: the daemon's clock, moved on locally)."""
    if board is None:
        return Text(note or "connecting to the daemon…", style="dim")
    rows = board.get("sessions") or []
    waiting = sum(1 for r in rows if r["state"] == "waiting")
    head = Text(f"ccotel live · {len(rows)} session{'s' * (len(rows) != 1)}")
    if waiting:
        head += Text(f" · {waiting} waiting for you", style="bold yellow")
    if not board.get("ready", True):
        head += Text(" · catching up", style="dim")
    if note:
        head += Text(f" · {note}", style="dim")
    if not rows:
        window = board.get("live_window") or 7200
        return Group(head, Text(f"no session with activity in the last {dur(window)}", style="dim"))
    t = Table(box=None, pad_edge=False, expand=False, header_style="dim")
    for name, kw in (
        ("state", {"min_width": 22}),
        ("session", {}),
        ("project", {"max_width": 28, "overflow": "ellipsis"}),
        ("model", {}),
        ("context", {}),
        ("cost", {"justify": "right"}),
        ("$/h", {"justify": "right"}),
        ("last tool", {}),
        ("active", {"justify": "right"}),
    ):
        t.add_column(name, no_wrap=True, **kw)
    for r in rows:
        dim = "dim" if r["state"] in ("idle", "ended") else ""
        proj = r.get("project") or ""
        if r.get("branch"):
            proj += f" ({r['branch']})"
        t.add_row(
            _state(r, now),
            Text(r["id"][:8], style=dim),
            Text(proj, style=dim),
            Text(_short_model(r.get("model")), style=dim),
            _context(r),
            Text(usd(r.get("cost_usd")), style=dim),
            Text(usd(r.get("cost_rate_usd_per_hour")), style=dim),
            Text(r.get("last_tool") or "", style=dim),
            Text(dur(now - r["last_activity"]) + " ago", style="dim"),
        )
        for a in r.get("subagents") or ():
            t.add_row(
                Text("  └ ") + _state(a, now),
                Text((a.get("type") or "agent")[:20], style="dim"),
                Text(a.get("id") or "", style="dim"),
                Text(_short_model(a.get("model")), style="dim"),
                _context(a),
                Text(usd(a.get("cost_usd")), style="dim"),
                Text(usd(a.get("cost_rate_usd_per_hour")), style="dim"),
                Text(a.get("last_tool") or "", style="dim"),
                Text(dur(now - a["last_activity"]) + " ago", style="dim"),
            )
    return Group(head, t)


class Feed:
    """The newest board from the daemon: its event stream in a thread, or polls."""

    def __init__(self, base: str, tls: ssl.SSLContext | None, headers: dict[str, str]):
        u = urlsplit(base)
        self.host, self.port, self.https = u.hostname or "127.0.0.1", u.port, u.scheme == "https"
        self.tls, self.headers = tls, headers
        self.board: dict[str, Any] | None = None
        self.at = time.monotonic()  # when it came
        self.error = ""
        self.changed = threading.Event()
        self._stop = threading.Event()

    def _conn(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _take(self, body: bytes) -> None:
        self.board, self.at, self.error = json.loads(body), time.monotonic(), ""
        self.changed.set()

    def get(self) -> None:
        """One board from /api/live (raises OSError / HTTPException / ValueError)."""
        c = self._conn(5)
        try:
            c.request("GET", "/api/live", headers=self.headers)
            r = c.getresponse()
            body = r.read()
            if r.status == 404:
                raise ValueError("the daemon serves no page or API (web = false in its config)")
            if r.status != 200:
                raise ValueError(_error(body) or f"HTTP {r.status}")
            self._take(body)
        finally:
            c.close()

    def run(self) -> None:
        """Follow the stream; poll while it cannot be had (and try it again now and then)."""
        while not self._stop.is_set():
            try:
                self._follow()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.error = str(exc) or type(exc).__name__
            deadline = time.monotonic() + 10
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    self.get()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self.error = str(exc) or type(exc).__name__
                    self.changed.set()
                self._stop.wait(POLL)

    def _follow(self) -> None:
        c = self._conn(30)  # a keep-alive comes every 15 s
        try:
            c.request("GET", "/api/live/events", headers=self.headers)
            r = c.getresponse()
            if r.status != 200:
                raise ValueError(_error(r.read()) or f"HTTP {r.status}")
            data: list[bytes] = []
            while not self._stop.is_set():
                line = r.fp.readline()
                if not line:
                    raise ValueError("the daemon closed the stream")
                line = line.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    self._take(b"\n".join(data))
                    data = []
        finally:
            c.close()

    def stop(self) -> None:
        self._stop.set()


def _error(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error") or "")
    except (ValueError, AttributeError):
        return ""


def run(feed: Feed, console: Console | None = None, once: bool = False,
        stop: Callable[[], bool] = lambda: False) -> None:  # fmt: skip
    """Draw the board until Ctrl-C (``once``: print it one time)."""
    console = console or Console()
    if once:
        feed.get()
        console.print(render(feed.board, feed.board["now"]))  # type: ignore[index]
        return
    t = threading.Thread(target=feed.run, name="live-feed", daemon=True)
    t.start()

    def frame() -> Group | Text:
        if feed.board is None:
            return render(None, 0, feed.error)
        now = feed.board["now"] + (time.monotonic() - feed.at)
        return render(feed.board, now, f"daemon: {feed.error}" if feed.error else "")

    try:
        with Live(frame(), console=console, auto_refresh=False, screen=False) as live:
            while not stop():
                feed.changed.wait(REDRAW)
                feed.changed.clear()
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        feed.stop()
