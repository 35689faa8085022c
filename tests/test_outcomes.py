"""What the spend bought (issue 14 §2): lines, commits and pull requests from tool results,
counted once whatever happens (resumed copies, failed state commits, restarts, an upgrade).

Oracles: tests/outcome_oracle.py (every line read with json, each call at its first result)
over the real 2.1.39 transcripts and the synthetic corpus with its resumed copies; the commit
hashes git printed in the 2.1.39 sessions, listed here; crafted lines for what the fixtures lack
(rejected edits, quiet commits, pull requests, a result arriving after a restart).
tests/test_realcli_outcomes.py compares with `git log --numstat` of a real repository.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from ccotel import app, outcomes
from ccotel.config import Config
from ccotel.pipeline import Ingest, read_history
from ccotel.projects import project_labeler
from ccotel.records import decode
from ccotel.state import ADDED, COMMITS, PRS, REMOVED, TURN_MS, OutcomeTotals
from ccotel.state.store import Store
from tests import outcome_oracle
from tests.conftest import FIXTURES
from tests.corpus import generate
from tests.test_faults_commit import BATCH, CHUNK, Faults

CLOCK = lambda: 1_800_000_000.0  # noqa: E731
# The commits of the 2.1.39 sessions, as git printed them ([branch hash] in each successful
# `git commit`'s output; the failed ones, refused by a pre-commit hook, printed none).
COMMITS_2_1_39 = {
    "spotter-4te": {"12e2d10", "461930e", "d9e611e", "a23908c", "ad570ac", "12fe57f"},
    "spotter-a0y": {"dbe5100", "66e1a0a", "f0b86dd", "22450e1", "3114215"},
    "spotter-dov": {"64f1b9a"},
    "spotter-fum": {"3bb8701", "b9288c2", "331f337", "af81c43"},
    "spotter-gqc": {"99b497c", "ceff8c3", "bb53fb4", "a230dbf", "05fd186"},
}


def cfg_for(root: Path, state: Path) -> Config:
    return Config(claude_dirs=[str(root)], state_dir=str(state), traces=False, web=False)


def backfill(root: Path, state: Path, workers: int = 1, **kw) -> Ingest:
    store = Store(state)
    try:
        ing = Ingest(cfg_for(root, state), store, [root], CLOCK, **kw)
        read_history(ing)  # as app.catch_up does; with workers even for a small corpus:
        ing.backfill(ing.scan(), workers, sleep=lambda s: None)
        return ing
    finally:
        store.close()


def by_project(state: Path) -> dict[str, list[float]]:
    """The state's outcome totals per project name (what /metrics shows, project_label=name)."""
    s = Store(state, readonly=True)
    try:
        t = OutcomeTotals.load(s.db)
    finally:
        s.close()
    label = project_labeler("name")
    out: dict[str, list[float]] = {}
    for cwd, v in t.by_cwd.items():
        row = out.setdefault(label(cwd), [0.0] * len(v))
        for i, x in enumerate(v):
            row[i] += x
    return out


def refs(state: Path, kind: int) -> dict[str, set[str]]:
    db = sqlite3.connect(state / "state.db")
    try:
        rows = db.execute("SELECT cwd, ref FROM outcome WHERE kind=?", (kind,)).fetchall()
    finally:
        db.close()
    out: dict[str, set[str]] = {}
    for cwd, ref in rows:
        out.setdefault(Path(cwd).name, set()).add(ref)
    return out


def assert_matches_oracle(state: Path, roots: list[Path]) -> None:
    want = outcome_oracle.read(roots)
    got = by_project(state)
    for proj, w in want.items():
        g = got.get(proj, [0.0] * 5)
        assert (g[ADDED], g[REMOVED], g[COMMITS], g[PRS], g[TURN_MS]) == (
            w["added"], w["removed"], w["commits"], w["prs"], w["turn_ms"],
        ), proj  # fmt: skip
    assert {p for p, v in got.items() if any(v)} <= set(want)


# --- commands and patches ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "kinds"),
    [
        ('git commit -m "x"', outcomes.CALL_COMMIT),
        ("git add -A && git commit -qam wip", outcomes.CALL_COMMIT),
        ("cd repo && git -C sub -c user.name=x commit --amend --no-edit", outcomes.CALL_COMMIT),
        ("git --no-pager commit -m x", outcomes.CALL_COMMIT),
        ('git commit -m x && gh pr create --title t --body b', outcomes.CALL_COMMIT | outcomes.CALL_PR),
        ("gh pr create --fill", outcomes.CALL_PR),
        ("git log --oneline -5", 0),
        ("git commit-tree HEAD^{tree}", 0),
        ("git status && git diff", 0),
        ("gh pr list", 0),
        ("gh pr view 3 --json commits", 0),
        ("pytest -q tests/test_commit.py", 0),
    ],
)  # fmt: skip
def test_which_shell_calls_may_commit_or_open_a_pull_request(command, kinds):
    raw = json.dumps({"command": command, "description": "d"}).encode()
    line = _assistant("s", "/w", "t1", "Bash", {"command": command})
    rec = decode(line, 1)
    assert rec.tool_uses[0].outcome == kinds
    assert outcomes.call_kind("Bash", msgspec_raw(raw)) == kinds


def test_mcp_tools_that_create_pull_requests():
    assert outcomes.call_kind("mcp__github__create_pull_request", msgspec_raw(b"{}")) == 2
    assert outcomes.call_kind("mcp__gitlab__create_merge_request", msgspec_raw(b"{}")) == 2
    assert outcomes.call_kind("mcp__github__list_pull_requests", msgspec_raw(b"{}")) == 0
    assert outcomes.call_kind("Edit", msgspec_raw(b'{"command":"git commit"}')) == 0


def msgspec_raw(b: bytes):
    import msgspec

    return msgspec.json.decode(b'{"x":' + b + b"}", type=dict[str, msgspec.Raw])["x"]


@pytest.mark.parametrize(
    ("tur", "want"),
    [
        ({"type": "create", "content": "a\nb\n", "structuredPatch": []}, (2, 0)),
        ({"type": "create", "content": "a\nb", "structuredPatch": []}, (2, 0)),
        ({"type": "create", "content": "", "structuredPatch": []}, (0, 0)),
        ({"type": "update", "content": "x\n", "structuredPatch": []}, (0, 0)),
        (
            {"filePath": "/w/f", "structuredPatch": [
                {"oldStart": 1, "oldLines": 3, "newStart": 1, "newLines": 4,
                 "lines": [" a", "-b", "+b2", "+b3", " c", "\\ No newline at end of file"]},
                {"oldStart": 9, "oldLines": 1, "newStart": 10, "newLines": 0, "lines": ["-z"]},
            ]},
            (2, 2),
        ),
        ({"type": "text", "file": {"content": "a\nb\n"}}, None),  # a Read: no patch
        ({"filePath": "/w/f", "structuredPatch": "not a list"}, None),
    ],
)  # fmt: skip
def test_lines_of_a_patch_or_a_new_file(tur, want):
    rec = decode(_result("s", "/w", "t1", tur), 1)
    got = outcomes.patch_lines(rec.result) if rec.result is not None else None
    assert got == want


# --- the real 2.1.39 sessions --------------------------------------------------------------


def test_real_2_1_39_sessions(tmp_path):
    """Edits, creations and 21 commits (14 more refused by a pre-commit hook) of real sessions:
    per project, as the oracle reads them; the hashes git printed."""
    root = FIXTURES / "claude-2.1.39"
    backfill(root, tmp_path / "s")
    assert_matches_oracle(tmp_path / "s", [root])
    assert refs(tmp_path / "s", outcomes.COMMIT) == COMMITS_2_1_39
    got = by_project(tmp_path / "s")
    assert (
        sum(v[ADDED] for v in got.values()) > 5000 and sum(v[REMOVED] for v in got.values()) > 500
    )
    assert sum(v[TURN_MS] for v in got.values()) > 0


def test_resumed_copies_and_reading_twice_count_once(tmp_path):
    """A resumed session copies the edits and commits of the one it resumes (same tool ids,
    another session id): nothing more counts; reading everything again (a rebuilt cursor)
    counts nothing either."""
    src = FIXTURES / "claude-2.1.39"
    root = tmp_path / "claude"
    shutil.copytree(src, root)
    f = next(root.rglob("ae4a77f8-aedd-4bc1-888f-c94edc91af04.jsonl"))
    old = b"ae4a77f8-aedd-4bc1-888f-c94edc91af04"
    new = b"0e4a77f8-aedd-4bc1-888f-c94edc91af04"
    (f.parent / "0e4a77f8-aedd-4bc1-888f-c94edc91af04.jsonl").write_bytes(
        f.read_bytes().replace(old, new)
    )
    backfill(src, tmp_path / "original")
    backfill(root, tmp_path / "s")
    assert by_project(tmp_path / "s") == by_project(tmp_path / "original")
    db = sqlite3.connect(tmp_path / "s" / "state.db")
    db.execute("UPDATE files SET offset=0, line_no=0, marker=NULL")  # read all again
    db.commit()
    db.close()
    backfill(root, tmp_path / "s")
    assert by_project(tmp_path / "s") == by_project(tmp_path / "original")


def test_synthetic_corpus_with_resumed_copies(tmp_path):
    """Thousands of edits and turns, a third of sessions resumed by copy, read with decode
    workers and small batches: what the oracle counts."""
    root = tmp_path / "corpus"
    info = generate(root, files=60, target_bytes=3_000_000, seed=5)
    assert len(info.resumed_copies) >= 3, info.resumed_copies
    ing = backfill(root, tmp_path / "s", workers=2, chunk_bytes=CHUNK, batch_lines=BATCH * 20)
    assert_matches_oracle(tmp_path / "s", [root])
    t = ing.acct.outcomes.totals.total()
    assert t[ADDED] > 300 and t[TURN_MS] > 0
    assert t == OutcomeTotals.load(Store(tmp_path / "s", readonly=True).db).total()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_every_failed_state_commit_leaves_outcomes_exact(tmp_path, monkeypatch, workers):
    """The Nth state commit fails, for every N (issue 9's model check): the outcomes in the
    state and in memory are the oracle's, none lost, none counted twice."""
    root = tmp_path / "corpus"
    generate(root, files=10, target_bytes=500_000, seed=11)
    faults = Faults().install(monkeypatch)
    backfill(root, tmp_path / "clean", workers, chunk_bytes=CHUNK, batch_lines=BATCH * 4)
    commits = faults.n
    assert commits >= 4
    want = by_project(tmp_path / "clean")
    assert_matches_oracle(tmp_path / "clean", [root])
    for n in range(1, commits + 1):
        faults.fail, faults.n, faults.failed = (lambda k, n=n: k == n), 0, 0
        state = tmp_path / f"s{n}"
        ing = backfill(root, state, workers, chunk_bytes=CHUNK, batch_lines=BATCH * 4)
        assert faults.failed == 1 and not ing.retry
        assert by_project(state) == want, n
        mem = {project_labeler("name")(c): v for c, v in ing.acct.outcomes.totals.by_cwd.items()}
        assert {p: v for p, v in mem.items() if any(v)} == {p: v for p, v in want.items() if any(v)}
        shutil.rmtree(state)


# --- crafted lines: what the fixtures lack ----------------------------------------------------

T0 = 1_790_000_000.0


def _ts(i: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + i)) + ".000Z"


def _base(sid: str, cwd: str, i: float) -> dict:
    return {"sessionId": sid, "cwd": cwd, "version": "2.1.197", "timestamp": _ts(i),
            "uuid": f"u-{sid}-{i}", "isSidechain": False, "userType": "external"}  # fmt: skip


def _assistant(sid: str, cwd: str, tool_id: str, name: str, inp: dict, i: float = 0) -> bytes:
    d = _base(sid, cwd, i) | {
        "type": "assistant",
        "message": {"id": f"msg_{tool_id}", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "tool_use", "id": tool_id, "name": name, "input": inp}]},
    }  # fmt: skip
    return json.dumps(d).encode()


def _result(sid: str, cwd: str, tool_id: str, tur, error: bool = False, i: float = 1) -> bytes:
    d = _base(sid, cwd, i) | {
        "type": "user",
        "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": "out", "is_error": error}]},
        "toolUseResult": tur,
    }  # fmt: skip
    return json.dumps(d).encode()


def _bash_out(stdout: str, git: dict | None = None) -> dict:
    d = {"stdout": stdout, "stderr": "", "interrupted": False, "isImage": False}
    return d | ({"gitOperation": git} if git else {})


def _write(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))


SID = "11111111-2222-3333-4444-555555555555"


def crafted(root: Path) -> Path:
    """One session in /w/app: a rejected Edit, a failed Write, an applied Edit, a failed
    commit, a quiet commit, an `echo git commit`, a commit + pull request in one call, an MCP
    pull request, a `--dry-run`, failed calls with a patch or a commit line in their result."""
    f = root / "projects" / "-w-app" / f"{SID}.jsonl"
    patch = {"filePath": "/w/app/a.py", "structuredPatch": [
        {"oldStart": 1, "oldLines": 1, "newStart": 1, "newLines": 2, "lines": ["-x", "+y", "+z"]}]}  # fmt: skip
    lines = []
    for n, (name, inp, tur, err) in enumerate(
        [
            ("Edit", {"file_path": "/w/app/a.py"}, "User rejected tool use", True),
            ("Write", {"file_path": "/w/app/b.py"}, "Error: Claude requested permissions", True),
            ("Edit", {"file_path": "/w/app/a.py"}, patch, False),
            ("Bash", {"command": "git commit -m none"}, "Error: Exit code 1\nnothing to commit", True),
            ("Bash", {"command": "git commit -qam quiet"}, _bash_out(""), False),
            ("Bash", {"command": 'echo "then git commit"'}, _bash_out("then git commit"), False),
            ("Bash", {"command": "git commit --dry-run -a"}, _bash_out("On branch main\n"), False),
            ("Bash", {"command": "git commit -am x && gh pr create --fill"},
             _bash_out("[main 1a2b3c4] x\n 1 file changed\nhttps://github.com/o/r/pull/7\n"), False),
            ("mcp__github__create_pull_request", {"title": "t"}, {"number": 8}, False),
            # failed calls whose result still carries a patch or a commit line count nothing
            ("Edit", {"file_path": "/w/app/a.py"}, patch, True),
            ("Bash", {"command": "git commit -am y && false"}, _bash_out("[main 7654321] y\n"), True),
        ]
    ):  # fmt: skip
        tid = f"toolu_{n:02d}"
        lines += [
            _assistant(SID, "/w/app", tid, name, inp, 2 * n),
            _result(SID, "/w/app", tid, tur, err, 2 * n + 1),
        ]
    _write(f, lines)
    return f


def test_rejected_failed_and_pretended_calls_count_nothing(tmp_path):
    root = tmp_path / "claude"
    crafted(root)
    backfill(root, tmp_path / "s")
    got = by_project(tmp_path / "s")["app"]
    assert (got[ADDED], got[REMOVED]) == (2, 1)  # the applied Edit only
    assert got[COMMITS] == 2  # the quiet one and the one that printed its hash
    assert got[PRS] == 2  # gh pr create (URL printed) and the MCP tool
    assert refs(tmp_path / "s", outcomes.COMMIT) == {"app": {None, "1a2b3c4"}}
    assert refs(tmp_path / "s", outcomes.PR) == {"app": {None, "https://github.com/o/r/pull/7"}}
    db = sqlite3.connect(tmp_path / "s" / "state.db")
    assert db.execute("SELECT COUNT(*) FROM outcome_call").fetchone() == (0,)  # all settled
    db.close()


def test_a_result_read_later_in_the_same_process_and_after_a_restart(tmp_path):
    """The daemon reads a commit call, then (a later pass) its result: counted with its hash.
    A call read before a restart, its result after: counted by what the result's output shows,
    with its hash; a failed one after a restart counts nothing."""
    root, state = tmp_path / "claude", tmp_path / "s"
    f = root / "projects" / "-w-app" / f"{SID}.jsonl"
    ok = _bash_out("[main abc1234] m\n 1 file changed, 1 insertion(+)\n")
    _write(f, [_assistant(SID, "/w/app", "t1", "Bash", {"command": "git commit -am m"}, 0)])
    backfill(root, state)
    assert by_project(state) == {}
    _write(f, [_result(SID, "/w/app", "t1", ok, False, 1)])
    backfill(root, state)  # the same process: the call is remembered
    assert by_project(state)["app"][COMMITS] == 1
    assert refs(state, outcomes.COMMIT) == {"app": {"abc1234"}}

    _write(f, [_assistant(SID, "/w/app", "t2", "Bash", {"command": "git commit -am n"}, 2),
               _assistant(SID, "/w/app", "t3", "Bash", {"command": "git commit -am o"}, 3)])  # fmt: skip
    backfill(root, state)
    outcomes.CALLS.kinds.clear()  # a restart: this process never saw the calls
    _write(f, [_result(SID, "/w/app", "t2", _bash_out("[main def5678] n\n"), False, 4),
               _result(SID, "/w/app", "t3", "Error: Exit code 1", True, 5)])  # fmt: skip
    backfill(root, state)
    assert by_project(state)["app"][COMMITS] == 2
    assert refs(state, outcomes.COMMIT) == {"app": {"abc1234", "def5678"}}
    backfill(root, state)  # nothing new, nothing moves
    assert by_project(state)["app"][COMMITS] == 2


def test_an_upgraded_state_reads_its_history_once(tmp_path):
    """A state written before outcomes existed (the version before, every transcript read): the upgrade
    reads the files it tracked once more, for their outcomes only; the lines read, tokens and
    sessions do not move, and the next start reads nothing again."""
    root = FIXTURES / "claude-2.1.39"
    state = tmp_path / "s"
    backfill(root, state)
    want = by_project(state)
    db = sqlite3.connect(state / "state.db")
    before = dict(db.execute("SELECT name, value FROM counters").fetchall())
    db.executescript(
        "DROP TABLE outcome; DROP TABLE outcome_call;"
        " PRAGMA user_version=5;"  # the version before outcomes (schema.py: v6)
    )
    db.close()
    s = Store(state)
    try:
        assert s.meta("outcomes_history") == "unread"
        app.catch_up(Ingest(cfg_for(root, state), s, [root], CLOCK), 1)  # what run and backfill do
    finally:
        s.close()
    assert by_project(state) == want
    db = sqlite3.connect(state / "state.db")
    assert dict(db.execute("SELECT name, value FROM counters").fetchall()) == before
    assert db.execute("SELECT value FROM meta WHERE key='outcomes_history'").fetchone() is None
    db.close()
    backfill(root, state)
    assert by_project(state) == want


def test_a_new_state_does_not_read_history(tmp_path):
    """Only a state with files read before the upgrade has history to read."""
    s = Store(tmp_path / "s")
    try:
        assert s.meta("outcomes_history") is None
    finally:
        s.close()


SECRETS = ("SECRET-MSG-1", "SECRET-CONTENT-2", "SECRET-PATCH-3", "secret-org-4", "SECRET-CMD-5")


@pytest.mark.timeout(120)
def test_commands_contents_and_urls_never_leave_the_machine(tmp_path):
    """A commit message, a command, a written file, a patch and a pull request URL, read by a
    daemon that logs at debug, pushes metrics (native too) and traces, and serves the page:
    none of them in /metrics, the API, the OTLP requests or the logs. Only the counts."""
    import os
    import urllib.request

    from tests.conftest import free_port
    from tests.test_live import start
    from tests.test_traces_receiver import Receiver

    root = tmp_path / "claude"
    f = root / "projects" / "-w-app" / f"{SID}.jsonl"
    steps = [
        ("Write", {"file_path": "/w/app/s.py", "content": "x = 'SECRET-CONTENT-2'\n"},
         {"type": "create", "filePath": "/w/app/s.py", "content": "x = 'SECRET-CONTENT-2'\n",
          "structuredPatch": []}),
        ("Edit", {"file_path": "/w/app/s.py"}, {"filePath": "/w/app/s.py", "structuredPatch": [
            {"oldStart": 1, "oldLines": 1, "newStart": 1, "newLines": 1,
             "lines": ["-x = 'SECRET-CONTENT-2'", "+x = 'SECRET-PATCH-3'"]}]}),
        ("Bash", {"command": "echo SECRET-CMD-5 && git commit -am 'SECRET-MSG-1'"},
         _bash_out("SECRET-CMD-5\n[main 0a1b2c3] SECRET-MSG-1\n 1 file changed\n")),
        ("Bash", {"command": "gh pr create --title SECRET-MSG-1"},
         _bash_out("https://github.com/secret-org-4/app/pull/3\n")),
    ]  # fmt: skip
    now = time.time() - 120
    lines = []
    for n, (name, inp, tur) in enumerate(steps):
        a = json.loads(_assistant(SID, "/w/app", f"toolu_s{n}", name, inp))
        r = json.loads(_result(SID, "/w/app", f"toolu_s{n}", tur))
        for d, dt in ((a, 2 * n), (r, 2 * n + 1)):
            d["timestamp"] = _ts(now - T0 + dt)
        lines += [json.dumps(a).encode(), json.dumps(r).encode()]
    _write(f, lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    port = free_port()
    with Receiver() as r:
        env |= {"CCOTEL_OTLP_ENDPOINT": r.url, "CCOTEL_NATIVE_METRICS": "1",
                "CCOTEL_LOG_LEVEL": "debug", "CCOTEL_LOG_FORMAT": "json", "CCOTEL_SESSION_IDLE": "0",
                "OTEL_METRIC_EXPORT_INTERVAL": "200"}  # fmt: skip
        proc = start(root, tmp_path / "s", port, env)
        try:
            deadline = time.monotonic() + 60
            while (not r.got.spans or len(r.got.metrics) < 3) and time.monotonic() < deadline:
                time.sleep(0.1)

            def get(path: str) -> str:
                return (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
                    .read()
                    .decode()
                )

            served = [
                get("/metrics"),
                get("/api/summary"),
                get("/api/sessions"),
                get(f"/api/sessions/{SID}"),
            ]
        finally:
            proc.kill()
            proc.wait(10)
        logs = proc.stdout.read().decode()
        bodies = [bytes(b).decode("utf-8", "replace") for b in r.got.raw]
        bodies += [m.SerializeToString().decode("utf-8", "replace") for m in r.got.metrics]
    assert r.got.spans and r.got.metrics, "nothing was exported"
    assert 'ccotel_commits_total{project="app"} 1.0' in served[0]
    assert "claude_code_pull_request_count_total 1.0" in served[0]
    assert json.loads(served[3])["lines_added"] == 2
    for text in (*served, logs, *bodies):
        for secret in SECRETS:
            assert secret not in text
