"""The daemon's one HTTP server: /metrics, /healthz, and the page with its JSON API.

What is the libraries' and what is ours (figures in docs/web.md, `python bench/server.py`):

- The exposition is prometheus-client's (``choose_encoder``: text or OpenMetrics by Accept).
- HTTP parsing and error responses are the standard library's ``BaseHTTPRequestHandler``
  (bad method 501, request line over 64 KiB 414, too long or too many headers 431).
- Ours is the connection handling around it, because neither ``ThreadingHTTPServer`` nor
  prometheus-client's server (wsgiref, a thread per connection) bounds threads or time. One
  selector thread accepts, does the TLS handshake and reads each request head without
  blocking, so an idle or slow client (slowloris) costs a buffer, not a thread, and is closed
  ``HEAD_TIMEOUT`` after it connected. A complete head goes to one of ``WORKERS`` threads, which
  answers within ``WRITE_TIMEOUT`` and closes (HTTP/1.0: no idle keep-alive holds a worker).
  At most ``PENDING`` connections wait for their head (past that the oldest is closed: an
  idle flood cannot lock others out) and ``QUEUE`` complete requests for a worker. A stream
  (server-sent events) is no exception: the worker sends its head and hands the connection
  to the stream's own thread (ccotel.live.stream), never keeping it. Whatever
  a client sends, the worst it gets is a 4xx or a closed connection; a fault of ours is a
  500 and one log line, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import PurePath
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest

from ccotel.config import ConfigError
from ccotel.log import get_logger
from ccotel.server.access import ADDR_KEY, HostFilter, check_exposure, host_name, resolve
from ccotel.server.auth import BasicAuth
from ccotel.server.exposition import TextExposition

log = get_logger()

WORKERS = 8  # threads that answer requests (each may hold a read-only SQLite connection)
QUEUE = 32  # complete requests waiting for a worker; more are closed
PENDING = 256  # connections still sending their request head; past it the oldest is closed
HEAD_TIMEOUT = 10.0  # seconds from accept to a complete request head (TLS handshake included)
MAX_HEAD = 80 << 10  # bytes of a request head (the parser's own limit is 64 KiB a line)
WRITE_TIMEOUT = 30.0  # seconds to send a response
HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)  # fmt: skip

PLAIN_ON_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"this port speaks HTTPS\n"
)

# (status, content type, body) of a route of the page, or None when the path is not one;
# a stream adds a fourth item, the callable that takes the connection once its head is sent
# (True: it owns it now; the worker is free for the next request).
Routed = tuple[int, str, bytes] | tuple[int, str, bytes, Callable[[socket.socket], bool]]
WebRoutes = Callable[[str, str], Routed | None]


class _Job:
    """A connection whose request head is complete (or too big), for a worker."""

    def __init__(self, app: _App, head: bytes, too_big: bool):
        self.app, self.head, self.too_big = app, head, too_big
        self.adopt: Callable[[socket.socket], bool] | None = None  # a stream's new owner
        self.adopted = False


class _Handler(BaseHTTPRequestHandler):
    server_version = "ccotel"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection
    server: _Job  # type: ignore[assignment]

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        """The standard library's parse, and a 400 for a header block it had to guess at
        (a line that is no header, a folded line): email's parser keeps those as defects."""
        if not super().parse_request():
            return False
        if getattr(self, "headers", None) is not None and (
            self.headers.defects or self.headers.get_payload()
        ):
            self.send_error(400, "Malformed header")
            return False
        return True

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self.server.head)  # GET only: the head is the whole request
        self.out = io.BytesIO()  # sent whole in finish(), under one timeout
        self.wfile = self.out

    def handle(self) -> None:
        if self.server.too_big:
            self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
            self.send_error(431, "Request head too large")
            return
        super().handle()

    def finish(self) -> None:
        data = self.out.getvalue()
        if data:
            self.connection.settimeout(WRITE_TIMEOUT)
            self.connection.sendall(data)
        if self.server.adopt is not None:  # a stream: its head is out, the rest is not ours
            self.server.adopted = self.server.adopt(self.connection)

    def do_GET(self) -> None:
        self.server.app.serve(self)

    def do_HEAD(self) -> None:
        self.server.app.serve(self)  # send() leaves the body out

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: bad request", client=self.client_address[0], reason=format % args)


class _App:
    """Host check, basic auth, then the route."""

    def __init__(self, registry: CollectorRegistry, health: Callable[[], dict[str, Any]],
                 web: WebRoutes | None, hosts: HostFilter, auth: BasicAuth | None):  # fmt: skip
        self.registry, self.health, self.web, self.hosts, self.auth = (
            registry, health, web, hosts, auth,
        )  # fmt: skip
        self._render_lock = threading.Lock()
        self._text = TextExposition()
        self._refused: set[str] = set()
        self._faults: dict[tuple[str, str], float] = {}

    def serve(self, h: _Handler) -> None:
        try:
            self._serve(h)
        except Exception as exc:  # a fault of ours: one line, no traceback, a 500
            self._fault(h.path.partition("?")[0], exc)
            self.send(h, 500, "application/json", b'{"error":"internal error; see the ccotel log"}')

    def _serve(self, h: _Handler) -> None:
        hosts = h.headers.get_all("Host") or []
        if len(hosts) > 1 or (not hosts and h.request_version != "HTTP/1.0"):
            return self.send(h, 400, "text/plain", b"one Host header expected\n")
        if hosts and not self.hosts.allows(hosts[0]):
            self._warn_host(hosts[0])
            return self.send(
                h,
                403,
                "text/plain",
                b"this Host is not a name of this server (http_allowed_hosts)\n",
            )
        if self.auth and not self.auth.check(h.headers.get("Authorization")):
            return self.send(
                h,
                401,
                "text/plain",
                b"",
                [("WWW-Authenticate", 'Basic realm="ccotel", charset="UTF-8"')],
            )
        path, _, query = h.path.partition("?")
        routed = (
            self.web(path, query) if self.web and path not in ("/metrics", "/healthz") else None
        )
        if routed is not None:
            if len(routed) == 4:  # a stream: the head here, the connection to routed[3]
                return self.stream(h, *routed)
            return self.send(h, *routed)
        if path == "/metrics":
            return self.send(h, 200, *self._exposition(h.headers.get("Accept")))
        if path == "/healthz":
            body = self.health()
            return self.send(
                h, 200 if body.get("ok") else 503, "application/json", json.dumps(body).encode()
            )
        self.send(h, 404, "text/plain", b"not found: try /, /metrics or /healthz\n")  # fmt: skip

    def _fault(self, path: str, exc: Exception) -> None:
        """One log line per route and kind of fault a minute: a client repeating a request
        that trips a bug cannot flood the log."""
        key, now = (_route(path), type(exc).__name__), time.monotonic()
        if now - self._faults.get(key, -60.0) >= 60:
            if len(self._faults) > 256:
                self._faults.clear()
            self._faults[key] = now
            log.warning("http: request failed", route=key[0], error=_describe(exc))

    def _exposition(self, accept: str | None) -> tuple[str, bytes]:
        with self._render_lock:  # scrapes that arrive together take turns (no pile-up)
            return self._render(accept)

    def _render(self, accept: str | None) -> tuple[str, bytes]:
        try:
            encoder, ctype = choose_encoder(accept or "")
            if encoder is generate_latest:  # the plain text format: lines remembered
                return ctype, self._text.render(self.registry)
            return ctype, encoder(self.registry)
        except (TypeError, ValueError):  # an Accept header prometheus-client trips on
            encoder, ctype = choose_encoder("")
            return ctype, encoder(self.registry)

    @staticmethod
    def send(
        h: _Handler, code: int, ctype: str, body: bytes, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        h.send_response(code)
        for k, v in (("Content-Type", ctype), ("Content-Length", str(len(body))), *HEADERS, *extra):
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def stream(
        h: _Handler, code: int, ctype: str, body: bytes, adopt: Callable[[socket.socket], bool]
    ) -> None:
        """A response with no end: sent until the peer or ``adopt``'s owner closes it."""
        h.send_response(code)
        for k, v in (("Content-Type", ctype), *HEADERS):
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
            h.server.adopt = adopt

    def _warn_host(self, header: str) -> None:
        name = host_name(header)[:80]
        if name not in self._refused and len(self._refused) < 32:
            self._refused.add(name)
            log.warning(
                "http: refused a request for a name that is not this server's; if it is, add it "
                "to http_allowed_hosts",
                host=name,
            )


class HttpServer:
    """Binds at construction (so a bad address fails early); ``start`` serves in threads."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, health: Callable[[], dict[str, Any]],
        web: WebRoutes | None = None, tls: tuple[str, str] | None = None,
        auth: tuple[str, str] | None = None, allowed_hosts: tuple[str, ...] | list[str] = (),
        allow_unauthenticated: bool = False, workers: int = WORKERS,
    ):  # fmt: skip
        """tls: (cert, key) files; auth: (user, "scrypt$..." hash); allowed_hosts: extra Host
        names to serve besides loopback names, IP addresses and ``host``."""
        family, sockaddr = resolve(host, port)[0]
        check_exposure(host, [(family, sockaddr)], auth is not None, allow_unauthenticated)
        self.tls: ssl.SSLContext | None = None
        if tls:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                self.tls.load_cert_chain(tls[0], tls[1])
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise ConfigError(
                    f"http_tls_cert: cannot load {tls[0]} with its key {tls[1]} ({reason})"
                ) from None
        try:
            basic = BasicAuth(*auth) if auth else None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.app = _App(registry, health, web, HostFilter(host, allowed_hosts), basic)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(sockaddr)
            self.sock.listen(128)
        except OSError as exc:
            self.sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise  # the caller names the key and what to do
            hint = (
                " (not an address of this machine: is its interface up?)"
                if exc.errno == errno.EADDRNOTAVAIL
                else ""
            )
            raise ConfigError(
                f"{ADDR_KEY}: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}"
            ) from None
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()[:2]
        self.port = self.address[1]
        self.scheme = "https" if self.tls else "http"
        self._jobs: queue.Queue[_Pending | None] = queue.Queue(QUEUE)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._busy_warned = 0.0
        self.thread = threading.Thread(target=self._accept_loop, name="http", daemon=True)
        self._workers = [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
            for i in range(workers)
        ]

    @property
    def url(self) -> str:
        host = self.address[0]
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        for w in self._workers:
            w.start()
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and let go of the socket; safe before ``start`` and twice."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self.thread.is_alive():
            self.thread.join(5)
        for w in self._workers:
            if not w.is_alive():
                continue
            try:
                self._jobs.put(None, timeout=0.5)
            except queue.Full:
                break
        for s in (self.sock, self._wake_r, self._wake_w):
            s.close()

    # --- one thread: accept, TLS handshake, read each request head --------------------------

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        pending: dict[int, _Pending] = {}  # by file descriptor (a TLS wrap keeps it)

        def drop(fd: int) -> _Pending:
            sel.unregister(fd)
            return pending.pop(fd)

        def on_event(key: selectors.SelectorKey) -> None:
            if key.fileobj is self.sock:
                self._accept(sel, pending)
            elif isinstance(key.data, _Pending):
                try:
                    finished = key.data.step(self.tls)
                except Exception as exc:  # a fault of ours on one connection: drop it, go on
                    log.warning("http: connection failed", error=_describe(exc))
                    finished = True
                if finished:
                    p = drop(key.fd)
                    self._dispatch(p) if p.done else p.close()

        try:
            while not self._stopping:
                # Asleep until a connection or stop() (the wake socket): no timer while idle.
                first = min((p.deadline for p in pending.values()), default=None)
                wait = None if first is None else max(0.0, first - time.monotonic())
                for key, _ in sel.select(wait):
                    on_event(key)
                now = time.monotonic()
                for fd in [fd for fd, p in pending.items() if now >= p.deadline]:
                    drop(fd).close()
        finally:
            for fd in list(pending):
                drop(fd).close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, pending: dict[int, _Pending]) -> None:
        for _ in range(64):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, a reset before accept
                log.debug("http: accept failed", error=str(exc))
                return
            if len(pending) >= PENDING:  # an idle flood: the oldest waiter makes room
                oldest = min(pending, key=lambda fd: pending[fd].deadline)
                sel.unregister(oldest)
                pending.pop(oldest).close()
                self._busy()
            conn.setblocking(False)
            p = pending[conn.fileno()] = _Pending(conn, addr)
            sel.register(conn.fileno(), selectors.EVENT_READ, p)

    def _dispatch(self, p: _Pending) -> None:
        try:
            self._jobs.put_nowait(p)
        except queue.Full:
            p.close()
            self._busy()

    def _busy(self) -> None:
        now = time.monotonic()
        if now - self._busy_warned > 60:
            self._busy_warned = now
            log.warning("http: too many connections at once; the oldest unanswered were closed")

    # --- WORKERS threads: answer, close ---------------------------------------------------

    def _work(self) -> None:
        while True:
            p = self._jobs.get()
            if p is None:
                return
            job = _Job(self.app, bytes(p.buf), not p.complete)
            try:
                p.conn.setblocking(True)
                p.conn.settimeout(WRITE_TIMEOUT)
                _Handler(p.conn, p.addr, job)  # type: ignore[arg-type]
            except OSError as exc:  # the client went away or stopped reading
                log.debug("http: connection dropped", client=p.addr[0], error=str(exc))
            except Exception as exc:  # a fault of ours outside a route: one line, go on
                log.warning("http: connection failed", error=_describe(exc))
            finally:
                if not job.adopted:
                    p.close()


class _Pending:
    """A connection in the selector thread: TLS handshake, then its request head, without
    blocking. ``step`` on each readable event: True when it is finished with (``done``: ready
    for a worker; else close it)."""

    def __init__(self, conn: socket.socket, addr: tuple[Any, ...]):
        self.conn, self.addr = conn, addr
        self.deadline = time.monotonic() + HEAD_TIMEOUT
        self.buf = bytearray()
        self.started = self.shaken = self.done = self.complete = False

    def step(self, tls: ssl.SSLContext | None) -> bool:
        try:
            if not self.started:
                self.started = True
                first = self.conn.recv(1, socket.MSG_PEEK)
                if not first:
                    return True
                if (first == b"\x16") != (tls is not None):  # TLS on the plain port, or not
                    if tls is not None:
                        self.conn.send(PLAIN_ON_TLS)
                    return True
                if tls is not None:
                    self.conn = tls.wrap_socket(
                        self.conn, server_side=True, do_handshake_on_connect=False
                    )
            if tls is not None and not self.shaken:
                self.conn.do_handshake()  # type: ignore[attr-defined]
                self.shaken = True
            while True:
                data = self.conn.recv(65536)
                if not data:
                    return True
                self.buf += data
                end = (
                    self.buf.find(b"\r\n\r\n")
                    if b"\r\n\r\n" in self.buf
                    else self.buf.find(b"\n\n")
                )
                if end >= 0 or len(self.buf) > MAX_HEAD:
                    self.complete = end >= 0
                    self.done = True
                    return True
                if tls is None or not self.conn.pending():  # type: ignore[attr-defined]
                    return False
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # a reset, a failed handshake
            log.debug("http: connection dropped", client=self.addr[0], error=str(exc))
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()


def _describe(exc: BaseException) -> str:
    """'KeyError: x (web/routes.py:42)': where and what, on one line."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" ({PurePath(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}"[:300] + where


def _route(path: str) -> str:
    """The path's first two segments (no ids or names past them in the log)."""
    return "/".join(path.split("/")[:3])[:40]
