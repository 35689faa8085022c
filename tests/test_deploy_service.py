"""`ccotel service`: the systemd unit and launchd plist (templates, shipped examples,
systemd-analyze, plistlib) and install / uninstall / status on both platforms' code paths, into a
temporary home, with systemctl / launchctl replaced by a recorder (the files written are real).
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccotel import service as svc

REPO = Path(__file__).resolve().parent.parent
UNIT_EXAMPLE = REPO / "deploy" / "systemd" / "ccotel.service"
PLIST_EXAMPLE = REPO / "deploy" / "launchd" / "dev.ccotel.agent.plist"


class Recorder:
    """Stands in for subprocess.run: records argv, answers from a script of (prefix, rc, stdout)."""

    def __init__(self, answers: list[tuple[tuple[str, ...], int, str]] | None = None):
        self.calls: list[list[str]] = []
        self.answers = list(answers or [])

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        for i, (prefix, rc, out) in enumerate(self.answers):
            if tuple(argv[: len(prefix)]) == prefix:
                del self.answers[i]
                return subprocess.CompletedProcess(
                    argv, rc, out, "" if rc == 0 else "simulated failure"
                )
        return subprocess.CompletedProcess(argv, 0, "", "")

    def commands(self, *tool: str) -> list[list[str]]:
        return [c for c in self.calls if not tool or c[0] in tool]


@pytest.fixture
def fake_ccotel(tmp_path) -> Path:
    exe = tmp_path / "bin" / "ccotel"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def context(platform, home, runner, env=None, uid=501, state_dir=None, environment=None):
    default = ".local/state/ccotel" if platform == "linux" else "Library/Application Support/ccotel"
    ctx = svc.make_context(
        platform,
        home,
        state_dir=state_dir or Path(home) / default,
        environment=environment,
        env=env or {},
        uid=uid,
        runner=runner,
        out=lambda s: None,
    )
    ctx.sleep = lambda seconds: None  # launchd waits are simulated, not slept
    return ctx


# ------------------------------------------------------------------------------ files


def test_shipped_examples_are_the_templates_rendered():
    assert UNIT_EXAMPLE.read_text() == svc.example_systemd_unit()
    assert PLIST_EXAMPLE.read_text() == svc.example_launchd_plist()


def test_templates_are_in_the_package_data():
    """The templates must ship in the wheel, or `ccotel service install` fails once pip-installed."""
    import fnmatch
    import tomllib

    data = REPO / "ccotel" / "data"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["ccotel"]
    for name in (svc.SYSTEMD_TEMPLATE, svc.LAUNCHD_TEMPLATE):
        assert (data / name).is_file()
        assert any(fnmatch.fnmatch(f"data/{name}", p) for p in patterns), (
            f'pyproject.toml [tool.setuptools.package-data] ccotel needs a pattern for data/{name} (e.g. "data/*.in")'
        )


def unit_directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_is_a_hardened_user_service():
    d = unit_directives(UNIT_EXAMPLE.read_text())
    assert d["Type"] == ["simple"]
    assert d["Restart"] == ["on-failure"]
    assert d["ExecStart"] == ["%h/.local/bin/ccotel run"]
    assert d["StandardOutput"] == ["journal"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert d[key] == [value], key
    assert d["ReadWritePaths"] == ["-%h/.local/state/ccotel"]  # the one writable place
    # The state dir is the config's to decide: the unit does not pin it (issue 9).
    assert d["Environment"] == ["PYTHONUNBUFFERED=1"]
    assert d["MemoryMax"] and d["WantedBy"] == ["default.target"]


def systemd_analyze(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing (Debian package systemd)"
    # --user needs a runtime dir, not a bus. A short path: the user units' sockets under it
    # must fit in a socket address (108 bytes), which a parallel run's tmp_path may not.
    runtime = tempfile.mkdtemp(prefix="xdg-")
    try:
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
        return subprocess.run(
            [exe, "--user", *args], capture_output=True, text=True, env=env, timeout=60
        )
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.parametrize("sandbox", [True, False])
def test_rendered_unit_passes_systemd_analyze_verify(tmp_path, fake_ccotel, sandbox):
    unit = tmp_path / "ccotel.service"
    unit.write_text(
        svc.render_systemd_unit([str(fake_ccotel)], tmp_path / "state dir %", sandbox=sandbox)
    )
    proc = systemd_analyze("verify", str(unit), tmp_path=tmp_path)
    # verify exits 0 on unknown keys and bad values, it only warns: no output is the real check.
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_systemd_analyze_verify_does_report_a_broken_unit(tmp_path, fake_ccotel):
    unit = tmp_path / "ccotel.service"
    good = svc.render_systemd_unit([str(fake_ccotel)], tmp_path / "state")
    unit.write_text(good.replace("ProtectHome=read-only", "ProtectHome=readonly\nProtectHomes=yes"))
    proc = systemd_analyze("verify", str(unit), tmp_path=tmp_path)
    assert "ProtectHomes" in proc.stderr and "readonly" in proc.stderr
    unit.write_text(
        svc.render_systemd_unit([str(tmp_path / "missing" / "ccotel")], tmp_path / "state")
    )
    assert systemd_analyze("verify", str(unit), tmp_path=tmp_path).returncode != 0


def test_sandboxed_unit_exposure_is_ok(tmp_path, fake_ccotel):
    unit = tmp_path / "ccotel.service"
    unit.write_text(svc.render_systemd_unit([str(fake_ccotel)], tmp_path / "state"))
    # --threshold is exposure x10: 5.0 is systemd's "OK" band. Without the sandbox it is "MEDIUM".
    assert (
        systemd_analyze(
            "security", "--offline=yes", "--threshold=50", str(unit), tmp_path=tmp_path
        ).returncode
        == 0
    )
    unit.write_text(svc.render_systemd_unit([str(fake_ccotel)], tmp_path / "state", sandbox=False))
    assert (
        systemd_analyze(
            "security", "--offline=yes", "--threshold=50", str(unit), tmp_path=tmp_path
        ).returncode
        != 0
    )


def test_unit_quotes_and_escapes_paths():
    text = svc.render_systemd_unit(
        ["/home/a b/bin/ccotel", "x$y"],
        "/home/a b/state 100%",
        environment={"CCOTEL_STATE_DIR": "/home/a b/state 100%"},
    )
    d = unit_directives(text)
    assert d["ExecStart"] == ['"/home/a b/bin/ccotel" x$$y run']
    assert '"CCOTEL_STATE_DIR=/home/a b/state 100%%"' in d["Environment"]
    assert d["ReadWritePaths"] == ['"-/home/a b/state 100%%"']


def test_plist_loads_and_keeps_ccotel_alive_with_logs():
    plist = plistlib.loads(PLIST_EXAMPLE.read_bytes())
    assert plist["Label"] == "dev.ccotel.agent"
    assert plist["ProgramArguments"] == ["/Users/you/.local/bin/ccotel", "run"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardOutPath"].startswith("/Users/you/Library/Logs/ccotel/")
    assert plist["StandardErrorPath"].startswith("/Users/you/Library/Logs/ccotel/")
    assert plist["EnvironmentVariables"] == {"PYTHONUNBUFFERED": "1"}  # the config decides


def test_plist_escapes_xml():
    text = svc.render_launchd_plist(
        ["/Users/a&b/<ccotel>"], "/Users/a&b", "/l", {"CCOTEL_CONFIG": "/Users/a&b/<c>.toml"}
    )
    plist = plistlib.loads(text.encode())
    assert plist["ProgramArguments"] == ["/Users/a&b/<ccotel>", "run"]
    assert plist["EnvironmentVariables"]["CCOTEL_CONFIG"] == "/Users/a&b/<c>.toml"


def test_python_m_fallback_renders_on_both_platforms():
    args = ["/usr/bin/python3", "-m", "ccotel"]
    assert unit_directives(svc.render_systemd_unit(args, "/s"))["ExecStart"] == [
        "/usr/bin/python3 -m ccotel run"
    ]
    assert plistlib.loads(svc.render_launchd_plist(args, "/h", "/l").encode())[
        "ProgramArguments"
    ] == [*args, "run"]


# ------------------------------------------------------------------------------ executable


def test_resolve_executable_prefers_the_running_script(fake_ccotel):
    assert svc.resolve_executable(str(fake_ccotel), which=lambda n: None) == [str(fake_ccotel)]


def test_resolve_executable_keeps_symlinks(tmp_path, fake_ccotel):
    link = tmp_path / "link" / "ccotel"
    link.parent.mkdir()
    link.symlink_to(fake_ccotel)
    assert svc.resolve_executable(str(link), which=lambda n: None) == [str(link)]


def test_resolve_executable_for_python_m_and_fallbacks(fake_ccotel):
    # `python -m ccotel service install`: this interpreter, not some other ccotel on PATH
    assert svc.resolve_executable(
        "/x/ccotel/__main__.py", which=lambda n: str(fake_ccotel), python="/venv/bin/python"
    ) == ["/venv/bin/python", "-m", "ccotel"]
    assert svc.resolve_executable("/x/pytest", which=lambda n: str(fake_ccotel)) == [
        str(fake_ccotel)
    ]
    assert svc.resolve_executable("/x/pytest", which=lambda n: None, python="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "ccotel",
    ]


def test_platform_detection():
    assert svc.detect_platform("linux") == "linux"
    assert svc.detect_platform("darwin") == "darwin"
    with pytest.raises(svc.ServiceError, match="not win32"):
        svc.detect_platform("win32")


# ------------------------------------------------------------------------------ CLI, dry run


@pytest.fixture
def no_commands(monkeypatch):
    def refuse(argv):
        raise AssertionError(f"--dry-run ran {argv}")

    monkeypatch.setattr(svc, "run_command", refuse)


# What the installing shell may set that decides where things are: cleared unless a test sets it.
NO_XDG = {"XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "CCOTEL_STATE_DIR": "", "CCOTEL_CONFIG": "",
          "CLAUDE_CONFIG_DIR": ""}  # fmt: skip


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(svc.service, list(args), env=env, catch_exceptions=False)


def test_dry_run_linux_prints_the_unit_and_commands(tmp_path, fake_ccotel, no_commands):
    home = tmp_path / "home"
    res = invoke(
        "install",
        "--dry-run",
        "--platform",
        "linux",
        "--home",
        str(home),
        "--exec",
        str(fake_ccotel),
        env={"HOME": str(home), **NO_XDG},
    )
    assert res.exit_code == 0, res.output
    assert f"# would write {home}/.config/systemd/user/ccotel.service:" in res.output
    assert f"ExecStart={fake_ccotel} run" in res.output
    assert f"ReadWritePaths=-{home}/.local/state/ccotel" in res.output
    lines = res.output.splitlines()
    assert lines.index("systemctl --user daemon-reload") < lines.index(
        "systemctl --user enable --now ccotel.service"
    )
    assert not home.exists()  # nothing touched


def test_dry_run_darwin_prints_the_plist_and_commands(tmp_path, fake_ccotel, no_commands):
    home = tmp_path / "home"
    res = invoke(
        "install",
        "--dry-run",
        "--platform",
        "darwin",
        "--home",
        str(home),
        "--exec",
        str(fake_ccotel),
        env={"HOME": str(home), **NO_XDG},
    )
    assert res.exit_code == 0, res.output
    path = home / "Library/LaunchAgents/dev.ccotel.agent.plist"
    assert f"# would write {path}:" in res.output
    body = res.output.split(":\n", 1)[1].split("# would run:")[0]
    plist = plistlib.loads(body.encode())
    assert plist["ProgramArguments"] == [str(fake_ccotel), "run"]
    assert plist["StandardOutPath"] == f"{home}/Library/Logs/ccotel/ccotel.log"
    uid = os.getuid()
    assert f"launchctl bootstrap gui/{uid} {path}" in res.output
    assert re.search(
        rf"launchctl bootout gui/{uid}/dev.ccotel.agent +# when already loaded", res.output
    )
    commands = res.output.split("# would run:\n", 1)[1]
    assert commands.index("launchctl bootout") < commands.index("launchctl bootstrap")
    assert not home.exists()


def test_dry_run_uninstall_and_status(tmp_path, no_commands):
    home = tmp_path / "home"
    res = invoke(
        "uninstall",
        "--dry-run",
        "--platform",
        "linux",
        "--home",
        str(home),
        "--purge-state",
        env={"HOME": str(home), **NO_XDG},
    )
    assert "systemctl --user disable --now ccotel.service" in res.output
    assert f"rm -rf {home}/.local/state/ccotel" in res.output
    res = invoke("status", "--dry-run", "--platform", "darwin", "--home", str(home))
    assert f"launchctl print gui/{os.getuid()}/dev.ccotel.agent" in res.output


# ------------------------------------------------------------------------------ real installs


def test_linux_install_writes_the_unit_and_starts_it(tmp_path, fake_ccotel):
    rec = Recorder()
    ctx = context("linux", tmp_path, rec)
    res = svc.install(ctx, [str(fake_ccotel)])
    unit = tmp_path / ".config/systemd/user/ccotel.service"
    assert res.changed and unit.read_text() == svc.render_systemd_unit(
        [str(fake_ccotel)],
        tmp_path / ".local/state/ccotel",
        private_tmp=False,  # home in /tmp
    )
    assert (tmp_path / ".local/state/ccotel").is_dir()  # ReadWritePaths needs it to exist
    assert rec.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "ccotel.service"],
    ]
    # Reinstalling the same thing changes nothing and restarts nothing.
    rec.calls.clear()
    assert not svc.install(ctx, [str(fake_ccotel)]).changed
    assert ["systemctl", "--user", "try-restart", "ccotel.service"] not in rec.calls
    # A new executable (an upgrade moved it) rewrites the unit and restarts the running service.
    other = fake_ccotel.with_name("ccotel2")
    shutil.copy(fake_ccotel, other)
    rec.calls.clear()
    assert svc.install(ctx, [str(other)]).changed
    assert rec.calls[-1] == ["systemctl", "--user", "try-restart", "ccotel.service"]
    assert f"ExecStart={other} run" in unit.read_text()


def test_linux_install_honours_xdg_dirs(tmp_path, fake_ccotel, monkeypatch):
    """XDG_* set in the installing shell decide the unit's place and ccotel's config and state
    folders; the unit carries them, so the service resolves what `ccotel report` resolves."""
    monkeypatch.setattr(svc, "run_command", Recorder())
    env = {**NO_XDG, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_STATE_HOME": str(tmp_path / "st")}  # fmt: skip
    res = invoke("install", "--platform", "linux", "--home", env["HOME"],
                 "--exec", str(fake_ccotel), env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    d = unit_directives((tmp_path / "cfg/systemd/user/ccotel.service").read_text())
    assert f"XDG_STATE_HOME={tmp_path}/st" in d["Environment"]
    assert f"XDG_CONFIG_HOME={tmp_path}/cfg" in d["Environment"]
    assert d["ReadWritePaths"] == [f"-{tmp_path}/st/ccotel"]
    assert (tmp_path / "st/ccotel").is_dir()


def test_linux_install_without_a_user_manager_says_what_to_do(tmp_path, fake_ccotel):
    rec = Recorder([(("systemctl", "--user", "daemon-reload"), 1, "")])
    with pytest.raises(svc.ServiceError, match="enable-linger"):
        svc.install(context("linux", tmp_path, rec), [str(fake_ccotel)])

    def missing(argv):
        raise FileNotFoundError(argv[0])

    with pytest.raises(svc.ServiceError, match="systemctl not found"):
        svc.install(context("linux", tmp_path, missing), [str(fake_ccotel)])


def test_darwin_install_bootstraps_and_reinstall_boots_out_first(tmp_path, fake_ccotel):
    rec = Recorder([(("launchctl", "print"), 113, "")])  # not loaded yet
    ctx = context("darwin", tmp_path, rec, uid=501)
    svc.install(ctx, [str(fake_ccotel)])
    plist = tmp_path / "Library/LaunchAgents/dev.ccotel.agent.plist"
    assert plistlib.loads(plist.read_bytes())["ProgramArguments"] == [str(fake_ccotel), "run"]
    assert (tmp_path / "Library/Logs/ccotel").is_dir()  # launchd does not create log folders
    assert (tmp_path / "Library/Application Support/ccotel").is_dir()
    assert rec.calls == [
        ["launchctl", "print", "gui/501/dev.ccotel.agent"],
        ["launchctl", "enable", "gui/501/dev.ccotel.agent"],
        ["launchctl", "bootstrap", "gui/501", str(plist)],
    ]
    # Reinstall: loaded (print rc 0), so bootout, wait until launchd let go, then bootstrap.
    rec = Recorder(
        [
            (("launchctl", "print"), 0, "state = running"),
            (("launchctl", "print"), 0, ""),
            (("launchctl", "print"), 113, ""),
        ]
    )
    ctx = context("darwin", tmp_path, rec, uid=501)
    svc.install(ctx, [str(fake_ccotel)])
    names = [" ".join(c[:2]) for c in rec.calls]
    assert names.index("launchctl bootout") < names.index("launchctl bootstrap")
    assert names.count("launchctl bootstrap") == 1


def test_darwin_bootstrap_is_retried_while_launchd_is_busy(tmp_path, fake_ccotel):
    rec = Recorder([(("launchctl", "print"), 113, ""), (("launchctl", "bootstrap"), 5, "")])
    ctx = context("darwin", tmp_path, rec)
    svc.install(ctx, [str(fake_ccotel)])
    assert [c[1] for c in rec.calls].count("bootstrap") == 2
    always = Recorder(
        [(("launchctl", "print"), 113, "")] + [(("launchctl", "bootstrap"), 5, "")] * 5
    )
    ctx = context("darwin", tmp_path, always)
    with pytest.raises(svc.ServiceError, match=r"bootstrap.*put back, not loaded"):
        svc.install(ctx, [str(fake_ccotel)])
    assert ctx.path.is_file()  # the one installed before, as it was
    ctx.path.unlink()
    always.answers = [(("launchctl", "print"), 113, "")] + [(("launchctl", "bootstrap"), 5, "")] * 5
    with pytest.raises(svc.ServiceError, match=r"Nothing was installed: the plist .* was removed"):
        svc.install(ctx, [str(fake_ccotel)])
    assert not ctx.path.exists()


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_uninstall_keeps_state_unless_purged(tmp_path, fake_ccotel, platform):
    rec = Recorder()
    ctx = context(platform, tmp_path, rec)
    svc.install(ctx, [str(fake_ccotel)])
    (ctx.state_dir / "state.db").write_text("counters")
    res = svc.uninstall(ctx)
    assert res.changed and not ctx.path.exists()
    assert (ctx.state_dir / "state.db").read_text() == "counters"
    assert not svc.uninstall(ctx).changed  # twice is fine
    svc.install(ctx, [str(fake_ccotel)])
    svc.uninstall(ctx, purge_state=True)
    assert not ctx.state_dir.exists()
    if platform == "linux":
        assert ["systemctl", "--user", "disable", "--now", "ccotel.service"] in rec.calls
    else:
        assert ["launchctl", "bootout", f"gui/{ctx.uid}/dev.ccotel.agent"] in rec.calls
        assert not ctx.log_dir.exists()


def test_uninstall_where_systemctl_is_missing_still_removes_and_purges(tmp_path, fake_ccotel):
    """A container: `service install` wrote the unit and failed; uninstall cleans up anyway."""

    def missing(argv):
        raise FileNotFoundError(argv[0])

    ctx = context("linux", tmp_path, missing)
    ctx.path.parent.mkdir(parents=True)
    ctx.path.write_text("[Service]\n")
    ctx.state_dir.mkdir(parents=True)
    (ctx.state_dir / "state.db").write_text("counters")
    res = svc.uninstall(ctx, purge_state=True)
    assert res.changed and not ctx.path.exists() and not ctx.state_dir.exists()


def test_status_exit_codes(tmp_path, fake_ccotel):
    rec = Recorder()
    ctx = context("linux", tmp_path, rec)
    assert svc.status(ctx, [str(fake_ccotel)]).code == svc.STATUS_NOT_INSTALLED
    svc.install(ctx, [str(fake_ccotel)])
    rec.answers = [
        (("systemctl", "--user", "is-enabled"), 0, "enabled\n"),
        (("systemctl", "--user", "is-active"), 0, "active\n"),
    ]
    res = svc.status(ctx, [str(fake_ccotel)])
    assert res.code == svc.STATUS_RUNNING and res.state["up to date"] == "yes"
    rec.answers = [(("systemctl", "--user", "is-active"), 3, "failed\n")]
    res = svc.status(ctx, ["/elsewhere/ccotel"])
    assert res.code == svc.STATUS_NOT_RUNNING and res.state["active"] == "failed"
    assert res.state["up to date"].startswith("no")

    rec = Recorder(
        [
            (
                ("launchctl", "print"),
                0,
                "gui/501/dev.ccotel.agent = {\n\tstate = running\n\tpid = 4242\n}\n",
            )
        ]
    )
    mac = context("darwin", tmp_path / "mac", rec)
    (mac.path.parent).mkdir(parents=True)
    mac.path.write_text("x")
    res = svc.status(mac)
    assert res.code == svc.STATUS_RUNNING and res.state["pid"] == "4242"


def test_cli_install_with_recorder_writes_a_real_file(tmp_path, fake_ccotel, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(svc, "run_command", rec)
    home = tmp_path / "home"
    env = {"HOME": str(home), **NO_XDG}
    res = invoke(
        "install", "--platform", "linux", "--home", str(home), "--exec", str(fake_ccotel), env=env
    )
    assert res.exit_code == 0, res.output
    assert (home / ".config/systemd/user/ccotel.service").is_file()
    assert ["systemctl", "--user", "enable", "--now", "ccotel.service"] in rec.calls
    rec.answers = [(("systemctl", "--user", "is-active"), 0, "active\n")]
    res = CliRunner().invoke(
        svc.service, ["status", "--platform", "linux", "--home", str(home)], env=env
    )
    assert res.exit_code == 0 and "active" in res.output
    res = invoke("uninstall", "--platform", "linux", "--home", str(home), env=env)
    assert res.exit_code == 0 and "state kept" in res.output


def test_cli_reports_errors_without_a_traceback(tmp_path, fake_ccotel, monkeypatch):
    monkeypatch.setattr(
        svc, "run_command", Recorder([(("systemctl", "--user", "daemon-reload"), 1, "")])
    )
    res = CliRunner().invoke(
        svc.service,
        ["install", "--platform", "linux", "--home", str(tmp_path), "--exec", str(fake_ccotel)],
    )
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output


def _fake_systemctl(tmp_path: Path, fails: str) -> tuple[dict, Path]:
    """A `systemctl` first on PATH that logs its arguments and fails the verb ``fails`` (a
    container, a headless box without a user manager); the real CLI runs with it."""
    bin_dir, log = tmp_path / "fakebin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    tool = bin_dir / "systemctl"
    tool.write_text(
        f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n'
        f'case " $* " in *" {fails} "*) echo "Failed to connect to bus" >&2; exit 1;; esac\n'
    )
    tool.chmod(0o755)
    env = {**os.environ, **NO_XDG, "HOME": str(tmp_path / "home"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    return env, log


@pytest.mark.parametrize("fails", ["daemon-reload", "enable"])
def test_install_that_systemctl_refuses_leaves_no_unit_behind(tmp_path, fake_ccotel, fails):
    env, log = _fake_systemctl(tmp_path, fails)
    unit = tmp_path / "home/.config/systemd/user/ccotel.service"
    args = ("service", "install", "--platform", "linux", "--exec", str(fake_ccotel))
    proc = _cli(*args, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Failed to connect to bus" in err
    assert f"Nothing was installed: the unit file {unit} was removed." in err
    assert not unit.exists()
    calls = log.read_text().splitlines()
    assert "--user disable ccotel.service" in calls  # what enable may have linked
    assert calls[-1] == "--user daemon-reload"  # systemd forgets the removed unit

    unit.parent.mkdir(parents=True, exist_ok=True)  # a reinstall: the old unit is put back
    unit.write_text("[Unit]\nDescription=the old one\n")
    log.unlink()
    proc = _cli(*args, env=env)
    assert proc.returncode == 1 and f"The previous unit file {unit} was put back." in proc.stderr
    assert unit.read_text() == "[Unit]\nDescription=the old one\n"
    assert "--user disable ccotel.service" not in log.read_text()  # it was enabled: stays


# ------------------------------------------------------------------ one state (issue 9)


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "ccotel", *args], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip


def _shell(home: Path, **extra: str) -> dict:
    drop = ("CCOTEL_", "OTEL_", "CLAUDE_CONFIG_DIR", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"HOME": str(home), "CCOTEL_TRACES": "false"} | extra


def _unit_of(dry_run_output: str) -> str:
    return dry_run_output.split(":\n", 1)[1].split("# would run:")[0]


def _start_as_the_unit(unit: str, home: Path, tmp_path: Path):
    """Start ccotel the way systemd would run this unit: its ExecStart, its Environment only."""
    import shlex
    import time
    import urllib.request

    from tests.conftest import daemon_port

    d = unit_directives(unit)
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    for word in d["Environment"]:
        key, _, value = shlex.split(word)[0].partition("=")
        env[key] = value
    env["CCOTEL_HTTP_ADDR"] = "127.0.0.1:0"  # any free port: the daemon says which
    argv = shlex.split(d["ExecStart"][0])
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tmp_path)  # fmt: skip
    (state,) = (p.lstrip("-") for p in d["ReadWritePaths"])  # the unit's state dir
    port = daemon_port(Path(state), proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            return proc, port, json.loads(urllib.request.urlopen(url, timeout=1).read())
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the daemon did not answer")


def _ccotel_script() -> str:
    import sys

    return str(Path(sys.executable).parent / "ccotel")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["default config file", "--config", "CCOTEL_CONFIG"])
def test_state_dir_from_the_config_service_and_report_agree(tmp_path, how):
    """A config that sets state_dir: `service install --dry-run`, `service status`, `report`,
    and the daemon started exactly as the unit says all use that one folder."""
    from tests.conftest import FIXTURES

    home = tmp_path / "home"
    state = tmp_path / "elsewhere" / "state"
    conf = home / ".config" / "ccotel" / "config.toml" if how == "default config file" else (
        tmp_path / "my.toml")  # fmt: skip
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'state_dir = "{state}"\nclaude_dirs = ["{FIXTURES / "claude-2.1.197"}"]\n')
    env = _shell(home, **({"CCOTEL_CONFIG": str(conf)} if how == "CCOTEL_CONFIG" else {}))
    pre = ["--config", str(conf)] if how == "--config" else []
    assert _cli(*pre, "backfill", env=env).returncode == 0
    assert json.loads(_cli(*pre, "report", "--json", env=env).stdout)["totals"]["cost_usd"] > 0
    assert (state / "state.db").is_file()

    out = _cli(*pre, "service", "install", "--dry-run", "--platform", "linux", "--exec",
               _ccotel_script(), env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    unit = _unit_of(out.stdout)
    d = unit_directives(unit)
    assert d["ReadWritePaths"] == [f"-{state}"]
    assert not any("CCOTEL_STATE_DIR" in e for e in d["Environment"])  # the config decides
    if how == "default config file":
        assert d["Environment"] == ["PYTHONUNBUFFERED=1"]
    else:
        assert f"CCOTEL_CONFIG={conf}" in d["Environment"]
    status = _cli(*pre, "service", "status", "--platform", "linux", env=env).stdout
    assert f"state dir  {state}" in status

    proc, port, health = _start_as_the_unit(unit, home, tmp_path)
    try:
        assert health["state_dir"] == str(state)
        out = _cli(*pre, "status", "--metrics-addr", f"127.0.0.1:{port}", env=env).stdout
        assert f"state      {state}" in out and "warning" not in out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_unit_carries_only_what_the_shell_set_outside_the_config(tmp_path):
    home = tmp_path / "home"
    env = _shell(home, CCOTEL_TRACES="", CCOTEL_STATE_DIR="~/st", CLAUDE_CONFIG_DIR="rel/a, /abs/b",
                 CCOTEL_BUDGET_DAILY_USD="5", CCOTEL_HTTP_PASSWORD="secret")  # fmt: skip
    out = subprocess.run(
        [_ccotel_script(), "service", "install", "--dry-run", "--platform", "linux"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    d = unit_directives(_unit_of(out.stdout))
    assert d["Environment"] == [
        "PYTHONUNBUFFERED=1",
        f"CCOTEL_STATE_DIR={home}/st",
        f"CLAUDE_CONFIG_DIR={tmp_path}/rel/a,/abs/b",
    ]
    assert d["ReadWritePaths"] == [f"-{home}/st"]
    assert "secret" not in out.stdout
    assert out.stderr.strip() == (
        "ccotel: warning: the service does not see CCOTEL_BUDGET_DAILY_USD from this shell; put "
        f"them in the config file ({home}/.config/ccotel/config.toml) or CCOTEL_CONFIG's"
    )
    plist = subprocess.run(
        [_ccotel_script(), "service", "install", "--dry-run", "--platform", "darwin"],
        capture_output=True, text=True, env=env | {"XDG_STATE_HOME": "/x"}, timeout=60,
    ).stdout  # fmt: skip
    body = plistlib.loads(plist.split(":\n", 1)[1].split("# would run:")[0].encode())
    assert body["EnvironmentVariables"]["CCOTEL_STATE_DIR"] == f"{home}/st"
    assert "XDG_STATE_HOME" not in body["EnvironmentVariables"]  # not read on macOS


def test_service_status_says_why_it_cannot_tell(tmp_path, fake_ccotel):
    bus = "Failed to connect to bus: No medium found"
    rec = Recorder()
    rec.answers = [(("systemctl", "--user", "is-enabled"), 1, ""),
                   (("systemctl", "--user", "is-active"), 1, "")]  # fmt: skip
    original = rec.__call__

    def with_stderr(argv):
        proc = original(argv)
        return subprocess.CompletedProcess(argv, proc.returncode, proc.stdout,
                                           bus if proc.returncode else "")  # fmt: skip

    ctx = context("linux", tmp_path, with_stderr)
    ctx.path.parent.mkdir(parents=True)
    ctx.path.write_text("installed")
    res = svc.status(ctx)
    for key in ("enabled", "active"):
        assert res.state[key].startswith(f"unknown ({bus}; no systemd user manager"), res.state
        assert "loginctl enable-linger" in res.state[key]
    assert res.code == svc.STATUS_NOT_RUNNING

    def missing(argv):
        raise FileNotFoundError(argv[0])

    res = svc.status(context("linux", tmp_path / "nothing-here", missing))
    assert res.state["enabled"] == "no (not installed)"
    assert res.state["active"] == "unknown (systemctl not found: no systemd here)"
    # This machine's real systemctl, with no user manager: a reason, never a bare "unknown".
    out = subprocess.run([_ccotel_script(), "service", "status", "--platform", "linux"],
                         capture_output=True, text=True, env=_shell(tmp_path / "fresh"),
                         timeout=60)  # fmt: skip
    assert out.returncode == svc.STATUS_NOT_INSTALLED and "Traceback" not in out.stderr
    active = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("active"))
    assert active.split(None, 1)[1] not in ("unknown", "unknown ()")


def test_purge_state_refuses_a_folder_holding_other_files(tmp_path, fake_ccotel):
    ctx = context("linux", tmp_path, Recorder(), state_dir=tmp_path / "mine")
    ctx.state_dir.mkdir()
    (ctx.state_dir / "state.db").write_text("x")
    (ctx.state_dir / "thesis.tex").write_text("years of work")
    with pytest.raises(svc.ServiceError, match=r"thesis\.tex"):
        svc.uninstall(ctx, purge_state=True)
    with pytest.raises(svc.ServiceError, match="not ccotel's"):
        svc.uninstall(ctx, purge_state=True, dry_run=True)
    assert (ctx.state_dir / "thesis.tex").exists()
    svc.uninstall(ctx)  # without --purge-state, nothing is asked of that folder
    (ctx.state_dir / "thesis.tex").unlink()
    svc.uninstall(ctx, purge_state=True)
    assert not ctx.state_dir.exists()


def test_a_private_tmp_only_when_nothing_of_ccotels_is_in_tmp(tmp_path, no_commands):
    """PrivateTmp= hides /tmp from the service: not when its executable lives there (a clone
    in /tmp, as CI makes one), as for its state, transcripts or config."""
    outside = Path(tempfile.mkdtemp(prefix="ccotel-home-", dir=Path.home()))
    try:
        home = outside / "home"
        exes = {}
        for where in (tmp_path, outside):
            exe = where / "bin" / "ccotel"
            exe.parent.mkdir(parents=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
            exes[where] = exe
        got = {}
        for where, exe in exes.items():
            res = invoke("install", "--dry-run", "--platform", "linux", "--home", str(home),
                         "--exec", str(exe), env={"HOME": str(home), **NO_XDG})  # fmt: skip
            assert res.exit_code == 0, res.output
            got[where] = [ln for ln in res.output.splitlines() if ln.startswith("PrivateTmp=")]
        assert got == {tmp_path: ["PrivateTmp=no"], outside: ["PrivateTmp=yes"]}
    finally:
        shutil.rmtree(outside, ignore_errors=True)
