"""Reading a transcript from the trace cursor up to the metrics cursor.

The metrics cursor (committed in ``files``) is always at a line end and
everything before it is in the accounting state, so the chat spans built from
those lines can take their usage from the kept responses. A file whose inode
changed under the trace cursor, that shrank below it, or whose bytes before
it changed is read again from the start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ccotel.batch import FileCursor
from ccotel.sources.tail import marker_before, open_regular, restart_reason

BLOCK = 1 << 20
Cursor = FileCursor  # the trace cursor has the metrics cursor's shape


def read_lines(
    path: str, cur: Cursor | None, dev: int, ino: int, limit: int, max_line: int
) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line number, line without newline, offset after it) up to limit.

    Lines longer than max_line are skipped (counted in line numbers), as the
    metrics reader skips them. Nothing is yielded when the file on disk is not
    the one the metrics cursor describes (it will catch up first).
    """
    try:
        fd = open_regular(path)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino) or st.st_size < limit:
            return
        if cur is None or restart_reason(fd, dev, ino, limit, cur):
            pos, line_no = 0, 0
        else:
            pos, line_no = cur.offset, cur.line_no
        carry = b""
        carry_start = pos
        skipping = False
        read_at = pos
        while read_at < limit:
            data = os.pread(fd, min(BLOCK, limit - read_at), read_at)
            if not data:
                return
            base = read_at
            read_at += len(data)
            start = 0
            if skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                line_no += 1
                skipping = False
                start = nl + 1
                carry_start = base + start
                yield line_no, b"", carry_start  # an oversized line: nothing to read
            while True:
                nl = data.find(b"\n", start)
                if nl < 0:
                    break
                line = carry + data[start:nl] if carry else data[start:nl]
                carry = b""
                line_no += 1
                end = base + nl + 1
                yield line_no, (line if len(line) <= max_line else b""), end
                start = nl + 1
                carry_start = end
            if start < len(data):
                carry += data[start:]
                if len(carry) > max_line:
                    carry, skipping = b"", True
    finally:
        os.close(fd)


def marker_at(path: str, offset: int) -> bytes:
    if offset <= 0:
        return b""
    try:
        fd = open_regular(path)
    except OSError:
        return b""
    try:
        return marker_before(fd, offset)
    finally:
        os.close(fd)
