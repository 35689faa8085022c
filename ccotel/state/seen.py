"""What the state holds, as a fixed-size filter of 64-bit keys (a Bloom filter).

Accounting asks "is this response (tool call, session…) already in the state?" for every
line. A set of every key ever seen grows with history; this answers "certainly not" for
most new keys without a query, in 4 MiB whatever the history: a "maybe" costs one indexed
lookup. Keys are hashes already (records.h64), so three slices of their bits are the
three probes.
"""

from __future__ import annotations

from collections.abc import Iterable

_BITS = 25  # 2**25 bits = 4 MiB; with 4M keys about 3 % of new keys cost a lookup
_MASK = (1 << _BITS) - 1
_U64 = (1 << 64) - 1

# One filter holds several kinds of key: each kind is moved by its own constant.
RESPONSE, MESSAGE, TOOL, SESSION, PLACE = (
    0,
    0x9E3779B97F4A7C15,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x27D4EB2F165667C5,
)


class Seen:
    __slots__ = ("bits", "keys")

    def __init__(self) -> None:
        self.bits = bytearray(1 << (_BITS - 3))
        self.keys = 0

    def add(self, key: int, kind: int = RESPONSE) -> None:
        self.update((key,), kind)

    def update(self, keys: Iterable[int], kind: int = RESPONSE) -> None:
        b = self.bits
        n = 0
        for key in keys:
            k = (key ^ kind) & _U64
            i = k & _MASK
            b[i >> 3] |= 1 << (i & 7)
            i = (k >> 20) & _MASK
            b[i >> 3] |= 1 << (i & 7)
            i = k >> 39
            b[i >> 3] |= 1 << (i & 7)
            n += 1
        self.keys += n

    def __contains__(self, key: int) -> bool:
        return self.has(key)

    def has(self, key: int, kind: int = RESPONSE) -> bool:
        k = (key ^ kind) & _U64
        b = self.bits
        i = k & _MASK
        if not (b[i >> 3] >> (i & 7)) & 1:
            return False
        i = (k >> 20) & _MASK
        if not (b[i >> 3] >> (i & 7)) & 1:
            return False
        i = k >> 39
        return bool((b[i >> 3] >> (i & 7)) & 1)
