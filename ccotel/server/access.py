"""Who the server answers: where it may listen, and which Host names it serves.

- Listening beyond loopback (the docker bridge address and 0.0.0.0 included) needs basic auth,
  or ``allow_unauthenticated_network_access = true``: TLS alone authenticates nobody.
- DNS rebinding: a web page the user visits can point its own name at 127.0.0.1 and read the
  API with the browser's help; the request then carries that name in Host. So a request is
  served only when its Host is a loopback name, an IP address (a literal names no attacker's
  domain), the name the server was bound to, or a name listed in ``http_allowed_hosts``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from ccotel.config import ConfigError

ADDR_KEY = "http_addr"
OPT_IN = "allow_unauthenticated_network_access"


def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, sockaddr) of each address ``host`` names; ConfigError when it names none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{ADDR_KEY}: cannot listen on {host!r} ({reason})") from None
    out: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, addr in infos:
        if (family, addr) not in out:
            out.append((family, addr))
    return out


def is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def check_exposure(
    host: str, addrs: Iterable[tuple[int, tuple[Any, ...]]], auth: bool, opt_in: bool
) -> None:
    """Refuse to listen beyond loopback without basic auth, unless the user opted in."""
    wide = [a[1][0] for a in addrs if not is_loopback(a[1][0])]
    if wide and not auth and not opt_in:
        raise ConfigError(
            f"{ADDR_KEY}: {host} ({wide[0]}) is reachable from the network; set "
            f"http_basic_auth_user and http_basic_auth_password_hash, or {OPT_IN} = true"
        )


def host_name(header: str) -> str:
    """The name part of a Host header, lower case: 'Example.org:80' -> 'example.org'."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    name, _, port = h.rpartition(":")
    if name and port.isdigit():
        h = name
    return h.rstrip(".")


class HostFilter:
    """``allows(header)``: does a Host header name this server?"""

    def __init__(self, bound_host: str, extra: Iterable[str] = ()):
        self.names = {"localhost", *(host_name(n) for n in extra if n.strip())}
        if bound_host and not _is_ip(bound_host):
            self.names.add(host_name(bound_host))

    def allows(self, header: str) -> bool:
        h = host_name(header)
        return h in self.names or h.endswith(".localhost") or _is_ip(h)


def _is_ip(h: str) -> bool:
    try:
        ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return False
    return True
