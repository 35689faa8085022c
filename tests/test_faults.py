"""Faults and bad input (issue 5): each test injects a fault into the transcripts or the
state and asserts the totals equal ccusage over the good lines, and that the fault is
reported (parse errors counted, a clear error message) rather than raised."""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccotel.state.store import open_readonly
from tests.conftest import as_ccusage, assert_equal_totals, ccotel, report_totals
from tests.corpus import generate, write_session
from tests.oracle import ccusage_totals


def counters(state: Path) -> dict[str, float]:
    s = open_readonly(state)
    try:
        return s.counters()
    finally:
        s.close()


def backfill(
    config_dir: Path, state: Path, *extra: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    return ccotel(
        "backfill", "--claude-dir", str(config_dir), "--state-dir", str(state), *extra, env=env
    )


def transcripts(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


BAD_LINES: list[bytes] = [
    b'{"type":"assistant","message":{"usage":',  # truncated JSON
    b"\xff\xfe\x80 not utf-8 \xc3\x28",  # invalid UTF-8
    b'{"type":"assistant",\x00"message":{}}',  # NUL byte
    b"\x00" * 64,
    b'{"type":"assistant","message":{"id":7,"model":["x"],"usage":{"input_tokens":"many"}}}',  # wrong types
    b'{"type":"assistant","timestamp":12,"requestId":{},"message":{"id":"msg_x","model":"claude-sonnet-4-5","usage":[]}}',
    b'{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":5,"content":{"a":1}}]}}',
    b"[1,2,3]",
    b'"just a string"',
    b"null",
    b"{}" * 1000,
    b"   ",
]


def test_bad_lines_between_good_ones(tmp_path):
    """Every kind of malformed line, between and after good ones: counted as parse errors,
    and the totals equal ccusage over the file without them."""
    clean = tmp_path / "clean"
    generate(clean, files=6, seed=11)
    dirty = tmp_path / "dirty"
    shutil.copytree(clean, dirty)
    rng = random.Random(5)
    for f in transcripts(dirty):
        lines = f.read_bytes().splitlines(keepends=True)
        for bad in BAD_LINES:
            lines.insert(rng.randrange(len(lines) + 1), bad + b"\n")
        f.write_bytes(b"".join(lines))
    state = tmp_path / "state"
    backfill(dirty, state)
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(clean))
    # blank lines are not errors; the rest are (a line that decodes but is not a
    # transcript record, like [1,2,3], may be counted as unknown rather than an error)
    errors = counters(state).get("parse_errors", 0)
    assert errors >= 5 * len(transcripts(dirty)), counters(state)


def _child_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _rss_of(args: list[str]) -> float:
    """Peak RSS (MiB) of one subprocess, measured by a wrapper so other children do not count."""
    code = (
        "import resource,subprocess,sys;"
        "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_huge_lines_bounded_memory(tmp_path):
    """A 100 MB line (over max_line_bytes) and a line with a million content blocks (under
    it): the first is skipped without being held, the second decoded or rejected, memory
    stays bounded, and the good lines around them are all counted."""
    clean = tmp_path / "clean"
    generate(clean, files=2, seed=3)
    dirty = tmp_path / "dirty"
    shutil.copytree(clean, dirty)
    files = transcripts(dirty)
    with open(files[0], "ab") as f:
        f.write(b'{"type":"assistant","message":{"content":"')
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b'"}}\n')
    blocks = b",".join([b'{"type":"text","text":"a"}'] * 1_000_000)
    with open(files[1], "ab") as f:
        f.write(
            b'{"type":"assistant","uuid":"u","message":{"role":"assistant","content":['
            + blocks
            + b"]}}\n"
        )
    # good lines after both, so the reader must get past them
    write_session(dirty, cwd="/home/user/after-huge", seed=9)
    write_session(clean, cwd="/home/user/after-huge", seed=9)
    state = tmp_path / "state"
    rss = _rss_of(
        [
            sys.executable,
            "-m",
            "ccotel",
            "backfill",
            "--claude-dir",
            str(dirty),
            "--state-dir",
            str(state),
        ]
    )
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(clean))
    assert counters(state).get("parse_errors", 0) >= 1  # the 100 MB line
    # the 100 MB line is never held whole; the million blocks (~26 MB of JSON) is
    print(f"peak RSS {rss:.0f} MiB")
    assert rss < 600, f"peak RSS {rss:.0f} MiB"


def _no_dac() -> list[str]:
    """Run as root without the capabilities that let root read anything: permission bits apply."""
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_permission_denied_folder_non_utf8_name_symlink_loop(tmp_path):
    """One project folder unreadable, a transcript whose name is not UTF-8, a symlink loop:
    the rest is counted, equal to ccusage over what is readable."""
    clean = tmp_path / "clean"
    generate(clean, files=4, seed=21)
    write_session(clean, cwd="/home/user/bytes-name", seed=4)
    dirty = tmp_path / "dirty"
    shutil.copytree(clean, dirty)
    # a project folder nobody may read, holding sessions that must not be counted
    denied = dirty / "projects" / "-home-user-secret"
    denied.mkdir()
    write_session(dirty, cwd="/home/user/secret", seed=77)
    # a transcript name that is not UTF-8
    src = next((dirty / "projects" / "-home-user-bytes-name").glob("*.jsonl"))
    os.rename(os.fsencode(src), os.fsencode(src.parent) + b"/\xff\xfe-session.jsonl")
    # a symlink loop inside projects
    os.symlink("loop", dirty / "projects" / "loop")
    os.symlink(dirty / "projects", dirty / "projects" / "-home-user-bytes-name" / "up")
    denied.chmod(0)
    state = tmp_path / "state"
    cmd = [
        *_no_dac(),
        sys.executable,
        "-m",
        "ccotel",
        "backfill",
        "--claude-dir",
        str(dirty),
        "--state-dir",
        str(state),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(clean))
        # again: the non-UTF-8 name maps back to its offset, nothing is read twice
        lines = counters(state)["lines"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert counters(state)["lines"] == lines
    finally:
        denied.chmod(0o700)


def test_twenty_thousand_files(tmp_path):
    """20,000 transcripts (many projects, many sessions): all counted, equal to ccusage."""
    config = tmp_path / "claude"
    generate(tmp_path / "one", files=1, seed=2)
    base = transcripts(tmp_path / "one")
    body = base[0].read_bytes()
    for i in range(20_000):
        d = config / "projects" / f"-home-user-p{i % 400}"
        d.mkdir(parents=True, exist_ok=True)
        # the same responses in every copy: de-duplicated by both ccotel and ccusage
        (d / f"{i:05d}.jsonl").write_bytes(body)
    write_session(config, cwd="/home/user/unique", seed=1)
    state = tmp_path / "state"
    backfill(config, state)
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
    assert counters(state).get("lines", 0) >= 20_000 * len(body.splitlines())


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True
    )


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def test_state_disk_full_then_space_returns(tmp_path):
    """The state on a filesystem too small for it: a clear error, no traceback, nothing
    half-written; when space returns, the next backfill reaches the oracle's totals."""
    config = tmp_path / "claude"
    generate(config, files=60, target_bytes=30 << 20, seed=8)
    state = tmp_path / "state"
    _mount_tmpfs(state, "96k")
    try:
        proc = ccotel(
            "backfill", "--claude-dir", str(config), "--state-dir", str(state), check=False
        )
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        err = proc.stderr.lower()
        assert "full" in err and "nothing was lost" in err, proc.stderr[-2000:]
        assert "--rebuild" not in err  # a full disk is not a damaged database
        subprocess.run(["mount", "-o", "remount,size=256m", str(state)], check=True)
        backfill(config, state)
        assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
        # read-only: a clear error, and the totals already there are intact
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        write_session(config, cwd="/home/user/while-ro", seed=3)
        proc = ccotel(
            "backfill", "--claude-dir", str(config), "--state-dir", str(state), check=False
        )
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert "read-only" in proc.stderr.lower() or "readonly" in proc.stderr.lower(), proc.stderr[
            -2000:
        ]
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        backfill(config, state)
        assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
    finally:
        _umount(state)


@pytest.mark.parametrize("seed", range(6))
def test_corrupt_state_refused_then_rebuilt(tmp_path, seed):
    """Garbage over random places of the state database: run, backfill and report refuse
    with a message naming `ccotel backfill --rebuild`, never a traceback; backfill (which
    writes) refuses every state SQLite's quick_check finds damaged (damage SQLite cannot
    see, inside a number, is not detectable) and leaves it as it was, though a new transcript
    waits to be written into it; the rebuild reaches the oracle's totals."""
    config = tmp_path / "claude"
    generate(config, files=8, seed=13)
    state = tmp_path / "state"
    backfill(config, state)
    generate(tmp_path / "later", files=1, seed=14)  # new lines: a backfill that went on writes
    shutil.copytree(tmp_path / "later" / "projects", config / "projects", dirs_exist_ok=True)
    want = ccusage_totals(config)
    db = state / "state.db"
    data = bytearray(db.read_bytes())
    rng = random.Random(seed)
    for _ in range(8 * (seed + 1)):
        i = rng.randrange(0, len(data))
        data[i : i + 16] = rng.randbytes(16)
    db.write_bytes(bytes(data))
    damaged = _quick_check(db) != "ok"
    garbled = db.read_bytes()
    refused = {}
    for args in (["report", "--json", "--state-dir", str(state)],
                 ["backfill", "--claude-dir", str(config), "--state-dir", str(state)]):  # fmt: skip
        proc = ccotel(*args, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        refused[args[0]] = proc.returncode != 0
        if proc.returncode != 0:
            assert "ccotel backfill --rebuild" in proc.stderr, proc.stderr[-2000:]
    if damaged:
        assert refused["backfill"], "backfill wrote over a state quick_check finds damaged"
        assert db.read_bytes() == garbled, "the refused backfill wrote into the damaged state"
        assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    backfill(config, state, "--rebuild")
    assert_equal_totals(as_ccusage(report_totals(state)), want)


def _quick_check(db: Path) -> str:
    import sqlite3

    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return c.execute("PRAGMA quick_check(1)").fetchone()[0]
        finally:
            c.close()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        return str(exc)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """SQLite's varint at ``i``: (value, length)."""
    v = 0
    for n in range(8):
        v = (v << 7) | (buf[i + n] & 0x7F)
        if buf[i + n] < 0x80:
            return v, n + 1
    return (v << 8) | buf[i + 8], 9


def _swap_first_rowids(db: Path, table: str) -> None:
    """Damage only quick_check sees: the rowids of the first two cells of one of the table's
    leaf pages swapped (out of order). Reads of the table and writes into it go on."""
    import sqlite3

    c = sqlite3.connect(db)
    try:
        size = c.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in c.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' AND ncell >= 2",
            (table,))]  # fmt: skip
    finally:
        c.close()
    data = bytearray(db.read_bytes())
    for pageno in pages:
        base = (pageno - 1) * size
        hdr = base + (100 if pageno == 1 else 0)
        cells = [int.from_bytes(data[hdr + 8 + 2 * k : hdr + 10 + 2 * k], "big") for k in (0, 1)]
        spans = []
        for off in cells:
            _size, n = _varint(data, base + off)
            _rowid, m = _varint(data, base + off + n)
            spans.append((base + off + n, m))
        (a, la), (b, lb) = spans
        if la == lb:
            data[a : a + la], data[b : b + lb] = data[b : b + lb], data[a : a + la]
            db.write_bytes(bytes(data))
            return
    raise AssertionError(f"no leaf page of {table} with two rowids of one length")


def test_damage_only_quick_check_sees_is_refused_before_writing(tmp_path):
    """Rowids out of order in a page of the responses: every read at start goes through, so
    only the quick_check before writing keeps a backfill (with new lines to write) from
    writing into the damaged state."""
    config = tmp_path / "claude"
    generate(config, files=8, seed=13)
    state = tmp_path / "state"
    backfill(config, state)
    db = state / "state.db"
    _swap_first_rowids(db, "response")
    assert "out of order" in _quick_check(db)
    generate(tmp_path / "later", files=1, seed=14)
    shutil.copytree(tmp_path / "later" / "projects", config / "projects", dirs_exist_ok=True)
    damaged = db.read_bytes()
    proc = ccotel("backfill", "--claude-dir", str(config), "--state-dir", str(state), check=False)
    assert proc.returncode != 0 and "ccotel backfill --rebuild" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.read_bytes() == damaged
    backfill(config, state, "--rebuild")
    assert_equal_totals(as_ccusage(report_totals(state)), ccusage_totals(config))
