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
    omega = got.pop("omega")
    assert (omega[ADDED], omega[REMOVED], omega[COMMITS], omega[PRS]) == (added, removed, 2, 1)
    assert all(not v[ADDED] and not v[COMMITS] and not v[PRS] for v in got.values()), got
    (printed,) = refs(tmp_path / "s", outcomes.COMMIT)["omega"] - {None}  # the quiet one: none
    assert [h for h in hashes if h.startswith(printed)] == [hashes[-1]]  # the first commit
    assert refs(tmp_path / "s", outcomes.PR) == {"omega": {PR_URL}}


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


def page_usd(x: float | None) -> str:
    """app.js's usd()."""
    if x is None:
        return "\u2013"
    return "$" + (f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.4f}")


@pytest.mark.timeout(300)
def test_the_page_and_api_show_cost_per_commit_and_per_100_lines(real_claude_home, tmp_path):
    """Per project (all time) and per session: commits, lines, pull requests, and the cost of
    each commit and of 100 changed lines; the same in the API and on the page (Chromium)."""
    from tests.test_web import get
    from tests.test_web_browser import chromium, css, ready, shot, wait

    run = real_claude_home.run("git")
    added, removed, hashes = numstat(Path(run.cwd))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CCOTEL_")}
    port = free_port()
    proc = start(real_claude_home.config_dir, tmp_path / "s", port, env | {"CCOTEL_TRACES": "0"})
    try:
        s = get(port, f"/api/sessions/{run.session_id}")
        assert (s["commits"], s["lines_added"], s["lines_removed"], s["pull_requests"]) == (
            len(hashes),
            added,
            removed,
            1,
        )
        assert s["cost_usd"] > 0
        assert s["cost_per_commit_usd"] == pytest.approx(s["cost_usd"] / 2, rel=1e-9)
        assert s["cost_per_100_lines_usd"] == pytest.approx(
            s["cost_usd"] * 100 / (added + removed), rel=1e-9
        )
        others = get(port, "/api/sessions?limit=100")["sessions"]
        for o in others:
            if o["id"] != run.session_id:
                assert o["commits"] == 0 and o["cost_per_commit_usd"] is None
        rows = {r["project"]: r for r in get(port, "/api/summary")["bought_by_project"]}
        omega = rows["omega"]
        assert (omega["commits"], omega["pull_requests"]) == (2, 1)
        assert omega["cost_per_commit_usd"] == pytest.approx(omega["cost_usd"] / 2, rel=1e-9)
        assert rows["alpha"]["commits"] == 0 and rows["alpha"]["cost_per_commit_usd"] is None

        d = chromium(tmp_path / "profile")
        try:
            d.get(f"http://127.0.0.1:{port}/")
            ready(d)
            wait(d, 30).until(lambda d: css(d, '#bought tr[data-project="omega"]'))
            row = css(d, '#bought tr[data-project="omega"]')[0]
            assert row.find_element("css selector", ".per-commit").text == page_usd(
                omega["cost_per_commit_usd"]
            )
            assert row.find_element("css selector", ".per-lines").text == page_usd(
                omega["cost_per_100_lines_usd"]
            )
            shot(d, tmp_path, "bought")
            d.get(f"http://127.0.0.1:{port}/#/session/{run.session_id}")
            wait(d, 30).until(lambda d: css(d, "#session-bought"))
            text = css(d, "#session-bought")[0].text
            assert f"2 commits · +{added} / \u2212{removed} lines · 1 pull requests" in text
            assert page_usd(s["cost_per_commit_usd"]) + " per commit" in text
        finally:
            d.quit()
    finally:
        proc.kill()
        proc.wait(10)
