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


def restart_reason(fd: int, dev: int, ino: int, size: int, cur: FileCursor | None) -> str | None:
    """Why a cursor no longer fits the open file (fd, dev, ino, readable size), or None."""
    if cur is None:
        return None
    if (dev, ino) != (cur.dev, cur.ino):
        return "replaced"
    if size < cur.offset:
        return "truncated"
    if cur.offset and cur.marker:
        start = max(0, cur.offset - len(cur.marker))
        if os.pread(fd, cur.offset - start, start) != cur.marker:
            return "rewritten"
    return None


def marker_before(fd: int, offset: int) -> bytes:
    """The bytes just before offset: they must still be there when reading resumes."""
    n = min(MARKER, offset)
    return os.pread(fd, n, offset - n) if n else b""


def read_new(
    path: str, cur: FileCursor | None, max_line: int, chunk: int = CHUNK
) -> Iterator[Chunk]:
    """Yield the new complete lines in chunks, each with the cursor after it.

    Raises FileNotFoundError / PermissionError for the caller to handle.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        reason = restart_reason(fd, st.st_dev, st.st_ino, st.st_size, cur)
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
                    numbered = [
                        (n, raw)
                        for n, raw in numbered
                        if len(raw) <= max_line or out.oversized.append(n)
                    ]
                out.lines = list(numbered)
            pos = read_at - len(carry)
            if len(carry) > max_line:
                carry, skipping = b"", True
            marker = marker_before(fd, pos)
            out.cursor = FileCursor(st.st_dev, st.st_ino, pos, line_no, marker)
            if out.lines or out.oversized or out.restarted or pos != offset:
                offset = pos
                yield out
    finally:
        os.close(fd)
