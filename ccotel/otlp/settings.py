"""Where each signal goes, how, and as whom.

Endpoint, protocol, headers, TLS files, compression and timeout come from the
ccotel config when set there, else from the standard ``OTEL_EXPORTER_OTLP_*``
variables (signal-specific ones first), else the defaults
(``http://localhost:4318``, ``http/protobuf``).
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from ccotel import __version__
from ccotel.config import endpoint_problem, shown_path

if TYPE_CHECKING:
    from ccotel.config import Config
    from ccotel.state import Store

Signal = Literal["traces", "metrics"]
DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}


@dataclass(frozen=True)
class Target:
    signal: Signal
    protocol: Literal["http/protobuf", "grpc"]
    url: str  # http: full URL with the signal path; grpc: scheme://host:port
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # often credentials
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    compression: Literal["none", "gzip"] = "none"
    timeout: float = 10.0
    insecure: bool = False  # grpc only: no TLS even for a non-http URL

    @property
    def where(self) -> str:
        """The URL as logs and /healthz show it: no user:password@, no query string."""
        return display_url(self.url)

    @property
    def secrets(self) -> list[str]:
        """Values a message must never repeat (a collector may echo what it was sent)."""
        u = urlsplit(self.url)
        vals = [*self.headers.values(), u.password or "", u.query]
        parts = [p for v in self.headers.values() for p in v.split() if len(p) >= 8]  # Bearer <t>
        return sorted({v for v in vals if len(v) >= 4} | set(parts), key=len, reverse=True)


def display_url(url: str) -> str:
    if "://" not in url:
        return url.split("?", 1)[0]
    u = urlsplit(url)
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{u.port}" if u.port else ""
    except ValueError:
        port = ""
    return f"{u.scheme}://{host}{port}{u.path}"


# The spec's format (W3C baggage without properties): key=value pairs separated by
# commas, values URL-encoded; like the SDKs, unencoded spaces are accepted. Written
# here rather than taken from opentelemetry-api, whose parser drops a malformed
# entry with a log line that repeats its value, which is often a token.
_HEADER = re.compile(r"[ \t]*([!#-'*+\-.0-9A-Z^-z|~]+)[ \t]*=[ \t]*([ !#-+\--:<-\[\]-~]*?)[ \t]*")


def parse_headers(s: str, source: str, lower: bool = True) -> dict[str, str]:
    """``k=v,k2=v2`` -> {k: v} (keys lowercased for headers); a malformed entry raises
    ValueError naming ``source`` and the entry's position and key, never its value."""
    out: dict[str, str] = {}
    for i, item in enumerate(s.split(","), 1):
        if not item.strip():
            continue
        m = _HEADER.fullmatch(item)
        if m is None:
            name = item.split("=", 1)[0].strip()[:40] if "=" in item else ""
            raise ValueError(
                f"{source}: entry {i}{f' ({name!r})' if name else ''} is not key=value "
                "with a URL-encoded value"
            )
        try:
            key, value = unquote(m.group(1), errors="strict"), unquote(m.group(2), errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{source}: entry {i} is not URL-encoded UTF-8") from None
        if not (key.isprintable() and value.isprintable()) or (lower and not value.isascii()):
            raise ValueError(  # a header value must be printable ASCII (HTTP, gRPC metadata)
                f"{source}: entry {i} ({key[:40]!r}) decodes to a value that is not printable"
                + (" ASCII" if lower else "")
            )
        out[key.lower() if lower else key] = value
    return out


def _env(env: Mapping[str, str], signal: Signal, name: str) -> tuple[str, str]:
    """(value, variable) of OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>, else OTEL_EXPORTER_OTLP_<NAME>."""
    for var in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        if env.get(var):
            return env[var], var
    return "", ""


def configured(cfg: Config, signal: Signal, env: Mapping[str, str] | None = None) -> bool:
    """Whether the user named an endpoint for this signal (not just the default)."""
    env = os.environ if env is None else env
    return bool(
        cfg.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def target(cfg: Config, signal: Signal, env: Mapping[str, str] | None = None) -> Target:
    """Resolve where one signal goes. cfg is ccotel's Config (its otlp_* keys win).

    Raises ValueError, naming the key or variable, for a setting that cannot work.
    """
    env = os.environ if env is None else env
    value, var = (
        (cfg.otlp_protocol, "otlp_protocol") if cfg.otlp_protocol else _env(env, signal, "PROTOCOL")
    )
    protocol = (value or "http/protobuf").strip().lower()
    if protocol not in ("http/protobuf", "grpc"):
        raise ValueError(
            f"{var}: OTLP protocol {value[:40]!r} is not supported: use http/protobuf or grpc"
        )
    if cfg.otlp_endpoint:
        base, specific = cfg.otlp_endpoint, ""
        names = {base: "otlp_endpoint"}
    else:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        specific = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "")
        names = {base: "OTEL_EXPORTER_OTLP_ENDPOINT"}
        names[specific] = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    for value in (specific, base):  # each as it was set, named
        problem = endpoint_problem(value, protocol == "grpc") if value else None
        if problem:
            raise ValueError(f"{names[value]}: {problem}")
    if protocol == "grpc":
        url = specific or base or DEFAULT_GRPC_ENDPOINT
        if "://" not in url:
            url = "https://" + url
    elif specific:
        url = specific  # used as is, per the specification
    else:  # the signal's path goes after the base's path, before any query
        base = base or DEFAULT_ENDPOINT
        b = urlsplit(base)
        url = (
            b._replace(path=b.path.rstrip("/") + _PATHS[signal]).geturl()
            if "://" in base
            else base + _PATHS[signal]
        )
    u = urlsplit(url)
    try:
        u.port  # noqa: B018 (validates the port)
    except ValueError:
        raise ValueError(f"OTLP endpoint {display_url(url)!r} has an invalid port") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(
            f"OTLP endpoint {display_url(url)!r} (otlp_endpoint, OTEL_EXPORTER_OTLP_ENDPOINT) "
            "is not an http:// or https:// URL"
        )
    env_headers, var = _env(env, signal, "HEADERS")
    headers = parse_headers(env_headers, var) if env_headers else {}
    if cfg.otlp_headers:
        headers.update(parse_headers(cfg.otlp_headers, "otlp_headers"))
    value, var = (
        (cfg.otlp_compression, "otlp_compression")
        if cfg.otlp_compression
        else _env(env, signal, "COMPRESSION")
    )
    compression = (value or "none").strip().lower()
    if compression not in ("none", "gzip"):
        raise ValueError(
            f"{var}: OTLP compression {value[:40]!r} is not supported: use none or gzip"
        )
    timeout_ms, var = _env(env, signal, "TIMEOUT")
    try:
        timeout = cfg.otlp_timeout or (float(timeout_ms) / 1000 if timeout_ms else 10.0)
    except ValueError:
        raise ValueError(f"{var}={timeout_ms[:40]!r} is not a number of milliseconds") from None
    if not 0 < timeout <= 3600:  # NaN, inf, 1e308, negative
        raise ValueError(f"{var}={timeout_ms[:40]!r}: expected milliseconds from 1 to 3600000")
    files = {}
    for name, key in (("CERTIFICATE", "otlp_certificate"),
                      ("CLIENT_CERTIFICATE", "otlp_client_certificate"),
                      ("CLIENT_KEY", "otlp_client_key")):  # fmt: skip
        value, var = (getattr(cfg, key), key) if getattr(cfg, key) else _env(env, signal, name)
        if value and not os.path.isfile(value):
            raise ValueError(f"{var}: {shown_path(value)} is not a file")
        files[key] = value
    return Target(
        signal,
        protocol,  # type: ignore[arg-type]
        url,
        headers,
        files["otlp_certificate"],
        files["otlp_client_certificate"],
        files["otlp_client_key"],
        compression,  # type: ignore[arg-type]
        timeout,
        _env(env, signal, "INSECURE")[0].lower() == "true",
    )


def resource_attributes(
    cfg: Config, env: Mapping[str, str] | None = None, instance_id: str | None = None
) -> dict[str, str]:
    """service.name=ccotel, service.version, service.instance.id (when given), host.name,
    user.name, then OTEL_RESOURCE_ATTRIBUTES."""
    env = os.environ if env is None else env
    attrs: dict[str, str] = {"service.name": "ccotel", "service.version": __version__}
    if instance_id:
        attrs["service.instance.id"] = instance_id
    host = cfg.resource_host
    if host == "auto":
        host = socket.gethostname()
    if host and host != "off":
        attrs["host.name"] = host
    user = cfg.resource_user
    if user == "auto":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = ""
    if user and user != "off":
        attrs["user.name"] = user
    extra = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    _utf8(extra, "OTEL_RESOURCE_ATTRIBUTES")  # sent with every request: UTF-8, or none is made
    for k, v in parse_headers(extra, "OTEL_RESOURCE_ATTRIBUTES", lower=False).items():
        attrs[k.strip()] = v.strip()
    if env.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = _utf8(env["OTEL_SERVICE_NAME"], "OTEL_SERVICE_NAME")
    _utf8(attrs.get("host.name", ""), "the host name (resource_host)")
    _utf8(attrs.get("user.name", ""), "the login name (resource_user)")
    return attrs


DEFAULT_PUSH_INTERVAL = 15.0


def push_interval(cfg: Config, env: Mapping[str, str] | None = None) -> float:
    """Seconds between metrics pushes: metrics_push_interval, else OTEL_METRIC_EXPORT_INTERVAL
    (milliseconds), else 15. ValueError naming the variable for one that is not a duration."""
    if cfg.metrics_push_interval is not None:
        return cfg.metrics_push_interval
    env = os.environ if env is None else env
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_PUSH_INTERVAL
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not ms > 0 or ms != ms or ms == float("inf"):
        raise ValueError(
            f"OTEL_METRIC_EXPORT_INTERVAL={raw[:40]!r} is not a positive number of milliseconds"
        )
    return ms / 1000


def push_temporality(cfg: Config, env: Mapping[str, str] | None = None) -> str:
    """cumulative, delta or lowmemory: metrics_push_temporality, else
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE (any case), else cumulative."""
    if cfg.metrics_push_temporality:
        return cfg.metrics_push_temporality
    env = os.environ if env is None else env
    var = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
    raw = env.get(var, "").strip()
    if not raw:
        return "cumulative"
    if raw.lower() not in ("cumulative", "delta", "lowmemory"):
        raise ValueError(f"{var}={raw[:40]!r} is not cumulative, delta or lowmemory")
    return raw.lower()


START_META, INSTANCE_META = "push_start_ns", "service_instance_id"


def push_identity(store: Store, now_ns: int | None = None) -> tuple[int, str]:
    """(start time of the pushed counters in ns, service.instance.id), kept in the state: the
    first start sets them, restarts keep them. A collector's Prometheus exporter turns the start
    into the counters' created time, and the instance id into `instance`: both stay put across
    restarts, so a backend that reads created times as resets never counts history twice, and
    two laptops' series never merge."""
    import sqlite3
    import uuid

    start, instance = store.meta(START_META), store.meta(INSTANCE_META)
    new = {}
    if start is None or not start.isdigit():
        start = new[START_META] = str(now_ns or time.time_ns())
    if not instance:
        instance = new[INSTANCE_META] = str(uuid.uuid4())
    try:
        for k, v in new.items():
            store.set_meta(k, v)
    except sqlite3.Error:  # the state cannot be written now: this run's own, kept next start
        pass
    return int(start), instance


def _utf8(text: str, source: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{source}: not UTF-8 text") from None
    return text
