"""What the spend bought, from the real Claude Code CLI in a real git repository (issue 14 §2):
the `git` scenario (tests/realcli.py) writes a file and commits it, edits it and commits again
quietly, fails to commit nothing, and opens a pull request with a stand-in `gh`. ccotel's lines
and commits must be what `git log --numstat` of that repository says; edits Claude Code was
refused count nothing; the live daemon counts the same while the session runs, and after kill -9.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccotel import outcomes
from tests.conftest import free_port
from tests.realcli import SONNET, Scenario, Step, ToolCall, clone_home, run_claude, scenario
from tests.test_live import start
from tests.test_outcomes import ADDED, COMMITS, PRS, REMOVED, backfill, by_project, refs

PR_URL = "https://github.com/ccotel/demo/pull/42"


def numstat(repo: Path) -> tuple[int, int, list[str]]:
    """(lines added, lines removed, commit hashes) over the repository's history."""
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--numstat", "--format=commit %H"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    added = removed = 0
    hashes = []
    for line in out.splitlines():
        if line.startswith("commit "):
            hashes.append(line.split()[1])
        elif line.strip():
            a, r, _path = line.split("\t")
            added, removed = added + int(a), removed + int(r)
    return added, removed, hashes


def test_lines_and_commits_are_what_git_log_numstat_says(real_claude_home, tmp_path):
    run = real_claude_home.run("git")
    added, removed, hashes = numstat(Path(run.cwd))
    assert len(hashes) == 2 and added > 0 and removed > 0  # the scenario did what it says
    backfill(real_claude_home.config_dir, tmp_path / "s")
    got = by_project(tmp_path / "s")
    delta = got.pop("delta")
    assert (delta[ADDED], delta[REMOVED], delta[COMMITS], delta[PRS]) == (added, removed, 2, 1)
    assert all(not v[ADDED] and not v[COMMITS] and not v[PRS] for v in got.values()), got
    (printed,) = refs(tmp_path / "s", outcomes.COMMIT)["delta"] - {None}  # the quiet one: none
    assert [h for h in hashes if h.startswith(printed)] == [hashes[-1]]  # the first commit
    assert refs(tmp_path / "s", outcomes.PR) == {"delta": {PR_URL}}


REFUSED = Scenario(
    name="refused",
    model=SONNET,
    project="epsilon",
    allowed_tools=("Bash",),  # Write and Edit need a permission -p mode cannot give
    steps=(
        Step(tools=(ToolCall("Write", {"file_path": "{{cwd}}/new.py", "content": "x = 1\n"}),)),
        Step(
            tools=(
                ToolCall(
                    "Edit", {"file_path": "{{cwd}}/old.py", "old_string": "a", "new_string": "b"}
                ),
            )
        ),
        Step(
            tools=(
                ToolCall(
                    "Bash", {"command": "git commit -m 'no repository'", "description": "Commit"}
                ),
            )
        ),
        Step(text="Nothing was allowed."),
    ),
)


def test_refused_edits_and_a_failed_commit_count_nothing(real_claude_home, tmp_path):
    home = clone_home(real_claude_home, tmp_path / "home")
    (home.home / "src" / "epsilon").mkdir(parents=True)
    (home.home / "src" / "epsilon" / "old.py").write_text("a\n")
    run = run_claude(home.home, scenario=REFUSED)
    results = [ln for ln in run.lines() if ln.get("type") == "user" and "toolUseResult" in ln]
    assert len(results) == 3
    assert all(isinstance(ln["toolUseResult"], str) for ln in results)  # errors, no patch
    backfill(home.config_dir, tmp_path / "s")
    got = by_project(tmp_path / "s")
    assert got.get("epsilon", [0] * 5)[:4] == [0, 0, 0, 0]
    assert (Path(run.cwd) / "old.py").read_text() == "a\n" and not (
        Path(run.cwd) / "new.py"
    ).exists()


def scrape_outcomes(port: int) -> dict[tuple[str, tuple], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name.startswith(("ccotel_code_lines", "ccotel_commits", "ccotel_pull", "claude_code_"))
    }


def wait_for(port: int, want: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = scrape_outcomes(port)
        if all(got.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


@pytest.mark.timeout(400)
def test_the_live_daemon_counts_a_session_as_it_runs_and_after_kill_9(real_claude_home, tmp_path):
    """The daemon runs while Claude Code works in a new repository (each call and its result
    are read in separate passes): the same counts as git's, on /metrics and in the native
    metrics; after kill -9 and a restart, the same again."""
    home = clone_home(real_claude_home, tmp_path / "home")
    port, state = free_port(), tmp_path / "state"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CCOTEL_")}
    env["CCOTEL_NATIVE_METRICS"] = "1"
    proc = start(home.config_dir, state, port, env)
    try:
        before = scrape_outcomes(port)
        repo = home.home / "src" / "zeta"
        run_claude(home.home, scenario=scenario("git"), cwd=repo)
        added, removed, hashes = numstat(repo)
        want = {
            ("ccotel_code_lines_total", (("project", "zeta"), ("type", "added"))): added,
            ("ccotel_code_lines_total", (("project", "zeta"), ("type", "removed"))): removed,
            ("ccotel_commits_total", (("project", "zeta"),)): len(hashes),
            ("ccotel_pull_requests_total", (("project", "zeta"),)): 1,
        }
        native = {
            ("claude_code_commit_count_total", ()): before[("claude_code_commit_count_total", ())] + 2,
            ("claude_code_pull_request_count_total", ()): before[("claude_code_pull_request_count_total", ())] + 1,
            ("claude_code_lines_of_code_count_total", (("type", "added"),)):
                before[("claude_code_lines_of_code_count_total", (("type", "added"),))] + added,
        }  # fmt: skip
        got = wait_for(port, want | native)
        assert {k: got.get(k) for k in want | native} == want | native
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start(home.config_dir, state, port, env)
        again = scrape_outcomes(port)
        assert {k: again.get(k) for k in want | native} == want | native
    finally:
        proc.kill()
        proc.wait(10)
