"""No line stops the pipeline (issue 9, silent loss 4), and hostile lines count as ccusage
counts them.

Property tests (hypothesis) write whole transcripts mixing good lines with hostile ones:
nesting thousands deep, token counts past 2**64, negative, floats, NaN and Infinity, a key
twice in one object, invalid UTF-8 and lone surrogates inside strings; hostile lines reuse
good lines' message ids too, with larger counts, so a wrongly accepted copy would replace
the good one. The pipeline must not raise, and its totals must equal ccusage's on the same
file. One band is left out of the oracle, on purpose: token counts from 2**40 to 2**64 - 1,
which ccusage sums in u64 and ccotel refuses as malformed (SQLite integers cannot hold
their sums); records.MAX_TOKENS says so.

Then: the 5,000-deep line that killed a backfill worker (RecursionError), in the worker
path and in the daemon; a fault of ccotel's own confined to its file, in both paths.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccotel import report
from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.projects import project_labeler
from ccotel.records import MAX_TOKENS, decode
from ccotel.state.store import Store
from tests.conftest import as_ccusage, assert_equal_totals
from tests.corpus import generate
from tests.lines import SID, assistant
from tests.oracle import ccusage_totals
from tests.test_live import scrape, start, wait_equal

NOW = 1_800_000_000.0
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens")


def good(i: int, **kw) -> str:
    return assistant(f"msg_{i}", f"req_{i}", inp=10 + i, out=100 * i + 1, cr=1000 + i, **kw)


# --- hostile lines -----------------------------------------------------------------------

numbers = st.one_of(
    st.integers(-(2**70), -1).map(str),  # negative
    st.integers(2**64, 2**80).map(str),  # past u64
    st.integers(MAX_TOKENS + 1, 2**64 - 1).map(lambda n: f"BAND{n}"),  # the documented band
    st.integers(0, 5000).map(str),  # fine
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # 1.5, 1e+300, -0.0
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1.0", "1e3", "-0.5", '"12"']),
)
bad_bytes = st.sampled_from(
    [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\\ud800",
     b"\\udc00x", b"\x80"]
)  # fmt: skip


def _objects(line: str) -> dict[str, dict]:
    d = json.loads(line)
    m = d["message"]
    return {"top": d, "message": m, "usage": m["usage"], "block": m["content"][0]}


def _dup(line: str, obj: dict, key: str, value: str) -> str:
    """The line with ``key`` once more, at the end of the object ``obj`` (one of _objects)."""
    enc = json.dumps(obj, separators=(",", ":"))
    return line.replace(enc, enc[:-1] + f',"{key}":{value}' + "}", 1)


@st.composite
def hostile(draw, i: int) -> tuple[bytes, bool]:
    """A hostile line and whether it must stay out of the oracle (the documented band)."""
    copy = draw(st.booleans())  # reuse a good line's ids, with larger counts
    n = draw(st.integers(0, 5)) if copy else 100 + i
    base = assistant(f"msg_{n}", f"req_{n}", inp=90_000, out=90_000, cr=90_000)
    kind = draw(st.sampled_from(["deep", "deep-field", "number", "dup", "utf8"]))
    band = False
    if kind == "deep":
        d = draw(st.integers(100, 6000))
        line = ("[" * d + "]" * d).encode()
    elif kind == "deep-field":
        d = draw(st.integers(100, 6000))
        line = (base[:-1] + ',"x":' + "[" * d + "]" * d + "}").encode()
    elif kind == "number":
        key, num = draw(st.sampled_from(TOKEN_KEYS)), draw(numbers)
        band = num.startswith("BAND")
        line = base.replace(f'"{key}":90000', f'"{key}":{num.removeprefix("BAND")}', 1).encode()
    elif kind == "dup":
        obj = _objects(base)[draw(st.sampled_from(["top", "message", "usage", "block"]))]
        key = draw(st.sampled_from(sorted(obj)))
        value = draw(st.sampled_from(["1", "90000", '"x"', "null", "{}", json.dumps(obj[key])]))
        line = _dup(base, obj, key, value).encode()
    else:
        field = draw(
            st.sampled_from([b'"text":"hi"', b'"gitBranch":"main"', b'"cwd":"/home/u/proj"'])
        )
        pos = draw(st.integers(2, len(field) - 2))
        line = base.encode().replace(
            field, field[: pos + 1] + draw(bad_bytes) + field[pos + 1 :], 1
        )
    return line, band


@st.composite
def transcripts(draw) -> tuple[list[bytes], list[bytes]]:
    """(the file ccotel reads, the file the oracle reads)."""
    lines = [(good(i).encode(), False) for i in range(6)]
    for i in range(draw(st.integers(1, 12))):
        lines.insert(draw(st.integers(0, len(lines))), draw(hostile(i)))
    return [ln for ln, _ in lines], [ln for ln, band in lines if not band]


def ingest_file(root: Path, state: Path, workers: int = 1) -> Ingest:
    store = Store(state)
    try:
        ing = Ingest(Config(), store, [root], lambda: NOW, chunk_bytes=4096, batch_lines=7)
        ing.backfill(ing.scan(), workers, sleep=lambda s: None)
        return ing
    finally:
        store.close()


def state_totals(state: Path) -> dict:
    s = Store(state, readonly=True)
    try:
        return as_ccusage(report.build(s, "day", None, project_labeler("name"))["totals"])
    finally:
        s.close()


def write(root: Path, lines: list[bytes], name: str = f"{SID}.jsonl") -> Path:
    p = root / "projects" / "-home-u-proj" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"".join(ln + b"\n" for ln in lines))
    return p


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(transcripts())
def test_hostile_lines_count_as_ccusage_counts_them(tmp_path_factory, files):
    ours, oracle = files
    tmp = tmp_path_factory.mktemp("hostile")
    write(tmp / "ours", ours)
    write(tmp / "oracle", oracle)
    for line in ours:  # line by line: never an exception
        decode(line, 1)
    ing = ingest_file(tmp / "ours", tmp / "state")
    assert not ing.retry and not ing.broken
    want = ccusage_totals(tmp / "oracle")
    assert_equal_totals(state_totals(tmp / "state"), want)
    assert ing.totals.counters["lines"] == len(ours)
    shutil.rmtree(tmp)


@pytest.mark.parametrize(
    "line,reason",
    [
        (b"[" * 5000 + b"]" * 5000, "undecodable (RecursionError)"),
        (good(50)[:-1].encode() + b',"x":' + b"[" * 200 + b"]" * 200 + b"}", "nested deeper"),
        (
            good(51).replace('"input_tokens":61', '"input_tokens":18446744073709551616').encode(),
            "<= 1099511627775",
        ),
        (good(52).replace('"input_tokens":62', '"input_tokens":-62').encode(), ">= 0"),
        (good(53).replace('"input_tokens":63', '"input_tokens":63.5').encode(), "Expected `int`"),
        (
            good(54).replace('"input_tokens":64', '"input_tokens":64,"input_tokens":64').encode(),
            "twice",
        ),
        (good(55).replace('"text":"hi"', '"text":"h\\ud800i"').encode(), "not JSON"),
        (good(56).encode().replace(b'"text":"hi"', b'"text":"h\xffi"'), "invalid UTF-8"),
    ],
    ids=[
        "5000-deep",
        "200-deep",
        "2**64",
        "negative",
        "float",
        "key-twice",
        "lone-surrogate",
        "utf8",
    ],
)
def test_each_hostile_line_is_a_counted_parse_error(tmp_path, line, reason):
    """Each kind alone between good lines: not counted (as ccusage), one parse error, reason
    in the log; the good lines around it counted."""
    write(tmp_path / "claude", [good(1).encode(), line, good(2).encode()])
    ing = ingest_file(tmp_path / "claude", tmp_path / "state")
    assert ing.totals.counters["parse_errors"] == 1
    assert_equal_totals(state_totals(tmp_path / "state"), ccusage_totals(tmp_path / "claude"))
    rec = decode(line, 1)
    from ccotel.digest import digest

    d = digest([rec] if rec else [], 1, SID, None)
    assert (rec and rec.error and reason in rec.error) or any(reason in r for _, r in d.errors), (
        rec,
        d.errors,
    )


def test_deep_line_in_a_backfill_worker(tmp_path):
    """The reported crash: RecursionError in a decode worker stopped the backfill."""
    root = tmp_path / "claude"
    generate(root, files=10, seed=4)
    files = sorted(root.rglob("*.jsonl"))
    with open(files[3], "ab") as f:
        f.write(b"[" * 5000 + b"]" * 5000 + b"\n")
    ing = ingest_file(root, tmp_path / "state", workers=2)
    assert ing.totals.counters["parse_errors"] == 1
    assert_equal_totals(state_totals(tmp_path / "state"), ccusage_totals(root))


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_a_fault_of_ccotels_own_is_confined_to_its_file(tmp_path, monkeypatch, workers):
    """Any exception while reading one file (here injected into digest): that file is set
    aside (logged, one parse error), every other file is counted, nothing raises."""
    import ccotel.pipeline as pipeline

    root = tmp_path / "claude"
    generate(root, files=10, seed=5)
    victim = sorted(root.rglob("*.jsonl"))[4]
    real = pipeline.digest

    def faulty(recs, lines, session, cwd):
        if any(r.session and r.session in victim.name for r in recs) or session in victim.name:
            raise KeyError("injected")
        return real(recs, lines, session, cwd)

    monkeypatch.setattr(pipeline, "digest", faulty)
    ing = ingest_file(root, tmp_path / "state", workers=workers)
    assert list(ing.broken) == [str(victim)]
    assert ing.totals.counters["parse_errors"] == 1
    others = tmp_path / "others"
    shutil.copytree(root, others)
    (others / victim.relative_to(root)).unlink()
    assert_equal_totals(state_totals(tmp_path / "state"), ccusage_totals(others))


@pytest.mark.timeout(120)
def test_daemon_stays_up_through_hostile_lines(tmp_path):
    """`ccotel run` with the 5,000-deep line and the others, written before it starts and
    while it runs: it stays up, counts them as parse errors, equals ccusage."""
    root = tmp_path / "claude"
    write(root, [good(1).encode(), b"[" * 5000 + b"]" * 5000, good(2).encode()])
    proc = start(root, tmp_path / "state")
    port = proc.port
    try:
        wait_equal(port, root)
        with open(root / "projects" / "-home-u-proj" / f"{SID}.jsonl", "ab") as f:
            for _, (line, _r) in enumerate(
                [
                    (
                        good(7)
                        .replace('"input_tokens":17', '"input_tokens":17,"input_tokens":1')
                        .encode(),
                        0,
                    ),
                    (good(8).encode().replace(b'"text":"hi"', b'"text":"h\xffi"'), 0),
                    (b'{"a":' * 3000 + b"1" + b"}" * 3000, 0),
                    (good(9).encode(), 0),
                ]
            ):
                f.write(line + b"\n")
        wait_equal(port, root)
        deadline = time.monotonic() + 10
        while scrape(port)["lines"] < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scrape(port)["lines"] == 7
        assert proc.poll() is None
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "Traceback" not in out, out[-3000:]


def test_a_session_named_by_a_file_name_that_is_not_utf8(tmp_path):
    """A line without sessionId takes its session from the file name; a name that is not
    UTF-8 used to reach SQLite as text it cannot encode (a traceback on 084e159, and a
    commit that could never succeed, holding back every file read with it)."""
    from tests.conftest import ccotel

    root = tmp_path / "claude"
    d = json.loads(good(1))
    del d["sessionId"]
    folder = root / "projects" / "-home-u-proj"
    folder.mkdir(parents=True)
    (folder / f"{SID}.jsonl").write_text(good(2) + "\n")
    with open(os.fsencode(folder) + b"/\xff\xfe.jsonl", "w") as f:
        f.write(json.dumps(d, separators=(",", ":")) + "\n")
    state = tmp_path / "state"
    out = ccotel("backfill", "--claude-dir", str(root), "--state-dir", str(state))
    assert "Traceback" not in out.stderr and "cannot write" not in out.stderr, out.stderr
    rows = json.loads(
        ccotel("report", "--by", "session", "--json", "--state-dir", str(state)).stdout
    )["rows"]
    assert {r["session"] for r in rows} == {SID, "\\xff\\xfe"}
    assert_equal_totals(state_totals(state), ccusage_totals(root))
