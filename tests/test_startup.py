"""Start-up of the one-shot commands (issue 13): a plain `ccotel report` is answered by
ccotel.entry without click, and says exactly what the click command says; the default
config and state folders on Linux are platformdirs' without importing it. No timings here:
bench/cli_startup.py and bench/run.py measure them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES


def _run(mode: str, args: list[str], env: dict[str, str]) -> tuple[int, str, str, list[str]]:
    """``ccotel args`` through ccotel.entry (mode "entry") or straight to the click command
    ("cli"): exit code, stdout, stderr, and whether click and platformdirs were imported."""
    probe = (
        "import json, sys\n"
        f"mode = {mode!r}\n"
        "sys.argv = ['ccotel', *sys.argv[1:]]\n"
        "code = 0\n"
        "try:\n"
        "    if mode == 'entry':\n"
        "        from ccotel.entry import main; main()\n"
        "    else:\n"
        "        from ccotel.cli import main; main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
        "sys.stdout.flush()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'click', 'platformdirs'})\n"
        "sys.stderr.write('\\nPROBE ' + json.dumps([code, heavy]))\n"
    )
    p = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                       env=env, timeout=120)  # fmt: skip
    err, _, tail = p.stderr.rpartition("\nPROBE ")
    code, heavy = json.loads(tail)
    return code, p.stdout, err, heavy


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> str:
    s = tmp_path_factory.mktemp("startup") / "state"
    subprocess.run(
        [sys.executable, "-m", "ccotel", "backfill", "--claude-dir", str(FIXTURES / "claude-2.1.197"),
         "--state-dir", str(s)], check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return str(s)


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "XDG_"))}
    env |= {"HOME": str(tmp_path / "home"), "TZ": "UTC", "COLUMNS": "100", "NO_COLOR": "1"}
    return env


def test_plain_report_is_answered_without_click_and_says_what_the_command_says(state, tmp_path):
    env = _env(tmp_path)
    cfg = tmp_path / "ccotel.toml"
    cfg.write_text('project_label = "path"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("max_projects = -1\n")
    fast = [
        ["report", "--json", "--state-dir", state],
        ["report", "--state-dir", state],  # the table
        ["report", "--by", "model", "--json", "--state-dir", state],
        ["report", "--by=session", "--since=2000-01-01", "--json", f"--state-dir={state}"],
        ["report", "--by", "block", "--json", "--state-dir", state],
        ["report", "--by", "project", "--since", "1d", "--state-dir", state],  # no usage: warns
        ["--config", str(cfg), "report", "--by", "project", "--json", "--state-dir", state],
        [f"--config={bad}", "report", "--state-dir", state],  # a configuration error, exit 2
        ["report", "--state-dir", str(tmp_path / "none")],  # no state, exit 1
    ]
    slow = [
        ["report", "--by", "week", "--state-dir", state],  # not a choice: click's message
        ["report", "--since", "yesterday", "--state-dir", state],
        ["report", "--json", "--json", "--state-dir", state],
        ["report", "--help"],
        ["report", "--state-dir"],
        ["--config", str(tmp_path), "report", "--state-dir", state],  # a folder
    ]
    for args in fast + slow:
        code, out, err, heavy = _run("entry", args, env)
        want = _run("cli", args, env)
        assert (code, out, err) == want[:3], args
        assert heavy == (["click"] if args in slow else []), (args, heavy)
    assert _run("entry", fast[7], env)[0] == 2 and _run("entry", fast[8], env)[0] == 1
    assert "/home/" in _run("entry", fast[6], env)[1]  # the config file was read


@pytest.mark.parametrize(
    "xdg, home",
    [(None, "abs"), ("/x/state-and-config", "abs"), ("relative/dir", "abs"), ("", "abs"),
     (None, "relative")],
)  # fmt: skip
def test_default_folders_on_linux_are_platformdirs(xdg, home, tmp_path, monkeypatch):
    import platformdirs

    from ccotel import config

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path) + "/" if home == "abs" else "rel/home")
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        if xdg is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, xdg)
    assert config.default_state_dir() == config.Path(platformdirs.user_state_dir("ccotel"))
    assert config.default_config_file() == config.Path(
        platformdirs.user_config_dir("ccotel"), "config.toml"
    )


def test_report_interrupted_says_what_the_command_says(state, tmp_path):
    """Ctrl-C while a plain `ccotel report` reads the state: as the click command (a new line,
    exit 130), not a traceback."""
    env = _env(tmp_path)
    probe = (
        "import sys, ccotel.report as r\n"
        "def stop(*a, **k): raise KeyboardInterrupt\n"
        "r.build = stop\n"
        "sys.argv = ['ccotel', *sys.argv[2:]]\n"
        "if __import__('os').environ['MODE'] == 'entry':\n"
        "    from ccotel.entry import main; main()\n"
        "else:\n"
        "    from ccotel.cli import main; main(sys.argv[1:])\n"
    )
    got = {}
    for mode in ("entry", "cli"):
        p = subprocess.run([sys.executable, "-c", probe, "-", "report", "--state-dir", state],
                           capture_output=True, text=True, env=env | {"MODE": mode},
                           timeout=120)  # fmt: skip
        got[mode] = (p.returncode, p.stdout, p.stderr)
    assert got["entry"] == got["cli"] == (130, "", "\n")
