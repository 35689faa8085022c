"""/api/live/events: server-sent events from the real daemon to many pages at once without
holding the HTTP server's workers; over TLS with basic auth; and the stream's own limits
(one waiting event per client whatever its speed, stalled, chatty and old clients closed),
driven in-process with sockets."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccotel.live import stream as stream_mod
from ccotel.live.stream import MAX_CLIENTS, Stream
from tests.conftest import FIXTURES
from tests.interactive import wait_for
from tests.livedaemon import LiveDaemon, clean_env
from tests.livereplay import Session, cut, new_id, read, replay
from tests.test_traces_wire import _self_signed
from tests.test_web_http import hash_password

SOURCE = next((FIXTURES / "claude-2.1.197" / "projects").glob("*/c16a9a56-*.jsonl"))
HEAD = b"GET /api/live/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answered(claude: Path, age: float = 5) -> str:
    """A real -p session's lines up to its answer (waiting), written just now; its id."""
    lines = read(SOURCE)
    s = Session(new_id(), cut(lines, lambda x: (x.get("message") or {}).get("stop_reason") == "end_turn"), age=age)  # fmt: skip
    replay(claude / "projects", [s])
    return s.id


def prompt(claude: Path, sid: str, text: str) -> None:
    """The user answers: a prompt line, now."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = {"type": "user", "sessionId": sid, "uuid": new_id(), "timestamp": now,
            "message": {"role": "user", "content": text}}  # fmt: skip
    (path,) = (claude / "projects").glob(f"*/{sid}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


class Client:
    """A raw stream client: sends the request, reads events as they come."""

    def __init__(self, port: int, head: bytes = HEAD):
        self.sock = socket.socket()
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(head)
        self.buf = b""

    def status(self) -> int:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        return int(self.buf.split(b" ", 2)[1])

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def board(self) -> dict:
        """The next event's board."""
        while True:
            i = self.buf.find(b"data: ")
            j = self.buf.find(b"\n\n", i)
            if i >= 0 and j >= 0:
                data, self.buf = self.buf[i + 6 : j], self.buf[j + 2 :]
                return json.loads(data)
            self._more()

    def close(self) -> None:
        self.sock.close()


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError


@pytest.mark.timeout(300)
def test_many_open_pages_leave_the_server_free(tmp_path):
    claude = tmp_path / "claude"
    (claude / "projects").mkdir(parents=True)
    sid = answered(claude)
    with LiveDaemon(claude, tmp_path / "state") as d:
        d.wait_row(sid, lambda r: r["state"] == "waiting", "waiting")
        before = threads(d.proc.pid)
        clients = [Client(d.port) for _ in range(MAX_CLIENTS)]
        for c in clients:
            assert c.status() == 200
            assert [r["state"] for r in c.board()["sessions"]] == ["waiting"]
        # one more: refused with a reason (the page then polls /api/live)
        extra = Client(d.port)
        assert extra.status() == 503
        extra.close()
        # every worker is free: many requests at once all get their answer
        with ThreadPoolExecutor(24) as pool:
            got = list(pool.map(lambda p: d.get(p)[0], ["/api/live", "/metrics", "/healthz"] * 16))
        assert got == [200] * 48
        assert threads(d.proc.pid) == before  # streams cost no thread
        # a change reaches every page
        prompt(claude, sid, "Go on")
        for c in clients:
            while (b := c.board())["sessions"][0]["state"] != "working":
                pass
            assert b["sessions"][0]["id"] == sid
        # pages that go away free their places (as the stream thread sees them close)
        for c in clients:
            c.close()
        again: list[Client] = []

        def one_more() -> bool:
            c = Client(d.port)
            if c.status() == 200:
                again.append(c)
            else:
                c.close()
            return len(again) == MAX_CLIENTS

        wait_for(one_more, "every page back", 60)
        for c in again:
            c.close()


@pytest.mark.timeout(300)
def test_a_stream_over_tls_with_basic_auth(tmp_path):
    claude = tmp_path / "claude"
    (claude / "projects").mkdir(parents=True)
    sid = answered(claude)
    crt, key = _self_signed(tmp_path)
    env = clean_env(CCOTEL_HTTP_TLS_CERT=crt, CCOTEL_HTTP_TLS_KEY=key,
                    CCOTEL_HTTP_BASIC_AUTH_USER="me",
                    CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH=hash_password("pw ✓"))  # fmt: skip
    ctx = ssl.create_default_context(cafile=crt)
    ctx.check_hostname = False
    token = base64.b64encode("me:pw ✓".encode()).decode()

    def tls_client(port: int, auth: bool) -> ssl.SSLSocket:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20))
        head = HEAD.replace(b"\r\n\r\n", f"\r\nAuthorization: Basic {token}\r\n\r\n".encode())
        s.sendall(head if auth else HEAD)
        return s

    with LiveDaemon(claude, tmp_path / "state", env, tls=ctx,
                    headers={"Authorization": f"Basic {token}"}) as d:  # fmt: skip
        s = tls_client(d.port, auth=False)
        assert s.recv(65536).startswith(b"HTTP/1.0 401")
        s.close()
        s = tls_client(d.port, auth=True)
        buf = b""
        while b"data: " not in buf or not buf.endswith(b"\n\n"):
            buf += s.recv(65536)
        assert buf.startswith(b"HTTP/1.0 200")
        board = json.loads(buf.split(b"data: ", 1)[1].split(b"\n\n", 1)[0])
        assert [r["id"] for r in board["sessions"]] == [sid]
        prompt(claude, sid, "Go on")
        while b'"state":"working"' not in buf:
            buf += s.recv(65536)
        s.close()


def test_head_of_the_stream_is_answered_and_closed(tmp_path):
    claude = tmp_path / "claude"
    (claude / "projects").mkdir(parents=True)
    with LiveDaemon(claude, tmp_path / "state") as d:
        c = Client(d.port, HEAD.replace(b"GET", b"HEAD"))
        assert c.status() == 200
        with pytest.raises(EOFError):  # the head alone, then the worker closes it
            while True:
                c._more()
        assert b"text/event-stream" in c.buf and b"data:" not in c.buf


# ---------------------------------------------------------------------------- in-process
class Board:
    """A payload that changes when told to, as big as asked."""

    def __init__(self, size: int = 100):
        self.n, self.size = 0, size

    def __call__(self) -> tuple[bytes, bytes]:
        key = json.dumps({"n": self.n, "pad": "x" * self.size}).encode()
        return key, key


@contextlib.contextmanager
def running(board: Board, **kw):
    s = Stream(board, **kw)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def pair() -> tuple[socket.socket, socket.socket]:
    """(the server's side, the client's side) of a connection."""
    a, b = socket.socketpair()
    b.settimeout(10)
    return a, b


def events(sock: socket.socket, until_n: int | None = None) -> list[dict]:
    """Read events until one with n == until_n (or until nothing comes for a moment)."""
    out, buf = [], b""
    sock.settimeout(10 if until_n is not None else 0.5)
    with contextlib.suppress(TimeoutError):
        while until_n is None or not out or out[-1]["n"] != until_n:
            data = sock.recv(1 << 20)
            if not data:
                break
            buf += data
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if ev.startswith(b"data: "):
                    out.append(json.loads(ev[6:]))
    return out


def test_a_slow_client_gets_only_the_newest_board():
    board = Board(size=200_000)  # bigger than the socket's buffers: the stream must wait
    with running(board) as s:
        server, client = pair()
        assert s.adopt(server)
        assert events(client, 0)[-1]["n"] == 0
        for n in range(1, 300):  # the client reads nothing meanwhile
            board.n = n
            s.poke()
            time.sleep(0.002)
        got = events(client, 299)
        assert got[-1]["n"] == 299
        assert len(got) <= 4  # what the buffers held, the one being sent, the newest
        client.close()


def test_a_stalled_client_is_closed_and_the_others_go_on(monkeypatch):
    monkeypatch.setattr(stream_mod, "STALL", 0.5)
    board = Board(size=300_000)
    with running(board) as s:
        stalled_srv, stalled = pair()
        live_srv, live = pair()
        assert s.adopt(stalled_srv) and s.adopt(live_srv)
        for n in range(1, 20):
            board.n = n
            s.poke()
            assert events(live, n)[-1]["n"] == n  # the reading client gets each change
        wait_for(lambda: s.clients() == 1, "the stalled client to be closed", 20)
        stalled.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while stalled.recv(1 << 20):  # what was sent, then the end
                pass
        live.close()


def test_old_chatty_and_surplus_clients_are_closed(monkeypatch):
    monkeypatch.setattr(stream_mod, "LIFETIME", 0.5)
    with running(Board(), max_clients=2) as s:
        a_srv, a = pair()
        b_srv, b = pair()
        c_srv, _c = pair()
        assert s.adopt(a_srv) and s.adopt(b_srv)
        assert not s.adopt(c_srv) and not s.room()  # full: the caller closes it
        b.sendall(b"x" * (stream_mod.MAX_INPUT + 1))  # a client that talks too much
        assert events(a)[0]["n"] == 0
        a.settimeout(10)
        while a.recv(65536):  # closed after LIFETIME (the browser reconnects)
            pass
        wait_for(lambda: s.clients() == 0, "both closed", 20)
        assert s.room()


def test_a_heartbeat_shows_a_dead_peer(monkeypatch):
    monkeypatch.setattr(stream_mod, "HEARTBEAT", 0.2)
    with running(Board()) as s:
        srv, c = pair()
        assert s.adopt(srv)
        buf = b""
        c.settimeout(10)
        while b": keep-alive" not in buf:
            buf += c.recv(65536)
        c.close()  # the next heartbeat (or its read) finds the peer gone
        wait_for(lambda: s.clients() == 0, "the dead peer dropped", 20)


def test_stop_closes_every_stream():
    s = Stream(Board())
    s.start()
    socks = [pair() for _ in range(3)]
    for srv, _ in socks:
        assert s.adopt(srv)
    for _, c in socks:
        assert events(c, 0)
    s.stop()
    for _, c in socks:
        c.settimeout(10)
        assert c.recv(65536) == b""
    assert not s.adopt(socket.socketpair()[0])


def test_many_pokes_from_many_threads():
    board = Board()
    with running(board) as s:
        srv, c = pair()
        assert s.adopt(srv)

        def poke():
            for _ in range(200):
                s.poke()

        ts = [threading.Thread(target=poke) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        board.n = 1
        s.poke()
        assert events(c, 1)[-1]["n"] == 1
