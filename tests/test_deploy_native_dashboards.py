"""Issue 14 §1: public dashboards made for Claude Code's own telemetry, pointed at ccotel.

tests/native_dashboards.py records every Prometheus panel of two public dashboards (what each
queries, which labels it needs). Here:
- extraction of Prometheus targets from any Grafana dashboard JSON;
- every recorded query runs on the real Prometheus, with the stack's own scrape job (honor_labels
  and its job relabelling for native series), scraping a stand-in that serves
  tests/fixtures/native-dashboards/contract.prom (what ccotel with native_metrics = true exposes
  through the stack's collector, per HELPERS.md's contract) with its counters growing: every panel
  must return data, with the label values a lead expects (users, models, token types);
- the same against the real daemon (native_metrics = true) pushing over OTLP.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.native_dashboards import (
    ANTHROPIC,
    COLE,
    PANELS,
    extract_queries,
    normalize,
    substitute,
)
from tests.test_deploy_live import Stack

CONTRACT_PROM = Path(__file__).resolve().parent / "fixtures" / "native-dashboards" / "contract.prom"
NATIVE = {  # name -> label keys of the contract (HELPERS.md), besides who/where
    "claude_code_token_usage_tokens_total": {"type", "model"},
    "claude_code_cost_usage_USD_total": {"model"},
    "claude_code_session_count_total": set(),
    "claude_code_lines_of_code_count_total": {"type"},
    "claude_code_commit_count_total": set(),
    "claude_code_pull_request_count_total": set(),
    "claude_code_active_time_seconds_total": set(),
}
# Who and where, as the stack's collector labels a pushed series (otel-collector/config.yaml).
IDENTITY = {"job", "host", "user", "team", "user_id", "otel_scope_name", "otel_scope_version"}


def queries() -> list[tuple[str, str]]:
    return [(f"{p.source.split('@')[0]}: {p.title}", substitute(p.query())) for p in PANELS]


def test_the_recorded_panels_and_what_they_need():
    assert len([p for p in PANELS if p.source == COLE]) == 10
    assert len([p for p in PANELS if p.source == ANTHROPIC]) == 8
    needs = {label for p in PANELS for label in p.labels()}
    # What ccotel's series must carry for these dashboards to fill (docs/deploy.md).
    assert needs == {"job", "model", "type", "user_id"}
    assert {p.metric for p in PANELS} == set(NATIVE) - {"claude_code_active_time_seconds_total"}


def test_every_recorded_query_parses(tmp_path):
    rules = [{"record": f"native:q{i}", "expr": expr} for i, (_, expr) in enumerate(queries())]
    path = tmp_path / "native.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "native", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/install-test-deps installs it)"
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_extraction_finds_every_prometheus_target_and_nothing_else():
    """The forms data sources take in dashboards found in the wild: on the target, on the panel,
    a data source variable, a name string, Mixed, a collapsed row; Loki and TestData left out."""
    prom = {"type": "prometheus", "uid": "prometheus"}
    dashboard = {
        "templating": {"list": [{"type": "datasource", "name": "DS_PROM", "query": "prometheus"}]},
        "panels": [
            {
                "title": "on the target",
                "targets": [{"refId": "A", "expr": "a", "datasource": prom}],
            },
            {"title": "on the panel", "datasource": prom, "targets": [{"refId": "A", "expr": "b"}]},
            {
                "title": "variable",
                "datasource": {"uid": "${DS_PROM}"},
                "targets": [{"refId": "A", "expr": "c"}],
            },
            {"title": "name", "datasource": "Prometheus", "targets": [{"refId": "A", "expr": "d"}]},
            {
                "title": "mixed",
                "datasource": {"type": "datasource", "uid": "-- Mixed --"},
                "targets": [
                    {"refId": "A", "expr": "e", "datasource": prom},
                    {"refId": "B", "expr": '{job="x"}', "datasource": {"type": "loki"}},
                ],
            },
            {
                "type": "row",
                "title": "collapsed",
                "panels": [
                    {
                        "title": "inside",
                        "datasource": prom,
                        "targets": [{"refId": "C", "expr": "f"}],
                    }
                ],
            },
            {
                "title": "loki",
                "datasource": {"type": "loki", "uid": "loki"},
                "targets": [{"expr": "g"}],
            },
            {"title": "testdata", "datasource": {"type": "testdata"}, "targets": [{"expr": "h"}]},
            {"title": "no source", "targets": [{"expr": "i"}]},
        ],
    }
    assert [e for _, _, e in extract_queries(dashboard)] == ["a", "b", "c", "d", "e", "f"]
    assert extract_queries(dashboard)[-1][:2] == ("inside", "C")
    # Grafana's own variables become values the Prometheus API takes.
    assert substitute("rate(x[$__rate_interval]) + increase(y[${__range}])") == (
        "rate(x[1m]) + increase(y[1h])"
    )
    assert normalize("sum by (a)(x)") == normalize("sum by (a) (x)")


def test_the_contract_exposition_follows_helpers_md():
    families = {f.name: f for f in text_string_to_metric_families(CONTRACT_PROM.read_text())}
    names = {s.name for f in families.values() for s in f.samples}
    assert names == set(NATIVE)
    for f in families.values():
        assert f.type == "counter", f.name
        for s in f.samples:
            labels = set(s.labels)
            assert labels - IDENTITY - {"user_email"} == NATIVE[s.name], (s.name, labels)
            assert not {"session_id", "session.id"} & labels  # native's exploding label
            if "type" in s.labels:
                allowed = (
                    {"input", "output", "cacheRead", "cacheCreation"}
                    if s.name.startswith("claude_code_token")
                    else {"added", "removed"}
                )
                assert s.labels["type"] in allowed, s
    # Units as the native exporter names them.
    assert "claude_code_cost_usage_USD_total" in names
    assert "claude_code_active_time_seconds_total" in names


class GrowingExposition:
    """Serves contract.prom with every counter growing with time, like a busy team's laptops."""

    def __init__(self, path: Path) -> None:
        self.samples = [
            (s.name, s.labels, s.value)
            for f in text_string_to_metric_families(path.read_text())
            for s in f.samples
        ]
        self.start = time.monotonic()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def render(self) -> str:
        grow = 1 + (time.monotonic() - self.start) / 10
        out = []
        for name, labels, value in self.samples:
            body = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append(f"{name}{{{body}}} {value * grow}")
        return "\n".join(out) + "\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exposition():
    served = GrowingExposition(CONTRACT_PROM)
    yield served
    served.close()


def wait_for_data(stack: Stack, todo: list[tuple[str, str]], timeout: float = 45) -> list:
    """The queries that still return nothing, or only zeros, after `timeout`."""
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        time.sleep(1)
        todo = [
            (t, e) for t, e in todo if not [s for s in stack.query(e) if float(s["value"][1]) > 0]
        ]
    return todo


def test_every_public_panel_fills_from_the_contract(tmp_path, exposition):
    """Each recorded panel returns data greater than 0 (so `or vector(0)` hides nothing), and the
    labels a lead reads are there: two users, both models, every token type and line type."""
    with Stack(tmp_path, exposition.target) as stack:
        empty = wait_for_data(stack, queries())
        assert not empty, "panels without data:\n" + "\n".join(f"{t}: {e}" for t, e in empty)
        by_title = {p.title: substitute(p.query()) for p in PANELS}

        def values(title: str, label: str) -> set[str]:
            return {s["metric"].get(label, "") for s in stack.query(by_title[title])}

        (users,) = stack.query(by_title["Active Users"])
        assert users["value"][1] == "2"
        assert values("Cost by User", "user_id") == {"alice", "bob"}
        assert values("Cost by Model", "model") == {"claude-sonnet-4-5", "claude-haiku-4-5"}
        assert values("Token Usage by Type", "type") == {
            "input",
            "output",
            "cacheRead",
            "cacheCreation",
        }
        assert values("Lines of Code by Type", "type") == {"added", "removed"}
        assert values("Token Usage Rate by Type", "type") == values("Token Usage by Type", "type")
        # The stack's job relabelling gave the native series the job those dashboards filter on;
        # ccotel's own series keep theirs.
        jobs = {s["metric"]["job"] for s in stack.query('{__name__=~"claude_code_.+"}')}
        assert jobs == {"otel-collector"}


def test_without_the_job_relabelling_the_job_filtered_panels_stay_empty(tmp_path, exposition):
    """What the stack's metric_relabel_configs is for: with it removed, the panels that filter
    job="otel-collector" find nothing, the others still fill."""
    with Stack(tmp_path, exposition.target, edit=drop_relabelling) as stack:
        filtered = [p for p in PANELS if ("job", "otel-collector") in p.matchers]
        others = [(p.title, substitute(p.query())) for p in PANELS if p not in filtered]
        assert filtered and not wait_for_data(stack, others)
        for panel in filtered:
            found = stack.query(substitute(panel.query()))
            assert not [s for s in found if float(s["value"][1]) > 0], panel.title


def drop_relabelling(cfg: dict) -> None:
    for job in cfg["scrape_configs"]:
        job.pop("metric_relabel_configs", None)


@pytest.mark.timeout(300)
def test_every_public_panel_fills_from_the_real_daemon(request, tmp_path):
    """The real daemon with native_metrics = true over real Claude Code transcripts, pushing over
    OTLP to the collector stand-in (which names series as the collector's Prometheus exporter
    does), read by the real Prometheus with the stack's job: every recorded public panel returns
    data greater than 0. The session that commits and opens a pull request arrives while
    Prometheus watches, so that every counter grows under its eyes."""
    from datetime import UTC, datetime, timedelta

    from tests.pushed import Collector
    from tests.test_e2e_stack import daemon_env, transcripts_ending_at
    from tests.test_live import start

    real_claude_home = request.getfixturevalue("real_claude_home")  # the real CLI's transcripts
    cfg = tmp_path / "claude"
    transcripts_ending_at(
        real_claude_home.config_dir, cfg, datetime.now(UTC) - timedelta(minutes=1)
    )
    (git,) = cfg.rglob(f"{real_claude_home.run('git').session_id}.jsonl")
    held = git.read_bytes()
    git.unlink()
    with Collector() as collector:
        env = daemon_env(collector, hourly=1000, daily=1000) | {"CCOTEL_NATIVE_METRICS": "1"}
        daemon = start(cfg, tmp_path / "state", env=env)
        try:
            with Stack(tmp_path, collector.target) as stack:
                first = wait_for_data(stack, [("sessions", "claude_code_session_count_total")])
                assert not first, "the native series never reached Prometheus"
                time.sleep(2)  # a scrape or two of the values before the session
                git.write_bytes(held)
                empty = wait_for_data(stack, queries(), timeout=90)
                assert not empty, "panels without data:\n" + "\n".join(
                    f"{t}: {e}" for t, e in empty
                )
                by_title = {p.title: substitute(p.query()) for p in PANELS}
                (users,) = stack.query(by_title["Active Users"])
                assert users["value"][1] == "1"
                cost = stack.query(by_title["Cost by User"])
                assert {s["metric"]["user_id"] for s in cost} == {env["CCOTEL_RESOURCE_USER"]}
                jobs = {s["metric"]["job"] for s in stack.query('{__name__=~"claude_code_.+"}')}
                assert jobs == {"otel-collector"}
        finally:
            daemon.kill()
            daemon.wait(10)


def test_the_stand_in_has_no_labels_the_real_push_could_not_give():
    """contract.prom claims only what the stack's collector makes of ccotel's push: each
    identity label is set by a statement of transform/host_user or is the exporter's own."""
    collector = (
        Path(__file__).resolve().parent.parent
        / "deploy"
        / "compose"
        / "otel-collector"
        / "config.yaml"
    ).read_text()
    for label, source in {
        "host": 'attributes["host"]',
        "user": 'attributes["user"]',
        "team": 'attributes["team"]',
        "user_id": 'attributes["user.id"]',
        "user_email": 'attributes["user.email"]',
    }.items():
        assert re.search(re.escape(f"set({source}"), collector), label
