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
    assert cfg.http_addr == "127.0.0.1:2222" and cfg.project_label == "hash"
    assert (cfg.budget.hourly_usd, cfg.budget.daily_usd) == (5, 40)
    cfg = load(
        f, env={"CCOTEL_METRICS_ADDR": "127.0.0.1:2222"}, flags={"metrics_addr": "127.0.0.1:3333"}
    )
    assert cfg.http_addr == "127.0.0.1:3333"


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
    assert proc.returncode == 2 and "CCOTEL_PROJECT_LABEL" in proc.stderr


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


# ------------------------------------------------------------------ every key, every source


def _keys_and_types():
    """(key, msgspec type info) for every setting, budget.* included."""
    import msgspec.inspect as mi

    from ccotel.config import Config

    out = []
    for f in mi.type_info(Config).fields:
        if isinstance(f.type, mi.StructType):
            out += [(f"{f.name}.{g.name}", g.type) for g in f.type.fields]
        else:
            out.append((f.name, f.type))
    return out


def _bad_values(t):
    """(TOML value, environment value or None) of the wrong type, then ones out of range."""
    import msgspec.inspect as mi

    if isinstance(t, mi.UnionType):
        t = next(x for x in t.types if not isinstance(x, mi.NoneType))
    if isinstance(t, mi.BoolType):
        return [('"yes"', "yes"), ("1", "maybe")]
    if isinstance(t, mi.LiteralType):
        return [('"nope"', "nope"), ("1", None)]
    if isinstance(t, mi.IntType | mi.FloatType):
        out = [('"12"', "twelve"), ("true", "1x")]
        if isinstance(t, mi.IntType):
            out.append(("2.5", "2.5"))
        low = t.ge if t.ge is not None else t.gt
        if low is not None:
            below = low - 1 if t.ge is not None else low
            out.append((str(below), str(below)))
        return out
    if isinstance(t, mi.ListType):
        return [('"/one/path"', None), ("[1, 2]", None)]
    return [("5", None), ("true", None)]  # a string key


KEYS = _keys_and_types()


@pytest.mark.parametrize(("key", "kind"), KEYS, ids=[k for k, _ in KEYS])
def test_every_key_refuses_a_wrong_value_naming_key_file_and_variable(tmp_path, key, kind):
    from ccotel.config import env_name

    top, _, sub = key.partition(".")
    for toml_value, env_value in _bad_values(kind):
        f = tmp_path / "c.toml"
        f.write_text(f"[{top}]\n{sub} = {toml_value}\n" if sub else f"{key} = {toml_value}\n")
        with pytest.raises(ConfigError) as e:
            load(f, env={})
        msg = str(e.value)
        assert msg.startswith(f"{key} in {f}: "), msg
        assert "\n" not in msg and ("expected" in msg or "not" in msg), msg
        if env_value is not None:
            with pytest.raises(ConfigError) as e:
                load(None, env={env_name(key): env_value})
            assert str(e.value).startswith(f"{env_name(key)}: "), str(e.value)
            assert repr(env_value) in str(e.value)


def test_budget_written_as_a_string_is_refused_and_says_how_to_write_it(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[budget]\ndaily_usd = "100"\n')
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert str(e.value) == (
        f'budget.daily_usd in {f}: expected a number from 0 to 1e+09, got the string "100" '
        "(write it without quotes)"
    )
    f.write_text("[budget]\ndaily_usd = 100\nhourly_usd = 2.5\n")
    assert load(f, env={}).budget == load(f, env={}).budget.__class__(2.5, 100.0)


def test_environment_values_are_parsed_to_the_key_type():
    env = {
        "CCOTEL_BUDGET_HOURLY_USD": "2.5",
        "CCOTEL_WORKERS": "3",
        "CCOTEL_TRACES": "false",
        "CCOTEL_WEB": "0",
        "CCOTEL_RESOURCE_HOST": "1234",  # a string key keeps a number-like value as text
        "CCOTEL_CLAUDE_DIRS": "/a, /b,",
        "CCOTEL_BUDGET_DAILY_USD": "",  # empty: not set
    }
    cfg = load(None, env=env)
    assert cfg.budget.hourly_usd == 2.5 and cfg.budget.daily_usd is None
    assert (cfg.workers, cfg.traces, cfg.web, cfg.resource_host) == (3, False, False, "1234")
    assert cfg.claude_dirs == ["/a", "/b"]


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as e:
        load(None, env={"CCOTEL_BUDGET_HOURLY_USD": "abc"})
    assert str(e.value) == "CCOTEL_BUDGET_HOURLY_USD: expected a number from 0 to 1e+09, got 'abc'"


@pytest.mark.parametrize("layer", ["file", "env", "flags"])
def test_http_addr_and_its_old_name(tmp_path, layer):
    """http_addr was called metrics_addr: the old name still works in the file, as
    CCOTEL_METRICS_ADDR and as --metrics-addr; both names alike are fine; both with
    different values are a one-line error naming both as the user wrote them."""
    f = tmp_path / "c.toml"

    def load_with(**values):
        if layer == "file":
            f.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))
            return load(f, env={})
        if layer == "env":
            return load(None, env={f"CCOTEL_{k.upper()}": v for k, v in values.items()})
        return load(None, env={}, flags=values)

    assert load_with(metrics_addr="127.0.0.1:1").http_addr == "127.0.0.1:1"
    assert load_with(http_addr="127.0.0.1:2").http_addr == "127.0.0.1:2"
    assert load_with(http_addr="127.0.0.1:3", metrics_addr="127.0.0.1:3").http_addr == "127.0.0.1:3"
    with pytest.raises(ConfigError) as e:
        load_with(http_addr="127.0.0.1:4", metrics_addr="127.0.0.1:5")
    new, old = {"file": (f"http_addr in {f}", f"metrics_addr in {f}"),
                "env": ("CCOTEL_HTTP_ADDR", "CCOTEL_METRICS_ADDR"),
                "flags": ("--http-addr", "--metrics-addr")}[layer]  # fmt: skip
    assert str(e.value) == (
        f"{new} and {old} (its old name) are both set, to '127.0.0.1:4' and '127.0.0.1:5': keep one"
    )
    with pytest.raises(ConfigError, match=f"^{old}: "):  # a bad value is named as written
        load_with(metrics_addr="nowhere")


def test_flags_are_named_as_flags():
    with pytest.raises(ConfigError, match=r"^--metrics-addr: '256\.1\.1\.1' is not an IP"):
        load(None, env={}, flags={"metrics_addr": "256.1.1.1:9485"})
    with pytest.raises(ConfigError, match=r"^--log-level: expected one of"):
        load(None, env={}, flags={"log_level": "loud"})


@pytest.mark.parametrize(
    ("text", "start", "needle"),
    [
        ("metric_addr = '127.0.0.1:1'\n", "metric_addr", "unknown key; did you mean metrics_addr?"),
        ("[budget]\nweekly_usd = 1\n", "budget.weekly_usd", "unknown key"),
        ("[budget]\ndaily = 1\n", "budget.daily", "did you mean daily_usd?"),
        ("zzz = 1\n", "zzz", "unknown key"),
        ("budget = 5\n", "budget", "expected a table of hourly_usd, daily_usd"),
    ],
)
def test_unknown_keys_and_tables(tmp_path, text, start, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert str(e.value).startswith(f"{start} in {f}: ") and needle in str(e.value)


def test_a_misspelt_variable_is_warned_about_not_fatal():
    said = []
    cfg = load(None, env={"CCOTEL_METRIC_ADDR": "x", "CCOTEL_BIND": "0.0.0.0"}, warn=said.append)
    assert cfg.http_addr == "127.0.0.1:9470"
    assert said == ["CCOTEL_METRIC_ADDR is not a ccotel setting; did you mean CCOTEL_METRICS_ADDR?"]


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("127.0.0.1:9470", ("127.0.0.1", 9470)),
        ("[::1]:9486", ("::1", 9486)),
        ("[::]:9470", ("::", 9470)),
        ("localhost:1", ("localhost", 1)),
        (":9470", ("127.0.0.1", 9470)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_metrics_addr_forms(value, want):
    from ccotel.config import parse_addr

    assert parse_addr(value, "metrics_addr") == want


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("256.1.1.1:9485", "'256.1.1.1' is not an IP address"),
        ("1.2.3:9470", "'1.2.3' is not an IP address"),
        ("::1:9470", "write an IPv6 address in brackets"),
        ("[::g]:9470", "'[::g]' is not an IP address"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:70000", "a port up to 65535"),
        ("bad host:9470", "is not a host name or IP address"),
    ],
)
def test_metrics_addr_mistakes(value, needle):
    from ccotel.config import parse_addr

    with pytest.raises(ConfigError) as e:
        parse_addr(value, "metrics_addr")
    assert str(e.value).startswith("metrics_addr: ") and needle in str(e.value)


def test_config_file_mistakes_are_one_clear_line(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('# caf\xe9\nmetrics_addr = "127.0.0.1:9470"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load(bad, env={})
    assert str(e.value) == (
        f"config: {bad} is not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8"
    )
    syntax = tmp_path / "syntax.toml"
    syntax.write_text("[budget\n")
    with pytest.raises(ConfigError, match=rf"^config: {syntax}: .*line 1"):
        load(syntax, env={})
    with pytest.raises(ConfigError, match=r"is a folder"):
        load(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"^config: no such file"):
        load(None, env={"CCOTEL_CONFIG": str(tmp_path / "missing.toml")})


def test_paths_in_the_file_are_relative_to_it_and_files_must_exist(tmp_path):
    d = tmp_path / "conf"
    d.mkdir()
    (d / "prices.json").write_text("{}")
    f = d / "c.toml"
    f.write_text('state_dir = "state"\npricing_file = "prices.json"\nclaude_dirs = ["~/x"]\n')
    cfg = load(f, env={})
    assert cfg.resolved_state_dir() == d / "state"
    assert cfg.pricing_file == str(d / "prices.json")
    assert cfg.claude_dirs == [os.path.expanduser("~/x")]
    f.write_text('pricing_file = "nope.json"\n')
    with pytest.raises(ConfigError) as e:
        load(f, env={})
    assert str(e.value) == f"pricing_file in {f}: {d / 'nope.json'} does not exist; name a file"
    (d / "state").write_text("")
    with pytest.raises(ConfigError, match=r"^CCOTEL_STATE_DIR: .* is a file, not a folder"):
        load(None, env={"CCOTEL_STATE_DIR": str(d / "state")})


@pytest.mark.parametrize(
    ("value", "protocol", "needle"),
    [
        ("localhost:4318", "", "the scheme is missing"),
        ("ftp://collector:4318", "", "expected a URL like"),
        ("http://collector:99999", "", "bad port"),
        ("http://", "", "expected a URL like"),
    ],
)
def test_otlp_endpoint_mistakes(value, protocol, needle):
    with pytest.raises(ConfigError) as e:
        load(None, env={"CCOTEL_OTLP_ENDPOINT": value, "CCOTEL_OTLP_PROTOCOL": protocol})
    assert str(e.value).startswith("CCOTEL_OTLP_ENDPOINT: ") and needle in str(e.value)


def test_otlp_endpoint_without_scheme_is_fine_for_grpc():
    cfg = load(None, env={"CCOTEL_OTLP_ENDPOINT": "collector:4317", "CCOTEL_OTLP_PROTOCOL": "grpc"})
    assert cfg.otlp_endpoint == "collector:4317"
