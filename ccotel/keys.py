"""Stable 64-bit keys of strings (records, outcomes and the state key rows by them)."""

from __future__ import annotations

import hashlib


def h64(text: str) -> int:
    """A stable signed 64-bit integer (an SQLite INTEGER key) for a string."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
