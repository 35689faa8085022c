"""The compose stack and every config it mounts: Prometheus, alert rules (with their promtool unit
tests), Alertmanager, the collector, Tempo, Grafana provisioning, and docker-compose.yml itself.

promtool and amtool come from Debian's prometheus / prometheus-alertmanager packages
(scripts/install-test-deps); a missing tool fails these tests, it does not skip them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "deploy" / "compose"
RULES_DIR = COMPOSE_DIR / "prometheus" / "rules"
RULES = RULES_DIR / "ccotel.yml"
RULE_TESTS = RULES_DIR / "ccotel_test.yml"
# Every promtool test file beside the rules: laptops (ccotel_test), plan (plan_test), people and
# teams (team_test).
RULE_TEST_FILES = sorted(RULES_DIR.glob("*_test.yml"))
BUDGET_RULES = RULES_DIR / "budgets.yml"  # generated from budgets.toml by budgets.py
PROMETHEUS_YML = COMPOSE_DIR / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = COMPOSE_DIR / "alertmanager" / "alertmanager.yml"
COLLECTOR_YML = COMPOSE_DIR / "otel-collector" / "config.yaml"
TEMPO_YML = COMPOSE_DIR / "tempo" / "tempo.yaml"
DATASOURCES_YML = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_YML = COMPOSE_DIR / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
COMPOSE_YML = COMPOSE_DIR / "docker-compose.yml"

# Contract names whose code has not landed in ccotel yet: the rules and dashboards read them, and
# the stand-in exporters of these tests serve them, but the real daemon does not emit them yet.
# Remove a name when its code lands: panel_queries() (tests/test_deploy_dashboard.py) then
# includes its panels in the end-to-end check against the real daemon.
AWAITING_CODE = frozenset({})

# The metric contract (issue 4): the only series rules and dashboards may read, besides `up`.
CONTRACT = {
    "ccotel_tokens_total",
    "ccotel_cost_usd_total",
    "ccotel_requests_total",
    "ccotel_tool_calls_total",
    "ccotel_tool_duration_seconds_bucket",
    "ccotel_tool_duration_seconds_sum",
    "ccotel_tool_duration_seconds_count",
    "ccotel_sessions_total",
    "ccotel_active_sessions",
    "ccotel_web_search_requests_total",
    "ccotel_spend_usd",
    "ccotel_budget_usd",
    "ccotel_lines_total",
    "ccotel_parse_errors_total",
    "ccotel_unpriced_tokens_total",
    "ccotel_ingest_lag_seconds",
    "ccotel_files_tracked",
    "ccotel_build_info",
    "ccotel_export_errors_total",
    "ccotel_spans_exported_total",
    "ccotel_export_queue_spans",
    # Plan limits and billing blocks (issue 12)
    "ccotel_plan_used_ratio",
    "ccotel_plan_resets_at_seconds",
    "ccotel_plan_report_timestamp_seconds",
    "ccotel_block_cost_usd",
    "ccotel_block_ends_at_seconds",
    "ccotel_block_projected_cost_usd",
    "ccotel_burn_rate_usd_per_hour",
    # live states (issue 15)
    "ccotel_sessions_by_state",
    "ccotel_waiting_sessions_seconds_bucket",
    "ccotel_waiting_sessions_seconds_sum",
    "ccotel_waiting_sessions_seconds_count",
    # What the spend bought (issue 14)
    "ccotel_code_lines_total",
    "ccotel_commits_total",
    "ccotel_pull_requests_total",
    *AWAITING_CODE,
}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/install-test-deps installs it)"
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)


def load(path: Path):
    return yaml.safe_load(path.read_text())


def metric_names(expr: str) -> set[str]:
    """ccotel_* names an expression reads (label values and strings removed first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\bccotel_[a-z0-9_]+\b", expr))


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


# ------------------------------------------------------------------------------ Prometheus


def test_prometheus_config_is_valid():
    proc = run(tool("promtool"), "check", "config", str(PROMETHEUS_YML))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout  # the rules really are loaded from the config


def test_prometheus_reads_every_ccotel_from_the_collector():
    """No scrape of ccotel itself: every ccotel pushes, so none has to listen beyond loopback."""
    cfg = load(PROMETHEUS_YML)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    pushed = jobs["otel-collector-ccotel"]
    assert pushed["honor_labels"] is True  # job/host/user as the collector sets them
    assert "labels" not in pushed["static_configs"][0]  # nothing to edit by hand
    targets = [t for j in jobs.values() for sc in j["static_configs"] for t in sc["targets"]]
    assert not [t for t in targets if "host.docker.internal" in t or t.endswith(":9470")]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    assert cfg["rule_files"] == ["rules/ccotel.yml", "rules/budgets.yml"]
    # Native-compatible series get the job public native dashboards filter on; nothing else does.
    (relabel,) = pushed["metric_relabel_configs"]
    assert relabel == {
        "source_labels": ["__name__"],
        "regex": "claude_code_.+",
        "target_label": "job",
        "replacement": "otel-collector",
    }


# ------------------------------------------------------------------------------ alert rules


def rules() -> list[dict]:
    return [r for g in load(RULES)["groups"] for r in g["rules"]]


def recorded() -> set[str]:
    """Series the rules record (and budgets.py's rules: their names are fixed, their values
    the lead's): rules may read them besides the contract."""
    return {r["record"] for r in rules() if "record" in r} | {
        "ccotel:user_budget_usd",
        "ccotel:team_budget_usd",
        "ccotel:plan_weekly_margin_ratio",
        "ccotel:plan_stale_seconds",
    }


def recorded_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\bccotel:[a-z0-9_:]+\b", expr))


def alert_names() -> set[str]:
    return {r["alert"] for r in rules() if "alert" in r}


def test_rules_are_valid():
    proc = run(tool("promtool"), "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


@pytest.mark.parametrize("tests", [p.name for p in RULE_TEST_FILES])
def test_rule_unit_tests_pass(tests):
    proc = run(tool("promtool"), "test", "rules", tests, cwd=RULES_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rule_test_files_are_the_three_expected():
    assert [p.name for p in RULE_TEST_FILES] == [
        "ccotel_test.yml",
        "plan_test.yml",
        "team_test.yml",
    ]


def test_the_issues_alerts_exist():
    assert {
        "CcotelHourlyBudgetExceeded",
        "CcotelDailyBudgetExceeded",
        "CcotelHourlyBudgetBurnRate",
        "CcotelDown",
        "CcotelIngestStalled",
        "CcotelIngestFallingBehind",
        "CcotelParseErrors",
        "CcotelUnpricedModel",
        "CcotelExportFailing",
        # per person and per team (issue 14), plan pace (issue 12)
        "CcotelUserBudgetExceeded",
        "CcotelTeamBudgetExceeded",
        "CcotelPlan5hLimitAhead",
        "CcotelPlanWeeklyAhead",
        "CcotelPlanDataStale",
    } <= alert_names()


def test_every_alert_is_tested_firing_and_silent():
    fired: set[str] = set()
    silent: set[str] = set()
    for t in (t for path in RULE_TEST_FILES for t in load(path)["tests"]):
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alert_names() - fired == set(), "alerts never shown firing"
    assert alert_names() - silent == set(), "alerts never shown staying silent"


# Whom each alert is about: a daemon (host, user), a person (user, across laptops), a team.
NOT_PER_DAEMON = {
    "CcotelCollectorDown": (),
    "CcotelDuplicateIngest": (),
    "CcotelUserBudgetExceeded": ("$labels.user",),
    "CcotelTeamBudgetExceeded": ("$labels.team",),
    "CcotelPlan5hLimitAhead": ("$labels.user",),
    "CcotelPlanWeeklyAhead": ("$labels.user",),
    "CcotelPlanDataStale": ("$labels.user",),
}


def test_alerts_say_how_much_for_whom_and_what_to_do():
    for r in rules():
        if "alert" not in r:
            continue
        ann = r.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}, r["alert"]
        whom = NOT_PER_DAEMON.get(r["alert"], ("$labels.host", "$labels.user"))
        for label in whom:
            assert label in ann["summary"] and label in ann["description"], (r["alert"], label)


def test_rules_read_only_the_metric_contract():
    for r in rules():
        texts = [r["expr"], *r.get("annotations", {}).values()]
        for text in texts:
            assert metric_names(text) <= CONTRACT, (
                r.get("alert") or r.get("record"),
                metric_names(text) - CONTRACT,
            )
            assert recorded_names(text) <= recorded(), (
                r.get("alert") or r.get("record"),
                recorded_names(text) - recorded(),
            )


def test_budget_rules_hard_code_no_threshold():
    """A budget reaches the rules only as a series (ccotel_budget_usd from each laptop's config,
    ccotel:user_budget_usd / ccotel:team_budget_usd from budgets.toml): no dollar figure in them,
    and the plan alerts' margin and staleness come from budgets.toml too."""
    for r in rules():
        if "alert" not in r:
            continue
        if "spend_usd" in r["expr"] or "ccotel_cost_usd_total" in r["expr"]:
            assert re.search(r"ccotel_budget_usd|ccotel:(user|team)_budget_usd", r["expr"]), r[
                "alert"
            ]
            # the only literals allowed: 0 (budget disabled), 3600 (per hour)
            literals = set(
                re.findall(
                    r"(?<![\w.\[])(\d+(?:\.\d+)?)(?![\w\]])", re.sub(r'"[^"]*"', "", r["expr"])
                )
            )
            assert literals <= {"0", "3600"}, (r["alert"], literals)
    by_name = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    assert "ccotel:plan_weekly_margin_ratio" in by_name["CcotelPlanWeeklyAhead"]
    assert "ccotel:plan_stale_seconds" in by_name["CcotelPlanDataStale"]


@pytest.mark.parametrize(
    ("what", "old", "new", "failing_test"),
    [
        # Without the 5m window a restart's stale scrape resolves the alert (then re-sends it).
        (
            "restart protection",
            'max by (host, user) (max_over_time(ccotel_spend_usd{window="1h"}[5m]))\n            > on (host, user)\n          max by (host, user) (last_over_time(ccotel_budget_usd{window="1h"}[5m]) > 0)',
            'max by (host, user) (ccotel_spend_usd{window="1h"})\n            > on (host, user)\n          max by (host, user) (ccotel_budget_usd{window="1h"} > 0)',
            "restart of ccotel",
        ),
        # Without `> 0` a budget of 0 would page all the time.
        (
            "zero budget",
            'last_over_time(ccotel_budget_usd{window="24h"}[5m]) > 0)',
            'last_over_time(ccotel_budget_usd{window="24h"}[5m]))',
            "daily budget",
        ),
        # With `for` no longer than the 5-minute activity window, a restart would look stalled.
        (
            "restart is not a stall",
            "increase(ccotel_lines_total[15m])) == 0\n        for: 10m",
            "increase(ccotel_lines_total[15m])) == 0\n        for: 5m",
            "ingest stalled",
        ),
        # With `for` shorter than the rate window, a catch-up burst would warn.
        (
            "burst protection",
            "for: 15m\n        labels:\n          severity: warning\n          window: 1h",
            "for: 5m\n        labels:\n          severity: warning\n          window: 1h",
            "burn rate",
        ),
        # A person's budget of 0 in budgets.toml means none.
        (
            "zero person budget",
            "(ccotel:user_budget_usd > 0)",
            "ccotel:user_budget_usd",
            "budgets of 0 or none",
        ),
        # Summing each laptop's current spend gauge instead of its counters forgets a laptop that
        # went to sleep.
        (
            "sleeping laptop",
            "expr: sum by (user) (increase(ccotel:host_cost_usd_total[1h]))",
            'expr: sum by (user) (max by (host, user) (ccotel_spend_usd{window="1h"}))',
            "went to sleep",
        ),
        # The highest report is not the freshest: an old window's 95% must not win.
        (
            "freshest report wins",
            "max by (host, user, window) (last_over_time(ccotel_plan_used_ratio[5m]))\n              and on (host, user, window)\n            ccotel:plan_report_timestamp_seconds:freshest_host",
            "max by (host, user, window) (last_over_time(ccotel_plan_used_ratio[5m]))",
            "steady pace, two laptops",
        ),
        # A slower slope catches a late pace too late (less than 30 minutes before the limit).
        (
            "pace of the last 15 minutes",
            'deriv(ccotel:plan_used_ratio:freshest{window="5h"}[15m])',
            'deriv(ccotel:plan_used_ratio:freshest{window="5h"}[1h])',
            "a pace that starts late",
        ),
        # A user who stopped is not about to reach the limit.
        (
            "stopped spending",
            '{window="15m"}[5m]))) == 0)',
            '{window="15m"}[5m]))) == -1)',
            "stopped, and a window that has reset",
        ),
        # A reset further away than a week is not a weekly window: no share of it can be "gone".
        (
            "a week at most",
            '(ccotel:plan_resets_at_seconds:freshest{window="7d"} - time() > 0 <= 7 * 86400)',
            '(ccotel:plan_resets_at_seconds:freshest{window="7d"} - time() > 0)',
            "weekly pace against the share of the week gone",
        ),
        # Stale plan data matters only while sessions are active.
        (
            "stale only while active",
            "            ) > 0\n          )\n        for: 10m",
            "            ) >= 0\n          )\n        for: 10m",
            "plan data stale while sessions are active",
        ),
    ],
)
def test_rule_tests_catch_a_broken_rule(tmp_path, what, old, new, failing_test):
    text = RULES.read_text()
    assert text.count(old) == 1, what
    (tmp_path / RULES.name).write_text(text.replace(old, new, 1))
    for path in RULE_TEST_FILES:
        shutil.copy(path, tmp_path / path.name)
    proc = run(tool("promtool"), "test", "rules", *[p.name for p in RULE_TEST_FILES], cwd=tmp_path)
    assert proc.returncode != 0, f"breaking {what} went unnoticed"
    assert failing_test in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ Alertmanager

EXAMPLE = re.compile(r"^\s*# --- example: (?P<name>[\w-]+) ---$")
END = re.compile(r"^\s*# --- end example ---$")


def uncomment(text: str, names: set[str]) -> str:
    """The file with the named examples uncommented, as a user would do it."""
    out, current = [], None
    for line in text.splitlines():
        if m := EXAMPLE.match(line):
            current = m["name"]
            continue
        if END.match(line):
            current = None
            continue
        if current in names:
            line = re.sub(r"^(\s*)# ?", r"\1", line, count=1)
        out.append(line)
    return "\n".join(out) + "\n"


def amtool_check(path: Path) -> subprocess.CompletedProcess:
    return run(tool("amtool"), "check-config", str(path))


def test_alertmanager_config_is_valid_with_a_silent_default_receiver():
    proc = amtool_check(ALERTMANAGER_YML)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = load(ALERTMANAGER_YML)
    assert cfg["route"]["receiver"] == "default"
    assert cfg["receivers"] == [{"name": "default"}]
    assert {"host", "user"} <= set(cfg["route"]["group_by"])


def test_alertmanager_examples_work_once_uncommented(tmp_path):
    text = ALERTMANAGER_YML.read_text()
    names = {m["name"] for line in text.splitlines() if (m := EXAMPLE.match(line))}
    assert names == {"webhook", "slack", "email", "routes"}
    for name in ("webhook", "slack", "email"):
        path = tmp_path / f"{name}.yml"
        path.write_text(uncomment(text, {name}))
        proc = amtool_check(path)
        assert proc.returncode == 0, (name, proc.stdout + proc.stderr)
        receivers = {r["name"]: r for r in load(path)["receivers"]}
        assert set(receivers) == {"default", name}
        config = next(v for k, v in receivers[name].items() if k.endswith("_configs"))
        assert config[0]["send_resolved"] is True
    everything = tmp_path / "all.yml"
    everything.write_text(uncomment(text, names))
    proc = amtool_check(everything)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(load(everything)["route"]["routes"]) == 3
    # amtool does check that routes name existing receivers, so the check above means something.
    routes_only = tmp_path / "routes-only.yml"
    routes_only.write_text(uncomment(text, {"routes"}))
    assert amtool_check(routes_only).returncode != 0


# ------------------------------------------------------------------------------ compose

VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: str) -> str:
    return VAR.sub(lambda m: m.group(2) or "", value)


def compose() -> dict:
    return load(COMPOSE_YML)


def services() -> dict[str, dict]:
    return compose()["services"]


def published(service: str) -> dict[int, str]:
    """container port -> host binding for a service."""
    out = {}
    for spec in services()[service].get("ports", []):
        parts = interpolate(str(spec)).split(":")  # [ip:]host_port:container_port
        out[int(parts[-1].split("/")[0])] = parts[0] if len(parts) == 3 else ""
    return out


def command_flag(service: str, flag: str) -> str:
    for arg in services()[service]["command"]:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{service} has no {flag}")


def healthcheck_url(service: str) -> str:
    test = services()[service]["healthcheck"]["test"]
    return next(a for a in test if a.startswith("http://"))


def compose_spec_text(text: str) -> str:
    """docker-compose.yml as `docker compose` sees it with no variable set: defaults filled in.
    host-gateway (Docker's name for the host's bridge address) becomes an address: the parser
    knows only addresses there."""
    return interpolate(text).replace(":host-gateway", ":172.17.0.1")


def test_compose_file_follows_the_compose_specification():
    """No Docker engine here, so no `docker compose config`: the Compose Specification's parser
    (the compose_spec crate, Python bindings) reads the file with every field's type checked."""
    from compose_spec import PyCompose

    parsed = PyCompose.from_yaml(compose_spec_text(COMPOSE_YML.read_text()))
    assert set(parsed.service_names()) == set(services())
    broken = compose_spec_text(COMPOSE_YML.read_text()).replace("interval: 10s", "interval: ten")
    with pytest.raises(ValueError, match="interval"):
        PyCompose.from_yaml(broken)


def test_depends_on_names_services_that_can_meet_the_condition():
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        for dep, spec in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            assert dep in svcs, (name, dep)
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert svcs[dep].get("healthcheck"), (name, dep)
            if condition == "service_completed_successfully":
                assert svcs[dep].get("restart") == "no", (name, dep)


def test_every_variable_the_compose_file_reads_is_documented():
    names = {m.group(1) for m in VAR.finditer(COMPOSE_YML.read_text())}
    assert names == {"CCOTEL_OTLP_BIND", "CCOTEL_BIND", "GRAFANA_ADMIN_PASSWORD"}
    readme = (COMPOSE_DIR / "README.md").read_text()
    for name in names:
        assert name in readme and name in COMPOSE_YML.read_text().split("services:")[0], name


def test_collector_pipelines_use_only_defined_components():
    cfg = load(COLLECTOR_YML)
    service = cfg["service"]
    assert set(service["extensions"]) <= set(cfg["extensions"])
    used = {"receivers": set(), "processors": set(), "exporters": set()}
    for pipe in service["pipelines"].values():
        for kind in used:
            assert set(pipe.get(kind, [])) <= set(cfg[kind]), (kind, pipe)
            used[kind] |= set(pipe.get(kind, []))
    for kind, names in used.items():
        assert names == set(cfg[kind]), f"{kind} defined but unused: {set(cfg[kind]) - names}"
    # Component types the pinned contrib image ships (the part of the name before "/").
    known = {"otlp", "memory_limiter", "transform", "batch", "prometheus", "health_check"}
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for name in cfg[kind]:
            assert name.split("/")[0] in known, name
    assert service["pipelines"]["metrics"]["processors"][0] == "memory_limiter"
    assert service["pipelines"]["traces"]["processors"][0] == "memory_limiter"


def test_every_image_is_pinned_to_a_version():
    for name, svc in services().items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_the_issues_services_are_there():
    images = {svc["image"].rsplit(":", 1)[0] for svc in services().values()}
    assert {
        "otel/opentelemetry-collector-contrib",
        "prom/prometheus",
        "grafana/tempo",
        "grafana/grafana",
        "prom/alertmanager",
    } <= images


def test_every_mounted_file_exists():
    mounts = 0
    for name, svc in services().items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).resolve().exists(), f"{name}: {source} does not exist"
                mounts += 1
            else:
                assert source in compose()["volumes"], f"{name}: volume {source} is not declared"
    assert mounts >= 7


def test_every_long_running_service_has_a_healthcheck():
    svcs = services()
    for name, svc in svcs.items():
        if svc.get("restart") == "no":  # one-shot init containers
            continue
        if name == "otel-collector":  # scratch image: its probe service carries the health
            probe = svcs["otel-collector-health"]
            url = next(a for a in probe["healthcheck"]["test"] if a.startswith("http://"))
            health = load(COLLECTOR_YML)["extensions"]["health_check"]["endpoint"]
            assert url.startswith("http://otel-collector:") and port_of(url) == port_of(health)
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_ports_agree_between_services():
    collector = load(COLLECTOR_YML)
    prom = load(PROMETHEUS_YML)
    tempo = load(TEMPO_YML)
    datasources = {d["uid"]: d for d in load(DATASOURCES_YML)["datasources"]}
    targets = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}

    # The collector receives OTLP where compose publishes it (and where ccotel sends by default).
    otlp = collector["receivers"]["otlp"]["protocols"]
    assert port_of(otlp["grpc"]["endpoint"]) == 4317 and port_of(otlp["http"]["endpoint"]) == 4318
    assert set(published("otel-collector")) == {4317, 4318}
    # Prometheus reads the collector's exporter and its own telemetry where they listen.
    assert (
        targets["otel-collector-ccotel"]
        == f"otel-collector:{port_of(collector['exporters']['prometheus']['endpoint'])}"
    )
    reader = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"][
        "prometheus"
    ]
    assert targets["otel-collector"] == f"otel-collector:{reader['port']}"
    # The collector sends traces where Tempo receives them.
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == f"tempo:{port_of(tempo_grpc)}"
    tempo_http = tempo["server"]["http_listen_port"]
    am_port = port_of(command_flag("alertmanager", "--web.listen-address"))
    prom_port = port_of(command_flag("prometheus", "--web.listen-address"))
    # Everyone talks to Alertmanager, Prometheus, Tempo and Grafana where they listen.
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"alertmanager:{am_port}"
    ]
    assert targets["alertmanager"] == f"alertmanager:{am_port}"
    assert targets["tempo"] == f"tempo:{tempo_http}"
    assert targets["prometheus"] == f"localhost:{prom_port}"
    assert datasources["prometheus"]["url"] == f"http://prometheus:{prom_port}"
    assert datasources["tempo"]["url"] == f"http://tempo:{tempo_http}"
    assert datasources["alertmanager"]["url"] == f"http://alertmanager:{am_port}"
    grafana_port = port_of(targets["grafana"])
    for service, port in (
        ("prometheus", prom_port),
        ("alertmanager", am_port),
        ("tempo", tempo_http),
        ("grafana", grafana_port),
    ):
        assert port in published(service), (service, port)
        assert port_of(healthcheck_url(service)) == port, service
    # Hostnames in the configs are compose services.
    for host in ("otel-collector", "tempo", "alertmanager", "prometheus", "grafana"):
        assert host in services()


def test_published_ports_bind_to_loopback_by_default():
    for name in services():
        for port, binding in published(name).items():
            assert binding == "127.0.0.1", f"{name}:{port} binds {binding or 'all interfaces'}"


def test_prometheus_mounts_its_config_and_rules_and_keeps_exemplars():
    prom = services()["prometheus"]
    assert "extra_hosts" not in prom  # it reaches nothing on the host
    assert "--enable-feature=exemplar-storage" in prom["command"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    config_dir = Path(command_flag("prometheus", "--config.file")).parent
    rules_in_container = config_dir / load(PROMETHEUS_YML)["rule_files"][0]
    assert mounts[str(rules_in_container.parent)] == "./prometheus/rules"
    assert mounts[command_flag("prometheus", "--config.file")] == "./prometheus/prometheus.yml"


def test_grafana_mounts_the_dashboard_where_provisioning_looks():
    grafana = services()["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    path = load(DASHBOARD_PROVIDERS_YML)["providers"][0]["options"]["path"]
    assert mounts[path] == "../../grafana/dashboards"
    assert (COMPOSE_DIR / mounts[path] / "ccotel.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/ccotel.json"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_collector_promotes_host_and_user_and_routes_signals():
    cfg = load(COLLECTOR_YML)
    statements = " ".join(
        s
        for ctx in cfg["processors"]["transform/host_user"]["metric_statements"]
        for s in ctx["statements"]
    )
    assert 'set(attributes["host"], resource.attributes["host.name"])' in statements
    assert 'set(attributes["user"], resource.attributes["user.name"])' in statements
    # the team of budgets.toml: OTEL_RESOURCE_ATTRIBUTES=team.id=NAME on the laptops
    assert 'set(attributes["team"], resource.attributes["team.id"])' in statements
    # native-compatible metrics get the user labels public native dashboards group by
    native = cfg["processors"]["transform/host_user"]["metric_statements"][1]
    assert native["conditions"] == ['IsMatch(metric.name, "^claude_code\\\\.")']
    assert any('attributes["user.id"]' in st for st in native["statements"])
    assert any('attributes["user.email"]' in st for st in native["statements"])
    pipes = cfg["service"]["pipelines"]
    assert "transform/host_user" in pipes["metrics"]["processors"]
    assert pipes["metrics"]["exporters"] == ["prometheus"]
    assert pipes["traces"]["exporters"] == ["otlp/tempo"]
    assert "batch" in pipes["traces"]["processors"] and "batch" in pipes["metrics"]["processors"]
    assert cfg["exporters"]["prometheus"]["enable_open_metrics"] is True  # exemplars


def test_collector_keeps_cumulative_counters_through_a_restart():
    """docs/deploy.md, "Many laptops, one collector": ccotel pushes cumulative totals, the
    exporter keeps the latest point; nothing in the metrics pipeline holds running sums that a
    restart would lose, and series live long enough to ride over a slow push."""
    cfg = load(COLLECTOR_YML)
    processors = cfg["service"]["pipelines"]["metrics"]["processors"]
    assert not [
        p for p in processors if p.split("/")[0] in {"deltatocumulative", "cumulativetodelta"}
    ]
    exporter = cfg["exporters"]["prometheus"]
    expiration = exporter["metric_expiration"]
    assert re.fullmatch(r"\d+m", expiration) and 2 <= int(expiration[:-1]) <= 60, expiration
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": False}


def test_tempo_limits_fit_sessions_of_thousands_of_tool_calls():
    tempo = load(TEMPO_YML)
    per_trace = tempo["overrides"]["defaults"]["global"]["max_bytes_per_trace"]
    # 10,000 tool calls ~ 25,000 spans of ~1-2 KB: well above Tempo's 5 MB default.
    assert per_trace >= 50 * 2**20
    assert tempo["server"]["grpc_server_max_recv_msg_size"] >= per_trace
    assert tempo["server"]["grpc_server_max_send_msg_size"] >= per_trace
    assert tempo["overrides"]["defaults"]["ingestion"]["max_traces_per_user"] > 10000
    assert tempo["usage_report"]["reporting_enabled"] is False


def test_grafana_datasources_link_exemplars_to_tempo():
    ds = {d["uid"]: d for d in load(DATASOURCES_YML)["datasources"]}
    assert {d["type"] for d in ds.values()} == {"prometheus", "tempo", "alertmanager"}
    dest = ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert dest == [
        {
            "name": "trace_id",
            "datasourceUid": "tempo",
            "urlDisplayLabel": dest[0]["urlDisplayLabel"],
        }
    ]
    assert ds["tempo"]["jsonData"]["serviceMap"]["datasourceUid"] == "prometheus"
    assert ds["prometheus"]["jsonData"]["alertmanagerUid"] == "alertmanager"


# ------------------------------------------------------------------------------ documented setup

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), COMPOSE_DIR / "README.md"]
STACK_HOST_LINE = 'otlp_endpoint = "http://127.0.0.1:4318"'


def test_the_documented_stack_host_setup_pushes_to_the_published_collector():
    """The one line the docs give the stack host names the port compose publishes on loopback."""
    for path in (COMPOSE_DIR / "README.md", REPO / "docs" / "deploy.md"):
        assert STACK_HOST_LINE in path.read_text(), path
    assert published("otel-collector")[4318] == "127.0.0.1"
    http = load(COLLECTOR_YML)["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert port_of(http) == 4318


BIND = re.compile(
    r'(?:(?:http|metrics)_addr\s*=\s*"|--(?:http|metrics)-addr[ =])\[?([^\]"\s]+?)\]?:\d+'
)
LOOPBACK = ("127.", "localhost", "::1")


def test_no_document_advises_publishing_ccotel_unauthenticated():
    """Issue 9: `0.0.0.0:9470` published the page, API and /metrics to the network. An address
    beyond loopback appears only in an example that also sets basic auth."""
    seen = 0
    for path in [*DOCS, *COMPOSE_DIR.rglob("*.y*ml")]:
        text = path.read_text()
        blocks = re.findall(r"```\w*\n(.*?)```", text, re.S)
        prose = re.sub(r"```\w*\n.*?```", "", text, flags=re.S)
        for where in [*blocks, prose]:
            for host in BIND.findall(where):
                if host.startswith(LOOPBACK):
                    continue
                seen += 1
                assert where in blocks and "http_basic_auth_password_hash" in where, (path, host)
                assert "allow_unauthenticated_network_access = true" not in where, path
    assert seen >= 1  # the one documented way to open it (docs/config.md) is checked


def test_compose_readme_explains_the_team_shape():
    text = (COMPOSE_DIR / "README.md").read_text()
    for needle in ("docker compose up -d", "CCOTEL_OTLP_BIND", STACK_HOST_LINE, "host.name"):
        assert needle in text
