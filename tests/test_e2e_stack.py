"""End to end: the real daemon over real Claude Code transcripts, scraped by the real Prometheus
with the shipped rules, alerting through the real Alertmanager to a webhook."""

from __future__ import annotations

import math
import os
import time

import pytest

from tests.conftest import free_port
from tests.test_deploy_dashboard import panel_queries
from tests.test_deploy_live import HOST, USER, Stack
from tests.test_live import start


def daemon_env(hourly: float, daily: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    env.update(
        CCOTEL_BUDGET_HOURLY_USD=str(hourly),
        CCOTEL_BUDGET_DAILY_USD=str(daily),
        CCOTEL_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # no collector: export errors, metrics go on
    )
    return env


@pytest.mark.timeout(300)
def test_budget_alert_fires_and_resolves_panels_have_data(real_claude_home, tmp_path):
    cfg = real_claude_home.config_dir  # written just now: event times within the hour
    port = free_port()
    state = tmp_path / "state"
    daemon = start(cfg, state, port, env=daemon_env(hourly=0.0001, daily=1000))
    try:
        with Stack(tmp_path, f"127.0.0.1:{port}") as stack:
            alert = stack.wait_for_alert("CcotelHourlyBudgetExceeded", timeout=90)
            assert alert["labels"] == {
                "alertname": "CcotelHourlyBudgetExceeded",
                "severity": "critical",
                "window": "1h",
                "host": HOST,
                "user": USER,
            }
            assert "over the hourly budget of $0.00" in alert["annotations"]["description"]

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

            # Cost exemplars point at a real session's trace.
            found = []
            deadline = time.monotonic() + 30
            while not found and time.monotonic() < deadline:
                time.sleep(1)
                found = stack.exemplars("ccotel_cost_usd_total")
            ids = {e["labels"]["trace_id"] for s in found for e in s["exemplars"]}
            assert ids and ids <= {sid.replace("-", "") for sid in real_claude_home.session_ids}

            # The user raises the budget and restarts ccotel: the alert resolves.
            daemon.terminate()
            daemon.wait(15)
            daemon = start(cfg, state, port, env=daemon_env(hourly=1000, daily=1000))
            resolved = stack.wait_for_alert("CcotelHourlyBudgetExceeded", "resolved", timeout=90)
            assert resolved["labels"]["host"] == HOST
    finally:
        daemon.kill()
        daemon.wait(10)
