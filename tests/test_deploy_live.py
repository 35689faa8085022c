"""The stack's Prometheus and Alertmanager configs, for real, on loopback: the Debian `prometheus`
and `prometheus-alertmanager` binaries run the ccotel rules against a stand-in exporter that
serves every series of the metric contract as the collector would, read through the stack's
`otel-collector-ccotel` job; the hourly budget alert must reach a webhook with
the right labels and resolve when the budget is raised; every dashboard query must return data;
cost exemplars must come back with their trace id.

The helpers are what an end-to-end test with the real daemon needs:

    from tests.test_deploy_live import Stack, prometheus_test_config, alertmanager_test_config
    with Stack(tmp_path, collector.target) as stack:                  # Prometheus + Alertmanager
        stack.wait_for_alert("CcotelHourlyBudgetExceeded")             # as received by the webhook
        stack.query("...")                                            # /api/v1/query
    tests.test_deploy_dashboard.panel_queries()                       # every panel's PromQL
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import prometheus_client as pc
import pytest
import yaml

from tests.conftest import free_port
from tests.test_deploy import ALERTMANAGER_YML, PROMETHEUS_YML, RULES, uncomment
from tests.test_deploy_budgets import generate
from tests.test_deploy_dashboard import DASHBOARDS, panel_queries

HOST, USER, TEAM = "e2e-host", "e2e-user", "e2e-team"
# What the collector adds to a pushed series: job from service.name, host / user / team from
# host.name / user.name / team.id. A stand-in that serves bare series gets them as target labels.
AS_PUSHED = {"job": "ccotel", "host": HOST, "user": USER, "team": TEAM}
TRACE_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def prometheus_test_config(
    ccotel_target: str,
    alertmanager_target: str,
    *,
    labels: dict[str, str] | None = None,
    interval: str = "1s",
    rules_file: Path = RULES,
    more_rules: tuple[Path, ...] = (),
) -> dict:
    """deploy/compose/prometheus/prometheus.yml reduced to its `otel-collector-ccotel` job (where
    every ccotel's pushed metrics are read), pointed at `ccotel_target` (tests.pushed.Collector,
    or a stand-in serving series as the collector would), scraping and evaluating every
    `interval`, with the real rules and Alertmanager. `labels` are target labels for a stand-in
    whose series lack `host` / `user` (honor_labels keeps a series' own)."""
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "otel-collector-ccotel")
    job["static_configs"] = [{"targets": [ccotel_target], **({"labels": labels} if labels else {})}]
    cfg["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    cfg["scrape_configs"] = [job]
    cfg["rule_files"] = [str(rules_file), *map(str, more_rules)]
    cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager_target]
    return cfg


def alertmanager_test_config(webhook_url: str) -> dict:
    """deploy/compose/alertmanager/alertmanager.yml with its webhook example uncommented, aimed
    at `webhook_url`, routed to by default, and quick to notify."""
    cfg = yaml.safe_load(uncomment(ALERTMANAGER_YML.read_text(), {"webhook"}))
    webhook = next(r for r in cfg["receivers"] if r["name"] == "webhook")
    webhook["webhook_configs"][0]["url"] = webhook_url
    cfg["route"].update(
        receiver="webhook", group_wait="1s", group_interval="1s", repeat_interval="1h"
    )
    return cfg


class Webhook:
    """An HTTP receiver for Alertmanager's webhook payloads."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, name: str, status: str) -> list[dict]:
        with self.lock:
            return [
                a
                for p in self.payloads
                for a in p["alerts"]
                if a["labels"]["alertname"] == name and a["status"] == status
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/install-test-deps installs it)"
    return path


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


class Stack:
    """Prometheus + Alertmanager + a webhook, with the deploy configs, on loopback ports."""

    def __init__(
        self,
        workdir: Path,
        ccotel_target: str,
        *,
        labels: dict[str, str] | None = None,
        more_rules: tuple[Path, ...] = (),
        edit: Callable[[dict], None] | None = None,
    ):
        """`edit` changes the Prometheus config before it starts (to show what a part does)."""
        self.workdir = workdir
        self.ccotel_target, self.labels, self.more_rules = ccotel_target, labels, more_rules
        self.edit = edit
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Stack:
        self.webhook = Webhook()
        am_port, prom_port = free_port(), free_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        am_cfg = self.workdir / "alertmanager.yml"
        am_cfg.write_text(yaml.safe_dump(alertmanager_test_config(self.webhook.url)))
        prom_cfg = self.workdir / "prometheus.yml"
        cfg = prometheus_test_config(
            self.ccotel_target,
            f"127.0.0.1:{am_port}",
            labels=self.labels,
            more_rules=self.more_rules,
        )
        if self.edit:
            self.edit(cfg)
        prom_cfg.write_text(yaml.safe_dump(cfg))
        self._start(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={am_cfg}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            f"{self.alertmanager_url}/-/ready",
        )
        self._start(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--enable-feature=exemplar-storage",
                "--rules.alert.resend-delay=2s",
                "--log.level=warn",
            ],
            f"{self.prometheus_url}/-/ready",
        )
        return self

    def _start(self, name: str, argv: list[str], ready: str) -> None:
        log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"{name} exited: {(self.workdir / f'{name}.log').read_text()}"
            )
            try:
                urllib.request.urlopen(ready, timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{name} not ready: {(self.workdir / f'{name}.log').read_text()}")

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.webhook.close()

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr, **({"time": at} if at is not None else {})}
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(params)
        body = _get(url)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        """Prometheus's active alerts, annotations expanded as they are now."""
        return _get(f"{self.prometheus_url}/api/v1/alerts")["data"]["alerts"]

    def exemplars(self, expr: str, seconds: float = 600) -> list[dict]:
        now = time.time()
        url = f"{self.prometheus_url}/api/v1/query_exemplars?" + urllib.parse.urlencode(
            {"query": expr, "start": now - seconds, "end": now}
        )
        return _get(url)["data"]

    def wait_for_alert(self, name: str, status: str = "firing", timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.webhook.alerts(name, status):
                return found[-1]
            time.sleep(0.2)
        logs = "\n".join(
            (self.workdir / f).read_text() for f in ("prometheus.log", "alertmanager.log")
        )
        raise AssertionError(
            f"no {status} {name} at the webhook; got {self.webhook.payloads}\n{logs}"
        )


class FakeCcotel:
    """Serves every series of the metric contract, changing over time like a busy daemon."""

    def __init__(self, hourly_budget: float) -> None:
        r = self.registry = pc.CollectorRegistry()
        self.tokens = pc.Counter("ccotel_tokens", "", ["model", "type", "project"], registry=r)
        self.cost = pc.Counter("ccotel_cost_usd", "", ["model", "project"], registry=r)
        self.requests = pc.Counter("ccotel_requests", "", ["model", "project"], registry=r)
        self.tools = pc.Counter("ccotel_tool_calls", "", ["tool", "project", "status"], registry=r)
        self.duration = pc.Histogram("ccotel_tool_duration_seconds", "", ["tool"], registry=r)
        self.sessions = pc.Counter("ccotel_sessions", "", ["project"], registry=r)
        self.active = pc.Gauge("ccotel_active_sessions", "", ["project"], registry=r)
        self.web = pc.Counter("ccotel_web_search_requests", "", ["model", "project"], registry=r)
        self.spend = pc.Gauge("ccotel_spend_usd", "", ["window"], registry=r)
        self.budget = pc.Gauge("ccotel_budget_usd", "", ["window"], registry=r)
        self.lines = pc.Counter("ccotel_lines", "", registry=r)
        self.parse_errors = pc.Counter("ccotel_parse_errors", "", registry=r)
        self.unpriced = pc.Counter("ccotel_unpriced_tokens", "", ["model"], registry=r)
        self.lag = pc.Gauge("ccotel_ingest_lag_seconds", "", registry=r)
        self.files = pc.Gauge("ccotel_files_tracked", "", registry=r)
        self.build = pc.Gauge("ccotel_build_info", "", ["version"], registry=r)
        self.export_errors = pc.Counter("ccotel_export_errors", "", ["signal"], registry=r)
        self.spans = pc.Counter("ccotel_spans_exported", "", registry=r)
        self.queue = pc.Gauge("ccotel_export_queue_spans", "", registry=r)
        # Plan limits and blocks (issue 12), live states (issue 15), what the spend bought (14).
        self.plan_used = pc.Gauge("ccotel_plan_used_ratio", "", ["window"], registry=r)
        self.plan_resets = pc.Gauge("ccotel_plan_resets_at_seconds", "", ["window"], registry=r)
        self.plan_report = pc.Gauge(
            "ccotel_plan_report_timestamp_seconds", "", ["window"], registry=r
        )
        self.block_cost = pc.Gauge("ccotel_block_cost_usd", "", registry=r)
        self.block_end = pc.Gauge("ccotel_block_ends_at_seconds", "", registry=r)
        self.block_projected = pc.Gauge("ccotel_block_projected_cost_usd", "", registry=r)
        self.burn = pc.Gauge("ccotel_burn_rate_usd_per_hour", "", ["window"], registry=r)
        self.states = pc.Gauge("ccotel_sessions_by_state", "", ["state"], registry=r)
        self.waited = pc.Histogram(
            "ccotel_waiting_sessions_seconds", "", buckets=(10, 60, 300, 1800), registry=r
        )
        self.code_lines = pc.Counter("ccotel_code_lines", "", ["type", "project"], registry=r)
        self.commits = pc.Counter("ccotel_commits", "", ["project"], registry=r)
        self.pull_requests = pc.Counter("ccotel_pull_requests", "", ["project"], registry=r)
        now = time.time()
        for window, used, left in (("5h", 0.42, 2 * 3600), ("7d", 0.17, 3 * 86400)):
            self.plan_used.labels(window).set(used)
            self.plan_resets.labels(window).set(now + left)
        self.block_cost.set(3.2)
        self.block_end.set(now + 3 * 3600)
        self.block_projected.set(9.5)
        self.burn.labels("15m").set(2.1)
        for state, n in (("working", 2), ("tool", 1), ("waiting", 1), ("idle", 3)):
            self.states.labels(state).set(n)
        self.build.labels("0.1.0").set(1)
        self.files.set(3)
        self.active.labels("web").set(1)
        self.spend.labels("1h").set(1.0)
        self.spend.labels("5h").set(1.0)
        self.spend.labels("24h").set(1.0)
        self.budget.labels("1h").set(hourly_budget)
        self.budget.labels("24h").set(50)
        self.stop = threading.Event()
        self.server, _ = pc.start_http_server(0, addr="127.0.0.1", registry=r)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self.stop.wait(0.2):
            for model in ("claude-sonnet-4-5", "claude-haiku-4-5"):
                for kind, n in (
                    ("input", 10),
                    ("output", 50),
                    ("cache_read", 900),
                    ("cache_write_5m", 40),
                    ("cache_write_1h", 5),
                ):
                    self.tokens.labels(model, kind, "web").inc(n)
                self.cost.labels(model, "web").inc(0.001, exemplar={"trace_id": TRACE_ID})
                self.requests.labels(model, "web").inc()
            self.tools.labels("Bash", "web", "ok").inc()
            self.tools.labels("Read", "web", "error").inc()
            self.duration.labels("Bash").observe(0.3)
            self.duration.labels("Read").observe(0.02)
            self.sessions.labels("web").inc(0.1)
            self.lines.inc(7)
            self.spans.inc(4)
            self.lag.set(0.5)
            for window in ("5h", "7d"):
                self.plan_report.labels(window).set(time.time())
            self.waited.observe(42)
            self.code_lines.labels("added", "web").inc(12)
            self.code_lines.labels("removed", "web").inc(3)
            self.commits.labels("web").inc(0.5)
            self.pull_requests.labels("web").inc(0.1)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ccotel():
    fake = FakeCcotel(hourly_budget=0.5)
    yield fake
    fake.close()


def test_budget_alert_reaches_the_webhook_and_resolves(tmp_path, fake_ccotel):
    with Stack(tmp_path, fake_ccotel.target, labels=AS_PUSHED) as stack:
        alert = stack.wait_for_alert("CcotelHourlyBudgetExceeded")
        assert alert["labels"] == {
            "alertname": "CcotelHourlyBudgetExceeded",
            "severity": "critical",
            "window": "1h",
            "host": HOST,
            "user": USER,
        }
        assert alert["annotations"]["description"].startswith(
            f"{USER} on {HOST} spent $1.00 in the last hour, over the hourly budget of $0.50."
        )
        # Once the cost counter has two samples in the hour, the top project is named too.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            live = [
                a
                for a in stack.alerts()
                if a["labels"]["alertname"] == "CcotelHourlyBudgetExceeded"
            ]
            if (
                live
                and "Most of it went to project web ($" in live[0]["annotations"]["description"]
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no top project in {live}")
        fake_ccotel.budget.labels("1h").set(5.0)  # the user raises budget.hourly_usd
        resolved = stack.wait_for_alert("CcotelHourlyBudgetExceeded", "resolved", timeout=30)
        assert resolved["labels"]["host"] == HOST
        # Nothing else is wrong with this daemon.
        firing = {a["labels"]["alertname"] for a in stack.query("ALERTS")}
        assert firing <= {"CcotelHourlyBudgetBurnRate"}, firing


def team_budgets(tmp_path: Path) -> Path:
    """rules/budgets.yml for the stand-in's user and team, as budgets.py writes it."""
    toml = tmp_path / "budgets.toml"
    toml.write_text(
        f'[users."{USER}"]\nhourly_usd = 100\ndaily_usd = 500\n[teams."{TEAM}"]\ndaily_usd = 900\n'
    )
    out = tmp_path / "budgets.yml"
    assert generate(toml, out).returncode == 0
    return out


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_dashboard_query_returns_data(tmp_path, fake_ccotel, uid):
    """Every Prometheus panel of both dashboards, those awaiting ccotel's code included, against
    the stand-in that serves the whole contract, with the stack's rules and generated budgets."""
    queries = panel_queries(path=DASHBOARDS[uid], awaiting=True)
    with Stack(
        tmp_path, fake_ccotel.target, labels=AS_PUSHED, more_rules=(team_budgets(tmp_path),)
    ) as stack:
        deadline = time.monotonic() + 45
        empty = queries
        while empty and time.monotonic() < deadline:
            time.sleep(1)
            empty = [(title, ref, expr) for title, ref, expr in empty if not stack.query(expr)]
        assert not empty, "panels without data:\n" + "\n".join(
            f"{t} [{r}]: {e}" for t, r, e in empty
        )
        by_title = {t: e for t, _, e in queries}
        if uid == "ccotel-team":
            # The lead sees the user and team by name, against their budgets.
            per_user = stack.query(by_title["Spend per user"])
            assert [s["metric"] for s in per_user] == [{"user": USER}]
            per_team = stack.query(by_title["Spend per team"])
            assert [s["metric"] for s in per_team] == [{"team": TEAM}]
            used = stack.query(by_title["Budget used per user (%)"])
            assert {s["metric"]["window"] for s in used} == {"1h", "24h"}
            (plan,) = stack.query(by_title["5-hour plan use per user"])
            assert plan["metric"] == {"user": USER} and float(plan["value"][1]) == 42
            return
        # Values are sane, not just present.
        (ratio,) = stack.query(by_title["Cache hit ratio over the range"])
        assert 0.9 < float(ratio["value"][1]) < 0.99  # 900 reads of 955 input-side tokens
        (used,) = stack.query(by_title["Hourly budget used"])
        assert float(used["value"][1]) == pytest.approx(200.0)  # $1.00 of $0.50
        (saved,) = stack.query(by_title["Money saved by caching"])
        assert float(saved["value"][1]) > 0


def test_cost_exemplars_carry_the_session_trace_id(tmp_path, fake_ccotel):
    with Stack(tmp_path, fake_ccotel.target, labels=AS_PUSHED) as stack:
        deadline = time.monotonic() + 30
        found: list[dict] = []
        while not found and time.monotonic() < deadline:
            time.sleep(1)
            found = stack.exemplars('ccotel_cost_usd_total{model="claude-sonnet-4-5"}')
        assert found, "no exemplars: is Prometheus scraping OpenMetrics with exemplar storage on?"
        assert found[0]["seriesLabels"]["host"] == HOST
        assert {e["labels"]["trace_id"] for e in found[0]["exemplars"]} == {TRACE_ID}


def test_test_configs_are_valid(tmp_path):
    prom = tmp_path / "prometheus.yml"
    prom.write_text(yaml.safe_dump(prometheus_test_config("127.0.0.1:1", "127.0.0.1:2")))
    proc = subprocess.run(
        [_binary("promtool"), "check", "config", str(prom)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    am = tmp_path / "am.yml"
    am.write_text(yaml.safe_dump(alertmanager_test_config("http://127.0.0.1:3/alerts")))
    proc = subprocess.run(
        [_binary("amtool"), "check-config", str(am)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
