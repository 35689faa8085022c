"""Configuration: defaults, then the TOML file, then CCOTEL_* variables, then flags.

A wrong value is a ConfigError whose message names where it came from: the key and file, the
variable, or the flag. TOML values are typed strictly (``daily_usd = "100"`` is refused); values
from the environment are strings and are parsed to the key's type.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

APP = "ccotel"
DEFAULT_HTTP_ADDR = "127.0.0.1:9470"  # 9464 is Claude Code's own exporter
# Old names that still work, in the file, as CCOTEL_<OLD> and as --old-flag: old -> key.
ALIASES = {"metrics_addr": "http_addr"}


class ConfigError(ValueError):
    pass


# Every number has bounds: an infinite, huge or tiny value would overflow a timer, spin a
# loop or fill the memory far from where it was set; refused here, in one line naming the key.
DAY = 86400.0
NonNegative = Annotated[float, Meta(ge=0)]
Seconds = Annotated[float, Meta(ge=0, le=DAY)]
Usd = Annotated[float, Meta(ge=0, le=1e9)]


class Budget(Struct, forbid_unknown_fields=True, frozen=True):
    hourly_usd: Usd | None = None
    daily_usd: Usd | None = None


class Config(Struct, forbid_unknown_fields=True, kw_only=True):
    claude_dirs: list[str] = []  # empty: CLAUDE_CONFIG_DIR, else ~/.config/claude and ~/.claude
    state_dir: str = ""
    http_addr: str = (
        DEFAULT_HTTP_ADDR  # the page, /api/, /metrics and /healthz (old name: metrics_addr)
    )
    project_label: Literal["name", "path", "hash", "off"] = "name"
    max_projects: Annotated[int, Meta(ge=0, le=100_000)] = (
        200  # distinct project labels; the rest fold into "other"; 0: no cap
    )
    pricing_file: str = ""
    pricing_rules: Literal["ccusage", "anthropic"] = "ccusage"
    price_web_search: bool = False
    budget: Budget = Budget()
    rescan_interval: Annotated[float, Meta(ge=0.05, le=DAY)] = 60.0
    max_line_bytes: Annotated[int, Meta(ge=1024, le=1 << 32)] = 64 << 20
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    session_idle: Annotated[float, Meta(ge=0, le=30 * DAY)] = 600.0
    live_window: Annotated[float, Meta(gt=0, le=30 * DAY)] = 7200.0  # the live board's span
    workers: Annotated[int, Meta(ge=0, le=256)] = 0  # backfill processes; 0: one per core
    # Traces and OTLP push (docs/traces.md). Empty otlp_* values defer to OTEL_EXPORTER_OTLP_*.
    traces: bool = True
    otlp_endpoint: str = ""  # default http://localhost:4318 (grpc: :4317)
    otlp_protocol: Literal["", "http/protobuf", "grpc"] = ""
    otlp_headers: str = ""  # k=v,k2=v2 (OTEL_EXPORTER_OTLP_HEADERS syntax)
    otlp_certificate: str = ""  # CA bundle for TLS
    otlp_client_certificate: str = ""
    otlp_client_key: str = ""
    otlp_compression: Literal["", "none", "gzip"] = ""
    otlp_timeout: Annotated[float, Meta(ge=0, le=3600)] = (
        0.0  # seconds per request; 0: OTEL_EXPORTER_OTLP_TIMEOUT or 10
    )
    otlp_retry_max: Annotated[float, Meta(ge=0.05, le=DAY)] = (
        60.0  # longest backoff between retries, seconds
    )
    # seconds; 0: off (else at least 1); none: OTEL_METRIC_EXPORT_INTERVAL, else 15
    metrics_push_interval: Seconds | None = None
    metrics_push_temporality: Literal["", "cumulative", "delta", "lowmemory"] = ""  # OTLP sums
    metrics_push_profile: Literal["full", "team"] = "full"  # team: fewer series per laptop
    metrics_push_projects: Annotated[int, Meta(ge=0, le=10_000)] = 5  # team: projects by name
    native_metrics: bool = False  # also Claude Code's own metrics (claude_code_*), same names
    resource_user: str = "auto"  # user.name resource attribute: auto (login name), a value, or off
    resource_host: str = "auto"  # host.name: auto (hostname), a value, or off
    capture_content: bool = (
        False  # prompts, tool arguments and results on spans (redacted, truncated)
    )
    tool_details: bool = False  # only command lines and file paths of tool calls
    content_max_chars: Annotated[int, Meta(ge=0, le=1_000_000)] = 4096
    trace_batch_spans: Annotated[int, Meta(ge=1, le=100_000)] = 512  # spans per export request
    trace_rate: Annotated[float, Meta(ge=0, le=1e7)] = (
        5000.0  # spans per second at most while catching up; 0: no limit (else at least 1)
    )
    trace_lookback: Annotated[float, Meta(ge=0, le=100 * 365 * DAY)] = (
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
    # `ccotel statusline` (docs/statusline.md): what the line shows, in this order.
    statusline_segments: list[
        Literal["model", "costs", "block", "burn", "context", "plan", "budget"]
    ] = msgspec.field(
        default_factory=lambda: ["model", "costs", "block", "burn", "context", "plan", "budget"]
    )
    statusline_separator: str = " | "  # between two segments
    statusline_color: bool = True  # budget, plan and context colours (ANSI) as the page's bars

    def resolved_state_dir(self, platform: str | None = None) -> Path:
        """The state directory: the one place it is decided (the service unit, report, run)."""
        return Path(self.state_dir).expanduser() if self.state_dir else default_state_dir(platform)

    def http_host_port(self) -> tuple[str, int]:
        return parse_addr(self.http_addr, "http_addr")


# Keys that name files or folders: ~ is expanded, and in the config file a relative path is
# relative to the file. The files among them must exist.
PATH_KEYS = ("claude_dirs", "state_dir", "pricing_file", "http_tls_cert", "http_tls_key",
             "otlp_certificate", "otlp_client_certificate", "otlp_client_key")  # fmt: skip
_FILE_KEYS = PATH_KEYS[2:]


def default_state_dir(platform: str | None = None) -> Path:
    """platformdirs' user state dir; ``platform`` ("linux", "darwin") previews another OS's."""
    if platform is None:
        if sys.platform.startswith("linux"):
            return Path(_xdg("XDG_STATE_HOME", ".local/state"))
        import platformdirs

        return Path(platformdirs.user_state_dir(APP))
    from platformdirs.macos import MacOS
    from platformdirs.unix import Unix

    return Path({"linux": Unix, "darwin": MacOS}[platform](APP).user_state_dir)


def default_config_file() -> Path:
    if sys.platform.startswith("linux"):
        return Path(_xdg("XDG_CONFIG_HOME", ".config")) / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def _xdg(var: str, under_home: str) -> str:
    """platformdirs' answer on Linux (tests/test_startup.py holds them equal): an absolute
    $var, else ~/under_home (a relative HOME counts as unset), then /ccotel. Without its
    imports (tempfile, random, shutil...), which every command would pay for at start."""
    base = os.environ.get(var, "")
    if os.path.isabs(base):
        return os.path.join(base, APP)
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home):
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    return os.path.join(home.rstrip("/") or "/", under_home, APP)


def parse_addr(value: str, key: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (loopback) -> (host, port); host without brackets."""
    import ipaddress
    import re

    host, sep, port = value.strip().rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 <= int(port) < 65536:
        raise ConfigError(f"{key}: expected HOST:PORT with a port up to 65535, got {value!r}")
    try:
        if host.startswith("[") and host.endswith("]"):
            host = str(ipaddress.IPv6Address(host[1:-1]))
        elif ":" in host:
            raise ConfigError(
                f"{key}: write an IPv6 address in brackets, like [::1]:{port}; got {value!r}"
            )
        elif re.fullmatch(r"[\d.]+", host):
            host = str(ipaddress.IPv4Address(host))
        elif host and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", host):
            raise ConfigError(f"{key}: {host!r} is not a host name or IP address")
    except ipaddress.AddressValueError:
        raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    return host or "127.0.0.1", int(port)


def url_host(host: str) -> str:
    """A host as it is written in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


# Environment: CCOTEL_<KEY>, nested keys joined by "_" (CCOTEL_BUDGET_HOURLY_USD).
_NESTED = {"budget": Budget}
# CCOTEL_* variables that are not settings (so no "did you mean" for them).
OTHER_VARIABLES = ("CCOTEL_CONFIG", "CCOTEL_HTTP_PASSWORD", "CCOTEL_BIND", "CCOTEL_OTLP_BIND")


def env_name(key: str) -> str:
    """budget.hourly_usd -> CCOTEL_BUDGET_HOURLY_USD."""
    return "CCOTEL_" + key.replace(".", "_").upper()


# Keys the command line sets with a flag of their own; other overrides are named by key.
FLAGS = {"claude_dirs": "--claude-dir", "state_dir": "--state-dir",
         "http_addr": "--http-addr", "metrics_addr": "--metrics-addr",
         "otlp_endpoint": "--otlp-endpoint", "log_format": "--log-format",
         "log_level": "--log-level"}  # fmt: skip


def flag_name(key: str) -> str:
    return FLAGS.get(key, key)


def keys() -> list[str]:
    """Every setting's key, nested ones as budget.hourly_usd, and the old names (ALIASES)."""
    out = []
    for field in Config.__struct_fields__:
        sub = _NESTED.get(field)
        out += [f"{field}.{s}" for s in sub.__struct_fields__] if sub else [field]
    return out + list(ALIASES)


def _unalias(data: dict[str, Any], name: Callable[[str], str]) -> Callable[[str], str]:
    """Old names in one layer to the keys they stand for; the name function that says a key
    as the user wrote it. Both names with different values: a ConfigError naming both."""
    said = {}
    for old, key in ALIASES.items():
        if old not in data:
            continue
        value = data.pop(old)
        if key in data and data[key] != value:
            raise ConfigError(
                f"{name(key)} and {name(old)} (its old name) are both set, to "
                f"{data[key]!r} and {value!r}: keep one"
            )
        data.setdefault(key, value)
        said[key] = old
    return lambda key: name(said.get(key, key))


def _from_env(env: Mapping[str, str], warn: Callable[[str], None]) -> dict[str, Any]:
    """The CCOTEL_* variables, as strings (lists split on commas); msgspec parses them."""
    out: dict[str, Any] = {}
    names = {env_name(k): k for k in keys()}
    for var, value in env.items():
        key = names.get(var)
        if key is None:
            if var.startswith("CCOTEL_") and var not in OTHER_VARIABLES:
                import difflib

                close = difflib.get_close_matches(var, list(names), n=1, cutoff=0.85)
                if close:
                    warn(f"{var} is not a ccotel setting; did you mean {close[0]}?")
            continue
        default = getattr(Config(), ALIASES.get(key, key), None)
        if isinstance(default, list):  # comma-separated
            out[key] = [p.strip() for p in value.split(",") if p.strip()]
        elif value.strip() or isinstance(default, str):
            top, _, sub = key.partition(".")
            (out.setdefault(top, {}) if sub else out)[sub or top] = value.strip()
    return out


def _flat(data: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) of a layer, nested tables as table.key."""
    for k, v in data.items():
        if isinstance(v, dict) and k in _NESTED:
            yield from ((f"{k}.{sk}", sv) for sk, sv in v.items())
        else:
            yield k, v


def shown_path(path: str) -> str:
    """A path as a one-line message shows it: as it is, or quoted when it holds line breaks
    or other unprintable characters."""
    return path[:300] if path.isprintable() else repr(path[:300])


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        elif v is not None:
            base[k] = v
    return base


def _read_file(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config: no such file {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config: {path} is a folder; name the TOML file in it") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"config: {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path}: {exc}") from None
    _warn_if_readable_secrets(path, data, text)
    return data


def _paths(data: dict[str, Any], base: Path | None) -> None:
    """Expand ~ in path keys; relative paths in a file are relative to that file."""

    def fix(key: str, p: Any) -> Any:
        if not isinstance(p, str) or not p:
            return p
        if "\x00" in p:
            raise ConfigError(f"{key}: a path cannot hold a NUL character")
        p = os.path.expanduser(p)
        return str(base / p) if base is not None and not os.path.isabs(p) else p

    for key in PATH_KEYS:
        if key in data:
            v = data[key]
            data[key] = [fix(key, p) for p in v] if isinstance(v, list) else fix(key, v)


def load(
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Config:
    env = os.environ if env is None else env
    if warn is None:
        warn = _warn
    path = file or (Path(env["CCOTEL_CONFIG"]) if env.get("CCOTEL_CONFIG") else None)
    if path is None and default_config_file().is_file():
        path = default_config_file()
    layers: list[Layer] = []
    if path is not None:
        data = _read_file(path)
        _paths(data, path.parent)
        layers.append((data, True, lambda key: f"{key} in {path}"))
    from_env = _from_env(env, warn)
    _paths(from_env, None)
    layers.append((from_env, False, env_name))
    over = {k: v for k, v in (flags or {}).items() if v is not None}
    _paths(over, None)
    layers.append((over, False, flag_name))
    merged: dict[str, Any] = {}
    for data, strict, name in layers:  # each layer alone, so an error names its source
        name = _unalias(data, name)
        _check(data, strict, name)
        _merge(merged, data)
    cfg = msgspec.convert(merged, Config, strict=False)
    if bool(cfg.http_tls_cert) != bool(cfg.http_tls_key):
        raise ConfigError("http_tls_cert: set both http_tls_cert and http_tls_key, or neither")
    if bool(cfg.http_basic_auth_user) != bool(cfg.http_basic_auth_password_hash):
        raise ConfigError(
            "http_basic_auth_user: set both http_basic_auth_user and http_basic_auth_password_hash, or neither"
        )
    if cfg.http_basic_auth_password_hash:
        from ccotel.server import parse_hash

        try:
            parse_hash(cfg.http_basic_auth_password_hash)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    _check_values(cfg, layers, env)
    return cfg


Layer = tuple[dict[str, Any], bool, Callable[[str], str]]  # (values, typed strictly, naming)


def _warn(msg: str) -> None:
    sys.stderr.write(f"ccotel: warning: {msg}\n")


def _source(key: str, layers: list[Layer]) -> str:
    """The name of the last layer that set ``key`` (the one that won)."""
    for data, _strict, name in reversed(layers):
        if key in data:
            return name(key)
    return key


# Keys whose 0 means "off" and whose other values must not be tiny (a push or a pause per
# microsecond would spin): 0, or at least this.
OFF_OR_AT_LEAST = {"metrics_push_interval": 1.0, "trace_rate": 1.0}


def _check_values(cfg: Config, layers: list[Layer], env: Mapping[str, str]) -> None:
    """What types alone cannot say: files that must exist, folders that must be folders,
    text that must be UTF-8, endpoints that must be URLs."""
    for key, least in OFF_OR_AT_LEAST.items():
        value = getattr(cfg, key)
        if value is not None and 0 < value < least:
            raise ConfigError(
                f"{_source(key, layers)}: expected 0 (off) or a number from {least:g}, got {value:g}"
            )
    for key in Config.__struct_fields__:  # text that leaves the machine or reaches a log
        value = getattr(cfg, key)
        if key not in PATH_KEYS and isinstance(value, str) and not _is_utf8(value):
            raise ConfigError(f"{_source(key, layers)}: not UTF-8 text")
    for key in PATH_KEYS:
        value = getattr(cfg, key)
        for v in value if isinstance(value, list) else [value]:
            if v.startswith("~"):  # expanduser leaves ~name of an unknown user as it is
                user = shown_path(v.split("/")[0])
                raise ConfigError(f"{_source(key, layers)}: {user} names no user's home")
    for key in _FILE_KEYS:
        value = getattr(cfg, key)
        if value and not os.path.isfile(value):
            what = "is a folder" if os.path.isdir(value) else "does not exist"
            raise ConfigError(f"{_source(key, layers)}: {shown_path(value)} {what}; name a file")
    state = cfg.resolved_state_dir()
    try:
        if state.exists() and not state.is_dir():
            raise ConfigError(f"{_source('state_dir', layers)}: {state} is a file, not a folder")
    except OSError as exc:  # a name too long, a loop of links
        raise ConfigError(f"{_source('state_dir', layers)}: {exc.strerror}") from None
    if cfg.otlp_endpoint:
        _check_endpoint(cfg, _source("otlp_endpoint", layers), env)


def _check_endpoint(cfg: Config, name: str, env: Mapping[str, str]) -> None:
    grpc = (
        cfg.otlp_protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip().lower() == "grpc"
    problem = endpoint_problem(cfg.otlp_endpoint, grpc)
    if problem:
        raise ConfigError(f"{name}: {problem}")


def endpoint_problem(value: str, grpc: bool = False) -> str | None:
    """Why an OTLP endpoint cannot work (the caller names where it came from), or None.
    Checked whole here, at start: a URL that fails only when a request is made would
    fail every pass with a message about something else."""
    import ipaddress
    import re
    from urllib.parse import urlsplit

    shown = repr(value[:200])
    if re.search(r"[\x00-\x20\x7f]", value):
        return f"a URL has no spaces or control characters, got {shown}"
    try:
        url = urlsplit(value if "://" in value else "//" + value)
        host = url.hostname
    except ValueError as exc:  # "Invalid IPv6 URL"
        return f"not a URL ({exc}): {shown}"
    try:
        url.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        return f"bad port in {shown}"
    if ("://" in value and url.scheme not in ("http", "https")) or not host:
        return f"expected a URL like http://collector:4318, got {shown}"
    if "://" not in value and not grpc:
        return f"expected a URL like http://{value.rstrip('/')} (the scheme is missing)"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{host!r} is not an IPv6 address: {shown}"
        return None
    try:
        ascii_host = host.encode("idna").decode()
    except UnicodeError:
        return f"{host!r} is not a host name: {shown}"
    if not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?", ascii_host):
        return f"{host!r} is not a host name: {shown}"
    return None


def _check(data: dict[str, Any], strict: bool, name: Callable[[str], str]) -> None:
    if not data:
        return
    for key, value in _flat(data):  # a path may be any bytes (a file name); other text not
        texts = value if isinstance(value, list) else [value]
        if key not in PATH_KEYS and any(isinstance(t, str) and not _is_utf8(t) for t in texts):
            raise ConfigError(f"{name(key)}: not UTF-8 text")
    try:
        msgspec.convert(data, Config, strict=strict)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), data, strict, name)) from None
    if "http_addr" in data:
        parse_addr(data["http_addr"], name("http_addr"))


def _explain(text: str, data: dict[str, Any], strict: bool, name: Callable[[str], str]) -> str:
    """msgspec says 'Expected `float | null`, got `str` - at `$.budget.hourly_usd`'; say it for
    a person: the key (variable, flag), what it takes, and what it got."""
    import difflib
    import re

    msg, _, where = text.rpartition(" - at `$.")
    where = where.rstrip("`") if msg else ""
    msg = msg or text
    unknown = re.match(r"Object contains unknown field `([^`]*)`", msg)
    if unknown:
        key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        fields = (
            _NESTED[where].__struct_fields__
            if where in _NESTED
            else (*Config.__struct_fields__, *ALIASES)
        )
        close = difflib.get_close_matches(unknown.group(1), fields, n=1)
        return f"{name(key)}: unknown key" + (f"; did you mean {close[0]}?" if close else "")
    key = re.sub(r"\[\d+\]$", "", where)
    kind = _field_type(key)
    if kind is None:
        return f"{name(key) if key else 'config'}: {msg}"
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    got = _shown(value, strict)
    hint = ""
    if strict and isinstance(value, str):
        try:
            msgspec.convert(value, kind, strict=False)
            hint = " (write it without quotes)"
        except msgspec.ValidationError:
            pass
    return f"{name(key)}: expected {_describe(kind)}, got {got}{hint}"


def _field_type(key: str) -> Any:
    """The declared type of a key (budget.hourly_usd included), or None."""
    from typing import get_type_hints

    top, _, sub = key.partition(".")
    owner = _NESTED.get(top) if sub else Config
    return get_type_hints(owner, include_extras=True).get(sub or top) if owner else None


def _describe(kind: Any) -> str:
    import msgspec.inspect as mi

    t: Any = mi.type_info(kind)
    if isinstance(t, mi.UnionType):
        return " or ".join(_describe_info(x) for x in t.types if not isinstance(x, mi.NoneType))
    return _describe_info(t)


def _describe_info(t: Any) -> str:
    import msgspec.inspect as mi

    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(f'"{v}"' for v in t.values)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, (mi.IntType, mi.FloatType)):
        out = "a whole number" if isinstance(t, mi.IntType) else "a number"
        if t.ge is not None and t.le is not None:
            return f"{out} from {t.ge:g} to {t.le:g}"
        for op, bound in ((">=", t.ge), (">", t.gt), ("<=", t.le), ("<", t.lt)):
            if bound is not None:
                out += f" {op} {bound:g}"
        return out
    if isinstance(t, mi.ListType):
        return "a list of strings"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.StructType):
        return "a table of " + ", ".join(f.name for f in t.fields)
    return str(t)


def _shown(value: Any, strict: bool) -> str:
    if not strict:
        return repr(value)  # a variable or a flag: what was typed
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


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
