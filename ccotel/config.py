"""Configuration: defaults, then the TOML file, then CCOTEL_* variables, then flags.

A wrong value is a ConfigError whose message names the key.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import platformdirs
from msgspec import Meta, Struct

APP = "ccotel"
DEFAULT_METRICS_ADDR = "127.0.0.1:9470"  # 9464 is Claude Code's own exporter


class ConfigError(ValueError):
    pass


Positive = Annotated[float, Meta(ge=0)]


class Budget(Struct, forbid_unknown_fields=True, frozen=True):
    hourly_usd: Positive | None = None
    daily_usd: Positive | None = None


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    claude_dirs: list[str] = []  # empty: CLAUDE_CONFIG_DIR, else ~/.config/claude and ~/.claude
    state_dir: str = ""
    metrics_addr: str = DEFAULT_METRICS_ADDR
    project_label: Literal["name", "path", "hash", "off"] = "name"
    max_projects: Annotated[int, Meta(ge=0)] = (
        200  # distinct project labels; the rest fold into "other"; 0: no cap
    )
    pricing_file: str = ""
    pricing_rules: Literal["ccusage", "anthropic"] = "ccusage"
    price_web_search: bool = False
    budget: Budget = Budget()
    rescan_interval: Annotated[float, Meta(gt=0)] = 60.0
    max_line_bytes: Annotated[int, Meta(ge=1024)] = 64 << 20
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    session_idle: Positive = 600.0
    workers: Annotated[int, Meta(ge=0)] = 0  # backfill processes; 0: one per core
    # Traces and OTLP push (docs/traces.md). Empty otlp_* values defer to OTEL_EXPORTER_OTLP_*.
    traces: bool = True
    otlp_endpoint: str = ""  # default http://localhost:4318 (grpc: :4317)
    otlp_protocol: Literal["", "http/protobuf", "grpc"] = ""
    otlp_headers: str = ""  # k=v,k2=v2 (OTEL_EXPORTER_OTLP_HEADERS syntax)
    otlp_certificate: str = ""  # CA bundle for TLS
    otlp_client_certificate: str = ""
    otlp_client_key: str = ""
    otlp_compression: Literal["", "none", "gzip"] = ""
    otlp_timeout: Positive = 0.0  # seconds per request; 0: OTEL_EXPORTER_OTLP_TIMEOUT or 10
    otlp_retry_max: Annotated[float, Meta(gt=0)] = 60.0  # longest backoff between retries, seconds
    metrics_push_interval: Positive = 15.0  # OTLP metrics push period; 0: off
    resource_user: str = "auto"  # user.name resource attribute: auto (login name), a value, or off
    resource_host: str = "auto"  # host.name: auto (hostname), a value, or off
    capture_content: bool = (
        False  # prompts, tool arguments and results on spans (redacted, truncated)
    )
    tool_details: bool = False  # only command lines and file paths of tool calls
    content_max_chars: Annotated[int, Meta(ge=0)] = 4096
    trace_batch_spans: Annotated[int, Meta(ge=1)] = 512  # spans per export request
    trace_rate: Positive = 5000.0  # spans per second at most while catching up; 0: no limit
    trace_lookback: Positive = (
        86400.0  # the daemon traces files changed this recently (backfill: older)
    )
    # The HTTP server of /metrics, /healthz and the web page (docs/web.md): TLS and basic auth.
    web: bool = True  # the page at / and the JSON API under /api/
    trace_ui_url: str = ""  # a session's trace in the trace UI; {trace_id} is replaced; default Grafana Explore on :3000
    http_tls_cert: str = ""  # PEM certificate (chain) file; with http_tls_key, serve HTTPS
    http_tls_key: str = ""
    http_basic_auth_user: str = ""  # with http_basic_auth_password_hash, every route asks for it
    http_basic_auth_password_hash: str = ""  # "scrypt$..." from `ccotel hash-password`
    http_allowed_hosts: list[str] = []  # Host names served besides loopback names and IPs
    allow_unauthenticated_network_access: bool = False  # listen beyond loopback without auth

    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir).expanduser() if self.state_dir else default_state_dir()

    def metrics_host_port(self) -> tuple[str, int]:
        return parse_addr(self.metrics_addr, "metrics_addr")


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def parse_addr(value: str, key: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


# Environment: CCOTEL_<KEY>, nested keys joined by "_" (CCOTEL_BUDGET_HOURLY_USD).
_NESTED = {"budget": ("hourly_usd", "daily_usd")}
_LISTS = ("claude_dirs", "http_allowed_hosts")  # comma-separated in the environment


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in Config.__struct_fields__:
        if field in _NESTED:
            for sub in _NESTED[field]:
                v = env.get(f"CCOTEL_{field}_{sub}".upper())
                if v is not None:
                    out.setdefault(field, {})[sub] = _scalar(v)
            continue
        v = env.get(f"CCOTEL_{field}".upper())
        if v is not None:
            out[field] = [p for p in v.split(",") if p] if field in _LISTS else _scalar(v)
    return out


def _scalar(v: str) -> Any:
    low = v.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        elif v is not None:
            base[k] = v
    return base


def load(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = file or (Path(env["CCOTEL_CONFIG"]) if env.get("CCOTEL_CONFIG") else None)
    if path is None and default_config_file().is_file():
        path = default_config_file()
    if path is not None:
        try:
            text = path.read_text()
            data = tomllib.loads(text)
            _warn_if_readable_secrets(path, data, text)
        except FileNotFoundError:
            raise ConfigError(f"config: no such file {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path}: {exc}") from None
    _merge(data, _from_env(env))
    _merge(data, flags or {})
    try:
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_key_message(exc)) from None
    cfg.metrics_host_port()
    if bool(cfg.http_tls_cert) != bool(cfg.http_tls_key):
        raise ConfigError("http_tls_cert: set both http_tls_cert and http_tls_key, or neither")
    if bool(cfg.http_basic_auth_user) != bool(cfg.http_basic_auth_password_hash):
        raise ConfigError(
            "http_basic_auth_user: set both http_basic_auth_user and http_basic_auth_password_hash, or neither"
        )
    if cfg.http_basic_auth_password_hash:
        from ccotel.server.auth import parse_hash

        try:
            parse_hash(cfg.http_basic_auth_password_hash)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return cfg


def _warn_if_readable_secrets(path: Path, data: dict[str, Any], text: str) -> None:
    """OTLP auth headers in a file that group or others can read: say so (once per load)."""
    if not (data.get("otlp_headers") or "OTEL_EXPORTER_OTLP_HEADERS" in text):
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        sys.stderr.write(
            f"ccotel: warning: {path} holds OTLP auth headers and is readable by others "
            f"(mode {mode:03o}); run `chmod 600 {path}`\n"
        )


def _key_message(exc: msgspec.ValidationError) -> str:
    """msgspec says '... - at `$.budget.hourly_usd`'; lead with the key."""
    text = str(exc)
    msg, sep, where = text.rpartition(" - at `$.")
    if sep:
        return f"{where.rstrip('`')}: {msg}"
    if text.startswith("Object contains unknown field"):
        return f"{text.split('`')[1]}: unknown key" if "`" in text else text
    return text
