"""Protobuf wire format, written directly: the few field kinds OTLP requests need.

Several times faster than building opentelemetry-proto messages and serializing
them (docs/traces.md, "Why ccotel writes OTLP itself"); the tests decode what it
writes with opentelemetry-proto. Strings are always valid UTF-8 (a lone surrogate,
e.g. from a file name that is not UTF-8, becomes U+FFFD), so a collector never
refuses a request over its encoding.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Mapping
from typing import Any

from ccotel import __version__

SCOPE = "ccotel"  # the instrumentation scope of every span and metric
_SMALL = [bytes([i]) for i in range(128)]


# U+FFFD for what UTF-8 cannot encode (the UTF-8 encoder takes a handler's bytes as they are)
def _fffd(e: UnicodeError) -> tuple[str, int]:
    assert isinstance(e, UnicodeEncodeError)
    return "\ufffd".encode() * (e.end - e.start), e.end  # type: ignore[return-value]


codecs.register_error("ccotel-fffd", _fffd)
DOUBLE = struct.Struct("<d")


def varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string or embedded message)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def string(field: int, s: str) -> bytes:
    return ld(field, s.encode("utf-8", "ccotel-fffd"))


def fixed64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _any_value(v: Any) -> bytes:
    """An AnyValue message: bool, int, double, array or (anything else as) string."""
    if isinstance(v, bool):
        return b"\x10" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x18" + varint(v)
    if isinstance(v, float):
        return b"\x21" + DOUBLE.pack(v)
    if isinstance(v, list | tuple):
        return ld(5, b"".join(ld(1, _any_value(x)) for x in v))
    return string(1, v if isinstance(v, str) else str(v))


_KV_CACHE: dict[tuple[int, str, Any], bytes] = {}
_KEY_CACHE: dict[str, bytes] = {}


def attribute(field: int, k: str, v: Any) -> bytes:
    """A KeyValue as field ``field`` of the enclosing message (cached for str and bool values)."""
    t = type(v)
    cacheable = t is str or t is bool
    if cacheable:
        kv = _KV_CACHE.get((field, k, v))
        if kv is not None:
            return kv
    key = _KEY_CACHE.get(k)
    if key is None:
        key = string(1, k)
        if len(_KEY_CACHE) < 1024:
            _KEY_CACHE[k] = key
    if t is int:
        val = b"\x18" + varint(v)
        body = key + b"\x12" + varint(len(val)) + val
    else:
        body = key + ld(2, _any_value(v))
    kv = varint(field << 3 | 2) + varint(len(body)) + body
    if cacheable and len(_KV_CACHE) < 4096:
        _KV_CACHE[(field, k, v)] = kv
    return kv


def attributes(field: int, attrs: Mapping[str, Any]) -> bytes:
    return b"".join(attribute(field, k, v) for k, v in attrs.items() if v is not None)


def request(resource_attrs: Mapping[str, Any], items: bytes) -> bytes:
    """An Export{Trace,Metrics}ServiceRequest holding one resource and ccotel's scope.

    ``items`` are the encoded spans (ScopeSpans field 2) or metrics (ScopeMetrics
    field 2): both messages put the scope in field 1 and the items in field 2, and
    both Resource{Spans,Metrics} the resource in field 1 and the scope list in field 2.
    """
    resource = ld(1, attributes(1, resource_attrs))
    scope = ld(1, string(1, SCOPE) + string(2, __version__))
    return ld(1, resource + ld(2, scope + items))
