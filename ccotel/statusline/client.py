"""``ccotel statusline``: the client Claude Code runs on every refresh. It must cost nothing.

It imports only what CPython starts with (os, sys, _socket, select; tomllib only when a
config file exists), finds the daemon's socket as ``ccotel.config`` finds the state dir (and,
when no daemon is there, asks the /healthz at metrics_addr for its state dir, as ``ccotel
status`` finds the daemon), checks that the socket is the user's own and private, POSTs
the JSON read from stdin, and prints the daemon's line. It always exits 0 and never waits long: each step has a deadline
(``TIMEOUT``), and when the daemon is down, hung or refuses, it prints a short line saying
so. ``ccotel.entry`` runs it before the command-line module loads.
"""

from __future__ import annotations

import _socket  # the C module: `socket` would import enum, selectors and more (3 ms)
import os
import sys
import time

SOCKET_NAME = "statusline.sock"  # ccotel.statusline.server.SOCKET_NAME
MAX_BODY = 256 << 10  # ccotel.statusline.server.MAX_BODY
TIMEOUT = 1.0  # seconds, for everything: stdin, connect, answer
STDIN_WAIT = 0.5  # seconds to wait for stdin to be written and closed
USAGE = "usage: ccotel [--config FILE] statusline [--state-dir DIR] [--metrics-addr HOST:PORT]"


class Down(Exception):
    """Why no line came from the daemon: printed after "ccotel: "."""


class NotRunning(Down):
    def __init__(self) -> None:
        super().__init__("daemon not running (ccotel service install)")


def _flags(argv: list[str]) -> dict[str, str] | None:
    """--state-dir, --metrics-addr (and --config before the command); None: not for us."""
    out: dict[str, str] = {}
    it = iter(argv)
    for a in it:
        name, eq, value = a.partition("=")
        if name not in ("--state-dir", "--metrics-addr", "--config"):
            return None
        if not eq:
            following = next(it, None)
            if following is None:
                return None
            value = following
        out[name[2:]] = value
    return out


def _config_file(flags: dict[str, str]) -> str | None:
    path = flags.get("config") or os.environ.get("CCOTEL_CONFIG")
    if path:
        return path
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        default = os.path.join(home, "Library", "Application Support", "ccotel", "config.toml")
    else:
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.join(home, ".config")
        default = os.path.join(base, "ccotel", "config.toml")
    return default if os.path.isfile(default) else None


def _setting(flags: dict[str, str], key: str) -> tuple[str | None, str | None]:
    """(value, config file) of a string setting: flag, CCOTEL_<KEY>, the config file."""
    flag = key.replace("_", "-")
    if flags.get(flag):
        return flags[flag], None
    env = os.environ.get("CCOTEL_" + key.upper(), "").strip()
    if env:
        return env, None
    cfg = _config_file(flags)
    if not cfg:
        return None, None
    import tomllib

    try:
        with open(cfg, "rb") as f:
            value = tomllib.load(f).get(key)
    except (OSError, ValueError) as exc:
        raise Down(f"config {cfg}: {exc}") from None
    return (value, cfg) if isinstance(value, str) and value else (None, None)


def state_dir(flags: dict[str, str]) -> str:
    """The state dir as ccotel.config resolves it: --state-dir, CCOTEL_STATE_DIR, the config
    file's state_dir (relative to the file), then platformdirs' user state dir."""
    value, cfg = _setting(flags, "state_dir")
    if value:
        value = os.path.expanduser(value)
        if cfg:
            return value if os.path.isabs(value) else os.path.join(os.path.dirname(cfg), value)
        return value
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "ccotel")
    base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.join(home, ".local", "state")
    return os.path.join(base, "ccotel")


def daemon_state_dir(flags: dict[str, str], deadline: float) -> str | None:
    """The state dir of the daemon at http_addr (its /healthz), as `ccotel status` finds
    the daemon: for a socket not where this configuration says. None when none answers
    (or it asks for TLS or a password)."""
    addr = _setting(flags, "http_addr")[0] or _setting(flags, "metrics_addr")[0] or "127.0.0.1:9470"
    host, _, port = addr.strip().rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "::1"}.get(host, host).strip("[]")
    try:
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.settimeout(max(0.01, min(0.3, deadline - time.monotonic())))
        sock.connect((host, int(port)))
        name = f"[{host}]" if ":" in host else host
        sock.sendall(f"GET /healthz HTTP/1.0\r\nHost: {name}:{port}\r\n\r\n".encode())
        buf = b""
        while len(buf) < 1 << 16 and (chunk := sock.recv(65536)):
            buf += chunk
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        return None
    import json  # only here: it imports re

    try:
        found = json.loads(body).get("state_dir")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def read_stdin(deadline: float) -> bytes:
    """Up to MAX_BODY + 1 bytes of stdin, until EOF or the deadline."""
    import select

    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or os.isatty(fd):
        return b""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except (OSError, ValueError):
            break
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check_socket(path: str) -> None:
    """The socket must be the user's own and private: another user's socket in the
    way (a shared or misconfigured state dir) gets no session data."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotRunning from None
    except OSError as exc:
        raise Down(f"cannot reach the daemon ({exc.strerror})") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise Down(f"{path} is not a socket")
    if st.st_uid != os.getuid():
        raise Down(f"{path} belongs to uid {st.st_uid}, not you: refused")
    if st.st_mode & 0o077:
        raise Down(f"{path} is open to other users ({oct(st.st_mode & 0o777)}): refused")


def _connect(path: str, deadline: float) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    addr = path
    dir_fd = None
    if len(os.fsencode(path)) > 100 and os.path.isdir("/proc/self/fd"):
        # AF_UNIX paths are short (108 bytes): reach a deep state dir through its descriptor
        dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
        addr = f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"
    try:
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return sock


def ask(path: str, body: bytes, deadline: float) -> str:
    """POST the JSON; the daemon's line, or Down."""
    check_socket(path)
    try:
        sock = _connect(path, deadline)
    except (ConnectionRefusedError, FileNotFoundError):
        raise NotRunning from None
    except TimeoutError:
        raise Down("daemon busy") from None
    except OSError as exc:
        raise Down(f"cannot reach the daemon ({exc.strerror or exc})") from None
    try:
        try:
            head = (
                "POST /statusline HTTP/1.1\r\nHost: ccotel\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(head.encode("ascii") + body)
            buf = b""
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 1 << 20:
                    break
        except TimeoutError:
            raise Down("daemon busy (no answer in time)") from None
        except OSError as exc:
            raise Down(f"the daemon closed the connection ({exc.strerror or exc})") from None
    finally:
        sock.close()
    head_b, _, text_b = buf.partition(b"\r\n\r\n")
    status = head_b.split(b" ", 2)[1:2]
    text = text_b.decode("utf-8", "replace").splitlines()
    line = text[0] if text else ""
    if status != [b"200"]:
        raise Down(line.removeprefix("ccotel: ") or "the daemon refused the request")
    return line


def _model(body: bytes) -> str:
    """The model's name for the short line, best effort, without `json` (which imports `re`:
    ~15 ms, more than the rest of the client): the first "display_name" string."""
    i = body.find(b'"display_name"')
    if i < 0:
        return ""
    rest = body[i + 14 : i + 200].lstrip(b" \t\r\n")
    if not rest.startswith(b":"):
        return ""
    rest = rest[1:].lstrip(b" \t\r\n")
    if not rest.startswith(b'"'):
        return ""
    out, esc = bytearray(), False
    for b in rest[1:]:
        if esc:
            out.append(b)
            esc = False
        elif b == 0x5C:  # backslash: keep the next byte as it is
            esc = True
        elif b == 0x22:  # the closing quote
            name = out.decode("utf-8", "replace")
            return "".join(c for c in name[:40] if c.isprintable())
        else:
            out.append(b)
    return ""


def main(argv: list[str]) -> int:
    deadline = time.monotonic() + TIMEOUT
    flags = _flags(argv)
    if flags is None:
        sys.stdout.write(f"ccotel: {USAGE}\n")
        return 0
    body = read_stdin(min(deadline, time.monotonic() + STDIN_WAIT))
    try:
        if not body.strip():
            raise Down("no status-line JSON on stdin")
        if len(body) > MAX_BODY:
            raise Down(f"status-line input over {MAX_BODY} bytes")
        here = state_dir(flags)
        try:
            line = ask(os.path.join(here, SOCKET_NAME), body, deadline)
        except NotRunning:
            there = daemon_state_dir(flags, deadline)
            if not there or os.path.realpath(there) == os.path.realpath(here):
                raise
            line = ask(os.path.join(there, SOCKET_NAME), body, deadline)
    except Down as exc:
        model = _model(body) if body and len(body) <= MAX_BODY else ""
        line = (f"{model} | " if model else "") + f"ccotel: {exc}"
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):  # Claude Code moved on to the next refresh
        pass
    return 0
