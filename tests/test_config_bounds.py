"""Every setting at its extremes (review 1, finding 5): one line naming the key, or a value
that works; never a traceback later, far from where it was set.

On ca2edcb `rescan_interval = 1e12` overflowed `select` and stopped the daemon,
`metrics_push_interval = 1e308` killed the push thread, `otlp_timeout = 1e308` failed every
pass with a traceback, `--otlp-endpoint 'http://[::1'` was a traceback (as
OTEL_EXPORTER_OTLP_ENDPOINT, "Invalid IPv6 URL" without the variable's name), and
`http://a b` was taken and failed at each request with a message about something else.

The property: for every key (file, environment, flag) and every OTEL_* variable ccotel reads,
and values huge, tiny, negative, NaN, infinite, empty, unicode, control characters and
surrogates, `config.load` plus the checks `run` makes at start (the OTLP targets and resource
attributes) either refuse with one line naming the key or variable, or give values that work:
numbers finite and within what a timer takes, an HTTP request that can be written.
"""

from __future__ import annotations

import http.client
import math
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccotel import config
from ccotel.config import Config, ConfigError, load
from ccotel.otlp import encode_metrics, resource_attributes, target
from ccotel.otlp.transport import Sender
from tests.conftest import free_port
from tests.test_cli_mistakes import clean_env, one_line

KEYS = config.keys()
OTEL = [
    f"OTEL_EXPORTER_OTLP_{sig}{name}"
    for sig in ("", "TRACES_", "METRICS_")
    for name in (
        "ENDPOINT",
        "PROTOCOL",
        "HEADERS",
        "COMPRESSION",
        "TIMEOUT",
        "CERTIFICATE",
        "CLIENT_CERTIFICATE",
        "CLIENT_KEY",
        "INSECURE",
    )
] + ["OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"]
EXTREMES = [
    "1e308", "1e12", "9" * 30, "1e-300", "1e-9", "0", "-0", "-1", "-1e308", "nan", "-nan", "inf",
    "-inf", "", " ", "ü", "日本", "٣", "²", "\udcff", "a\nb", "\x00", "http://[::1",
    "http://a b", "http://ü.example:4318", "http://x:99999", "grpc://x", "k=%E2%82%AC",
    "k=%0A", "k=%ff", "=", ",", "true", "http://[::1]:4318", "x" * 5000,
]  # fmt: skip
TOML_EXTREMES = ["1e308", "1e-300", "-1", "nan", "inf", "-inf", "0", "9223372036854775807",
                 '""', '"ü"', '"\\u0000"', "[]", '["ü", ""]', "true"]  # fmt: skip
TIMER_MAX = min(threading.TIMEOUT_MAX, 1e9)


def works(cfg: Config, env: dict) -> None:
    """What the daemon does with the values, without waiting or connecting."""
    for key in KEYS:
        top, _, sub = config.ALIASES.get(key, key).partition(".")
        v = getattr(getattr(cfg, top), sub) if sub else getattr(cfg, top)
        if isinstance(v, float | int) and not isinstance(v, bool):
            assert (math.isfinite(v) and 0 <= v <= 100 * 365 * 86400) or key == "max_line_bytes", (
                key,
                v,
            )
    for key in ("rescan_interval", "metrics_push_interval", "otlp_retry_max", "otlp_timeout"):
        assert (getattr(cfg, key) or 0) <= TIMER_MAX, key  # threading/select would overflow
    assert not 0 < (cfg.metrics_push_interval or 0) < 1 and not 0 < cfg.trace_rate < 1
    cfg.http_host_port()
    resource = resource_attributes(cfg, env)
    encode_metrics([], resource, 0)
    for signal in ("traces", "metrics"):
        t = target(cfg, signal, env)
        assert 0 < t.timeout <= 3600
        s = Sender(t)
        if t.protocol == "http/protobuf":
            conn = http.client.HTTPConnection(s._host, s._port)
            conn.putrequest("POST", s._path)  # writes the request line, connects nothing
            for k, v in s._headers.items():
                conn.putheader(k, v)
            conn.close()


def attempt(file_text: str | None, env: dict, flags: dict, tmp_path, names: list[str]) -> None:
    path = None
    if file_text is not None:
        path = tmp_path / "c.toml"
        path.write_text(file_text, encoding="utf-8")
    try:
        cfg = load(path, env=env, flags=flags, warn=lambda m: None)
        resource_attributes(cfg, env)
        for signal in ("traces", "metrics"):
            target(cfg, signal, env)
    except (ConfigError, ValueError) as exc:
        msg = str(exc)
        assert "\n" not in msg.strip(), msg
        assert any(n in msg for n in names), (names, msg)
        return
    works(cfg, env)


def _env_name(key: str) -> str:
    return config.env_name(key)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(KEYS),
    value=st.sampled_from(EXTREMES)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.text(max_size=30),
)
def test_every_key_from_the_environment(tmp_path_factory, key, value):
    tmp = tmp_path_factory.mktemp("env")
    attempt(None, {_env_name(key): value}, {}, tmp, [_env_name(key), key])


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS), value=st.sampled_from(TOML_EXTREMES))
def test_every_key_in_the_file(tmp_path_factory, key, value):
    tmp = tmp_path_factory.mktemp("file")
    top, _, sub = key.partition(".")
    text = f"[{top}]\n{sub} = {value}\n" if sub else f"{top} = {value}\n"
    attempt(text, {}, {}, tmp, [key])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(["otlp_endpoint", "http_addr", "state_dir", "log_level"]),
    value=st.sampled_from(EXTREMES) | st.text(max_size=30),
)
def test_flags(tmp_path_factory, key, value):
    tmp = tmp_path_factory.mktemp("flag")
    attempt(None, {}, {key: value}, tmp, [config.flag_name(key), key])


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    var=st.sampled_from(OTEL),
    value=st.sampled_from(EXTREMES) | st.text(max_size=30),
    protocol=st.sampled_from(["", "grpc"]),
)
def test_every_otel_variable(tmp_path_factory, var, value, protocol):
    tmp = tmp_path_factory.mktemp("otel")
    env = {var: value} | ({"OTEL_EXPORTER_OTLP_PROTOCOL": protocol} if protocol else {})
    attempt(None, env, {}, tmp, [var, "OTEL_EXPORTER_OTLP_PROTOCOL"])


# --- what the review ran, through the CLI ----------------------------------------------


@pytest.mark.parametrize(
    ("config_text", "args", "env", "name"),
    [
        ("rescan_interval = 1e12\n", ["run"], {}, "rescan_interval"),
        ("metrics_push_interval = 1e308\n", ["run"], {}, "metrics_push_interval"),
        ("otlp_timeout = 1e308\n", ["run"], {}, "otlp_timeout"),
        ("trace_rate = 1e-300\n", ["run"], {}, "trace_rate"),
        ("", ["run", "--otlp-endpoint", "http://[::1"], {}, "--otlp-endpoint"),
        ("", ["run", "--otlp-endpoint", "http://a b"], {}, "--otlp-endpoint"),
        ("", ["backfill", "--traces", "--otlp-endpoint", "http://[::1"], {}, "--otlp-endpoint"),
        (
            "",
            ["run"],
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"},
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        ("", ["run"], {"OTEL_EXPORTER_OTLP_TIMEOUT": "1e308"}, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        ("", ["run"], {"OTEL_EXPORTER_OTLP_HEADERS": "a=%0Ab"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ("", ["run"], {"CCOTEL_RESCAN_INTERVAL": "inf"}, "CCOTEL_RESCAN_INTERVAL"),
    ],
)
def test_cli_refuses_in_one_line(tmp_path, config_text, args, env, name):
    (tmp_path / "c.toml").write_text(config_text)
    (tmp_path / "claude" / "projects").mkdir(parents=True)
    extra = ["--metrics-addr", f"127.0.0.1:{free_port()}"] if args[0] == "run" else []
    cmd = [sys.executable, "-m", "ccotel", "--config", str(tmp_path / "c.toml"), *args, *extra,
           "--claude-dir", str(tmp_path / "claude"), "--state-dir", str(tmp_path / "s")]  # fmt: skip
    e = clean_env(tmp_path, CCOTEL_TRACES="true", **env)
    p = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=60)
    line = one_line(p, 2, name)
    assert "Traceback" not in line
