"""Bounded labels and owner-only files (issue 5, security): 10,000 project folders do not
make 10,000 Prometheus series per metric; the state and its lock are owner-only; a config
file holding OTLP auth headers that others can read gives a warning."""

from __future__ import annotations

import os
import stat
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ccotel
from tests.corpus import Usage, write_session
from tests.test_live import start, wait_equal


def test_ten_thousand_projects_fold_into_other(tmp_path):
    config = tmp_path / "claude"
    n = 10_000
    for i in range(n):
        write_session(
            config,
            cwd=f"/home/user/p{i:05d}",
            seed=i,
            usages=[("claude-sonnet-4-5-20250929", Usage(1, 2, 0, 0, 3 + i))],
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    env["CCOTEL_MAX_PROJECTS"] = "50"
    proc = start(config, tmp_path / "state", env=env)
    port = proc.port
    try:
        wait_equal(port, config, timeout=120)  # the totals are whole: folding moves no token
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
    finally:
        proc.kill()
        proc.wait(10)
    projects: set[str] = set()
    folded = None
    series = 0
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            series += 1
            if "project" in s.labels:
                projects.add(s.labels["project"])
            if s.name == "ccotel_projects_folded":
                folded = s.value
    assert len(projects) == 51 and "other" in projects, len(projects)
    assert folded == n - 50
    assert series < 2000, series
    # the biggest spenders keep their own series
    assert "p09999" in projects and "p00000" not in projects


def test_state_files_owner_only(tmp_path):
    config = tmp_path / "claude"
    write_session(config, seed=1)
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        ccotel("backfill", "--claude-dir", str(config), "--state-dir", str(state))
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for f in state.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f"{f.name}: {oct(f.stat().st_mode)}"


def test_config_with_auth_headers_readable_by_others_warns(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('otlp_headers = "authorization=Bearer s3cr3t-token"\n')
    args = ["--config", str(cfg), "report", "--state-dir", str(tmp_path / "none")]
    cfg.chmod(0o644)
    out = ccotel(*args, check=False)
    assert "readable by others" in out.stderr and "chmod 600" in out.stderr, out.stderr
    assert "s3cr3t-token" not in out.stderr + out.stdout
    cfg.chmod(0o600)
    assert "readable by others" not in ccotel(*args, check=False).stderr
    # the standard variable written into the file counts as well; a file without headers does not warn
    cfg.write_text('# OTEL_EXPORTER_OTLP_HEADERS="x-api-key=abc"\nlog_level = "info"\n')
    cfg.chmod(0o644)
    assert "readable by others" in ccotel(*args, check=False).stderr
    cfg.write_text('log_level = "info"\n')
    assert "readable by others" not in ccotel(*args, check=False).stderr


def test_projects_are_admitted_again_only_when_a_directory_is_new(tmp_path):
    """The fold into "other" is decided when a directory first shows; a merge that moves only
    values keeps it (and skips the walk that decides it); a new directory is admitted or folded."""
    import time

    from prometheus_client import CollectorRegistry

    from ccotel.batch import UsageSums
    from ccotel.projects import project_labeler
    from ccotel.sinks import TotalsCollector
    from tests.test_idle import backfilled_totals

    totals = backfilled_totals(tmp_path)
    label = project_labeler("name")
    have = {label(cwd) for _, cwd in totals.usage}
    c = TotalsCollector(totals, label, {}, time.time, max_projects=len(have) + 1)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(c)

    def folded() -> float:
        return next(m for m in reg.collect() if m.name == "ccotel_projects_folded").samples[0].value

    assert folded() == 0
    decided = c._admitted_from
    key = next(iter(totals.usage))
    totals.usage[key] = UsageSums(9, 9, 9, 9, 9, 9, 9, 9.5, 9)
    totals.version += 1
    assert folded() == 0 and c._admitted_from is decided  # values only: not walked again
    totals.usage[("claude-x", "/home/u/big-new")] = UsageSums(1, 1, 1, 1, 1, 0, 1, 50.0, 0)
    totals.usage[("claude-x", "/home/u/small-new")] = UsageSums(1, 1, 1, 1, 1, 0, 1, 0.5, 0)
    totals.version += 1
    assert folded() == 1  # one room left: the bigger new project takes it
    assert c.project("/home/u/big-new") == "big-new"
    assert c.project("/home/u/small-new") == "other"
    totals.usage[("claude-x", "/home/u/small-new")] = UsageSums(1, 1, 1, 1, 1, 0, 1, 500.0, 0)
    totals.version += 1
    assert folded() == 1 and c.project("/home/u/small-new") == "other"  # once folded, folded
