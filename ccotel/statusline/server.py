"""The status line's channel into the daemon: HTTP/1.1 over an owner-only Unix socket.

The socket (``SOCKET_NAME`` in the state dir) is the only way in for plan data: the TCP
server has no route that writes. Three locks on the door:

* the socket is created under a temporary name, made 0600 and only then renamed into
  place, so it is never reachable with wider permissions;
* every connection's peer is asked for its uid (SO_PEERCRED on Linux, LOCAL_PEERCRED on
  macOS) and served only when it is the daemon's own user;
* a browser cannot reach a Unix socket at all (a web page's cross-site POST goes to TCP).

Each request is bounded in size and time (``MAX_BODY``, ``TIMEOUT``), served on its own
thread, at most ``MAX_CLIENTS`` at once; whatever a client sends, the daemon goes on.

Speaking HTTP keeps it usable without ccotel:
``curl -s --unix-socket <state dir>/statusline.sock --data-binary @- http://ccotel/statusline``,
and ``GET /report?session_id=<id>`` shows what the daemon holds of a session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ccotel.log import get_logger

log = get_logger()

SOCKET_NAME = "statusline.sock"
MAX_BODY = 256 << 10  # Claude Code sends about 2 KB
MAX_HEAD = 8 << 10
MAX_CLIENTS = 16
TIMEOUT = 2.0  # seconds a client may take to send its whole request

# (method, path, body, query) -> (status, text)
Handler = Callable[[str, str, bytes, str], tuple[int, str]]

_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end, or None where the system cannot say."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        uid: int = struct.unpack("3i", raw)[1]
        return uid
    # macOS (SOL_LOCAL 0, LOCAL_PEERCRED 1 in <sys/un.h>), FreeBSD: struct xucred
    # {u_int version; uid_t uid; short ngroups; gid_t groups[16]}. A failure fails closed.
    local_peercred = getattr(socket, "LOCAL_PEERCRED", 1 if sys.platform == "darwin" else None)
    if local_peercred is not None:
        raw = conn.getsockopt(0, local_peercred, 4 + 4 + 2 + 2 + 16 * 4)
        xuid: int = struct.unpack_from("I", raw, 4)[0]
        return xuid
    return None  # the socket's 0600 is the only lock here


class SocketServer:
    def __init__(self, state_dir: Path, handle: Handler, uid: int | None = None):
        self.path = state_dir / SOCKET_NAME
        self.handle = handle
        self.uid = os.getuid() if uid is None else uid
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stopping = False
        self.refused = 0  # connections from another user

    def start(self) -> None:
        tmp = self.path.with_name(f".{SOCKET_NAME}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _bind(sock, tmp)
            os.chmod(tmp, 0o600)
            sock.listen(64)
            self._replace_stale()
            os.replace(tmp, self.path)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, name="ccotel-statusline", daemon=True)
        self.thread.start()

    def _replace_stale(self) -> None:
        """What is at the socket's path: an old socket (the daemon owns the state dir) is
        replaced; anything else is not ccotel's to delete."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{self.path} exists and is not a socket; move it away")

    def stop(self) -> None:
        self._stopping = True
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # ours: the state dir's lock is held
                self.path.unlink()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=2)

    def _serve(self) -> None:
        while not self._stopping:
            sock = self.sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.05)  # out of descriptors (EMFILE): no busy loop
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()  # too many at once: the client prints its short line
                continue
            try:
                threading.Thread(target=self._one, args=(conn,), daemon=True).start()
            except RuntimeError as exc:  # no thread to be had now: this request only fails
                self._slots.release()
                conn.close()
                log.warning("statusline: cannot start a thread", error=str(exc))

    def _one(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(TIMEOUT)
                uid = peer_uid(conn)
                if uid is not None and uid != self.uid:
                    self.refused += 1
                    if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                        log.warning("statusline: refused a connection from another user",
                                    uid=uid, refused=self.refused)  # fmt: skip
                    _reply(conn, 403, "ccotel: not your daemon\n")
                    return
                try:
                    method, path, query, body = _read_request(conn)
                except _Bad as exc:
                    _reply(conn, exc.status, f"ccotel: {exc}\n")
                    return
                try:
                    status, text = self.handle(method, path, body, query)
                except Exception as exc:  # a bug here must not stop the socket
                    log.error("statusline: request failed", error=f"{type(exc).__name__}: {exc}")
                    status, text = 500, f"ccotel: internal error ({type(exc).__name__})\n"
                _reply(conn, status, text)
        except OSError:  # the client left or timed out: nothing to tell it
            pass
        finally:
            self._slots.release()


def _bind(sock: socket.socket, path: Path) -> None:
    """bind(); a path too long for AF_UNIX (108 bytes) is reached through its folder's
    descriptor on Linux (the client does the same)."""
    if len(os.fsencode(str(path))) <= 100 or not os.path.isdir("/proc/self/fd"):
        sock.bind(str(path))
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


class _Bad(Exception):
    def __init__(self, status: int, msg: str):
        super().__init__(msg)
        self.status = status


def _recv(conn: socket.socket, n: int, deadline: float) -> bytes:
    """recv within the request's deadline (a client that trickles bytes gets no longer)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    conn.settimeout(left)
    return conn.recv(n)


def _read_request(conn: socket.socket) -> tuple[str, str, str, bytes]:
    deadline = time.monotonic() + TIMEOUT
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise _Bad(413, "request head too large")
        try:
            chunk = _recv(conn, 4096, deadline)
        except TimeoutError:
            raise _Bad(408, "request too slow") from None
        if not chunk:
            raise _Bad(400, "incomplete request")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Bad(400, "not an HTTP/1.x request")
    method, (path, _, query) = parts[0], parts[1].partition("?")
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    if "transfer-encoding" in headers:
        raise _Bad(400, "send a Content-Length, not chunks")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _Bad(400, "bad Content-Length") from None
    if length < 0:
        raise _Bad(400, "bad Content-Length")
    if length > MAX_BODY:
        raise _Bad(413, f"status-line input over {MAX_BODY} bytes")
    if headers.get("expect", "").lower() == "100-continue" and len(body) < length:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for it on larger bodies
    while len(body) < length:
        try:
            chunk = _recv(conn, min(65536, length - len(body)), deadline)
        except TimeoutError:
            raise _Bad(408, "request too slow") from None
        if not chunk:
            raise _Bad(400, "incomplete body")
        body += chunk
    return method, path, query, body[:length]


def _reply(conn: socket.socket, status: int, text: str) -> None:
    data = text.encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode("ascii") + data)
