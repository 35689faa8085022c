"""The daemon's one HTTP server: /metrics, /healthz, the page and its JSON API.

- ``httpd``: the server (standard library http.server, a bounded worker pool, deadlines):
  ``HttpServer``;
- ``access``: who may be served (bind policy, Host names);
- ``auth``: basic auth and its salted password hash (``ccotel hash-password``):
  ``hash_password``, ``parse_hash``.

Other packages import these names from here; each loads its module on first use (the
config checks a password hash without loading the server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccotel.lazy import loader

if TYPE_CHECKING:
    from ccotel.server.auth import hash_password, parse_hash
    from ccotel.server.httpd import HttpServer

__all__ = ["HttpServer", "hash_password", "parse_hash"]

__getattr__ = loader(
    __name__, {"HttpServer": "httpd", "hash_password": "auth", "parse_hash": "auth"}
)
