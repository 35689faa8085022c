"""`ccotel service`: the systemd unit and launchd plist (templates, shipped examples,
systemd-analyze, plistlib) and install / uninstall / status on both platforms' code paths, into a
temporary home, with systemctl / launchctl replaced by a recorder (the files written are real).
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
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


def context(platform, home, runner, env=None, uid=501):
    ctx = svc.make_context(
        platform, home, env=env or {}, uid=uid, runner=runner, out=lambda s: None
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
    assert "CCOTEL_STATE_DIR=%h/.local/state/ccotel" in d["Environment"]
    assert d["MemoryMax"] and d["WantedBy"] == ["default.target"]


def systemd_analyze(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing (Debian package systemd)"
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))  # --user needs a runtime dir, not a bus
    return subprocess.run(
        [exe, "--user", *args], capture_output=True, text=True, env=env, timeout=60
    )


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
    text = svc.render_systemd_unit(["/home/a b/bin/ccotel", "x$y"], "/home/a b/state 100%")
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
    assert (
        plist["EnvironmentVariables"]["CCOTEL_STATE_DIR"]
        == "/Users/you/Library/Application Support/ccotel"
    )


def test_plist_escapes_xml():
    text = svc.render_launchd_plist(["/Users/a&b/<ccotel>"], "/Users/a&b", "/s", "/l")
    assert plistlib.loads(text.encode())["ProgramArguments"] == ["/Users/a&b/<ccotel>", "run"]


def test_python_m_fallback_renders_on_both_platforms():
    args = ["/usr/bin/python3", "-m", "ccotel"]
    assert unit_directives(svc.render_systemd_unit(args, "/s"))["ExecStart"] == [
        "/usr/bin/python3 -m ccotel run"
    ]
    assert plistlib.loads(svc.render_launchd_plist(args, "/h", "/s", "/l").encode())[
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
        env={"XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "CCOTEL_STATE_DIR": ""},
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
        env={"CCOTEL_STATE_DIR": ""},
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
        env={"XDG_STATE_HOME": "", "CCOTEL_STATE_DIR": "", "XDG_CONFIG_HOME": ""},
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
        [str(fake_ccotel)], tmp_path / ".local/state/ccotel"
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


def test_linux_install_honours_xdg_dirs(tmp_path, fake_ccotel):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "st")}
    svc.install(context("linux", tmp_path / "home", Recorder(), env=env), [str(fake_ccotel)])
    text = (tmp_path / "cfg/systemd/user/ccotel.service").read_text()
    assert f"CCOTEL_STATE_DIR={tmp_path}/st/ccotel" in text


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
    with pytest.raises(svc.ServiceError, match="bootstrap"):
        svc.install(ctx, [str(fake_ccotel)])


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
    env = {"XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "CCOTEL_STATE_DIR": ""}
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
