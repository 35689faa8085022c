"""A session's span tree for the page: the traces builder run over its transcript files.

The spans, ids and names are the ones the trace backend receives. Building them reads the
session's files (main and subagents) up to the offsets the metrics have read, so the result
(the tree as the API's JSON) is cached per session until one of those offsets moves;
concurrent requests for one session wait for one build instead of each parsing the files.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from ccotel.batch import Response
from ccotel.log import get_logger
from ccotel.records import decode
from ccotel.sources import agent_of, read_lines
from ccotel.traces import Builder, Options, Span, file_info, ids
from ccotel.web import shape

log = get_logger()

CACHED_BYTES = 64 << 20  # of span trees as JSON; at least the newest one is kept

Files = list[tuple[str, int, int, int]]  # (path, dev, ino, offset read by the metrics)


class _Cached(NamedTuple):
    sig: tuple[tuple[str, int, int, int], ...]  # the files as they were read
    body: bytes  # the span tree's JSON


class Waterfalls:
    def __init__(self, opts: Options, max_line: int):
        self.opts, self.max_line = opts, max_line
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def tree(self, sid: str, files: Files, response: Callable[[int], Response | None]) -> bytes:
        """The session's span tree as JSON (``shape.span_tree``), from cache while its files
        have not grown."""
        files = sorted(files, key=lambda f: (agent_of(f[0]) is not None, f[0]))
        sig = tuple((p, d, i, o) for p, d, i, o in files)
        with self._lock:
            hit = self._cache.get(sid)
            if hit and hit.sig == sig:
                self._cache.move_to_end(sid)
                return hit.body
            gate = self._building.setdefault(sid, threading.Lock())
        with gate:
            with self._lock:
                hit = self._cache.get(sid)
                if hit and hit.sig == sig:
                    return hit.body
            out = shape.encode(shape.span_tree(self._build(sid, files, response)))
            with self._lock:
                self._cache[sid] = _Cached(sig, out)
                self._cache.move_to_end(sid)
                while (
                    len(self._cache) > 1
                    and sum(len(v.body) for v in self._cache.values()) > CACHED_BYTES
                ):
                    self._cache.popitem(last=False)
                self._building.pop(sid, None)
        return out

    def _build(
        self, sid: str, files: Files, response: Callable[[int], Response | None]
    ) -> list[Span]:
        b = Builder(self.opts, response, lambda key: None)
        keep = self.opts.capture_content or self.opts.tool_details
        bad = 0
        for path, dev, ino, off in files:
            fi = file_info(path)
            for line_no, raw, _end in read_lines(path, None, dev, ino, off, self.max_line):
                try:
                    rec = decode(raw, line_no, keep or (b'"subagent_type"' in raw))
                    if rec is not None:
                        b.feed(fi, rec, raw)
                except Exception:  # one bad line costs that line, not the page
                    bad += 1
            for s in list(b.touched):
                b.settle(s)
        for s in list(b.sessions):
            b.close(s)
        if bad:
            log.info("waterfall: lines skipped", lines=bad)
        tid = ids.trace_id(sid)
        return [s for s in b.take() if s.trace_id == tid]
