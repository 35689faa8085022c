"""Which project a session and its cost belong to (issue 11, item 2, the metrics side).

The rule (README, "How it counts"): cost and tokens belong to the project of the working
directory each response was made in; a session that changed directory counts as a session
in every project it had activity in, so per-project session counts may sum to more than
the number of sessions. ccotel_sessions_total{project} and ccotel_active_sessions{project}
follow it, live and after a restart.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.state.store import Store
from tests.lines import SID, assistant, prompt
from tests.test_live import start

OTHER = "22222222-2222-3333-4444-555555555555"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def moving_session(t: float) -> list[str]:
    """One session: a prompt and two responses in /home/u/alpha, then it cds to
    /home/u/beta for one more; a second session stays in /home/u/alpha."""
    a, b = "/home/u/alpha", "/home/u/beta"
    return [
        prompt(ts=iso(t - 100), cwd=a),
        assistant("m1", "r1", ts=iso(t - 90), cwd=a, out=1000),
        assistant("m2", "r2", ts=iso(t - 80), cwd=a, out=2000),
        assistant("m3", "r3", ts=iso(t - 30), cwd=b, out=4000),
    ]


def write(root: Path, name: str, lines: list[str]) -> None:
    p = root / "projects" / "-home-u-alpha" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_sessions_and_cost_by_the_directory_of_each_activity(tmp_path):
    now = 1_800_000_000.0
    root = tmp_path / "claude"
    write(root, f"{SID}.jsonl", moving_session(now))
    write(
        root,
        f"{OTHER}.jsonl",
        [assistant("m9", "r9", ts=iso(now - 20), session=OTHER, cwd="/home/u/alpha")],
    )
    store = Store(tmp_path / "state")
    ing = Ingest(Config(), store, [root], lambda: now)
    for p in ing.scan():
        ing.ingest(p)
    assert ing.flush()
    t = ing.totals
    assert t.sessions == 2
    assert t.sessions_by_cwd == {"/home/u/alpha": 2, "/home/u/beta": 1}
    assert t.active_by_cwd(now) == {"/home/u/alpha": 2, "/home/u/beta": 1}
    assert t.active_sessions(now) == 2
    assert t.active_by_cwd(now + 250) == {
        "/home/u/beta": 1,
        "/home/u/alpha": 1,
    }  # the moving session left alpha over 5 minutes ago
    out = {cwd: v.output for (_, cwd), v in t.usage.items()}
    assert out == {"/home/u/alpha": 1000 + 2000 + 5, "/home/u/beta": 4000}
    store.close()
    again = Ingest(Config(), Store(tmp_path / "state"), [root], lambda: now)  # a restart
    assert again.totals.sessions == 2
    assert again.totals.sessions_by_cwd == t.sessions_by_cwd
    assert again.totals.active_by_cwd(now) == t.active_by_cwd(now)
    # more activity of the moving session in beta: not a new session anywhere
    write(root, f"{SID}.jsonl", [assistant("m4", "r4", ts=iso(now - 10), cwd="/home/u/beta")])
    for p in again.scan():
        again.ingest(p)
    assert again.flush()
    assert again.totals.sessions_by_cwd == {"/home/u/alpha": 2, "/home/u/beta": 1}
    assert again.totals.sessions == 2


def metrics(port: int) -> dict[str, dict[str, float]]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name in (
                "ccotel_sessions_total",
                "ccotel_active_sessions",
                "ccotel_cost_usd_total",
            ):
                d = out.setdefault(s.name, {})
                d[s.labels["project"]] = d.get(s.labels["project"], 0) + s.value
    return out


@pytest.mark.timeout(120)
def test_live_and_after_restart(tmp_path):
    """The daemon, with lines written 30-100 s before now: the moving session counts in
    alpha and beta, in ccotel_sessions_total and ccotel_active_sessions, live and again
    after a restart; its cost splits by the directory of each response."""
    root = tmp_path / "claude"
    (root / "projects").mkdir(parents=True)
    proc = start(root, tmp_path / "state")
    port = proc.port
    try:
        write(root, f"{SID}.jsonl", moving_session(time.time()))
        deadline = time.monotonic() + 20
        while metrics(port).get("ccotel_sessions_total", {}).get("beta") != 1:
            assert time.monotonic() < deadline, metrics(port)
            time.sleep(0.05)
        live = metrics(port)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        proc = start(root, tmp_path / "state", port)
        restarted = metrics(port)
    finally:
        proc.terminate()
        proc.wait(20)
    for m in (live, restarted):
        assert m["ccotel_sessions_total"] == {"alpha": 1, "beta": 1}
        assert m["ccotel_active_sessions"] == {"alpha": 1, "beta": 1}
        cost = m["ccotel_cost_usd_total"]
        assert cost["beta"] == pytest.approx((10 * 3 + 4000 * 15 + 100 * 0.3 + 20 * 3.75) / 1e6)
        assert cost["alpha"] == pytest.approx(
            (2 * (10 * 3 + 100 * 0.3 + 20 * 3.75) + 3000 * 15) / 1e6
        )
