"""Tailing edge cases: partial lines, truncation, replacement, rewrites, long lines, new and deleted files."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ccotel.batch import FileCursor
from ccotel.sources.tail import read_lines, read_new
from tests.lines import SID, assistant
from tests.test_accounting import make, sync, totals, write


def read_all(path, cur, max_line=1 << 20, chunk=1 << 20):
    lines, oversized = [], []
    for ch in read_new(path, cur, max_line, chunk):
        lines += ch.lines
        oversized += ch.oversized
        cur = ch.cursor or cur
    return lines, oversized, cur


def test_partial_line_waits_for_its_newline(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"a":1}\n{"b":')
    lines, _, cur = read_all(str(p), None)
    assert lines == [(1, b'{"a":1}')] and cur.offset == 8
    with open(p, "ab") as f:
        f.write(b"2}\n")
    lines, _, cur = read_all(str(p), cur)
    assert lines == [(2, b'{"b":2}')] and cur.offset == p.stat().st_size


def test_truncated_and_replaced_files_are_read_again(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\n")
    _, _, cur = read_all(str(p), None)
    p.write_bytes(b"x\n")  # truncated (same inode, smaller)
    lines, _, cur = read_all(str(p), cur)
    assert lines == [(1, b"x")]
    q = tmp_path / "b.jsonl"
    q.write_bytes(b"new1\nnew2\nnew3\n")
    os.replace(q, p)  # replaced: another inode
    lines, _, _ = read_all(str(p), cur)
    assert [raw for _, raw in lines] == [b"new1", b"new2", b"new3"]


def test_rewritten_bytes_before_cursor_are_noticed(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"aaaa\nbbbb\n")
    _, _, cur = read_all(str(p), None)
    with open(p, "r+b") as f:  # same size, same inode, other content (copy-truncate + regrow)
        f.write(b"cccc\ndddd\neeee\n")
    lines, _, _ = read_all(str(p), cur)
    assert [raw for _, raw in lines] == [b"cccc", b"dddd", b"eeee"]


def test_overlong_line_is_skipped_without_holding_it(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"ok1\n" + b"x" * 5000 + b"\nok2\n")
    lines, oversized, cur = read_all(str(p), None, max_line=1024, chunk=700)
    assert [raw for _, raw in lines] == [b"ok1", b"ok2"]
    assert oversized == [2] and cur.line_no == 3 and cur.offset == p.stat().st_size


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.lists(st.integers(1, 97), max_size=8),
    st.integers(3, 64),
)
def test_any_split_of_appends_reads_every_line_once(tmp_path_factory, lines, cuts, chunk):
    """Appending a stream in arbitrary pieces yields exactly its complete lines, in order."""
    data = b"".join(line + b"\n" for line in lines)
    p = tmp_path_factory.mktemp("t") / "f.jsonl"
    p.write_bytes(b"")
    got, cur, pos = [], None, 0
    for c in [*sorted(cuts), len(data)]:
        c = min(c, len(data))
        if c > pos:
            with open(p, "ab") as f:
                f.write(data[pos:c])
            pos = c
        new, _, cur = read_all(str(p), cur, max_line=1 << 20, chunk=chunk)
        got += [raw for _, raw in new]
    assert got == lines


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 90), max_size=25),
    st.integers(8, 40),
    st.integers(3, 64),
    st.integers(0, 30),
)
def test_the_two_readers_agree_line_for_line(tmp_path_factory, sizes, max_line, block, tail):
    """The traces' reader (a line at a time, with offsets) and the metrics' (in chunks) split
    any file alike: same numbers, same lines, the same lines too long; each line's offset
    is where it ends, and a half-written last line is read by neither."""
    body = [bytes([97 + i % 26]) * n for i, n in enumerate(sizes)]
    data = b"".join(b + b"\n" for b in body) + b"z" * tail
    p = tmp_path_factory.mktemp("r") / "f.jsonl"
    p.write_bytes(data)
    st_ = p.stat()
    limit = len(data) - tail
    got = list(read_lines(str(p), None, st_.st_dev, st_.st_ino, limit, max_line, block))
    ends = [sum(len(b) + 1 for b in body[: i + 1]) for i in range(len(body))]
    assert got == [(i + 1, b if len(b) <= max_line else b"", ends[i]) for i, b in enumerate(body)]
    lines, oversized, cur = read_all(str(p), None, max_line=max_line, chunk=block)
    assert lines == [(n, raw) for n, raw, _ in got if raw or len(body[n - 1]) == 0]
    assert oversized == [i + 1 for i, b in enumerate(body) if len(b) > max_line]
    assert (cur.offset if cur else 0) == limit and (cur.line_no if cur else 0) == len(body)
    half = got[len(got) // 2] if got else None
    if half is not None:  # from a cursor in the middle: the rest, the same
        mid = FileCursor(st_.st_dev, st_.st_ino, half[2], half[0])
        rest = list(read_lines(str(p), mid, st_.st_dev, st_.st_ino, limit, max_line, block))
        assert rest == got[half[0] :]


def test_new_subagent_folder_and_deleted_file(tmp_path):
    root, _store, ing = make(tmp_path)
    main = write(root, f"{SID}.jsonl", assistant("m1", "r1"))
    sync(ing)
    write(root, f"{SID}/subagents/agent-a1.jsonl", assistant("m2", "r2", sidechain=True))
    sync(ing)
    assert totals(ing).requests == 2 and len(ing.cursors) == 2
    os.unlink(main)
    sync(ing)
    assert len(ing.cursors) == 1 and totals(ing).requests == 2  # forgotten, totals kept


def test_symlink_loop_and_dangling_link_do_not_stop_the_rest(tmp_path):
    root, _store, ing = make(tmp_path)
    (root / "projects" / "loop").symlink_to(root / "projects")
    (root / "projects" / "ghost.jsonl").symlink_to(tmp_path / "missing")
    write(root, f"{SID}.jsonl", assistant())
    sync(ing)
    assert totals(ing).requests == 1
