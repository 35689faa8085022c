"""The command line: run, backfill, report, status (and service).

Every mistake a user can make here ends in one line on stderr and a non-zero exit, never a
traceback: usage errors (exit 2), configuration errors naming the key, variable or flag (exit 2),
and runtime conditions that say what to do (exit 1, `status`: 3). Commands import only what they
use, so `report`, `status` and `--help` start without OpenTelemetry, watchdog or Prometheus.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ccotel import __version__
from ccotel.report import BY, EXIT_CONFIG

if TYPE_CHECKING:
    from ccotel.config import Config
F = TypeVar("F", bound=Callable[..., Any])


# Groups loaded only when asked for: other commands start without their modules.
_LAZY = {"service": "ccotel.service", "statusline": "ccotel.statusline"}


class _Main(click.Group):
    """Usage errors in one line, as `ccotel: <what> (see `ccotel x --help`)`; the _LAZY
    groups loaded only when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            import importlib

            cmd: click.Command = getattr(importlib.import_module(_LAZY[cmd_name]), cmd_name)
            return cmd
        return super().get_command(ctx, cmd_name)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"ccotel: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"ccotel: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            sys.exit(130)
        except BrokenPipeError:  # `ccotel report | head`: the reader left; so do we
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def config_of(ctx: click.Context, **flags: Any) -> Config:
    """The configuration for this command: file (--config), environment, then these flags."""
    from ccotel.config import ConfigError, load

    file = ctx.find_root().params.get("config")
    over = {k: v for k, v in flags.items() if v not in (None, ())}
    if "claude_dir" in over:
        over["claude_dirs"] = list(over.pop("claude_dir"))
    try:
        return load(Path(file) if file else None, flags=over)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", EXIT_CONFIG)


_config = config_of  # the name the commands use


def _corrupt(cfg: Config, exc: Exception) -> str:
    """A state database that fails past its open (a damaged page, a full disk): say what to do."""
    from ccotel.state import DB_NAME, db_error_message

    return db_error_message(cfg.resolved_state_dir() / DB_NAME, exc)


def _fail(msg: str, code: int = 1) -> NoReturn:
    click.echo(f"ccotel: {msg}", err=True)
    sys.exit(code)


def _warn(msg: str) -> None:
    click.echo(f"ccotel: warning: {msg}", err=True)


class Since(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A point in time: YYYY-MM-DD or YYYYMMDD (local midnight), or a duration ago (90m, 12h,
    7d, 2w). The one parser of every --since; converts to epoch seconds."""

    name = "SINCE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        from ccotel.report import parse_since

        if isinstance(value, float):
            return value
        try:
            return parse_since(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SINCE = Since()


_common = [
    click.option(
        "--claude-dir",
        multiple=True,
        metavar="DIR",
        help="Claude config dir to read, the one holding projects/ (repeatable). "
        "Default: CLAUDE_CONFIG_DIR, else ~/.config/claude and ~/.claude.",
    ),
    click.option(
        "--state-dir", metavar="DIR", help="Where the state database lives (CCOTEL_STATE_DIR)."
    ),
]


def common(f: F) -> F:
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    envvar="CCOTEL_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML config file (CCOTEL_CONFIG; default ~/.config/ccotel/config.toml when it exists).",
)
@click.version_option(__version__, prog_name="ccotel")
def main(config: str | None) -> None:
    """Claude Code transcripts to Prometheus metrics and OpenTelemetry traces."""


def _check_roots(cfg: Config, fatal: bool = False) -> None:
    """Warn, naming what was expected, when the folders to watch hold no projects/ folder;
    ``fatal``: a folder the user named that holds none is an error (backfill: nothing to do)."""
    from ccotel.sources import claude_roots, projects_dir

    expect = "a Claude config folder (like ~/.claude) holding projects/<project>/<session>.jsonl"
    named = [Path(d) for d in cfg.claude_dirs]
    what = "claude dir"
    if not named and os.environ.get("CLAUDE_CONFIG_DIR", "").strip():
        named, what = claude_roots(os.environ, Path.home()), "CLAUDE_CONFIG_DIR entry"
    if not named:
        roots = claude_roots(os.environ, Path.home())
        if not any(projects_dir(r).is_dir() for r in roots):
            where = " nor ".join(str(projects_dir(r)) for r in roots)
            then = "nothing to read" if fatal else "ccotel waits for them"
            _warn(
                f"no transcripts yet: neither {where} exists; {then} (if Claude Code keeps "
                "them elsewhere, pass --claude-dir or set CLAUDE_CONFIG_DIR)"
            )
        return
    say = (lambda msg: _fail(msg, EXIT_CONFIG)) if fatal else _warn
    for root in named:
        if projects_dir(root).is_dir():
            continue
        if not root.exists():
            say(f"{what} {root} does not exist; expected {expect}")
        elif not root.is_dir():
            say(f"{what} {root} is a file; expected {expect}")
        elif root.name == "projects" or any(root.glob("*/*.jsonl")):
            say(
                f"{what} {root} looks like the projects folder itself; name its parent, {root.parent}"
            )
        else:
            say(f"{what} {root} has no projects/ folder; expected {expect}")


def _check_prices(cfg: Config) -> None:
    """A pricing_file that cannot be read as prices is a configuration error, not a traceback."""
    if not cfg.pricing_file:
        return
    from ccotel.pricing import PriceTable, PricingError

    try:
        PriceTable(Path(cfg.pricing_file), cfg.pricing_rules)
    except UnicodeDecodeError:
        _fail(f"configuration error: pricing_file: {cfg.pricing_file} is not UTF-8 text", 2)
    except (PricingError, OSError) as exc:
        _fail(
            f"configuration error: pricing_file: {exc} (the format of ccotel/data/prices.toml)",
            EXIT_CONFIG,
        )


def _check_otlp(cfg: Config, signal: str = "traces") -> None:
    from ccotel.otlp import resource_attributes, target

    try:
        target(cfg, signal)  # type: ignore[arg-type]
        resource_attributes(cfg)
    except ValueError as exc:  # an OTLP setting that cannot work (protocol, compression)
        _fail(f"configuration error: {exc}", EXIT_CONFIG)


def _start_error(cfg: Config, exc: OSError) -> str | None:
    """What a failure to start serving means, in one line; None when it is not one."""
    import errno
    import socket
    import ssl

    addr = cfg.http_addr
    if isinstance(exc, socket.gaierror):
        return f"http_addr {addr}: cannot resolve the host ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"http_tls_cert/http_tls_key: cannot use them ({exc.reason or exc})"
    if exc.errno == errno.EADDRINUSE:
        return f"http_addr {addr} is in use; choose another with --http-addr"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"http_addr {addr}: this machine has no such address"
    if exc.errno == errno.EACCES and exc.filename is None:
        return f"http_addr {addr}: not allowed to listen there (ports below 1024 need root)"
    if exc.filename in (cfg.http_tls_cert, cfg.http_tls_key) and exc.filename:
        return f"http_tls_cert/http_tls_key: cannot read {exc.filename} ({exc.strerror})"
    return None


def http_addr_options(help: str) -> Callable[[F], F]:
    """--http-addr, and --metrics-addr, its old name (config.ALIASES)."""

    def add(f: F) -> F:
        f = click.option(
            "--metrics-addr", metavar="HOST:PORT", help="The old name of --http-addr."
        )(f)
        return click.option("--http-addr", metavar="HOST:PORT", help=help)(f)

    return add


@main.command()
@common
@http_addr_options(
    "HOST:PORT to serve the web page, /api/, /metrics and /healthz on "
    "(default 127.0.0.1:9470; IPv6 as [::1]:9470)."
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="OTLP collector for traces, like http://collector:4318 (default "
    "OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318 when one answers). Naming one also "
    "turns on the OTLP metrics push.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    help="Log lines on stdout: console, json, or auto (console on a terminal, else JSON).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="The least severe messages to log (default info).",
)
@click.pass_context
def run(ctx: click.Context, /, **flags: Any) -> None:
    """Run the daemon in the foreground (`ccotel service install` runs it in the background)."""
    import sqlite3

    cfg = _config(ctx, **flags)
    _check_roots(cfg)
    _check_prices(cfg)
    if cfg.traces:
        _check_otlp(cfg)
    from ccotel.otlp import configured, push_interval, push_temporality

    try:  # OTEL_METRIC_EXPORT_INTERVAL and the temporality preference, checked at start
        interval = push_interval(cfg)
        push_temporality(cfg)
    except ValueError as exc:
        _fail(f"configuration error: {exc}", EXIT_CONFIG)
    if interval > 0 and configured(cfg, "metrics"):
        _check_otlp(cfg, "metrics")
    from ccotel import app, log
    from ccotel.config import ConfigError
    from ccotel.state import StateError

    log.setup(cfg.log_level, cfg.log_format)
    try:
        app.run(cfg)
    except ConfigError as exc:  # found at startup: an address that cannot be served as asked
        _fail(f"configuration error: {exc}", EXIT_CONFIG)
    except StateError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:  # corruption found past the open: same advice
        _fail(_corrupt(cfg, exc))
    except OSError as exc:
        msg = _start_error(cfg, exc)
        if msg is None:
            raise
        _fail(msg)


@main.command()
@common
@click.option(
    "--rebuild",
    is_flag=True,
    help="Build a new state from the transcripts and swap it in when complete.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --rebuild: replace the state even if it holds sessions whose transcripts are gone.",
)
@click.option(
    "--traces",
    "export_traces",
    is_flag=True,
    help="Also export the sessions as OpenTelemetry traces (OTLP).",
)
@click.option(
    "--since",
    "since",
    type=SINCE,
    help="With --traces: sessions changed since YYYY-MM-DD, YYYYMMDD, or 12h / 7d ago (default 7d).",
)
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Where traces go (default OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318).",
)
@click.pass_context
def backfill(
    ctx: click.Context,
    /,
    rebuild: bool,
    force: bool,
    export_traces: bool,
    since: float | None,
    **flags: Any,
) -> None:
    """Ingest everything not yet ingested into the state, then exit."""
    import sqlite3

    from ccotel import backfill as oneshot
    from ccotel import log
    from ccotel.otlp import ExportError
    from ccotel.state import StateError

    cfg = _config(ctx, **flags)
    if force and not rebuild:
        _fail("--force goes with --rebuild only", EXIT_CONFIG)
    _check_roots(cfg, fatal=True)
    _check_prices(cfg)
    if since is not None and not export_traces:
        _warn("--since picks the sessions --traces exports; the metrics backfill reads everything")
    since_ts = since
    if export_traces:
        _check_otlp(cfg)
    log.setup("warning", stream=sys.stderr)  # stdout stays empty: warnings beside the summary
    try:
        if sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("backfill", total=None)
                res = oneshot.backfill(
                    cfg,
                    progress=lambda n: bar.advance(task, n),
                    on_total=lambda n: bar.update(task, total=n),
                    traces=export_traces,
                    since=since_ts,
                    rebuild=rebuild,
                    force=force,
                )
        else:
            res = oneshot.backfill(
                cfg, traces=export_traces, since=since_ts, rebuild=rebuild, force=force
            )
    except StateError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:  # corruption found past the open: same advice
        _fail(_corrupt(cfg, exc))
    except ExportError as exc:
        _fail(f"traces: {exc}")
    if rebuild:
        _rebuilt(res)
    if res.get("interrupted"):
        _fail(
            f"backfill interrupted after {res['lines']} lines (committed); run it again to continue",
            130,
        )
    click.echo(
        f"backfill: {res['lines']} lines from {res['files']} files in {res['seconds']} s"
        + (f", {res['parse_errors']} malformed lines skipped" if res["parse_errors"] else ""),
        err=True,
    )
    if "traces" in res:
        t = res["traces"]
        click.echo(
            f"traces: {t['spans']} spans exported in {t['batches']} batches in {t['seconds']} s"
            + (f", {t['dropped']} refused by the collector (dropped)" if t.get("dropped") else "")
            + (
                f"; {t['open_sessions']} sessions still active (their root spans follow when idle)"
                if t["open_sessions"]
                else ""
            ),
            err=True,
        )


def _rebuilt(res: dict[str, Any]) -> None:
    lost, usd = res.get("lost_sessions"), res.get("lost_usd")
    gone = f"{lost} sessions (${usd or 0:,.2f}) whose transcripts no longer exist"
    if res.get("interrupted"):
        _fail("--rebuild interrupted; the state was left as it was")
    if res.get("kept"):
        _fail(f"--rebuild: the state holds {gone}; it was kept as it is. "
              "Add --force to replace it and lose them")  # fmt: skip
    if res["old"] not in ("replaced", "none"):
        click.echo(f"rebuild: the old state was unreadable; moved to {res['old']}", err=True)
    elif lost or usd:
        click.echo(f"rebuild: replaced the state; it held {gone} (--force)", err=True)


@main.command()
@click.option(
    "--state-dir", metavar="DIR", help="Where the state database lives (CCOTEL_STATE_DIR)."
)
@click.option(
    "--by",
    "by",
    type=click.Choice(BY),
    default="day",
    show_default=True,
    help="Rows per day, session or 5-hour billing block (in time order, blocks as `ccusage "
    "blocks` counts them), or per model or project (by cost).",
)
@click.option(
    "--since",
    type=SINCE,
    help="Only usage from this day (YYYY-MM-DD, YYYYMMDD) or this long ago (12h, 7d) on.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def report(
    ctx: click.Context, by: str, since: float | None, as_json: bool, state_dir: str | None
) -> int:
    """Usage and cost tables from the state (the daemon need not run)."""
    from ccotel.report import run

    return run(ctx.find_root().params.get("config"), by, since, as_json, state_dir)


@main.command()
@http_addr_options("Where the daemon listens (default: http_addr of the config).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='The daemon\'s /healthz; when it cannot be reached, {"running": false, "error": ...}.',
)
@click.pass_context
def status(ctx: click.Context, /, as_json: bool, **flags: Any) -> None:
    """Is the daemon up, what is it watching, how far behind, are traces going out.

    With TLS on, the daemon's own certificate is trusted; with basic auth on, the password
    comes from CCOTEL_HTTP_PASSWORD (the config holds only its hash). With http_addr's port
    0 (any free port), the port the daemon got is read from daemon.json in the state dir.
    Exit 0 up, 1 refused, 3 not running.
    """
    from ccotel.state import RUNNING_NAME, read_running

    cfg = _config(ctx, **flags)
    base = _daemon_base(cfg)
    port = cfg.http_host_port()[1]

    def down(msg: str, code: int) -> NoReturn:
        if as_json:  # the reason for scripts on stdout, and for people on stderr
            out = {"running": False, "ok": False, "url": f"{base}/healthz", "error": msg}
            click.echo(json.dumps(out, indent=2))
        _fail(msg, code)

    if port == 0 and read_running(cfg.resolved_state_dir()) is None:
        down(
            f"http_addr asks for any free port, and no daemon wrote its own to "
            f"{cfg.resolved_state_dir() / RUNNING_NAME}: the daemon is not running "
            "(start it with `ccotel service install` or `ccotel run`)",
            3,
        )
    h = _healthz(cfg, base, down)
    if as_json:
        click.echo(json.dumps({"running": True, **h}, indent=2))
        return
    click.echo(
        f"ccotel {h.get('version')} (pid {h.get('pid')}) {'ready' if h.get('ok') else 'catching up'}"
        f" at {base}/"
    )
    click.echo(f"  watching   {', '.join(h.get('roots', []))}")
    click.echo(f"  state      {h.get('state_dir')}")
    mine = str(cfg.resolved_state_dir())
    if h.get("state_dir") and os.path.realpath(h["state_dir"]) != os.path.realpath(mine):
        click.echo(
            f"  warning    `ccotel report` here reads {mine}, not the daemon's state: "
            "give both the same state_dir"
        )
    click.echo(
        f"  files      {h.get('files_tracked')} tracked, {h.get('pending_bytes')} bytes pending"
    )
    click.echo(f"  lines      {h.get('lines')} read, {h.get('parse_errors')} malformed")
    click.echo(f"  lag        {h.get('lag_seconds')} s (0 when nothing waits to be read)")
    if h.get("unreadable"):
        click.echo(f"  unreadable {', '.join(h['unreadable'])}")
    for key, label in (("traces", "traces"), ("metrics_push", "push")):
        line = export_state(h.get(key), key)
        if line:
            click.echo(f"  {label:<10} {line}")


@main.command()
@http_addr_options("Where the daemon listens (default: http_addr of the config).")
@click.option("--once", is_flag=True, help="Print the board once and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's /api/live once.")
@click.pass_context
def live(ctx: click.Context, /, once: bool, as_json: bool, **flags: Any) -> None:
    """Every Claude Code session of the last live_window, the ones waiting for you first:
    state, running tool, context use, cost and cost per hour; redrawn as they change until
    Ctrl-C. Reads the running daemon (TLS and basic auth as for `ccotel status`)."""
    from ccotel.live import Feed, run

    cfg = _config(ctx, **flags)
    base = _daemon_base(cfg)
    h = _healthz(cfg, base, _fail)  # a clear message when no daemon answers
    if not h.get("ok"):
        _warn("the daemon is still catching up: the board fills when it is done")
    tls, headers = _daemon_access(cfg, _fail)
    feed = Feed(base, tls, headers)
    if as_json:
        try:
            feed.get()
        except Exception as exc:
            _fail(f"{base}/api/live: {exc}")
        click.echo(json.dumps(feed.board, indent=2))
        return
    try:
        run(feed, once=once)
    except Exception as exc:  # --once: the daemon went away or answered nonsense
        _fail(f"{base}/api/live: {exc}")


@main.command("hash-password")
def hash_password() -> None:
    """Print the config line of http_basic_auth_password_hash for a password.

    The password is asked twice without echo, or read from standard input (its first line)
    when that is not a terminal: `printf %s "$PW" | ccotel hash-password`.
    """
    from ccotel.server import hash_password as scrypt_hash

    if sys.stdin.isatty():
        pw = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        pw = sys.stdin.buffer.readline().rstrip(b"\r\n").decode("utf-8", "surrogateescape")
    if not pw:
        _fail("hash-password: the password is empty", EXIT_CONFIG)
    click.echo(
        f'http_basic_auth_password_hash = "{scrypt_hash(pw.encode("utf-8", "surrogateescape"))}"'
    )


def _daemon_base(cfg: Config) -> str:
    """The URL of the daemon this config runs (a wildcard address reached on loopback); with
    http_addr's port 0, the one daemon.json in the state dir names."""
    from ccotel.config import url_host
    from ccotel.state import read_running

    host, port = cfg.http_host_port()
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    scheme = "https" if cfg.http_tls_cert else "http"
    base = f"{scheme}://{url_host(host)}:{port}"
    running = read_running(cfg.resolved_state_dir()) if port == 0 else None
    if running is not None:
        base = running.url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    return base


def _daemon_access(cfg: Config, down: Callable[[str, int], NoReturn]) -> tuple[Any, dict[str, str]]:
    """(TLS context or None, headers) to speak to the daemon: its own certificate trusted,
    basic auth from CCOTEL_HTTP_PASSWORD; ``down(msg, code)`` when that cannot be."""
    import base64
    import ssl

    tls = None
    if cfg.http_tls_cert:
        try:
            tls = ssl.create_default_context(cafile=cfg.http_tls_cert)
        except (OSError, ssl.SSLError) as exc:
            down(f"http_tls_cert {cfg.http_tls_cert}: cannot use it ({exc})", EXIT_CONFIG)
        tls.check_hostname = False  # the certificate names the host, not the loopback address
    headers: dict[str, str] = {}
    if cfg.http_basic_auth_user:
        password = os.environ.get("CCOTEL_HTTP_PASSWORD")
        if password is None:
            down("the daemon asks for a password: set CCOTEL_HTTP_PASSWORD", EXIT_CONFIG)
        token = base64.b64encode(f"{cfg.http_basic_auth_user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return tls, headers


def _healthz(cfg: Config, base: str, down: Callable[[str, int], NoReturn]) -> dict[str, Any]:
    """GET /healthz, speaking the daemon's TLS and basic auth; ``down(msg, code)`` otherwise."""
    import http.client
    import urllib.error
    import urllib.request

    url = f"{base}/healthz"
    tls, headers = _daemon_access(cfg, down)
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=3, context=tls) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            down(f"{url} refused the credentials (http_basic_auth_user, CCOTEL_HTTP_PASSWORD)", 1)
        body = exc.read() or b""
    except urllib.error.URLError as exc:
        down(
            f"the daemon is not running at {url} ({exc.reason}); start it with "
            "`ccotel service install` or `ccotel run`",
            3,
        )
    except (OSError, http.client.HTTPException) as exc:
        down(f"no ccotel answers at {url} ({exc or type(exc).__name__})", 3)
    try:
        h = json.loads(body)
        if not isinstance(h, dict) or "pid" not in h:
            raise ValueError
    except ValueError:
        down(f"something other than ccotel answers at {url}; is http_addr right?", 3)
    return dict(h)


def export_state(e: object, key: str = "traces") -> str | None:
    """One line for an exporter's health (the `traces` / `metrics_push` contract); a daemon
    older than the contract has only enabled/endpoint/failing."""
    if not isinstance(e, dict):
        return None
    endpoint = e.get("endpoint") or ""
    state = e.get("state")
    if state is None:  # an older daemon
        if not e.get("enabled"):
            state = "off"
        elif e.get("failing"):
            return f"not confirmed by {endpoint} yet (spans wait in the transcripts)"
        else:
            state = "ok"
    if state == "off":
        return "off" + (" (traces = false)" if key == "traces" else "")
    if state == "waiting":
        return "waiting: no collector configured yet; spans wait in the transcripts"
    if state == "failing":
        return f"failing: {endpoint}: {e.get('error') or 'no answer'}"
    sent = e.get("spans_exported")
    return f"{state}, to {endpoint}" + (f" ({sent} spans exported)" if sent else "")


if __name__ == "__main__":
    main()
