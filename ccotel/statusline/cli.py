"""The click side of `ccotel statusline` (install, uninstall, --help); the line itself is
served by ccotel.statusline.client, which ccotel.entry runs before click loads."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ccotel.statusline.install import Result


def _client_args(ctx: click.Context, state_dir: str | None, metrics_addr: str | None) -> list[str]:
    args = []
    config = ctx.find_root().params.get("config")
    if config:
        args += ["--config", str(Path(config).expanduser().resolve())]
    if state_dir:
        args += ["--state-dir", str(Path(state_dir).expanduser().resolve())]
    if metrics_addr:
        args += ["--metrics-addr", metrics_addr]
    return args


@click.group("statusline", invoke_without_command=True)
@click.option("--state-dir", metavar="DIR", help="The daemon's state dir (CCOTEL_STATE_DIR).")
@click.option("--metrics-addr", metavar="HOST:PORT", help="Accepted as `ccotel status` takes it.")
@click.pass_context
def statusline(ctx: click.Context, state_dir: str | None, metrics_addr: str | None) -> None:
    """Claude Code's status line, from the running daemon (reads the JSON on stdin).

    `ccotel statusline install` makes it Claude Code's statusLine. It prints one line:
    model, this session's, today's and the 5-hour block's cost, the burn rate, context
    used, the plan's 5h and 7d use, the budget (statusline_* settings). It never fails:
    with the daemon down it says so in a short line.
    """
    if ctx.invoked_subcommand is None:
        from ccotel.statusline.client import main as client

        sys.exit(client(_client_args(ctx, state_dir, metrics_addr)))


_force = click.option(
    "--force", is_flag=True, help="Replace (or remove) a statusLine that is not ccotel's."
)
_dry = click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
_settings = click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False),
    help="The settings file (default: CLAUDE_CONFIG_DIR's settings.json, else ~/.claude/settings.json).",
)


def _path(settings_file: str | None) -> Path:
    from ccotel.statusline.install import settings_path

    return Path(settings_file).expanduser() if settings_file else settings_path()


def _show(res: Result) -> None:
    click.echo(res.message)
    if res.old is not None and res.old != res.new:
        click.echo(f"  was: {json.dumps(res.old, ensure_ascii=False)}")
    if res.new is not None:
        click.echo(f"  now: {json.dumps(res.new, ensure_ascii=False)}")
    if res.backup is not None:
        click.echo(f"  backup: {res.backup}")


def fast_command(args: list[str]) -> list[str]:
    """This Python running the client directly: isolated (-I) and without site (-S), which
    the client does not need and which costs more than the rest of a render (pip's console
    script alone imports `re`); the package's folder is put on the path by hand."""
    import ccotel

    where = str(Path(ccotel.__file__).resolve().parent.parent)
    code = (f"import sys;sys.path.insert(0,{json.dumps(where)});"
            "from ccotel.statusline.client import main;sys.exit(main(sys.argv[1:]))")  # fmt: skip
    return [sys.executable, "-I", "-S", "-c", code, *args]


@statusline.command("install")
@_force
@_dry
@_settings
@click.option("--plain", is_flag=True,
              help="Write `<path>/ccotel statusline` instead of the faster direct command.")  # fmt: skip
@click.option(
    "--state-dir", metavar="DIR", help="The daemon's state dir, written into the command."
)
@click.pass_context
def install_cmd(ctx: click.Context, force: bool, dry_run: bool, settings_file: str | None,
                plain: bool, state_dir: str | None) -> None:  # fmt: skip
    """Set Claude Code's statusLine to this ccotel's `statusline` (other settings kept).

    The command written runs this ccotel's Python on the client directly (about half the
    start-up of the `ccotel` script); --plain writes `ccotel statusline` with its full path.
    """
    from ccotel.service import resolve_executable
    from ccotel.statusline.install import InstallError, install

    assert ctx.parent is not None  # a subcommand of the statusline group
    parent = ctx.parent.params
    args = _client_args(ctx, state_dir or parent.get("state_dir"), parent.get("metrics_addr"))
    argv = [*resolve_executable(), "statusline", *args] if plain else fast_command(args)
    try:
        res = install(_path(settings_file), shlex.join(argv), force=force, dry_run=dry_run)
    except InstallError as exc:
        raise click.ClickException(str(exc)) from None
    _show(res)
    if res.changed:
        click.echo(
            "Claude Code shows it from its next refresh; the daemon must run (ccotel service install)."
        )


@statusline.command("uninstall")
@_force
@_dry
@_settings
def uninstall_cmd(force: bool, dry_run: bool, settings_file: str | None) -> None:
    """Remove ccotel's statusLine from Claude Code's settings (other settings kept)."""
    from ccotel.statusline.install import InstallError, uninstall

    try:
        res = uninstall(_path(settings_file), force=force, dry_run=dry_run)
    except InstallError as exc:
        raise click.ClickException(str(exc)) from None
    _show(res)
