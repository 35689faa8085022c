"""The one HTTP server (page, API, /metrics, /healthz) as an attacker and a new user meet it,
always through the real daemon: TLS and basic auth (scrypt hash, non-ASCII passwords, hostile
Authorization headers), the Host check against DNS rebinding, no listening beyond loopback
without auth (tried in a network namespace of its own, with the docker bridge address on its
loopback), and hostile clients (bad requests, slowloris, idle floods) that get a 4xx or a closed
connection while the server keeps serving, with a bounded number of threads and no traceback."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pty
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, daemon_port
from tests.test_traces_wire import _self_signed

CLAUDE = FIXTURES / "claude-2.1.197"
ROUTES = ("/", "/app.js", "/api/summary", "/api/sessions", "/api/spend", "/metrics", "/healthz")
NETNS = ["unshare", "-rn"]  # a network namespace of our own: its loopback is all it has


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env["CCOTEL_TRACES"] = "false"
    return env | extra


class Daemon:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path, host: str = "127.0.0.1"):
        self.proc, self.port, self.log, self.host = proc, port, log, host

    @property
    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no thread count")

    def raw(self, data: bytes, wait: float = 5.0) -> bytes:
        return raw(self.host, self.port, data, wait)


def raw(host: str, port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send bytes, return what comes back before the server closes (b"" if nothing)."""
    with socket.create_connection((host, port), timeout=wait) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            return out + b"<no answer and no close>"
        return out


def log_lines(log: Path) -> list[dict]:
    """Every line the daemon wrote is one JSON object: no traceback, no stray output."""
    out = []
    for line in log.read_text().splitlines():
        assert "Traceback" not in line, line
        out.append(json.loads(line))
    return out


@contextlib.contextmanager
def daemon(tmp_path: Path, env: dict, *args: str, ready=None):
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(CLAUDE), "--state-dir", str(tmp_path / "s"),
             "--http-addr", "127.0.0.1:0", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:]) from None
    d = Daemon(proc, port, log)
    try:
        for _ in range(300):
            try:
                if (ready or _healthy)(port):
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        else:
            raise AssertionError("daemon did not become ready")
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
        return json.loads(r.read())["ok"]


def fetch(url: str, ctx=None, auth: tuple[str, str] | None = None, headers=()) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    for k, v in headers:
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status_of(reply: bytes) -> int | None:
    """The status code of a raw HTTP reply, None for a closed connection."""
    if not reply.startswith(b"HTTP/1."):
        return None
    return int(reply.split(b" ", 2)[1])


def hash_password(password: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ccotel", "hash-password"], input=password.encode(),
                         capture_output=True, check=True, env=clean_env())  # fmt: skip
    line = out.stdout.decode().strip()
    key, _, value = line.partition(" = ")
    assert key == "http_basic_auth_password_hash" and value.startswith('"scrypt$'), line
    return json.loads(value)


PASSWORD = "pä55wörd ✓ 密码"  # non-ASCII: it must log in (basic auth is compared as bytes)


@pytest.mark.timeout(180)
def test_tls_and_basic_auth_on_every_route(tmp_path):
    crt, key = _self_signed(tmp_path)
    env = clean_env(
        CCOTEL_HTTP_TLS_CERT=crt,
        CCOTEL_HTTP_TLS_KEY=key,
        CCOTEL_HTTP_BASIC_AUTH_USER="me",
        CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH=hash_password(PASSWORD),
    )
    ctx = ssl.create_default_context(cafile=crt)

    def ready_over_tls(port: int) -> bool:
        return fetch(f"https://127.0.0.1:{port}/healthz", ctx, ("me", PASSWORD))[0] == 200

    with daemon(tmp_path, env, ready=ready_over_tls) as d:
        port, base = d.port, f"https://127.0.0.1:{d.port}"
        assert log_lines(d.log)[0]["page"] == f"{base}/"
        for path in ROUTES:
            assert fetch(base + path, ctx)[0] == 401, path
            assert fetch(base + path, ctx, ("me", "wrong"))[0] == 401, path
            assert fetch(base + path, ctx, ("you", PASSWORD))[0] == 401, path
            assert fetch(base + path, ctx, ("me", PASSWORD[:-1]))[0] == 401, path
            code, body = fetch(base + path, ctx, ("me", PASSWORD))
            assert code == 200 and body, path
        # Hostile Authorization headers: each a 401, none a traceback.
        tls = ctx.wrap_socket
        for value in (b"Basic \xff\xfe\x00", b"Basic !!!", b"Basic " + base64.b64encode(b"no-colon"),
                      b"Basic " + base64.b64encode(b"me:" + b"\xff\xfe"), b"Bearer abc",
                      b"basic", b"Basic " + b"A" * 30000, b"Basic " + base64.b64encode(b"\xff:\xff")):  # fmt: skip
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                s = tls(raw, server_hostname="127.0.0.1")
                s.sendall(b"GET /api/summary HTTP/1.0\r\nAuthorization: " + value + b"\r\n\r\n")
                reply = s.recv(100)
            assert status_of(reply) == 401, value[:30]
        # Plain HTTP on the TLS port: told so, in plain text.
        assert status_of(d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")) == 400
        # `ccotel status` speaks TLS and basic auth too (the password from the environment).
        status = [
            sys.executable,
            "-m",
            "ccotel",
            "status",
            "--json",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ]
        ok = subprocess.run(
            status, env=env | {"CCOTEL_HTTP_PASSWORD": PASSWORD}, capture_output=True, text=True
        )
        assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stderr
        no = subprocess.run(status, env=env, capture_output=True, text=True)
        assert no.returncode == 2 and "CCOTEL_HTTP_PASSWORD" in no.stderr
        bad = subprocess.run(
            status, env=env | {"CCOTEL_HTTP_PASSWORD": "nope"}, capture_output=True, text=True
        )
        assert bad.returncode == 1 and "refused" in bad.stderr
        assert d.proc.poll() is None
    log_lines(d.log)


def run_once(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`ccotel run` that is expected to stop at once (a configuration error)."""
    return subprocess.run(
        [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(CLAUDE), *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:  # a key is named as it was given: key, --flag or CCOTEL_VARIABLE
        names = (w, w.replace("_", "-"), f"CCOTEL_{w.upper()}")
        assert any(n in lines[0] for n in names), (w, lines[0])


def test_old_and_bad_password_hashes_are_refused_in_one_line(tmp_path):
    import hashlib

    old = "sha256:" + hashlib.sha256(b"s3cret").hexdigest()
    for value, words in (
        (old, ("http_basic_auth_password_hash", "sha256", "ccotel hash-password")),
        ("plain", ("http_basic_auth_password_hash", "ccotel hash-password")),
        ("scrypt$n=3,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", ("power of 2",)),
        ("scrypt$n=1073741824,r=8,p=1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", ("256 MiB",)),
    ):
        env = clean_env(
            CCOTEL_HTTP_BASIC_AUTH_USER="me", CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH=value
        )
        p = run_once(env, "--state-dir", str(tmp_path / "s"), "--http-addr", "127.0.0.1:0")
        assert_one_line_error(p, *words)


def test_hash_password_asks_without_echo_or_reads_stdin():
    from ccotel.server.auth import BasicAuth

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "ccotel", "hash-password"], clean_env())
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while marker not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([fd], [], [], 1)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    return

    read_until(b"Password:")
    os.write(fd, PASSWORD.encode() + b"\n")
    read_until(b"confirmation:")
    os.write(fd, PASSWORD.encode() + b"\n")
    read_until(b"scrypt$")
    read_until(b"\n" + b"x" * 64)  # read to the end
    os.waitpid(pid, 0)
    text = seen.decode()
    assert PASSWORD not in text, "the password was echoed"
    line = next(x for x in text.splitlines() if x.startswith("http_basic_auth_password_hash"))
    auth = BasicAuth("me", json.loads(line.partition(" = ")[2]))
    good = "Basic " + base64.b64encode(f"me:{PASSWORD}".encode()).decode("latin-1")
    assert auth.check(good.encode().decode("latin-1"))
    assert not auth.check("Basic " + base64.b64encode(b"me:other").decode())
    # From standard input: the same password gives a hash that checks, with a fresh salt.
    h1, h2 = hash_password(PASSWORD), hash_password(PASSWORD)
    assert h1 != h2 and BasicAuth("me", h1).check(good) and BasicAuth("me", h2).check(good)
    empty = subprocess.run([sys.executable, "-m", "ccotel", "hash-password"], input=b"",
                           capture_output=True, env=clean_env())  # fmt: skip
    assert empty.returncode == 2 and b"empty" in empty.stderr


@pytest.mark.timeout(120)
def test_host_check_refuses_rebinding_names(tmp_path):
    env = clean_env(CCOTEL_HTTP_ALLOWED_HOSTS="host.docker.internal,ccotel.lan")
    with daemon(tmp_path, env) as d:
        p = d.port
        refused = ("evil.example", f"evil.example:{p}", "127.0.0.1.nip.io", "localhost.evil.example",
                   "host.docker.internal.evil.example", "", f"EVIL.example:{p}")  # fmt: skip
        served = (f"localhost:{p}", "LOCALHOST.", f"127.0.0.1:{p}", f"[::1]:{p}", "app.localhost",
                  f"host.docker.internal:{p}", "ccotel.lan", "10.1.2.3")  # fmt: skip
        for path in ("/", "/api/summary", "/api/sessions", "/metrics", "/healthz"):
            for host in refused:
                reply = d.raw(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert status_of(reply) in (400, 403), (path, host, reply[:80])
                assert (
                    b"ccotel_cost" not in reply
                    and b"sessions" not in reply.split(b"\r\n\r\n", 1)[-1]
                )
            for host in served:
                reply = d.raw(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert status_of(reply) == 200, (path, host, reply[:80])
        # Two Host headers, or HTTP/1.1 without one: 400. HTTP/1.0 without one: served.
        assert (
            status_of(
                d.raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
            )
            == 400
        )
        assert status_of(d.raw(b"GET /healthz HTTP/1.1\r\n\r\n")) == 400
        assert status_of(d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")) == 200
    without = [x for x in log_lines(d.log) if "http_allowed_hosts" in x.get("event", "")]
    assert {x["host"] for x in without} >= {"evil.example", "127.0.0.1.nip.io"}
    assert len(without) == len({x["host"] for x in without}), "one warning per name"


HOSTILE = (
    # (what, bytes sent, the statuses allowed; None: the connection is closed unanswered)
    ("bad method", b"FOO / HTTP/1.0\r\n\r\n", {501}),
    ("lower-case method", b"get / HTTP/1.0\r\n\r\n", {501}),
    ("70 kB request line", b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n", {414, None}),
    ("200 kB request line", b"GET /" + b"a" * 200_000 + b" HTTP/1.0\r\n\r\n", {414, 431, None}),
    ("TLS hello on the plain port", bytes.fromhex("1603010200010001fc0303") + bytes(range(11, 250)), {None}),
    ("%ff in a session path", b"GET /api/sessions/%ff HTTP/1.0\r\n\r\n", {404}),
    ("%ff in a path", b"GET /%ff%fe HTTP/1.0\r\n\r\n", {404}),
    ("%ff in a query", b"GET /api/sessions?q=%ff&project=%fe&sort=%ff HTTP/1.0\r\n\r\n", {400}),
    ("raw bytes in a path", b"GET /api/\xff\xfe\x00 HTTP/1.0\r\n\r\n", {404, 400}),
    ("a line that is no header", b"GET /healthz HTTP/1.0\r\nno header here\r\n\r\n", {400}),
    ("a 70 kB header", b"GET /healthz HTTP/1.0\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", {431}),
    ("200 headers", b"GET /healthz HTTP/1.0\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", {431}),
    ("binary garbage", os.urandom(64).replace(b"\n", b"") + b"\r\n\r\n", {400, None}),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {None, 505, 400}),
    ("HTTP/0.9", b"GET /api/summary\r\n\r\n", {None}),
    ("bad query values", b"GET /api/sessions?limit=abc HTTP/1.0\r\n\r\n", {400}),
    ("a year out of range", b"GET /api/sessions?day=99999-01-01 HTTP/1.0\r\n\r\n", {400}),
    ("too many parameters", b"GET /api/sessions?" + b"&".join(b"a%d=1" % i for i in range(100)) + b" HTTP/1.0\r\n\r\n", {400}),
    ("a body on GET", b"GET /healthz HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", {200}),
    ("POST", b"POST /api/summary HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", {501}),
    ("nothing at all", b"", {None}),
    ("HEAD", b"HEAD /healthz HTTP/1.0\r\n\r\n", {200}),
    ("an Accept prometheus-client trips on", b"GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text; version=abc\r\n\r\n", {200}),
    ("absolute-form target", b"GET http://evil.example/api/summary HTTP/1.0\r\n\r\n", {404}),
)  # fmt: skip


def _bare(reply: bytes) -> int | None:
    """Status of a reply; an HTTP/0.9-style error body (no status line) counts as None."""
    return status_of(reply)


@pytest.mark.timeout(300)
def test_hostile_clients_get_an_error_or_a_close_and_the_server_keeps_serving(tmp_path):
    with daemon(tmp_path, clean_env()) as d:
        base_threads = d.threads
        for what, data, allowed in HOSTILE:
            t0 = time.monotonic()
            reply = d.raw(data, wait=20)
            assert _bare(reply) in allowed, (what, reply[:120])
            assert time.monotonic() - t0 < 12, what  # at most the head deadline
            assert status_of(d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")) == 200, what

        head = d.raw(b"HEAD /api/summary HTTP/1.0\r\n\r\n")
        assert status_of(head) == 200 and head.split(b"\r\n\r\n", 1)[1] == b"", head

        # Slowloris and an idle flood: 40 connections trickling a byte a second, 150 that send
        # nothing. The server answers others at once, grows no thread, and closes them all by
        # the head deadline (10 s after each connected).
        slow = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(40)]
        idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(150)]
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.0\r\nX-Slow: ")
        t0 = time.monotonic()
        answered = []
        while time.monotonic() - t0 < 14:
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"a")
            t1 = time.monotonic()
            assert status_of(d.raw(b"GET /api/summary HTTP/1.0\r\n\r\n", wait=5)) == 200
            answered.append(time.monotonic() - t1)
            assert d.threads <= base_threads, "no thread per connection"
            time.sleep(1)
        assert max(answered) < 2, answered
        closed = 0
        for s in slow + idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(100) == b""
            except (ConnectionResetError, BrokenPipeError):
                closed += 1
            except TimeoutError:
                pass
            s.close()
        assert closed == len(slow) + len(idle), f"{closed} of {len(slow) + len(idle)} closed"

        # A burst of real requests beyond the workers: each is answered or (past the queue)
        # closed; none gets a 5xx, and the server still answers afterwards.
        got: list[int | None] = []

        def hit():
            for _ in range(5):
                got.append(
                    status_of(d.raw(b"GET /api/sessions?limit=1000 HTTP/1.0\r\n\r\n", wait=30))
                )

        workers = [threading.Thread(target=hit) for _ in range(48)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert set(got) <= {200, None} and got.count(200) >= len(got) // 2, got
        assert d.threads <= base_threads
        assert status_of(d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")) == 200
        assert d.proc.poll() is None
    log_lines(d.log)


def test_bad_addresses_and_files_are_one_line_errors(tmp_path):
    for addr, said in (("256.1.1.1:9485", "--http-addr: '256.1.1.1' is not an IP"),
                       ("no-such-host.invalid:9470", "http_addr: cannot listen on")):  # fmt: skip
        p = run_once(clean_env(), "--state-dir", str(tmp_path / "s"), "--http-addr", addr)
        assert_one_line_error(p, said)
    # An address of no interface here (a documentation range: nothing is sent), with auth on.
    auth = clean_env(
        CCOTEL_HTTP_BASIC_AUTH_USER="me", CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH=hash_password("x")
    )
    p = run_once(auth, "--state-dir", str(tmp_path / "s"), "--http-addr", "192.0.2.1:9470")
    assert_one_line_error(p, "http_addr", "not an address of this machine")
    # A TLS certificate that is missing, or not a certificate.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for cert in (str(tmp_path / "missing.pem"), str(junk)):
        env = clean_env(CCOTEL_HTTP_TLS_CERT=cert, CCOTEL_HTTP_TLS_KEY=str(junk))
        p = run_once(env, "--state-dir", str(tmp_path / "s"), "--http-addr", "127.0.0.1:0")
        assert_one_line_error(p, "http_tls_cert")


@pytest.mark.timeout(120)
def test_web_off_keeps_metrics(tmp_path):
    with daemon(tmp_path, clean_env(CCOTEL_WEB="false")) as d:
        assert log_lines(d.log)[0]["page"] is None
        assert fetch(f"http://127.0.0.1:{d.port}/api/summary")[0] == 404
        assert fetch(f"http://127.0.0.1:{d.port}/")[0] == 404
        assert fetch(f"http://127.0.0.1:{d.port}/metrics")[0] == 200


# --- listening: in a network namespace of our own (root inside it), so the default port and
# the docker bridge address are ours alone, and no packet leaves the namespace ---------------


def in_netns(tmp_path: Path, steps: list[dict]) -> list[dict]:
    """Run ``_netns_main`` inside a new network namespace; one result per step."""
    spec = tmp_path / "netns.json"
    spec.write_text(json.dumps({"steps": steps, "tmp": str(tmp_path), "claude": str(CLAUDE)}))
    p = subprocess.run(
        [*NETNS, sys.executable, "-c", "import tests.test_web_http as t, sys; t._netns_main(sys.argv[1])", str(spec)],
        capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=240,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _netns_main(spec_path: str) -> None:
    """Inside the namespace: loopback up, the docker bridge address on it, then each step:
    start `ccotel run` with its args and env, and report exit status, stderr, where it
    listens (from /proc/net/tcp*) and what chosen requests get."""
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "172.17.0.1/32", "dev", "lo"], check=True)
    out = []
    for i, step in enumerate(spec["steps"]):
        env = clean_env(**step.get("env", {}))
        cmd = [sys.executable, "-m", "ccotel", "run", "--claude-dir", spec["claude"],
               "--state-dir", f"{spec['tmp']}/ns-{i}", *step["args"]]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        res: dict = {"listening": [], "replies": {}}
        for _ in range(200):
            if proc.poll() is not None:
                break
            res["listening"] = _listening()
            if res["listening"]:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        for name, (host, port, host_header, auth) in step.get("probe", {}).items():
            try:
                req = urllib.request.Request(
                    f"http://{host}:{port}/healthz", headers={"Host": host_header}
                )
                if auth:
                    req.add_header(
                        "Authorization", "Basic " + base64.b64encode(auth.encode()).decode()
                    )
                with urllib.request.urlopen(req, timeout=10) as r:
                    res["replies"][name] = r.status
            except urllib.error.HTTPError as e:
                res["replies"][name] = e.code
            except OSError as e:
                res["replies"][name] = str(e)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        res["rc"], res["stderr"] = proc.returncode, err
        out.append(res)
    print(json.dumps(out))


def _listening() -> list[str]:
    """host:port of each listening TCP socket in this namespace."""
    import ipaddress

    found = []
    for name, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            if width == 4:
                addr = str(ipaddress.IPv4Address(raw[::-1]))
            else:
                addr = str(
                    ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
                )
            found.append(f"{addr}:{int(hexport, 16)}")
    return found


@pytest.mark.timeout(300)
def test_listening_default_loopback_and_no_network_without_auth(tmp_path):
    pw = hash_password("s3cret")
    auth = {"CCOTEL_HTTP_BASIC_AUTH_USER": "me", "CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH": pw}
    crt, key = _self_signed(tmp_path)
    steps = [
        # 0: nothing said: 127.0.0.1:9470, and only there
        {"args": [], "probe": {"loopback": ("127.0.0.1", 9470, "localhost:9470", None),
                               "bridge": ("172.17.0.1", 9470, "172.17.0.1:9470", None)}},
        # 1-4: beyond loopback without auth: refused, naming the key to opt in
        {"args": ["--metrics-addr", "172.17.0.1:9470"]},
        {"args": ["--metrics-addr", "0.0.0.0:9470"]},
        {"args": ["--metrics-addr", "[::]:9470"]},
        {"args": ["--metrics-addr", "172.17.0.1:9470"],
         "env": {"CCOTEL_HTTP_TLS_CERT": crt, "CCOTEL_HTTP_TLS_KEY": key}},  # TLS alone is no auth
        # 5: the bridge address with basic auth: served, to those who log in
        {"args": ["--metrics-addr", "172.17.0.1:9470"], "env": auth,
         "probe": {"anonymous": ("172.17.0.1", 9470, "172.17.0.1:9470", None),
                   "logged in": ("172.17.0.1", 9470, "172.17.0.1:9470", "me:s3cret"),
                   "logged in, a name not allowed": ("172.17.0.1", 9470, "host.docker.internal", "me:s3cret")}},
        # 6: the bridge address, opted in without auth; the stack's Host name allowed
        {"args": ["--metrics-addr", "172.17.0.1:9470"],
         "env": {"CCOTEL_ALLOW_UNAUTHENTICATED_NETWORK_ACCESS": "true",
                 "CCOTEL_HTTP_ALLOWED_HOSTS": "host.docker.internal"},
         "probe": {"stack": ("172.17.0.1", 9470, "host.docker.internal:9470", None),
                   "rebinding": ("172.17.0.1", 9470, "evil.example:9470", None)}},
        # 7: IPv6 loopback
        {"args": ["--metrics-addr", "[::1]:9471"], "probe": {"v6": ("[::1]", 9471, "[::1]:9471", None)}},
    ]  # fmt: skip
    r = in_netns(tmp_path, steps)
    assert r[0]["listening"] == ["127.0.0.1:9470"], r[0]
    assert r[0]["replies"]["loopback"] == 200 and r[0]["replies"]["bridge"] != 200, r[0]
    for i in (1, 2, 3, 4):
        assert r[i]["rc"] == 2 and r[i]["listening"] == [], r[i]
        lines = r[i]["stderr"].strip().splitlines()
        assert len(lines) == 1 and "allow_unauthenticated_network_access" in lines[0], r[i][
            "stderr"
        ]
        assert "http_basic_auth_user" in lines[0] and "Traceback" not in r[i]["stderr"]
    assert r[5]["listening"] == ["172.17.0.1:9470"], r[5]
    assert r[5]["replies"] == {
        "anonymous": 401,
        "logged in": 200,
        "logged in, a name not allowed": 403,
    }
    assert r[6]["replies"] == {"stack": 200, "rebinding": 403}, r[6]
    assert r[7]["listening"] == ["::1:9471"] and r[7]["replies"] == {"v6": 200}, r[7]


@pytest.mark.timeout(180)
def test_a_flood_of_wrong_passwords_does_not_lock_out_the_user(tmp_path):
    """Each wrong password costs a scrypt check, one at a time, and a request waits at most
    2 s for its turn: 24 clients guessing hold no worker for long, and a browser or Prometheus
    that logged in before is answered at once."""
    env = clean_env(
        CCOTEL_HTTP_BASIC_AUTH_USER="me",
        CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH=hash_password(PASSWORD),
    )

    def ok(port: int) -> bool:
        return fetch(f"http://127.0.0.1:{port}/healthz", auth=("me", PASSWORD))[0] == 200

    with daemon(tmp_path, env, ready=ok) as d:
        url = f"http://127.0.0.1:{d.port}/api/summary"
        stop = time.monotonic() + 8
        guesses: list[int] = []

        def guess(i: int) -> None:
            while time.monotonic() < stop:
                guesses.append(fetch(url, auth=("me", f"guess-{i}-{len(guesses)}"))[0])

        flood = [threading.Thread(target=guess, args=(i,)) for i in range(24)]
        for t in flood:
            t.start()
        time.sleep(1)
        waits = []
        while time.monotonic() < stop - 1:
            t0 = time.monotonic()
            assert fetch(url, auth=("me", PASSWORD))[0] == 200
            waits.append(time.monotonic() - t0)
            time.sleep(0.3)
        for t in flood:
            t.join()
        assert guesses and set(guesses) == {401}, set(guesses)
        assert max(waits) < 1.5, waits
        assert d.threads <= 16
    log_lines(d.log)


def test_config_half_set_is_an_error():
    from ccotel.config import ConfigError, load

    for env, key in (({"CCOTEL_HTTP_TLS_CERT": "/x.pem"}, "http_tls_cert"),
                     ({"CCOTEL_HTTP_BASIC_AUTH_USER": "me"}, "http_basic_auth_user"),
                     ({"CCOTEL_HTTP_BASIC_AUTH_USER": "me", "CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH": "plain"},
                      "http_basic_auth_password_hash")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            load(env=env)
    cfg = load(env={"CCOTEL_HTTP_ALLOWED_HOSTS": "host.docker.internal,ccotel.lan"})
    assert cfg.http_allowed_hosts == ["host.docker.internal", "ccotel.lan"]
    assert load(env={}).allow_unauthenticated_network_access is False


@pytest.mark.timeout(300)
def test_fuzzed_requests_never_get_a_5xx_or_a_traceback(tmp_path):
    """Hypothesis writes request heads (methods, paths, queries, header lines, raw bytes);
    each gets a 2xx-4xx or a close, never a 500, and the daemon's log stays clean."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    token = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=40)
    segment = st.one_of(
        st.sampled_from(
            [
                "",
                "api",
                "sessions",
                "summary",
                "spend",
                "metrics",
                "healthz",
                "app.js",
                "..",
                "%ff",
                "%00",
                "%2F",
            ]
        ),
        token.map(lambda t: t.replace(" ", "%20").replace("?", "%3F")),
    )
    path = st.lists(segment, max_size=4).map(lambda xs: "/" + "/".join(xs))
    query = st.dictionaries(
        st.sampled_from(["limit", "sort", "project", "day", "q", "by", "bucket", "x"]),
        token,
        max_size=4,
    ).map(
        lambda d: "&".join(
            f"{k}={v.replace(' ', '+').replace('&', '%26').replace('#', '%23')}"
            for k, v in d.items()
        )
    )
    header = st.one_of(
        st.tuples(
            st.sampled_from(["Host", "Accept", "Authorization", "Cookie", "X-A", "Host "]), token
        ).map(lambda kv: f"{kv[0]}: {kv[1]}"),
        token,
    )
    method = st.sampled_from(
        ["GET", "GET", "GET", "HEAD", "POST", "PUT", "OPTIONS", "get", "G\tET", ""]
    )
    version = st.sampled_from(
        ["HTTP/1.0", "HTTP/1.1", "HTTP/0.9", "HTTP/2.0", "HTTP/1.10", "http/1.0", "HTTP/x", ""]
    )

    with daemon(tmp_path, clean_env()) as d:

        @settings(
            max_examples=400,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(method, path, query, version, st.lists(header, max_size=6), st.binary(max_size=32))
        def one(m, p, q, v, hs, junk):
            head = f"{m} {p}{'?' + q if q else ''} {v}\r\n" + "".join(h + "\r\n" for h in hs)
            data = head.encode("latin-1") + junk.replace(b"\n", b"") + b"\r\n\r\n"
            code = status_of(d.raw(data, wait=15))
            assert code is None or 200 <= code < 500 or code in (501, 505), (data[:200], code)

        one()
        assert status_of(d.raw(b"GET /healthz HTTP/1.0\r\n\r\n")) == 200
        assert d.proc.poll() is None
    faults = [
        x
        for x in log_lines(d.log)
        if x.get("level") in ("warning", "error") and "refused" not in x["event"]
    ]
    assert not faults, faults


def test_faults_of_ours_are_500s_and_one_line_each(monkeypatch):
    """A fault injected at each point of the server (route, health, exposition, auth, the
    selector thread, a worker): the request gets a 500 or a close, the log one line without
    a traceback, and the next request is served."""
    from prometheus_client import CollectorRegistry
    from structlog.testing import capture_logs

    from ccotel.server import httpd

    faults = {"web": False, "health": False, "collect": False, "auth": False}

    class Boom(RuntimeError):
        pass

    def web(path, query):
        if faults["web"]:
            raise Boom("route")
        return (200, "text/plain", b"page") if path == "/" else None

    def health():
        if faults["health"]:
            raise Boom("health")
        return {"ok": True}

    class Collector:
        def collect(self):
            if faults["collect"]:
                raise Boom("collect")
            return []

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector())
    server = httpd.HttpServer("127.0.0.1", 0, reg, health, web=web)
    server.start()
    d = type("Server", (), {"raw": lambda self, data: raw("127.0.0.1", server.port, data)})()
    try:
        with capture_logs() as logs:
            for name, path in (("web", "/"), ("health", "/healthz"), ("collect", "/metrics")):
                faults[name] = True
                assert status_of(d.raw(f"GET {path} HTTP/1.0\r\n\r\n".encode())) == 500, name
                faults[name] = False
                assert status_of(d.raw(f"GET {path} HTTP/1.0\r\n\r\n".encode())) == 200, name
            faults["web"] = True  # the same fault again within the minute: no second line
            assert status_of(d.raw(b"GET / HTTP/1.0\r\n\r\n")) == 500
            faults["web"] = False
            server.app.auth = type(
                "A", (), {"check": lambda self, h: (_ for _ in ()).throw(Boom("auth"))}
            )()
            assert status_of(d.raw(b"GET /app.js HTTP/1.0\r\n\r\n")) == 500
            server.app.auth = None
            real_step = httpd._Pending.step
            monkeypatch.setattr(
                httpd._Pending, "step", lambda self, tls: (_ for _ in ()).throw(Boom("step"))
            )
            assert status_of(d.raw(b"GET / HTTP/1.0\r\n\r\n")) is None
            monkeypatch.setattr(httpd._Pending, "step", real_step)
            assert status_of(d.raw(b"GET / HTTP/1.0\r\n\r\n")) == 200
            monkeypatch.setattr(
                httpd._Handler, "setup", lambda self: (_ for _ in ()).throw(Boom("worker"))
            )
            assert status_of(d.raw(b"GET / HTTP/1.0\r\n\r\n")) is None
            monkeypatch.undo()
            assert status_of(d.raw(b"GET / HTTP/1.0\r\n\r\n")) == 200
        lines = [x for x in logs if x["log_level"] == "warning"]
        assert [x["error"].split(":")[0] for x in lines] == ["Boom"] * 6, lines
        assert all("Traceback" not in x["error"] and "\n" not in x["error"] for x in lines)
    finally:
        server.stop()
