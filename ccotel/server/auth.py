"""HTTP basic auth against a salted scrypt hash (``ccotel hash-password`` writes it).

The hash is ``scrypt$n=16384,r=8,p=5$<salt>$<key>`` (base64): OWASP's scrypt setting of
16 MiB memory, about 0.3 s a check here. A credential that passed once is remembered (a keyed
digest of the header, in memory), so a page that polls pays for one check, not one per request;
a wrong one pays every time, one check at a time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading

PREFIX = "scrypt$"
N, R, P = 1 << 14, 8, 5
WAIT = 2.0  # seconds a request waits for its turn at a check
QUEUED = 3  # requests checking or in line to check; more get 401 at once
MAX_MEM = 256 << 20  # a hash asking for more is refused as a configuration error
_FORMAT = re.compile(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
KEY = "http_basic_auth_password_hash"
REHASH = "run `ccotel hash-password` and put the line it prints in the config"


def hash_password(password: bytes, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    key = _derive(password, salt, N, R, P, 32)
    return f"{PREFIX}n={N},r={R},p={P}${_b64(salt)}${_b64(key)}"


def parse_hash(value: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, key) of a hash; ValueError naming the key and what to do."""
    if value.startswith("sha256:"):
        raise ValueError(f"{KEY}: the unsalted sha256: form is no longer accepted; {REHASH}")
    m = _FORMAT.fullmatch(value)
    if not m:
        raise ValueError(f"{KEY}: expected scrypt$n=...,r=...,p=...$<salt>$<key>; {REHASH}")
    n, r, p = (int(x) for x in m.group(1, 2, 3))
    try:
        salt, key = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    except binascii.Error:
        raise ValueError(f"{KEY}: salt or key is not base64; {REHASH}") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 64 or 128 * r * n > MAX_MEM:
        raise ValueError(f"{KEY}: n must be a power of 2 and n*r*128 at most 256 MiB; {REHASH}")
    if len(salt) < 8 or len(key) < 16:
        raise ValueError(f"{KEY}: salt or key too short; {REHASH}")
    return n, r, p, salt, key


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=MAX_MEM + (1 << 20), dklen=dklen
    )


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class BasicAuth:
    """``check(header)``: does an Authorization header carry the user and password?"""

    def __init__(self, user: str, password_hash: str):
        self.user = user.encode()
        self.n, self.r, self.p, self.salt, self.key = parse_hash(password_hash)
        self._secret = os.urandom(32)
        self._passed: set[bytes] = set()
        self._slow = threading.Lock()  # one scrypt at a time
        self._line = threading.BoundedSemaphore(QUEUED)

    def check(self, header: str | None) -> bool:
        if not header:
            return False
        # http.client decodes header bytes as latin-1: encoding back gives the bytes sent.
        raw = header.encode("latin-1", "replace")
        mark = hmac.digest(self._secret, raw, "sha256")
        if mark in self._passed:
            return True
        scheme, _, token = raw.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        # One check at a time, and at most QUEUED requests in line for it (each waiting at
        # most WAIT): a flood of guesses gets fast 401s and holds at most QUEUED workers, while
        # credentials that passed before are answered at once. The same header sent by several
        # requests at once is checked once; the others find it passed.
        if not self._line.acquire(blocking=False):
            return False
        try:
            if not self._slow.acquire(timeout=WAIT):
                return False
            try:
                if mark in self._passed:
                    return True
                key = _derive(password, self.salt, self.n, self.r, self.p, len(self.key))
                ok = hmac.compare_digest(user, self.user) & hmac.compare_digest(key, self.key)
                if ok:
                    if len(self._passed) >= 64:
                        self._passed.clear()
                    self._passed.add(mark)
                return bool(ok)
            finally:
                self._slow.release()
        finally:
            self._line.release()
