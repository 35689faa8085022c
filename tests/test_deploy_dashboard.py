"""grafana/dashboards/ccotel.json (per laptop) and ccotel-team.json (for a lead): data source
uids, variables, panels, and every Prometheus query parsed by promtool. tests/test_deploy_live.py
runs the same queries against a real Prometheus.

`panel_queries()` is what an end-to-end test needs: every Prometheus expression of a dashboard
with Grafana's variables replaced (`$host` etc. by `.*`, `$__rate_interval` by `1m`, `$__range`
by `1h`), ready for /api/v1/query. Tempo (TraceQL) and alert-list panels are not in it, nor, unless
asked for, the panels that read metrics whose code has not landed in ccotel yet
(tests.test_deploy.AWAITING_CODE): the end-to-end test with the real daemon cannot fill those.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_deploy import (
    AWAITING_CODE,
    CONTRACT,
    DATASOURCES_YML,
    metric_names,
    recorded,
    recorded_names,
)

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "grafana" / "dashboards" / "ccotel.json"
TEAM_DASHBOARD = REPO / "grafana" / "dashboards" / "ccotel-team.json"
DASHBOARDS = {"ccotel": DASHBOARD, "ccotel-team": TEAM_DASHBOARD}
# The variables each dashboard's queries must follow.
FILTERS = {"ccotel": ("$host", "$user"), "ccotel-team": ("$team", "$user")}

SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$host": ".*",
    "$user": ".*",
    "$project": ".*",
    "$model": ".*",
    "$team": ".*",
    "$min_cost": "5",
}


def dashboard(path: Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def panels(d: dict | None = None) -> list[dict]:
    out = []
    for p in (d or dashboard())["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    values = SUBSTITUTIONS if values is None else values
    # longest first: $__range must not eat $__range_s, $host must not eat $hostname
    for key in sorted(values, key=len, reverse=True):
        expr = expr.replace(key, values[key])
    return expr


def panel_queries(
    values: dict[str, str] | None = None, *, path: Path = DASHBOARD, awaiting: bool = False
) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) for every Prometheus target, variables substituted; with
    `awaiting`, also the targets that read metrics whose code has not landed yet."""
    out = []
    for p in panels(dashboard(path)):
        for t in p.get("targets", []):
            if (t.get("datasource") or p.get("datasource", {})).get("type") != "prometheus":
                continue
            if not awaiting and metric_names(t["expr"]) & AWAITING_CODE:
                continue
            out.append((p["title"], t["refId"], substitute(t["expr"], values)))
    return out


def provisioned() -> dict[str, str]:
    return {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES_YML.read_text())["datasources"]}


def datasource_refs(node) -> list[dict]:
    """Every {"type", "uid"} data source reference anywhere in the JSON."""
    if isinstance(node, list):
        return [r for v in node for r in datasource_refs(v)]
    if not isinstance(node, dict):
        return []
    out = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
    return out + [r for v in node.values() for r in datasource_refs(v)]


DS_VARIABLES = {"datasource": "prometheus", "tempo": "tempo"}


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_data_sources_are_template_variables_so_one_file_provisions_and_imports(uid):
    """No data source uid is written in the dashboard: each reference is a data source variable
    of its type, which Grafana fills with the provisioned data source in the stack and lets the
    user pick after an import into an existing Grafana. No __inputs (they break provisioning)."""
    d = dashboard(DASHBOARDS[uid])
    assert d["uid"] == uid  # the stack's home dashboard path and links use it
    assert "__inputs" not in d and "__requires" not in d
    variables = {v["name"]: v for v in d["templating"]["list"] if v["type"] == "datasource"}
    assert {n: v["query"] for n, v in variables.items()} == DS_VARIABLES
    for v in variables.values():
        assert v["current"] == {} and not v["multi"] and not v["includeAll"], v["name"]
    refs = datasource_refs(d)
    # every panel and target names one (the check below would pass on none)
    assert len(refs) > len([p for p in panels(d) if p["type"] not in ("row", "alertlist")])
    for ref in refs:
        if ref.get("uid") == "-- Grafana --":  # the built-in annotations
            continue
        name = ref["uid"].removeprefix("${").removesuffix("}")
        assert ref["uid"] == "${" + name + "}" and DS_VARIABLES.get(name) == ref["type"], ref
    # The stack provisions exactly one data source of each type the variables ask for.
    types = list(provisioned().values())
    for kind in DS_VARIABLES.values():
        assert types.count(kind) == 1, kind


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_panel_has_a_datasource_and_a_title(uid):
    for p in panels(dashboard(DASHBOARDS[uid])):
        if p["type"] == "row":
            continue
        assert p.get("title"), p
        if p["type"] == "alertlist":  # lists the rules of every source: no data source
            assert "datasource" not in p, p["title"]
            continue
        assert p.get("datasource", {}).get("uid"), p["title"]
        assert p.get("targets"), p["title"]


def test_variables_for_project_model_host_and_user():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"] if v["type"] == "query"}
    assert set(variables) == {"host", "user", "project", "model"}
    for v in variables.values():
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*", v["name"]
        assert v["definition"].startswith("label_values(")
        assert metric_names(v["definition"]) <= CONTRACT
    # project and model follow the host/user selection
    assert (
        "$host" in variables["project"]["definition"]
        and "$user" in variables["project"]["definition"]
    )


def test_team_dashboard_variables_and_a_row_per_team():
    d = dashboard(TEAM_DASHBOARD)
    variables = {v["name"]: v for v in d["templating"]["list"] if v["type"] == "query"}
    assert set(variables) == {"team", "user"}
    for v in variables.values():
        assert v["includeAll"] and v["multi"] and v["allValue"] == ".*", v["name"]
        assert metric_names(v["definition"]) <= CONTRACT
    assert "$team" in variables["user"]["definition"]  # users follow the team selection
    (repeated,) = [p for p in d["panels"] if p.get("repeat")]
    assert repeated["type"] == "row" and repeated["repeat"] == "team"
    # The repeated row is the last: every panel below it belongs to it and reads $team.
    below = d["panels"][d["panels"].index(repeated) + 1 :]
    assert below and all(p["type"] != "row" for p in below)
    for p in below:
        assert "$team" in p["title"], p["title"]
        for t in p["targets"]:
            assert 'team=~"$team"' in t["expr"], (p["title"], t["expr"])


def test_team_dashboard_has_the_issues_panels():
    by_title = {p["title"]: p for p in panels(dashboard(TEAM_DASHBOARD))}
    for needed in (
        "Spend per user",
        "Spend per team",
        "Budget used per user (%)",
        "Budget used per team (%)",
        "5-hour plan use per user",
        "Weekly plan use per user",
        "Plan windows reset at",
        "Costliest sessions (Tempo)",
        "Cost per commit per user",
        "Team $team",
    ):
        assert needed in by_title, needed
    sessions = by_title["Costliest sessions (Tempo)"]
    assert sessions["datasource"] == {"type": "tempo", "uid": "${tempo}"}
    query = sessions["targets"][0]["query"]
    assert "span.ccotel.cost_usd >= $min_cost" in query and 'resource.user.name =~ "$user"' in query
    # Trace links from the cost graph, where exemplars reach Prometheus.
    assert any(t.get("exemplar") for t in by_title["Spend per user ($/hour)"]["targets"])
    # The budget panels join the series budgets.py generates.
    assert "ccotel:user_budget_usd" in by_title["Budget used per user (%)"]["targets"][0]["expr"]
    assert "ccotel:team_budget_usd" in by_title["Budget used per team (%)"]["targets"][0]["expr"]


def test_every_panel_the_issue_lists_is_there():
    titles = {p["title"] for p in panels()}
    for needed in (
        "Spend, last hour",
        "Spend today",
        "Spend this month",
        "Spend per hour against the hourly budget",
        "Hourly budget used",
        "Cost by model ($/hour)",
        "Cost by project ($/hour)",
        "Tokens by type (tokens/min)",
        "Cache hit ratio",
        "Money saved by caching",
        "API requests per minute by model",
        "Tool calls by tool",
        "Tool error rate",
        "Tool duration p50 / p95",
        "Active sessions",
        "Recent sessions (Tempo)",
        "Ingest lag",
        "Parse errors",
        "Unpriced tokens by model",
        "OTLP export errors by signal",
        "ccotel reporting",
        # plan limits and blocks (issue 12), live states (issue 15), what the spend bought (14)
        "Plan use, 5-hour window",
        "Plan use, weekly",
        "5-hour window resets",
        "Weekly window resets",
        "Plan use over time",
        "Active block cost",
        "Block cost at its end, projected",
        "Block ends",
        "Burn rate ($/hour, last 15 minutes)",
        "Sessions by state",
        "Waiting for you",
        "Cost per commit",
        "Cost per 100 lines changed",
        "Cost per commit by project",
    ):
        assert needed in titles, needed
    by_title = {p["title"]: p for p in panels()}
    assert by_title["Spend today"]["timeFrom"] == "now/d"
    assert by_title["Spend this month"]["timeFrom"] == "now/M"
    sessions = by_title["Recent sessions (Tempo)"]
    assert sessions["datasource"] == {"type": "tempo", "uid": "${tempo}"}
    assert sessions["targets"][0]["queryType"] == "traceql"
    assert "ccotel.cost_usd" in sessions["targets"][0]["query"]
    budget = by_title["Spend per hour against the hourly budget"]
    assert any("ccotel_budget_usd" in t["expr"] for t in budget["targets"])


def test_cost_panels_show_exemplars():
    with_exemplars = [
        p["title"] for p in panels() for t in p.get("targets", []) if t.get("exemplar")
    ]
    assert {"Cost by model ($/hour)", "Cost by project ($/hour)"} <= set(with_exemplars)
    for p in panels():
        for t in p.get("targets", []):
            if t.get("exemplar"):
                assert "ccotel_cost_usd_total" in t["expr"]


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_queries_read_only_the_metric_contract_and_follow_the_variables(uid):
    queries = panel_queries(values={}, path=DASHBOARDS[uid], awaiting=True)  # unsubstituted
    assert len(queries) >= 15
    for title, ref, expr in queries:
        names = metric_names(expr)
        assert names <= CONTRACT, (title, names - CONTRACT)
        assert recorded_names(expr) <= recorded(), (title, recorded_names(expr) - recorded())
        assert names or "up{" in expr, (title, expr)
        for variable in FILTERS[uid]:
            assert variable in expr, (title, ref, variable)


def test_the_main_dashboard_imports_without_the_stacks_rules():
    """ccotel.json is imported into Grafanas whose Prometheus has none of the stack's recording
    rules: it reads raw series only."""
    for title, _, expr in panel_queries(values={}, awaiting=True):
        assert not recorded_names(expr), title


def test_panels_awaiting_code_are_left_out_of_the_default_queries():
    """Only panels reading a name in AWAITING_CODE are left out of the end-to-end check (none
    now: every contract name is emitted, so every panel is checked against the real daemon)."""
    everything = panel_queries(awaiting=True)
    default = panel_queries()
    assert {t for t, _, e in everything if metric_names(e) & AWAITING_CODE} == {
        t for t, _, _ in everything
    } - {t for t, _, _ in default}
    assert frozenset() == AWAITING_CODE and len(default) == len(everything)


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_every_prometheus_query_parses(tmp_path, uid):
    """Each panel query, variables substituted, as a recording rule that promtool checks."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (scripts/install-test-deps installs it)"
    queries = panel_queries(path=DASHBOARDS[uid], awaiting=True)
    rules = [{"record": f"dashboard:q{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
    for _, _, expr in queries:
        assert "$" not in expr, expr  # nothing left for Grafana to fill in


def test_promtool_check_would_catch_a_broken_query(tmp_path):
    promtool = shutil.which("promtool")
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "d",
                        "rules": [
                            {
                                "record": "dashboard:bad",
                                "expr": "sum by (model) (rate(ccotel_cost_usd_total[1m])",
                            }
                        ],
                    }
                ]
            }
        )
    )
    assert (
        subprocess.run([promtool, "check", "rules", str(path)], capture_output=True).returncode != 0
    )


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_panels_do_not_overlap(uid):
    taken: dict[tuple[int, int], str] = {}
    for p in dashboard(DASHBOARDS[uid])["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, (p["title"], taken.get((x, y)))
                taken[(x, y)] = p["title"]


@pytest.mark.parametrize("uid", DASHBOARDS)
def test_substitution_leaves_no_variable_and_keeps_regexes_valid(uid):
    for _, _, expr in panel_queries(path=DASHBOARDS[uid], awaiting=True):
        assert not re.search(r"\$\w", expr), expr
