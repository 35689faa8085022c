"""`ccotel service install | uninstall | status`: run ccotel as a per-user background service.

Linux: a systemd user unit, ``~/.config/systemd/user/ccotel.service``, enabled and started with
``systemctl --user``. macOS: a launchd agent, ``~/Library/LaunchAgents/dev.ccotel.agent.plist``,
loaded with ``launchctl bootstrap gui/<uid>``. Both files are rendered from the templates in
``ccotel/data/`` (``ccotel.service.in``, ``dev.ccotel.agent.plist.in``) with the real path of the
installed ``ccotel``; ``deploy/systemd`` and ``deploy/launchd`` hold the same templates rendered
with example paths (a test checks that they agree).

Everything is a plain function of ``home``, ``env``, ``uid`` and a command ``runner`` so that tests
install into a temporary home with a recording runner; the click group ``service`` at the bottom
is a thin layer over them. Reinstalling is idempotent; uninstalling keeps ccotel's state (its
counters and offsets) unless ``purge_state`` is set.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

Platform = Literal["linux", "darwin"]
PLATFORMS: tuple[Platform, ...] = ("linux", "darwin")

UNIT_NAME = "ccotel.service"
LAUNCHD_LABEL = "dev.ccotel.agent"
SYSTEMD_TEMPLATE = "ccotel.service.in"
LAUNCHD_TEMPLATE = "dev.ccotel.agent.plist.in"

# Exit codes of `status`, after the LSB convention for init scripts.
STATUS_RUNNING = 0
STATUS_NOT_RUNNING = 3
STATUS_NOT_INSTALLED = 4

if TYPE_CHECKING:
    import subprocess

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class ServiceError(Exception):
    """Something the user has to fix; the message says what."""


# ---------------------------------------------------------------------------------------- paths


def detect_platform(sys_platform: str | None = None) -> Platform:
    name = sys.platform if sys_platform is None else sys_platform
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    raise ServiceError(
        f"ccotel service supports Linux (systemd) and macOS (launchd), not {name}; "
        "run `ccotel run` under your own supervisor"
    )


def _xdg(env: Mapping[str, str], var: str, home: Path, default: str) -> Path:
    value = env.get(var, "")
    return Path(value) if value and os.path.isabs(value) else home / default


# What the unit / plist carries from the installing shell: only what decides *where* ccotel reads
# its config and transcripts and writes its state, when it was set outside the config file. The
# rest (state_dir included) the daemon reads from the config file itself, as `ccotel report` does.
CARRIED = ("CCOTEL_CONFIG", "CCOTEL_STATE_DIR", "CLAUDE_CONFIG_DIR")
CARRIED_LINUX = ("XDG_CONFIG_HOME", "XDG_STATE_HOME")  # platformdirs reads them on Linux only


def service_environment(
    platform: Platform, env: Mapping[str, str], config_file: str | None = None
) -> dict[str, str]:
    """The variables the service needs to resolve the same config, state and transcripts as the
    installing shell; ``config_file`` is a --config given to `ccotel`. Paths made absolute."""
    out: dict[str, str] = {}
    if config_file:
        out["CCOTEL_CONFIG"] = config_file
    for var in CARRIED + (CARRIED_LINUX if platform == "linux" else ()):
        if env.get(var, "").strip() and var not in out:
            out[var] = env[var].strip()
    for var, value in out.items():
        parts = value.split(",") if var == "CLAUDE_CONFIG_DIR" else [value]
        out[var] = ",".join(os.path.abspath(os.path.expanduser(p.strip())) for p in parts)
    return out


def unseen_settings(env: Mapping[str, str]) -> list[str]:
    """CCOTEL_* settings in this shell that the service will not see (not carried)."""
    from ccotel.config import OTHER_VARIABLES, env_name, keys

    names = {env_name(k) for k in keys()} - set(CARRIED) - set(OTHER_VARIABLES)
    return sorted(v for v in env if v in names and env[v].strip())


def log_dir_for(platform: Platform, home: Path) -> Path | None:
    """Where launchd writes ccotel's output; systemd sends it to the journal."""
    return home / "Library" / "Logs" / "ccotel" if platform == "darwin" else None


def service_file_for(platform: Platform, home: Path, env: Mapping[str, str]) -> Path:
    if platform == "darwin":
        return home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
    return _xdg(env, "XDG_CONFIG_HOME", home, ".config") / "systemd" / "user" / UNIT_NAME


def resolve_executable(
    argv0: str | None = None,
    which: Callable[[str], str | None] | None = None,
    python: str | None = None,
) -> list[str]:
    """The command that starts the installed ccotel, as an absolute path.

    What is running wins, so that the service runs the very ccotel the user called: the
    ``ccotel`` script (``sys.argv[0]``), or ``python -m ccotel`` with this interpreter; then
    ``ccotel`` on PATH; then ``python -m ccotel``. Symlinks are kept, not resolved: a Homebrew or
    pipx link survives upgrades, the versioned target behind it does not.
    """
    import shutil

    which = which or shutil.which
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    python_m = [os.path.abspath(python) if os.sep in python else python, "-m", "ccotel"]
    base = os.path.basename(argv0)
    if base.startswith("ccotel") and not base.endswith(".py"):
        path = argv0 if os.sep in argv0 else (which(argv0) or "")
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return [os.path.abspath(path)]
    if argv0.endswith(os.path.join("ccotel", "__main__.py")):
        return python_m
    found = which("ccotel")
    if found:
        return [os.path.abspath(found)]
    return python_m


# ------------------------------------------------------------------------------------ rendering


def template_text(name: str) -> str:
    from importlib import resources

    return resources.files("ccotel").joinpath("data", name).read_text(encoding="utf-8")


def _systemd_word(value: str, *, command: bool) -> str:
    """One word of a unit file value: % (specifiers) escaped everywhere, $ only on command lines
    (where systemd expands variables), quoted when it holds blanks, quotes or backslashes."""
    value = value.replace("%", "%%")
    if command:
        value = value.replace("$", "$$")
    if value and not any(c in value for c in " \t\"'\\;"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(
    exec_args: Sequence[str],
    state_dir: str | Path,
    *,
    sandbox: bool = True,
    escape: bool = True,
    environment: Mapping[str, str] | None = None,
    private_tmp: bool = True,
) -> str:
    """The unit file. ``escape=False`` takes values already in systemd syntax (``%h/...``).
    ``private_tmp=False`` when ccotel's files are under /tmp: a private /tmp would hide them."""
    text = template_text(SYSTEMD_TEMPLATE)
    lines = text.splitlines(keepends=True)
    begin, end = lines.index("# sandbox-begin\n"), lines.index("# sandbox-end\n")
    if sandbox:
        lines = lines[:begin] + lines[begin + 1 : end] + lines[end + 1 :]
    else:
        lines = lines[:begin] + lines[end + 1 :]
    text = "".join(lines)

    def word(value: str, command: bool = False) -> str:
        return _systemd_word(value, command=command) if escape else value

    # Each of these is one word in its directive: quote the whole of it, prefix included.
    text = text.replace("@EXEC_START@", " ".join(word(a, command=True) for a in exec_args))
    text = text.replace(
        "@ENVIRONMENT@\n",
        "".join(f"Environment={word(f'{k}={v}')}\n" for k, v in (environment or {}).items()),
    )
    text = text.replace("-@STATE_DIR@", word(f"-{state_dir}"))
    if not private_tmp:
        text = text.replace("PrivateTmp=yes\n", "PrivateTmp=no\n")
    _check_rendered(text, SYSTEMD_TEMPLATE)
    return text


def render_launchd_plist(
    exec_args: Sequence[str],
    home: str | Path,
    log_dir: str | Path,
    environment: Mapping[str, str] | None = None,
) -> str:
    from xml.sax.saxutils import escape as xml_escape

    text = template_text(LAUNCHD_TEMPLATE)
    line = next(ln for ln in text.splitlines(keepends=True) if "<string>@EXEC@</string>" in ln)
    indent = line[: len(line) - len(line.lstrip())]
    text = text.replace(
        line, "".join(f"{indent}<string>{xml_escape(a)}</string>\n" for a in exec_args)
    )
    line = next(ln for ln in text.splitlines(keepends=True) if "@ENVIRONMENT@" in ln)
    indent = line[: len(line) - len(line.lstrip())]
    text = text.replace(
        line,
        "".join(
            f"{indent}<key>{xml_escape(k)}</key>\n{indent}<string>{xml_escape(v)}</string>\n"
            for k, v in (environment or {}).items()
        ),
    )
    for key, value in (("@HOME@", home), ("@LOG_DIR@", log_dir)):
        text = text.replace(key, xml_escape(str(value)))
    _check_rendered(text, LAUNCHD_TEMPLATE)
    import plistlib

    plist = plistlib.loads(text.encode("utf-8"))  # refuse to write a plist launchd cannot read
    if plist["ProgramArguments"][: len(exec_args)] != list(exec_args):
        raise ServiceError("internal error: ProgramArguments did not survive rendering")
    return text


def _check_rendered(text: str, template: str) -> None:
    for token in ("@EXEC@", "@EXEC_START@", "@STATE_DIR@", "@HOME@", "@LOG_DIR@", "@ENVIRONMENT@"):
        if token in text:
            raise ServiceError(f"internal error: {token} left in the rendered {template}")


def example_systemd_unit() -> str:
    """deploy/systemd/ccotel.service: paths relative to the user's home (%h)."""
    return render_systemd_unit(["%h/.local/bin/ccotel"], "%h/.local/state/ccotel", escape=False)


def example_launchd_plist() -> str:
    """deploy/launchd/dev.ccotel.agent.plist: rendered for a user "you"."""
    home = Path("/Users/you")
    logs = log_dir_for("darwin", home)
    assert logs is not None  # launchd has a log folder
    return render_launchd_plist([str(home / ".local/bin/ccotel")], home, logs)


# ---------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Step:
    """A command of a plan; ``when`` says under which condition it runs (shown in --dry-run)."""

    argv: tuple[str, ...]
    when: str = ""
    check: bool = True

    def shell(self) -> str:
        return shlex.join(self.argv) + (f"    # {self.when}" if self.when else "")


@dataclass
class Context:
    platform: Platform
    home: Path
    env: Mapping[str, str]
    uid: int
    runner: Runner
    out: Callable[[str], None]
    state_dir: Path  # from the config (ccotel.config), the one place it is resolved
    environment: dict[str, str] = field(default_factory=dict)  # what the unit carries
    uses_tmp: bool = False  # state, transcripts or config under /tmp: no private /tmp
    sleep: Callable[[float], None] = time.sleep

    @property
    def path(self) -> Path:
        return service_file_for(self.platform, self.home, self.env)

    @property
    def log_dir(self) -> Path | None:
        return log_dir_for(self.platform, self.home)

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    @property
    def target(self) -> str:
        return f"{self.domain}/{LAUNCHD_LABEL}"

    def run(self, step: Step) -> subprocess.CompletedProcess[str]:
        try:
            proc = self.runner(list(step.argv))
        except FileNotFoundError:
            raise ServiceError(
                _no_manager_hint(self.platform, f"{step.argv[0]} not found")
            ) from None
        if step.check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout or "").strip()
            raise ServiceError(
                _no_manager_hint(
                    self.platform, f"`{shlex.join(step.argv)}` failed ({proc.returncode}): {detail}"
                )
            )
        return proc


def _no_manager_hint(platform: Platform, what: str) -> str:
    if platform == "linux":
        return (
            f"{what}. Is a systemd user manager running for you (a desktop login, or "
            "`loginctl enable-linger $USER` for ssh/headless)? Without systemd, run `ccotel run` "
            "under your own supervisor."
        )
    return f"{what}. launchctl is part of macOS; run this as the logged-in user, not with sudo."


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real runner: no shell, output captured, never raises on a non-zero exit."""
    import subprocess

    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@dataclass
class Result:
    """What install/uninstall/status did (or, with dry_run, would do)."""

    platform: Platform
    path: Path
    content: str | None = None
    changed: bool = False
    commands: list[Step] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    code: int = 0


def _systemctl(*args: str) -> tuple[str, ...]:
    return ("systemctl", "--user", *args)


def _is_loaded(ctx: Context) -> bool:
    return ctx.run(Step(("launchctl", "print", ctx.target), check=False)).returncode == 0


def _write(path: Path, content: str) -> bool:
    """Atomically write ``content``; True when the file changed."""
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return True


def _render(ctx: Context, exec_args: Sequence[str], sandbox: bool) -> str:
    if ctx.platform == "linux":
        return render_systemd_unit(
            exec_args,
            ctx.state_dir,
            sandbox=sandbox,
            environment=ctx.environment,
            # a private /tmp would hide ccotel's own files there, its executable included
            private_tmp=not (ctx.uses_tmp or any(under_tmp(a) for a in exec_args if "/" in a)),
        )
    assert ctx.log_dir is not None
    return render_launchd_plist(exec_args, ctx.home, ctx.log_dir, ctx.environment)


def _dirs(ctx: Context) -> list[Path]:
    return [d for d in (ctx.state_dir, ctx.log_dir) if d is not None]


def install(
    ctx: Context, exec_args: Sequence[str], *, dry_run: bool = False, sandbox: bool = True
) -> Result:
    content = _render(ctx, exec_args, sandbox)
    res = Result(ctx.platform, ctx.path, content)
    existed = ctx.path.is_file()
    mkdir = Step(("mkdir", "-p", *map(str, _dirs(ctx))))
    if ctx.platform == "linux":
        restart = Step(_systemctl("try-restart", UNIT_NAME), "when the unit file changed")
        res.commands = [
            mkdir,
            Step(_systemctl("daemon-reload")),
            Step(_systemctl("enable", "--now", UNIT_NAME)),
            restart,
        ]
        if dry_run:
            return res
        for d in _dirs(ctx):
            d.mkdir(parents=True, exist_ok=True)
        before = ctx.path.read_text(encoding="utf-8") if existed else None
        res.changed = _write(ctx.path, content)
        try:
            ctx.run(res.commands[1])
            ctx.run(res.commands[2])
        except ServiceError as exc:
            raise ServiceError(f"{exc} {_put_back(ctx, before)}") from None
        if res.changed and existed:  # running with the old unit (old path, old flags): restart
            ctx.run(restart)
        return res

    bootout = Step(("launchctl", "bootout", ctx.target), "when already loaded (reinstall)")
    bootstrap = Step(("launchctl", "bootstrap", ctx.domain, str(ctx.path)))
    enable = Step(("launchctl", "enable", ctx.target))
    res.commands = [mkdir, bootout, enable, bootstrap]
    if dry_run:
        return res
    for d in _dirs(ctx):
        d.mkdir(parents=True, exist_ok=True)
    if _is_loaded(ctx):
        ctx.run(Step(bootout.argv, check=False))
        _wait_unloaded(ctx)
    before = ctx.path.read_text(encoding="utf-8") if ctx.path.is_file() else None
    res.changed = _write(ctx.path, content)
    try:
        ctx.run(enable)
        _bootstrap(ctx, bootstrap)
    except ServiceError as exc:
        raise ServiceError(f"{exc} {_put_back(ctx, before)}") from None
    return res


def _put_back(ctx: Context, before: str | None) -> str:
    """After a failed enable or start: the service file as it was before the install (none,
    or the previous one), and what the message should add about it."""
    what = "unit file" if ctx.platform == "linux" else "plist"
    if before is None and ctx.platform == "linux":  # enable may have linked it before failing
        with contextlib.suppress(ServiceError):  # (no systemctl at all)
            ctx.run(Step(_systemctl("disable", UNIT_NAME), check=False))
    try:
        if before is None:
            ctx.path.unlink(missing_ok=True)
        else:
            _write(ctx.path, before)
    except OSError as exc:
        return (
            f"The new {what} {ctx.path} was left in place ({exc.strerror}); "
            "`ccotel service uninstall` removes it."
        )
    if ctx.platform == "linux":
        with contextlib.suppress(ServiceError):  # let systemd forget it
            ctx.run(Step(_systemctl("daemon-reload"), check=False))
    if before is None:
        return f"Nothing was installed: the {what} {ctx.path} was removed."
    if ctx.platform == "linux":
        return f"The previous {what} {ctx.path} was put back."
    return (
        f"The previous {what} {ctx.path} was put back, not loaded "
        f"(`launchctl bootstrap {ctx.domain} {ctx.path}` loads it)."
    )


def _wait_unloaded(ctx: Context, tries: int = 20) -> None:
    """bootout returns before launchd has let go of the label; bootstrap would fail (5: I/O)."""
    for _ in range(tries):
        if not _is_loaded(ctx):
            return
        ctx.sleep(0.25)


def _bootstrap(ctx: Context, step: Step, tries: int = 5) -> None:
    for attempt in range(tries):
        proc = ctx.run(Step(step.argv, check=False))
        if proc.returncode == 0:
            return
        if attempt + 1 < tries:
            ctx.sleep(0.5)
    detail = (proc.stderr or proc.stdout or "").strip()
    raise ServiceError(
        f"`{shlex.join(step.argv)}` failed ({proc.returncode}): {detail}. "
        f"See `launchctl print {ctx.target}` and {ctx.log_dir}."
    )


def uninstall(ctx: Context, *, dry_run: bool = False, purge_state: bool = False) -> Result:
    res = Result(ctx.platform, ctx.path)
    purge = _dirs(ctx) if purge_state else []
    foreign = sorted(p.name for p in _listing(ctx.state_dir) if not _ours(p.name))
    if purge and foreign:
        raise ServiceError(
            f"--purge-state: {ctx.state_dir} holds files that are not ccotel's "
            f"({', '.join(foreign[:3])}); delete its state.db* yourself"
        )
    if ctx.platform == "linux":
        res.commands = [
            Step(_systemctl("disable", "--now", UNIT_NAME), "when installed", check=False),
            Step(("rm", "-f", str(ctx.path))),
            Step(_systemctl("daemon-reload"), check=False),  # no manager: nothing runs
            Step(_systemctl("reset-failed", UNIT_NAME), check=False),
        ]
    else:
        res.commands = [
            Step(("launchctl", "bootout", ctx.target), "when loaded", check=False),
            Step(("rm", "-f", str(ctx.path))),
        ]
    if purge:
        res.commands.append(Step(("rm", "-rf", *map(str, purge))))
    if dry_run:
        return res
    if ctx.platform == "linux":
        if ctx.path.is_file():
            _run_if_there(ctx, res.commands[0])
        res.changed = ctx.path.is_file()
        ctx.path.unlink(missing_ok=True)
        _run_if_there(ctx, res.commands[2])
        _run_if_there(ctx, res.commands[3])
    else:
        if _is_loaded(ctx):
            ctx.run(res.commands[0])
        res.changed = ctx.path.is_file()
        ctx.path.unlink(missing_ok=True)
    for d in purge:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    return res


def _run_if_there(ctx: Context, step: Step) -> None:
    """Uninstalling where systemctl is missing (a container): no manager, so nothing runs."""
    with contextlib.suppress(ServiceError):
        ctx.run(step)


def _listing(d: Path) -> list[Path]:
    try:
        return list(d.iterdir())
    except OSError:
        return []


def _ours(name: str) -> bool:
    """ccotel's files in its state directory (the database, its journals, the lock)."""
    return name.startswith("state.db") or name in ("daemon.lock", "statusline.sock")


def status(
    ctx: Context, exec_args: Sequence[str] | None = None, *, dry_run: bool = False
) -> Result:
    res = Result(ctx.platform, ctx.path)
    if ctx.platform == "linux":
        res.commands = [
            Step(_systemctl("is-enabled", UNIT_NAME), check=False),
            Step(_systemctl("is-active", UNIT_NAME), check=False),
        ]
    else:
        res.commands = [Step(("launchctl", "print", ctx.target), check=False)]
    if dry_run:
        return res
    installed = ctx.path.is_file()
    res.state["file"] = str(ctx.path) if installed else f"{ctx.path} (missing)"
    if installed and exec_args is not None:
        res.state["up to date"] = (
            "yes"
            if ctx.path.read_text(encoding="utf-8")
            in {
                _render(ctx, exec_args, True),
                _render(ctx, exec_args, False),
            }
            else "no (run `ccotel service install` again)"
        )
    running = False
    if ctx.platform == "linux":
        enabled = _ask(ctx, res.commands[0])
        active = _ask(ctx, res.commands[1])
        if not installed and enabled.startswith("unknown"):
            enabled = "no (not installed)"
        res.state.update(enabled=enabled, active=active)
        running = active == "active"
        res.state["logs"] = "journalctl --user -u ccotel"
    else:
        proc = ctx.run(res.commands[0])
        loaded = proc.returncode == 0
        res.state["loaded"] = "yes" if loaded else "no"
        for line in proc.stdout.splitlines() if loaded else ():
            key, sep, value = line.strip().partition(" = ")
            if sep and key in ("state", "pid", "last exit code"):
                res.state[key] = value
        running = res.state.get("state") == "running"
        res.state["logs"] = str(ctx.log_dir)
    res.state["state dir"] = str(ctx.state_dir)
    res.code = (
        STATUS_RUNNING if running else STATUS_NOT_RUNNING if installed else STATUS_NOT_INSTALLED
    )
    return res


def _ask(ctx: Context, step: Step) -> str:
    """systemctl's one-word answer, or `unknown (why)` when it gives none."""
    try:
        proc = ctx.run(step)
    except ServiceError:
        return f"unknown ({step.argv[0]} not found: no systemd here)"
    word = proc.stdout.strip()
    if word:
        return word
    why = (proc.stderr or "").strip().splitlines()
    reason = why[-1] if why else f"{shlex.join(step.argv)} exited {proc.returncode}"
    if "bus" in reason.lower():
        reason += "; no systemd user manager for you: log in, or `loginctl enable-linger $USER`"
    return f"unknown ({reason})"


def make_context(
    platform: Platform | None = None,
    home: Path | str | None = None,
    *,
    state_dir: Path,
    environment: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    runner: Runner | None = None,
    out: Callable[[str], None] = print,
    paths: Sequence[str | Path] = (),
) -> Context:
    """``paths``: the other files and folders the service uses (transcripts, config file)."""
    return Context(
        platform=platform or detect_platform(),
        home=Path(home) if home is not None else Path.home(),
        env=os.environ if env is None else env,
        uid=os.getuid() if uid is None else uid,
        runner=runner or run_command,
        out=out,
        state_dir=state_dir,
        environment=dict(environment or {}),
        uses_tmp=any(under_tmp(p) for p in (state_dir, *paths)),
    )


TMP_DIRS = ("/tmp", "/var/tmp")  # what systemd's PrivateTmp= replaces


def under_tmp(path: str | Path) -> bool:
    """Whether ``path`` (links resolved as far as they exist) is in /tmp or /var/tmp."""
    real = os.path.realpath(os.path.expanduser(str(path)))
    return any(real == t or real.startswith(t + "/") for t in TMP_DIRS) or any(
        str(path).startswith(t + "/") for t in TMP_DIRS
    )


# ------------------------------------------------------------------------------------------ CLI


def _print_plan(res: Result, verb: str, out: Callable[[str], None]) -> None:
    out(f"# ccotel service {verb} --dry-run ({res.platform}): nothing is written or run.")
    if res.content is not None:
        out(f"# would write {res.path}:")
        out(res.content.rstrip("\n"))
    out("# would run:")
    for step in res.commands:
        out(step.shell())


_platform_option = click.option(
    "--platform",
    type=click.Choice(PLATFORMS),
    default=None,
    help="linux (systemd) or darwin (launchd); default: this machine's.",
)
_dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Print what would be written and run; change nothing."
)
_home_option = click.option("--home", type=click.Path(file_okay=False), default=None, hidden=True)


def _context(platform: str | None, home: str | None) -> Context:
    """The service as the configuration decides it: state dir and carried variables resolved by
    ccotel.config exactly as `ccotel report` resolves them."""
    from ccotel.cli import config_of

    click_ctx = click.get_current_context()
    cfg = config_of(click_ctx)
    try:
        here = detect_platform()
    except ServiceError:
        here = None
    try:
        plat: Platform = platform or detect_platform()  # type: ignore[assignment]
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    config_file = click_ctx.find_root().params.get("config")
    from ccotel.backfill import roots_of
    from ccotel.config import default_config_file

    environment = service_environment(plat, os.environ, config_file)
    used = [*roots_of(cfg), environment.get("CCOTEL_CONFIG") or default_config_file()]
    return make_context(
        plat,
        home,
        state_dir=cfg.resolved_state_dir(None if plat == here else plat),
        environment=environment,
        runner=lambda argv: run_command(argv),  # late lookup: tests replace run_command
        out=click.echo,
        paths=used,
    )


@click.group("service")
def service() -> None:
    """Run ccotel in the background as your user (systemd on Linux, launchd on macOS)."""


@service.command("install")
@_platform_option
@_dry_run_option
@_home_option
@click.option(
    "--exec",
    "exec_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The ccotel executable the service runs (default: this one).",
)
@click.option(
    "--no-sandbox",
    is_flag=True,
    help="Linux: leave out the mount-namespace hardening, for systems without unprivileged user namespaces.",
)
def install_cmd(
    platform: str | None, dry_run: bool, home: str | None, exec_path: str | None, no_sandbox: bool
) -> None:
    """Write the service file with this ccotel's path, then enable and start it. Safe to rerun."""
    ctx = _context(platform, home)
    if exec_path and not (os.stat(exec_path).st_mode & 0o111):
        raise click.BadParameter(f"{exec_path} is not executable", param_hint="'--exec'")
    exec_args = [os.path.abspath(exec_path)] if exec_path else resolve_executable()
    try:
        res = install(ctx, exec_args, dry_run=dry_run, sandbox=not no_sandbox)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        _print_plan(res, "install", click.echo)
        _warn_unseen()
        return
    how = "written" if res.changed else "unchanged"
    click.echo(f"{res.path} {how}; ccotel runs as: {shlex.join(exec_args)} run")
    if res.platform == "linux":
        click.echo("started with systemctl --user; logs: journalctl --user -u ccotel")
    else:
        click.echo(f"loaded with launchctl bootstrap {ctx.domain}; logs: {ctx.log_dir}")
    click.echo(f"state: {ctx.state_dir}; see it with `ccotel status` and `ccotel report`")
    _warn_unseen()


def _warn_unseen() -> None:
    unseen = unseen_settings(os.environ)
    if unseen:
        from ccotel.config import default_config_file

        click.echo(
            f"ccotel: warning: the service does not see {', '.join(unseen)} from this shell; "
            f"put them in the config file ({default_config_file()}) or CCOTEL_CONFIG's",
            err=True,
        )


@service.command("uninstall")
@_platform_option
@_dry_run_option
@_home_option
@click.option(
    "--purge-state", is_flag=True, help="Also delete ccotel's state (counters, offsets) and logs."
)
def uninstall_cmd(platform: str | None, dry_run: bool, home: str | None, purge_state: bool) -> None:
    """Stop and remove the service. ccotel's state is kept unless --purge-state."""
    ctx = _context(platform, home)
    try:
        res = uninstall(ctx, dry_run=dry_run, purge_state=purge_state)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        _print_plan(res, "uninstall", click.echo)
        return
    click.echo(f"{res.path} {'removed' if res.changed else 'was not installed'}")
    kept = "deleted" if purge_state else "kept"
    click.echo(f"state {kept}: {ctx.state_dir}")


@service.command("status")
@_platform_option
@_dry_run_option
@_home_option
def status_cmd(platform: str | None, dry_run: bool, home: str | None) -> None:
    """Is the service installed, current, enabled and running? Exit 0 running, 3 stopped, 4 not installed."""
    ctx = _context(platform, home)
    try:
        res = status(ctx, resolve_executable(), dry_run=dry_run)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        _print_plan(res, "status", click.echo)
        return
    for key, value in res.state.items():
        click.echo(f"  {key:<11}{value}")
    sys.exit(res.code)
