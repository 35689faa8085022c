"""``ccotel statusline``: the client Claude Code runs on every refresh. It must cost nothing.

It imports only what CPython starts with (os, sys, _socket, select; tomllib only when a
config file exists), finds the daemon's socket as ``ccotel.config`` finds the state dir, checks that the
socket is the user's own and private, POSTs the JSON read from stdin, and prints the
daemon's line. It always exits 0 and never waits long: each step has a deadline
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


def _flags(argv: list[str]) -> dict[str, str] | None:
    """--state-dir, --metrics-addr (and --config before the command); None: not for us."""
    out: dict[str, str] = {}
    it = iter(argv)
    for a in it:
        name, eq, value = a.partition("=")
        if name not in ("--state-dir", "--metrics-addr", "--config"):
            return None
        if not eq:
            value = next(it, None)
            if value is None:
                return None
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


def state_dir(flags: dict[str, str]) -> str:
    """The state dir as ccotel.config resolves it: --state-dir, CCOTEL_STATE_DIR, the config
    file's state_dir (relative to the file), then platformdirs' user state dir."""
    if flags.get("state-dir"):
        return os.path.expanduser(flags["state-dir"])
    env = os.environ.get("CCOTEL_STATE_DIR", "").strip()
    if env:
        return os.path.expanduser(env)
    cfg = _config_file(flags)
    if cfg:
        import tomllib

        try:
            with open(cfg, "rb") as f:
                value = tomllib.load(f).get("state_dir")
        except (OSError, ValueError) as exc:
            raise Down(f"config {cfg}: {exc}") from None
        if isinstance(value, str) and value:
            value = os.path.expanduser(value)
            return value if os.path.isabs(value) else os.path.join(os.path.dirname(cfg), value)
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "ccotel")
    base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.join(home, ".local", "state")
    return os.path.join(base, "ccotel")


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
        raise Down("daemon not running (ccotel service install)") from None
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
        raise Down("daemon not running (ccotel service install)") from None
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
    """The model's name for the short line (best effort)."""
    try:
        import json

        m = json.loads(body).get("model") or {}
        name = m.get("display_name") or m.get("id") or ""
        return "".join(c for c in str(name)[:40] if c.isprintable())
    except Exception:
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
        line = ask(os.path.join(state_dir(flags), SOCKET_NAME), body, deadline)
    except Down as exc:
        model = _model(body) if body and len(body) <= MAX_BODY else ""
        line = (f"{model} | " if model else "") + f"ccotel: {exc}"
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError):  # Claude Code moved on to the next refresh
        pass
    return 0
