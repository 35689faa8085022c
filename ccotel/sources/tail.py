"""Reading the complete lines appended to a file since its cursor: the metrics' reader
(``read_new``, in chunks) and the traces' (``read_lines``, a line at a time up to where the
metrics have read), over one line splitter.

Lines ending in a newline are consumed, and a last line without one when it is a whole
JSON object (ccusage counts such a line; a half-written line never is one): the newline
that may follow it later is then skipped, not read as a line of its own. Any other
unterminated last line waits.
A file that shrank, was replaced (another inode) or whose bytes before the
cursor changed is read again from the start; de-duplication downstream keeps
that from counting twice. A line longer than max_line is skipped whole,
without holding it in memory, and reported.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from ccotel.batch import FileCursor

CHUNK = 8 << 20  # what the metrics read at a time
BLOCK = 1 << 20  # what the traces read at a time (line by line, up to the metrics cursor)
MARKER = 32


@dataclass
class Chunk:
    lines: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, bytes)
    oversized: list[int] = field(default_factory=list)  # line numbers skipped for length
    cursor: FileCursor | None = None
    restarted: bool = False  # the file was read again from the start
    size: int = 0  # the file's size when read


class NotAFile(OSError):
    """A transcript's name on something other than a regular file (a FIFO, a socket, a
    device, a folder): never read (opening a FIFO for reading would wait for a writer)."""


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
          stat.S_IFBLK: "a device", stat.S_IFDIR: "a folder"}  # fmt: skip


def open_regular(path: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (links followed), else
    NotAFile. O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
    (a regular file ignores the flag); the type is checked on the descriptor, so a file
    swapped for something else after a stat is caught too."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a socket cannot be opened at all (ENXIO)
        try:
            _check_regular(os.stat(path).st_mode)
        except NotAFile:
            raise
        except OSError:
            pass
        raise exc from None
    try:
        _check_regular(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "something else")
        raise NotAFile(f"{kind}, not a regular file: not read")


def read_head(path: str, n: int) -> bytes:
    """Up to ``n`` bytes from the start of a regular file; b"" when it cannot be read."""
    try:
        fd = open_regular(path)
    except OSError:
        return b""
    try:
        return os.pread(fd, n, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)


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


def _blocks(
    fd: int, pos: int, line_no: int, end: int, max_line: int, block: int
) -> Iterator[tuple[int | None, list[bytes], int, int]]:
    """The complete lines of [pos, end), read ``block`` bytes at a time: per block that
    ends a line, (the number of a line longer than max_line that ended in it, skipped
    without holding it, or None; the lines after it, some perhaps longer than max_line;
    the number of the first of them; the offset after the last)."""
    carry = b""
    skipping = False
    read_at = pos
    while read_at < end:
        data = os.pread(fd, min(block, end - read_at), read_at)
        if not data:
            return
        read_at += len(data)
        skipped = None
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            line_no += 1
            skipped = line_no
            data, skipping = data[nl + 1 :], False
        if carry:
            data = carry + data
        parts = data.split(b"\n")
        carry = parts.pop()  # the partial last line, b"" after a newline
        first = line_no + 1
        line_no += len(parts)
        after = read_at - len(carry)
        if len(carry) > max_line:
            carry, skipping = b"", True
        yield skipped, parts, first, after


def _whole_object(line: bytes) -> bool:
    """Whether an unterminated last line is a whole JSON object (then no byte can follow it
    on its line but whitespace: Claude Code writes each line and its newline at once)."""
    if not line.rstrip().endswith(b"}"):
        return False
    try:
        return isinstance(msgspec.json.decode(line), dict)
    except Exception:  # invalid JSON or UTF-8, nesting past msgspec's limit
        return False


def _ends_an_object(fd: int, offset: int, end: int) -> bool:
    """Whether the file's last bytes could end a JSON object: cheap, before a half-written
    line (read again at each wake-up while it grows) is read whole."""
    return os.pread(fd, min(64, end - offset), max(offset, end - 64)).rstrip().endswith(b"}")


def _line_end(fd: int, offset: int, end: int) -> int | None:
    """Where the line a cursor ends inside (after an unterminated last line read whole)
    really ends: after its newline (and a CR before it), or None while none has come."""
    head = os.pread(fd, 2, offset)
    if head[:1] == b"\n":
        return offset + 1
    if head == b"\r\n":
        return offset + 2
    pos = offset
    while pos < end:  # the line went on after all: skip the rest of it
        data = os.pread(fd, BLOCK, pos)
        if not data:
            break
        nl = data.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(data)
    return None


def read_new(
    path: str, cur: FileCursor | None, max_line: int, chunk: int = CHUNK
) -> Iterator[Chunk]:
    """Yield the new complete lines in chunks, each with the cursor after it.

    Raises FileNotFoundError / PermissionError / NotAFile for the caller to handle.
    """
    fd = open_regular(path)
    try:
        st = os.fstat(fd)
        reason = restart_reason(fd, st.st_dev, st.st_ino, st.st_size, cur)
        restarted = reason is not None
        if cur is None or restarted:
            cur = FileCursor(st.st_dev, st.st_ino)
        offset, end = cur.offset, st.st_size
        if end <= offset:
            if restarted:
                yield Chunk(cursor=cur, restarted=True, size=end)
            return
        line_no = cur.line_no
        if offset and cur.marker and not cur.marker.endswith(b"\n"):  # after a last line read
            nl = _line_end(fd, offset, end)
            if nl is None:
                return
            offset = nl
            yield Chunk(
                cursor=FileCursor(st.st_dev, st.st_ino, nl, line_no, marker_before(fd, nl)),
                size=end,
            )
        for skipped, parts, first, pos in _blocks(fd, offset, line_no, end, max_line, chunk):
            out = Chunk(restarted=restarted, size=end)
            if skipped is not None:
                out.oversized.append(skipped)
            if parts:
                out.lines = list(zip(range(first, first + len(parts)), parts, strict=True))
                if max(map(len, parts)) > max_line:
                    out.oversized += [n for n, raw in out.lines if len(raw) > max_line]
                    out.lines = [(n, raw) for n, raw in out.lines if len(raw) <= max_line]
            out.cursor = FileCursor(
                st.st_dev, st.st_ino, pos, first + len(parts) - 1, marker_before(fd, pos)
            )
            if out.lines or out.oversized or out.restarted or pos != offset:
                offset, restarted, line_no = pos, False, first + len(parts) - 1
                yield out
        if offset < end and end - offset <= max_line and _ends_an_object(fd, offset, end):
            last = os.pread(fd, end - offset, offset)
            if b"\n" not in last and _whole_object(last):
                line_no += 1
                yield Chunk(
                    lines=[(line_no, last)],
                    cursor=FileCursor(st.st_dev, st.st_ino, end, line_no, marker_before(fd, end)),
                    restarted=restarted,
                    size=end,
                )
    finally:
        os.close(fd)


def read_lines(
    path: str,
    cur: FileCursor | None,
    dev: int,
    ino: int,
    limit: int,
    max_line: int,
    block: int = BLOCK,
) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line number, line without newline, offset after it) up to ``limit``, from
    ``cur`` (or from the start when the file changed under it): the traces read a file up
    to where the metrics cursor is, which is always at a line end.

    A line longer than max_line is yielded empty (it counts in line numbers, as the metrics
    reader skips it). Nothing is yielded when the file on disk is not the one the metrics
    cursor describes (dev, ino, at least ``limit`` bytes): the metrics catch up first.
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
        for skipped, parts, first, after in _blocks(fd, pos, line_no, limit, max_line, block):
            at = after - sum(map(len, parts)) - len(parts)  # where the first part starts
            if skipped is not None:
                yield skipped, b"", at
            for n, raw in enumerate(parts, first):
                at += len(raw) + 1
                yield n, (raw if len(raw) <= max_line else b""), at
    finally:
        os.close(fd)


def marker_at(path: str, offset: int) -> bytes:
    """``marker_before`` of a file by its path (b"" when it cannot be read)."""
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
