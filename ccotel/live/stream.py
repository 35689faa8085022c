"""``/api/live/events``: the board as server-sent events, to many pages, from one thread.

The HTTP server's workers answer a request and close (ccotel.server.httpd); a stream that
held one would starve the rest. So a worker only sends the response head and hands the
connection over (``adopt``); this thread keeps every stream, without blocking on any:

- on each change of the board (the daemon pokes it after a batch, and it looks every
  ``TICK`` seconds for changes that come with time: idle, leaving the window) it queues the
  new board to every client; a client that has not taken the previous one yet gets only the
  newest (at most one event waits per client, whatever its speed);
- a comment every ``HEARTBEAT`` seconds shows a dead peer; a client that takes nothing for
  ``STALL`` seconds, or sends more than a request's worth, is closed;
- at most ``MAX_CLIENTS`` streams (the route answers 503 past that, and the page polls
  ``/api/live`` instead); each is closed after ``LIFETIME`` seconds, and the browser's
  EventSource reconnects on its own (``retry``), so a forgotten tab cannot hold one for ever.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from ccotel.log import get_logger

log = get_logger()

MAX_CLIENTS = 32
TICK = 1.0
HEARTBEAT = 15.0
STALL = 30.0
LIFETIME = 600.0
RETRY_MS = 2000
MAX_INPUT = 65536  # bytes a client may send after its request (nothing is expected)
_AGAIN = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _Client:
    __slots__ = ("moved", "next", "out", "received", "sock", "started")

    def __init__(self, sock: socket.socket, now: float):
        self.sock = sock
        self.out = memoryview(b"")  # the event being sent
        self.next: bytes | None = None  # the newest event not started yet
        self.started = self.moved = now  # when it came, when it last took bytes
        self.received = 0


class Stream:
    """``adopt(conn)`` takes a connection whose response head was sent; ``poke()`` says the
    board may have changed. ``payload()`` is the board as (JSON that identifies the
    state, JSON to send)."""

    def __init__(self, payload: Callable[[], tuple[bytes, bytes]], max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.payload, self.max_clients, self.clock = payload, max_clients, clock
        self._lock = threading.Lock()
        self._new: list[socket.socket] = []
        self._count = 0
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="live-stream", daemon=True)

    # --- any thread ------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.poke()
        if self.thread.ident is not None:
            self.thread.join(5)
        with self._lock:
            for s in self._new:
                _close(s)
            self._new.clear()
        for s in (self._r, self._w):
            s.close()

    def room(self) -> bool:
        with self._lock:
            return not self._stopping and self._count < self.max_clients

    def clients(self) -> int:
        with self._lock:
            return self._count

    def adopt(self, conn: socket.socket) -> bool:
        """Take a stream; False (the caller closes it) when full or stopping."""
        with self._lock:
            if self._stopping or self._count >= self.max_clients:
                return False
            self._count += 1
            self._new.append(conn)
        self.poke()
        return True

    def poke(self) -> None:
        with contextlib.suppress(OSError):
            self._w.send(b"x")

    def changed(self) -> None:
        """The board may have changed: a poke, when a client is there to be told."""
        if self._count:
            self.poke()

    # --- the stream thread -----------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._r, selectors.EVENT_READ)
        clients: dict[int, _Client] = {}
        seen: list[Any] = [
            None,
            0.0,
        ]  # the board's key last sent, when the board was last looked at
        faults = 0
        try:
            while not self._stopping:
                try:
                    self._step(sel, clients, seen)
                except Exception as exc:  # a fault of ours: one line, the streams go on
                    faults += 1
                    if faults <= 5:
                        log.warning("live stream: a fault of ccotel's (it goes on)",
                                    error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
                    time.sleep(TICK)
        finally:
            for c in list(clients.values()):
                self._drop(sel, clients, c)
            sel.close()

    def _step(
        self, sel: selectors.BaseSelector, clients: dict[int, _Client], seen: list[Any]
    ) -> None:
        """One turn: wake-ups, reads and newcomers taken; what changed queued and sent."""
        events = sel.select(TICK if clients else None)
        now = self.clock()
        poked = False
        for key, mask in events:
            if key.fileobj is self._r:
                poked = True
                with contextlib.suppress(OSError):
                    while self._r.recv(4096):
                        pass
            elif mask & selectors.EVENT_READ:
                self._read(sel, clients, key.data)
        newcomers = []
        for sock in self._take_new():
            c = _Client(sock, now)
            try:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, c)
            except (OSError, ValueError):
                self._drop(sel, clients, c)
                continue
            clients[id(c)] = c
            c.out = memoryview(b"retry: %d\n\n" % RETRY_MS)
            newcomers.append(c)
        if not clients:
            seen[0] = None
            return
        if poked or newcomers or now - seen[1] >= TICK:
            seen[1] = now
            board, data = self.payload()  # (the board's key, the event's data)
            event = b"data: " + data + b"\n\n"
            for c in clients.values() if board != seen[0] else newcomers:
                c.next = event  # replaces one not started yet: only the newest counts
            seen[0] = board
        for c in list(clients.values()):
            if not c.out and c.next is None and now - c.moved >= HEARTBEAT:
                c.next = b": keep-alive\n\n"
            if now - c.started >= LIFETIME:  # no new event: the one being sent, then close
                c.next = None
                if not c.out:
                    self._drop(sel, clients, c)  # the browser reconnects
                    continue
            self._write(sel, clients, c, now)

    def _take_new(self) -> list[socket.socket]:
        with self._lock:
            new, self._new = self._new, []
        return new

    def _read(self, sel: selectors.BaseSelector, clients: dict[int, _Client], c: _Client) -> None:
        try:
            data = c.sock.recv(4096)
        except _AGAIN:
            return
        except OSError:
            data = b""
        c.received += len(data)
        if not data or c.received > MAX_INPUT:
            self._drop(sel, clients, c)

    def _write(
        self, sel: selectors.BaseSelector, clients: dict[int, _Client], c: _Client, now: float
    ) -> None:
        if id(c) not in clients:
            return
        while True:
            if not c.out:
                if c.next is None:
                    break
                c.out, c.next = memoryview(c.next), None
            try:
                n = c.sock.send(c.out)
            except _AGAIN:
                n = 0
            except OSError:
                self._drop(sel, clients, c)
                return
            if n:
                c.out, c.moved = c.out[n:], now
            if c.out:  # the peer's buffer is full: wait to be writable
                break
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        with contextlib.suppress(KeyError, ValueError, OSError):
            sel.modify(c.sock, want, c)
        if c.out and now - c.moved >= STALL:
            self._drop(sel, clients, c)

    def _drop(self, sel: selectors.BaseSelector, clients: dict[int, _Client], c: _Client) -> None:
        if clients.pop(id(c), None) is None and c.sock.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            sel.unregister(c.sock)
        _close(c.sock)
        with self._lock:
            self._count -= 1


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
