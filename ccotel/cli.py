"""The command line: run, backfill, report, status (and service)."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import date
from pathlib import Path

import click

from ccotel import __version__
from ccotel.config import Config, ConfigError, load

EXIT_CONFIG = 2


def _config(ctx: click.Context, **flags) -> Config:
    root = ctx.find_root()
    file = root.params.get("config")
    over = {k: v for k, v in flags.items() if v not in (None, ())}
    if "claude_dir" in over:
        over["claude_dirs"] = list(over.pop("claude_dir"))
    try:
        return load(Path(file) if file else None, flags=over)
    except ConfigError as exc:
        click.echo(f"ccotel: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _corrupt(cfg: Config, exc: Exception) -> str:
    """A state database that fails past its open (a damaged page, a full disk): say what to do."""
    from ccotel.state.store import DB_NAME, db_error_message

    return db_error_message(cfg.resolved_state_dir() / DB_NAME, exc)


def _fail(msg: str, code: int = 1):
    click.echo(f"ccotel: {msg}", err=True)
    sys.exit(code)


_common = [
    click.option(
        "--claude-dir",
        multiple=True,
        help="Claude config dir to read (repeatable). Default: CLAUDE_CONFIG_DIR, ~/.config/claude, ~/.claude.",
    ),
    click.option("--state-dir", help="Where the state database lives (CCOTEL_STATE_DIR)."),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", envvar="CCOTEL_CONFIG", type=click.Path(dir_okay=False), help="TOML config file."
)
@click.version_option(__version__, prog_name="ccotel")
def main(config: str | None) -> None:
    """Claude Code transcripts to Prometheus metrics and OpenTelemetry traces."""


@main.command()
@common
@click.option(
    "--metrics-addr", help="HOST:PORT for /metrics and /healthz (default 127.0.0.1:9470)."
)
@click.option(
    "--otlp-endpoint",
    help="OTLP endpoint for traces and metrics (default OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318).",
)
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def run(ctx, **flags) -> None:
    """Run the daemon in the foreground."""
    from ccotel import app, log
    from ccotel.state.store import StateError

    cfg = _config(ctx, **flags)
    log.setup(cfg.log_level, cfg.log_format)
    try:
        app.run(cfg)
    except StateError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:  # corruption found past the open: same advice
        _fail(_corrupt(cfg, exc))
    except OSError as exc:
        if exc.errno == 98 or "Address already in use" in str(exc):
            _fail(f"metrics_addr {cfg.metrics_addr} is in use; choose another with --metrics-addr")
        raise


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
    help="With --traces: sessions changed since YYYY-MM-DD, or 12h / 30d ago (default 7d).",
)
@click.option(
    "--otlp-endpoint",
    help="Where traces go (default OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318).",
)
@click.pass_context
def backfill(
    ctx, rebuild: bool, force: bool, export_traces: bool, since: str | None, **flags
) -> None:
    """Ingest everything not yet ingested into the state, then exit."""
    from ccotel import app, log
    from ccotel.otlp import ExportError
    from ccotel.state.store import StateError

    cfg = _config(ctx, **flags)
    if force and not rebuild:
        _fail("--force goes with --rebuild only", EXIT_CONFIG)
    since_ts = _since(since) if since else None
    if export_traces:
        from ccotel.otlp import target

        try:
            target(cfg, "traces")
        except ValueError as exc:  # an OTLP setting that cannot work (protocol, compression)
            _fail(f"configuration error: {exc}", EXIT_CONFIG)
    log.setup("warning", "console" if sys.stderr.isatty() else "json")
    try:
        if sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("backfill", total=None)
                res = app.backfill(
                    cfg,
                    progress=lambda n: bar.advance(task, n),
                    on_total=lambda n: bar.update(task, total=n),
                    traces=export_traces,
                    since=since_ts,
                    rebuild=rebuild,
                    force=force,
                )
        else:
            res = app.backfill(
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
            + (
                f"; {t['open_sessions']} sessions still active (their root spans follow when idle)"
                if t["open_sessions"]
                else ""
            ),
            err=True,
        )


def _rebuilt(res: dict) -> None:
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


def _since(value: str) -> float:
    """YYYY-MM-DD (local midnight) or a duration ago: 90m, 12h, 30d."""
    import re
    import time
    from datetime import datetime

    v = value.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", v)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return time.time() - float(m.group(1)) * unit
    try:
        return datetime.strptime(v.replace("-", ""), "%Y%m%d").timestamp()
    except ValueError:
        _fail(f"--since: expected YYYY-MM-DD or a duration like 7d, got {value!r}", EXIT_CONFIG)
        raise


@main.command()
@click.option("--state-dir", help="Where the state database lives.")
@click.option(
    "--by",
    "by",
    type=click.Choice(["session", "day", "model", "project"]),
    default="day",
    show_default=True,
)
@click.option("--since", help="Only usage on or after this day (YYYY-MM-DD or YYYYMMDD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def report(ctx, by: str, since: str | None, as_json: bool, state_dir: str | None) -> None:
    """Usage and cost tables from the state (the daemon need not run)."""
    from ccotel import report as rep
    from ccotel.sinks.prometheus import project_labeler
    from ccotel.state.store import StateError, open_readonly

    cfg = _config(ctx, state_dir=state_dir)
    since_day = None
    if since:
        try:
            s = since.replace("-", "")
            since_day = date(int(s[:4]), int(s[4:6]), int(s[6:8]))
        except ValueError:
            _fail(f"--since: expected YYYY-MM-DD, got {since!r}", EXIT_CONFIG)
    try:
        store = open_readonly(cfg.resolved_state_dir())
    except StateError as exc:
        _fail(str(exc))
    except sqlite3.DatabaseError as exc:  # corruption found past the open: same advice
        _fail(_corrupt(cfg, exc))
    try:
        data = rep.build(
            store,
            by,
            since_day,
            project_labeler(cfg.project_label if cfg.project_label != "off" else "name"),
        )
    except sqlite3.DatabaseError as exc:
        _fail(_corrupt(cfg, exc))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    _print_table(data, by)


def _short_model(model: str) -> str:
    """claude-sonnet-4-5-20250929 -> sonnet-4-5: what a narrow table can hold."""
    name = model.removeprefix("claude-")
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() and len(tail) == 8 else name


def _compact(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


_TOKEN_COLS = (
    ("Input", "input_tokens"),
    ("Output", "output_tokens"),
    ("Cache write", "cache_write_tokens"),
    ("Cache read", "cache_read_tokens"),
)


def _print_table(data: dict, by: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    narrow = console.width < 120  # full token counts need about 120 columns
    num = _compact if narrow else (lambda n: f"{n:,}")
    show_models = by != "model" and not narrow
    t = Table(title=f"Claude Code usage by {by}", show_footer=True)
    tot = data["totals"]
    t.add_column(by.capitalize(), footer="Total", overflow="fold", min_width=10)
    if show_models:
        t.add_column("Models", overflow="fold")
    for title, key in _TOKEN_COLS:
        t.add_column(title, footer=num(tot[key]), justify="right", no_wrap=True)
    t.add_column("Cost (USD)", footer=f"${tot['cost_usd']:,.2f}", justify="right", no_wrap=True)
    for r in data["rows"]:
        label = _short_model(r[by]) if by == "model" else str(r[by])
        models = [", ".join(_short_model(m) for m in r["models"])] if show_models else []
        t.add_row(
            label, *models, *(num(r[key]) for _, key in _TOKEN_COLS), f"${r['cost_usd']:,.2f}"
        )
    console.print(t)


@main.command()
@click.option("--metrics-addr", help="Where the daemon listens.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx, as_json: bool, **flags) -> None:
    """Is the daemon up, what is it watching, how far behind.

    With TLS on, the daemon's own certificate is trusted; with basic auth on, the password
    comes from CCOTEL_HTTP_PASSWORD (the config holds only its hash).
    """
    import base64
    import os
    import ssl
    import urllib.error
    import urllib.request

    cfg = _config(ctx, **flags)
    host, port = cfg.metrics_host_port()
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    tls = ssl.create_default_context(cafile=cfg.http_tls_cert) if cfg.http_tls_cert else None
    if tls is not None:
        tls.check_hostname = False  # the certificate names the host, not the loopback address
    url = f"{'https' if tls else 'http'}://{host}:{port}/healthz"
    req = urllib.request.Request(url)
    if cfg.http_basic_auth_user:
        password = os.environ.get("CCOTEL_HTTP_PASSWORD")
        if password is None:
            _fail("the daemon asks for a password: set CCOTEL_HTTP_PASSWORD", EXIT_CONFIG)
        token = base64.b64encode(f"{cfg.http_basic_auth_user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=3, context=tls) as r:
            h = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            _fail(f"{url} refused the credentials (http_basic_auth_user, CCOTEL_HTTP_PASSWORD)", 1)
        h = json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"the daemon is not running at {url} ({getattr(exc, 'reason', exc)})", 3)
    if as_json:
        click.echo(json.dumps(h, indent=2))
        return
    click.echo(
        f"ccotel {h.get('version')} (pid {h.get('pid')}) {'ready' if h.get('ok') else 'catching up'}"
    )
    click.echo(f"  watching   {', '.join(h.get('roots', []))}")
    click.echo(f"  state      {h.get('state_dir')}")
    click.echo(
        f"  files      {h.get('files_tracked')} tracked, {h.get('pending_bytes')} bytes pending"
    )
    click.echo(f"  lines      {h.get('lines')} read, {h.get('parse_errors')} malformed")
    click.echo(f"  lag        {h.get('lag_seconds')} s (0 when nothing waits to be read)")


try:  # the service command, when its module is present
    from ccotel.service import service as _service

    main.add_command(_service)
except ImportError:
    pass


if __name__ == "__main__":
    main()
