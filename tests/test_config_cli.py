"""Configuration errors name their key; the CLI's contracts hold."""

from __future__ import annotations

import json
import os

import pytest

from ccotel.config import ConfigError, load
from tests.conftest import FIXTURES, ccotel


def test_precedence_file_env_flags(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(
        'metrics_addr = "127.0.0.1:1111"\nproject_label = "hash"\n[budget]\nhourly_usd = 5\n'
    )
    cfg = load(f, env={"CCOTEL_METRICS_ADDR": "127.0.0.1:2222", "CCOTEL_BUDGET_DAILY_USD": "40"})
    assert cfg.metrics_addr == "127.0.0.1:2222" and cfg.project_label == "hash"
    assert (cfg.budget.hourly_usd, cfg.budget.daily_usd) == (5, 40)
    cfg = load(
        f, env={"CCOTEL_METRICS_ADDR": "127.0.0.1:2222"}, flags={"metrics_addr": "127.0.0.1:3333"}
    )
    assert cfg.metrics_addr == "127.0.0.1:3333"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[budget]\nhourly_usd = 'lots'\n", "budget.hourly_usd"),
        ("[budget]\nhourly_usd = -1\n", "budget.hourly_usd"),
        ("project_label = 'everything'\n", "project_label"),
        ("metrics_addr = 'nowhere'\n", "metrics_addr"),
        ("no_such_key = 1\n", "no_such_key"),
        ("rescan_interval = 0\n", "rescan_interval"),
    ],
)
def test_wrong_value_names_the_key(tmp_path, text, key):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert str(e.value).startswith(key)


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[budget]\ndaily_usd = 'x'\n")
    proc = ccotel("--config", str(f), "backfill", "--state-dir", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "budget.daily_usd" in proc.stderr
    env = {**os.environ, "CCOTEL_PROJECT_LABEL": "nope"}
    proc = ccotel("report", "--state-dir", str(tmp_path / "s"), env=env, check=False)
    assert proc.returncode == 2 and "project_label" in proc.stderr


def test_report_shapes(tmp_path):
    state = str(tmp_path / "s")
    ccotel("backfill", "--claude-dir", str(FIXTURES / "claude-2.1.197"), "--state-dir", state)
    for by in ("session", "day", "model", "project"):
        data = json.loads(ccotel("report", "--by", by, "--json", "--state-dir", state).stdout)
        assert set(data["totals"]) >= {
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "cost_usd",
        }
        assert sum(r["cost_usd"] for r in data["rows"]) == pytest.approx(data["totals"]["cost_usd"])
    models = {
        r["model"]
        for r in json.loads(
            ccotel("report", "--by", "model", "--json", "--state-dir", state).stdout
        )["rows"]
    }
    assert models == {
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1-20250805",
        "claude-haiku-4-5-20251001",
    }
    table = ccotel("report", "--state-dir", state).stdout
    assert "Total" in table and "$0.23" in table
    later = json.loads(
        ccotel("report", "--since", "2099-01-01", "--json", "--state-dir", state).stdout
    )
    assert later["rows"] == [] and later["totals"]["cost_usd"] == 0


def test_report_without_state_and_status_without_daemon(tmp_path):
    proc = ccotel("report", "--state-dir", str(tmp_path / "none"), check=False)
    assert proc.returncode == 1 and "ccotel backfill" in proc.stderr
    proc = ccotel("status", "--metrics-addr", "127.0.0.1:1", check=False)
    assert proc.returncode == 3 and "not running" in proc.stderr


def test_second_writer_on_same_state_gets_a_clear_error(tmp_path):
    from ccotel.state.store import StateLocked, Store

    first = Store(tmp_path / "s")
    proc = ccotel(
        "backfill",
        "--claude-dir",
        str(FIXTURES / "claude-2.1.197"),
        "--state-dir",
        str(tmp_path / "s"),
        check=False,
    )
    assert (
        proc.returncode == 1
        and f"pid {os.getpid()}" in proc.stderr
        and "another ccotel" in proc.stderr
    )
    with pytest.raises(StateLocked):
        Store(tmp_path / "s")
    first.close()
    ccotel(
        "backfill",
        "--claude-dir",
        str(FIXTURES / "claude-2.1.197"),
        "--state-dir",
        str(tmp_path / "s"),
    )


def test_corrupt_state_names_rebuild(tmp_path):
    s = tmp_path / "s"
    s.mkdir()
    (s / "state.db").write_bytes(b"this is not a database" * 100)
    proc = ccotel(
        "backfill",
        "--claude-dir",
        str(FIXTURES / "claude-2.1.197"),
        "--state-dir",
        str(s),
        check=False,
    )
    assert proc.returncode == 1 and "backfill --rebuild" in proc.stderr
    ccotel(
        "backfill",
        "--rebuild",
        "--claude-dir",
        str(FIXTURES / "claude-2.1.197"),
        "--state-dir",
        str(s),
    )
    assert (
        json.loads(ccotel("report", "--json", "--state-dir", str(s)).stdout)["totals"][
            "input_tokens"
        ]
        == 11814
    )
    assert (s / "state.db").stat().st_mode & 0o077 == 0


def test_metrics_push_only_to_an_endpoint_the_user_named():
    from ccotel.config import Config
    from ccotel.otlp import configured

    assert not configured(Config(), "metrics", env={})
    assert configured(Config(otlp_endpoint="http://collector:4318"), "metrics", env={})
    assert configured(
        Config(), "metrics", env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}
    )
    assert not configured(
        Config(), "metrics", env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}
    )
