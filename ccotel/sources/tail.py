"""Reading the complete lines appended to a file since its cursor.

Only lines ending in a newline are consumed; a half-written last line waits.
A file that shrank, was replaced (another inode) or whose bytes before the
cursor changed is read again from the start; de-duplication downstream keeps
that from counting twice. A line longer than max_line is skipped whole,
without holding it in memory, and reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from ccotel.batch import FileCursor

CHUNK = 8 << 20
MARKER = 32


@dataclass
class Chunk:
    lines: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, bytes)
    oversized: list[int] = field(default_factory=list)  # line numbers skipped for length
    cursor: FileCursor | None = None
    restarted: bool = False  # the file was read again from the start
    size: int = 0  # the file's size when read


def _restart_reason(fd: int, st: os.stat_result, cur: FileCursor | None) -> str | None:
    if cur is None:
        return None
    if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
        return "replaced"
    if st.st_size < cur.offset:
        return "truncated"
    if cur.offset and cur.marker:
        start = max(0, cur.offset - len(cur.marker))
        if os.pread(fd, cur.offset - start, start) != cur.marker:
            return "rewritten"
    return None


def read_new(path: str, cur: FileCursor | None, max_line: int, chunk: int = CHUNK) -> Iterator[Chunk]:
    """Yield the new complete lines in chunks, each with the cursor after it.

    Raises FileNotFoundError / PermissionError for the caller to handle.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        reason = _restart_reason(fd, st, cur)
        restarted = reason is not None
        if cur is None or restarted:
            cur = FileCursor(st.st_dev, st.st_ino)
        offset, line_no = cur.offset, cur.line_no
        end = st.st_size
        if end <= offset:
            if restarted:
                yield Chunk(cursor=cur, restarted=True, size=end)
            return
        carry = b""
        skipping = False
        pos = offset  # file offset of the first byte not yet consumed
        read_at = offset
        while read_at < end:
            data = os.pread(fd, min(chunk, end - read_at), read_at)
            if not data:
                break
            read_at += len(data)
            out = Chunk(restarted=restarted, size=end)
            restarted = False
            if skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                line_no += 1
                out.oversized.append(line_no)
                data, skipping = data[nl + 1 :], False
            if carry:
                data = carry + data
            parts = data.split(b"\n")
            carry = parts.pop()  # the partial last line, b"" after a newline
            if parts:
                first = line_no + 1
                line_no += len(parts)
                numbered = zip(range(first, line_no + 1), parts, strict=True)
                if max(map(len, parts)) > max_line:
                    numbered = [(n, raw) for n, raw in numbered if len(raw) <= max_line or out.oversized.append(n)]
                out.lines = list(numbered)
            pos = read_at - len(carry)
            if len(carry) > max_line:
                carry, skipping = b"", True
            marker = os.pread(fd, min(MARKER, pos), pos - min(MARKER, pos)) if pos else b""
            out.cursor = FileCursor(st.st_dev, st.st_ino, pos, line_no, marker)
            if out.lines or out.oversized or out.restarted or pos != offset:
                offset = pos
                yield out
    finally:
        os.close(fd)
