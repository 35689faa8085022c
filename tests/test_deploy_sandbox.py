"""The systemd unit's sandbox as it changes what ccotel sees (review 1, finding 7).

No systemd runs here, so the unit's mount namespace is built the way systemd builds it, with
util-linux's `unshare` and `mount`, from the unit's own directives: ProtectSystem=strict (the
whole tree read-only), PrivateTmp (fresh /tmp and /var/tmp), ReadWritePaths (writable again),
then ExecStart with Environment and INVOCATION_ID, as systemd starts a service.

On ca2edcb: PrivateTmp=yes hid a state_dir or claude_dirs under /tmp from the service (it
counted nothing, into a state `ccotel report` never saw), and ReadWritePaths fixed at install
time left a state_dir changed later read-only, though docs/config.md said a restart was enough.
Now the unit leaves out the private /tmp when ccotel's files are there, and a changed state_dir
is one line saying to run `ccotel service install` again (which docs/config.md says), after
which the service writes where `ccotel report` reads.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from ccotel.service import under_tmp
from tests.conftest import FIXTURES, as_ccusage, assert_equal_totals, free_port
from tests.oracle import ccusage_totals
from tests.test_deploy_service import _ccotel_script, _cli, _shell, _unit_of, unit_directives

FIXTURE = FIXTURES / "claude-2.1.197"


@pytest.fixture
def home():
    """A home outside /tmp (a private /tmp would hide a home under it, as pytest's are)."""
    d = Path(tempfile.mkdtemp(prefix="ccotel-sandbox-home-", dir="/var/lib"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _words(values: list[str]) -> list[str]:
    return [w for v in values for w in shlex.split(v)]


def start_sandboxed(unit: str, home: Path) -> tuple[subprocess.Popen, int]:
    """Run the unit's ExecStart in the mount namespace its directives describe."""
    d = unit_directives(unit)
    script = []
    if d.get("ProtectSystem") == ["strict"]:
        script.append("mount --bind / / && mount -o remount,bind,ro /")
    if d.get("PrivateTmp") == ["yes"]:
        script.append("mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp")
    for word in _words(d.get("ReadWritePaths", [])):
        path, optional = (word[1:], True) if word.startswith("-") else (word, False)
        q = shlex.quote(path)
        bind = f"mount --bind {q} {q} && mount -o remount,bind,rw {q}"
        script.append(f"if [ -d {q} ]; then {bind}; fi" if optional else bind)
    script.append('exec "$@"')
    port = free_port()
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "INVOCATION_ID": "0" * 32,
           "CCOTEL_METRICS_ADDR": f"127.0.0.1:{port}"}  # fmt: skip
    for word in _words(d["Environment"]):
        key, _, value = word.partition("=")
        env[key] = value
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(script[:-1])
            + (" && " if script[:-1] else "") + script[-1], "sh", *shlex.split(d["ExecStart"][0])]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=home)  # fmt: skip
    return proc, port


def wait_ready(proc: subprocess.Popen, port: int) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            h = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            )
            if h.get("ok"):
                return h
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the daemon did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def unit_for(home: Path, env: dict) -> str:
    """The unit `service install` writes (and the state folder it makes, as it does)."""
    out = _cli("service", "install", "--dry-run", "--platform", "linux", "--exec",
               _ccotel_script(), env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    unit = _unit_of(out.stdout)
    for word in _words(unit_directives(unit).get("ReadWritePaths", [])):
        Path(word.lstrip("-")).mkdir(parents=True, exist_ok=True)
    return unit


def service_status(env: dict) -> subprocess.CompletedProcess:
    """As the user runs it: the installed ccotel script (the unit's ExecStart)."""
    argv = [_ccotel_script(), "service", "status", "--platform", "linux"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def report(env: dict) -> dict:
    out = _cli("report", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return as_ccusage(json.loads(out.stdout)["totals"])


def write_config(home: Path, text: str) -> None:
    conf = home / ".config" / "ccotel" / "config.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)


@pytest.mark.timeout(300)
def test_state_and_transcripts_under_tmp_are_the_services_too(home, tmp_path):
    claude, state = tmp_path / "claude", tmp_path / "state"  # pytest's tmp_path is in /tmp
    shutil.copytree(FIXTURE, claude)
    write_config(home, f'state_dir = "{state}"\nclaude_dirs = ["{claude}"]\n')
    env = _shell(home)
    unit = unit_for(home, env)
    proc, port = start_sandboxed(unit, home)
    try:
        assert wait_ready(proc, port)["lines"] > 0
    finally:
        stop(proc)
    assert_equal_totals(report(env), ccusage_totals(claude))  # what the service wrote
    assert unit_directives(unit)["PrivateTmp"] == ["no"]
    # and with nothing under /tmp, the private /tmp stays (unless ccotel itself is there: a
    # clone in /tmp, as CI's may be)
    write_config(home, f'claude_dirs = ["{home / "claude"}"]\n')
    want = "no" if under_tmp(_ccotel_script()) else "yes"
    assert unit_directives(unit_for(home, env))["PrivateTmp"] == [want]


@pytest.mark.timeout(300)
def test_a_changed_state_dir_says_reinstall_then_works(home):
    claude = home / "claude"
    shutil.copytree(FIXTURE, claude)
    write_config(home, f'state_dir = "{home / "state-a"}"\nclaude_dirs = ["{claude}"]\n')
    env = _shell(home)
    unit = unit_for(home, env)
    path = home / ".config" / "systemd" / "user" / "ccotel.service"
    path.parent.mkdir(parents=True)
    path.write_text(unit)  # installed (systemctl is not there to run)
    status = service_status(env)
    assert "up to date yes" in " ".join(status.stdout.split()), status.stdout
    proc, port = start_sandboxed(unit, home)
    try:
        wait_ready(proc, port)
    finally:
        stop(proc)
    # state_dir changes; the unit still says state-a
    write_config(home, f'state_dir = "{home / "state-b"}"\nclaude_dirs = ["{claude}"]\n')
    status = service_status(env)
    assert "up to date no (run `ccotel service install` again)" in " ".join(status.stdout.split())
    proc, _ = start_sandboxed(unit, home)
    out = proc.communicate(timeout=60)[0].decode()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert proc.returncode != 0 and "Traceback" not in out, out
    assert len(lines) == 1 and "ccotel service install" in lines[0] and "state-b" in lines[0], out
    # reinstalled: writes state-b, which `ccotel report` reads
    unit = unit_for(home, env)
    assert unit_directives(unit)["ReadWritePaths"] == [f"-{home / 'state-b'}"]
    proc, port = start_sandboxed(unit, home)
    try:
        wait_ready(proc, port)
    finally:
        stop(proc)
    assert_equal_totals(report(env), ccusage_totals(claude))
