"""End to end, the way the stack is documented: the real daemon over real Claude Code transcripts
pushes its metrics over OTLP to the collector (tests.pushed.Collector does the collector's part),
the real Prometheus reads them with the stack's job and rules, and the real Alertmanager sends
the alert to a webhook.

The transcripts are the session's real ones with their event times moved to just before now, so
the trailing-hour spend is the same whenever the test runs (after midnight, at a month's end, or
an hour into a slow suite): the windows it reads are rolling, and the events sit a minute inside.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pushed import Collector
from tests.test_deploy_dashboard import panel_queries
from tests.test_deploy_live import HOST, USER, Stack
from tests.test_live import start
from tests.test_statusline_daemon import status_json, statusline


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def transcripts_ending_at(src: Path, dst: Path, end: datetime) -> int:
    """Copy a ~/.claude, shifting every line's `timestamp` so the newest is `end`; lines keep
    their order and spacing. Returns how many lines were moved."""
    shutil.copytree(src, dst)
    files = list(dst.rglob("*.jsonl"))
    stamps = [
        _parse(json.loads(line)["timestamp"])
        for f in files
        for line in f.read_text().splitlines()
        if '"timestamp"' in line and isinstance(json.loads(line).get("timestamp"), str)
    ]
    shift = end - max(stamps)
    for f in files:
        out = []
        for line in f.read_text().splitlines():
            rec = json.loads(line) if line.strip() else None
            if isinstance(rec, dict) and isinstance(rec.get("timestamp"), str):
                moved = _parse(rec["timestamp"]) + shift
                rec["timestamp"] = moved.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                line = json.dumps(rec, separators=(",", ":"))
            out.append(line)
        f.write_text("\n".join(out) + "\n")
    return len(stamps)


def hold_back(config_dir: Path, session_id: str):
    """Cut a session's transcript after its prompt; calling the result writes the rest. Counters
    that grow while Prometheus watches give `increase()` something to see: a session that goes
    on after the first scrapes (its commits make the cost-per-commit panels fill). The prompt
    stays, so that its project's series exist, at 0, before the first commit."""
    (path,) = config_dir.rglob(f"{session_id}.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if b'"type":"user"' in line) + 1
    path.write_bytes(b"".join(lines[:cut]))

    def put_back() -> None:
        with open(path, "ab") as f:
            f.write(b"".join(lines[cut:]))

    return put_back


def daemon_env(collector: Collector, hourly: float, daily: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env.update(
        CCOTEL_BUDGET_HOURLY_USD=str(hourly),
        CCOTEL_BUDGET_DAILY_USD=str(daily),
        # The documented stack-host setup: name the collector, and metrics are pushed to it.
        CCOTEL_OTLP_ENDPOINT=collector.endpoint,
        CCOTEL_METRICS_PUSH_INTERVAL="1",
        CCOTEL_RESOURCE_HOST=HOST,
        CCOTEL_RESOURCE_USER=USER,
    )
    return env


def scraped_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        s.name
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("ccotel_") and not s.name.endswith("_created")
    }


def test_transcripts_ending_at_moves_every_line_before_now(real_claude_home, tmp_path):
    end = datetime.now(UTC) - timedelta(minutes=1)
    moved = transcripts_ending_at(real_claude_home.config_dir, tmp_path / "c", end)
    assert moved > 10
    stamps = [
        _parse(json.loads(line)["timestamp"])
        for f in (tmp_path / "c").rglob("*.jsonl")
        for line in f.read_text().splitlines()
        if '"timestamp"' in line
    ]
    assert max(stamps) == end.replace(microsecond=end.microsecond // 1000 * 1000)
    assert min(stamps) > end - timedelta(minutes=30)  # the harness runs take seconds


@pytest.mark.timeout(300)
def test_budget_alert_fires_and_resolves_panels_have_data(real_claude_home, tmp_path):
    cfg = tmp_path / "claude"
    transcripts_ending_at(
        real_claude_home.config_dir, cfg, datetime.now(UTC) - timedelta(minutes=1)
    )
    put_back = hold_back(cfg, real_claude_home.run("git").session_id)
    state = tmp_path / "state"
    with Collector() as collector:
        daemon = start(cfg, state, env=daemon_env(collector, hourly=0.0001, daily=1000))
        port = daemon.port
        try:
            # Claude Code's status line reports the plan (the plan panels read it)
            statusline(state, status_json(next(cfg.rglob("*.jsonl")).stem))
            with Stack(tmp_path, collector.target) as stack:
                alert = stack.wait_for_alert("CcotelHourlyBudgetExceeded", timeout=90)
                assert alert["labels"] == {
                    "alertname": "CcotelHourlyBudgetExceeded",
                    "severity": "critical",
                    "window": "1h",
                    "host": HOST,
                    "user": USER,
                }
                assert "over the hourly budget of $0.00" in alert["annotations"]["description"]
                put_back()  # the session with commits arrives while Prometheus watches

                # Every panel of the dashboard answers with data from the real daemon.
                empty = panel_queries()
                deadline = time.monotonic() + 60
                while empty and time.monotonic() < deadline:
                    time.sleep(1)
                    empty = [(t, r, e) for t, r, e in empty if not stack.query(e)]
                assert not empty, "panels without data:\n" + "\n".join(
                    f"{t} [{r}]: {e}" for t, r, e in empty
                )
                by_title = {t: e for t, _, e in panel_queries()}
                (spend,) = stack.query(by_title["Spend, last hour"])
                assert float(spend["value"][1]) > 0 and not math.isnan(float(spend["value"][1]))
                (reporting,) = stack.query(by_title["ccotel reporting"])
                assert reporting["metric"] == {"host": HOST, "user": USER}
                assert reporting["value"][1] == "1"

                # The push carries every series a scrape of the daemon shows, under the same
                # names, with job from service.name and host/user from the resource.
                pushed = {
                    s["metric"]["__name__"]: s["metric"]
                    for s in stack.query('{__name__=~"ccotel_.+"}')
                }
                assert scraped_names(port) <= set(pushed), scraped_names(port) - set(pushed)
                for labels in pushed.values():
                    assert (labels["job"], labels["host"], labels["user"]) == ("ccotel", HOST, USER)

                # The user raises the budget and restarts ccotel: the alert resolves.
                daemon.terminate()
                daemon.wait(15)
                daemon = start(cfg, state, env=daemon_env(collector, hourly=1000, daily=1000))
                resolved = stack.wait_for_alert(
                    "CcotelHourlyBudgetExceeded", "resolved", timeout=90
                )
                assert resolved["labels"]["host"] == HOST
        finally:
            daemon.kill()
            daemon.wait(10)
