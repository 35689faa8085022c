"""`ccotel statusline install | uninstall` on Claude Code's settings.json, the client's way of
finding the daemon, and its fast start."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ccotel.config import load
from ccotel.statusline import client
from ccotel.statusline.cli import fast_command
from ccotel.statusline.install import is_ours
from tests.conftest import ccotel

OTHER_LINE = {"type": "command", "command": "bunx ccusage statusline"}


def run(settings: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return ccotel("statusline", *args, "--settings", str(settings), check=check)


def read(p: Path) -> dict:
    return json.loads(p.read_text())


def backups(p: Path) -> list[Path]:
    return sorted(p.parent.glob(p.name + ".bak-*"))


def test_install_keeps_every_other_key_backs_up_and_runs(tmp_path):
    s = tmp_path / "settings.json"
    original = {"model": "opus", "permissions": {"allow": ["Bash(ls:*)"]}, "hooks": {"Stop": []},
                "env": {"X": "1"}}  # fmt: skip
    s.write_text(json.dumps(original, indent=4))
    os.chmod(s, 0o640)
    out = run(s, "install", "--state-dir", str(tmp_path / "state")).stdout
    assert "statusLine set" in out and "backup:" in out
    got = read(s)
    assert list(got) == [*original, "statusLine"]  # other keys kept, in their order
    assert {k: got[k] for k in original} == original
    assert is_ours(got["statusLine"]) and got["statusLine"]["type"] == "command"
    assert stat.S_IMODE(s.stat().st_mode) == 0o640
    (b,) = backups(s)
    assert json.loads(b.read_text()) == original
    # the command it wrote runs: with no daemon there, the short line
    cmd = got["statusLine"]["command"]
    proc = subprocess.run(["sh", "-c", cmd], input=b'{"session_id": "s"}', capture_output=True,
                          timeout=10)  # fmt: skip
    assert (
        proc.returncode == 0
        and proc.stdout == b"ccotel: daemon not running (ccotel service install)\n"
    )
    # again: nothing to do, no new backup
    assert "already ccotel's" in run(s, "install", "--state-dir", str(tmp_path / "state")).stdout
    assert len(backups(s)) == 1


def test_a_different_status_line_is_shown_and_kept_unless_forced(tmp_path):
    s = tmp_path / "settings.json"
    s.write_text(json.dumps({"statusLine": OTHER_LINE, "theme": "dark"}))
    before = s.read_bytes()
    proc = run(s, "install", check=False)
    assert proc.returncode == 1
    assert (
        "already has a different statusLine" in proc.stderr
        and "bunx ccusage statusline" in proc.stderr
    )
    assert s.read_bytes() == before and backups(s) == []
    # uninstall leaves another tool's line alone too
    proc = run(s, "uninstall", check=False)
    assert proc.returncode == 1 and "not ccotel's" in proc.stderr and s.read_bytes() == before
    out = run(s, "install", "--force").stdout
    assert "was: " in out and "bunx ccusage statusline" in out
    assert is_ours(read(s)["statusLine"]) and read(s)["theme"] == "dark"
    (b,) = backups(s)
    assert b.read_bytes() == before
    assert "statusLine removed" in run(s, "uninstall").stdout
    assert read(s) == {"theme": "dark"}


def test_a_missing_file_and_folder_are_created(tmp_path):
    s = tmp_path / "claude-config" / "settings.json"
    run(s, "install", "--plain")
    got = read(s)
    assert list(got) == ["statusLine"] and got["statusLine"]["command"].endswith(" statusline")
    assert backups(s) == []
    assert is_ours(got["statusLine"])


def test_dry_run_changes_nothing(tmp_path):
    s = tmp_path / "settings.json"
    s.write_text(json.dumps({"statusLine": OTHER_LINE}))
    before = s.read_bytes()
    out = run(s, "install", "--force", "--dry-run").stdout
    assert "would set statusLine" in out and "now: " in out
    assert s.read_bytes() == before and backups(s) == []
    missing = tmp_path / "none" / "settings.json"
    assert "would set" in run(missing, "install", "--dry-run").stdout
    assert not missing.parent.exists()


def test_a_read_only_file_is_not_touched(tmp_path):
    s = tmp_path / "settings.json"
    s.write_text(json.dumps({"model": "opus"}))
    os.chmod(s, 0o444)
    before = s.read_bytes()
    proc = run(s, "install", check=False)
    assert proc.returncode == 1 and "is read-only; not touched" in proc.stderr
    assert s.read_bytes() == before and backups(s) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no temp file left


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"x"'])
def test_a_file_that_is_not_a_json_object_is_not_touched(tmp_path, text):
    s = tmp_path / "settings.json"
    s.write_text(text)
    proc = run(s, "install", check=False)
    assert proc.returncode == 1 and "not touched" in proc.stderr
    assert s.read_text() == text


def test_a_symlinked_settings_file_is_written_where_it_points(tmp_path):
    real = tmp_path / "dotfiles" / "claude-settings.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"model": "opus"}))
    link = tmp_path / "settings.json"
    link.symlink_to(real)
    run(link, "install")
    assert link.is_symlink() and is_ours(read(real)["statusLine"])


def test_settings_path_follows_claude_config_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    env["CLAUDE_CONFIG_DIR"] = str(tmp_path / "cc")
    proc = subprocess.run([sys.executable, "-m", "ccotel", "statusline", "install", "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert f"would set statusLine in {tmp_path / 'cc' / 'settings.json'}" in proc.stdout


@pytest.mark.parametrize(
    "value, ours",
    [
        ({"type": "command", "command": "/usr/local/bin/ccotel statusline"}, True),
        ({"type": "command", "command": "ccotel --config /x.toml statusline --state-dir /s"}, True),
        ({"type": "command", "command": "/v/bin/python -m ccotel statusline"}, True),
        (OTHER_LINE, False),
        ({"type": "command", "command": "ccotel-other statusline-x"}, False),
        ({"type": "command", "command": "echo ccotel"}, False),
        ("ccotel statusline", False),
    ],
)
def test_what_counts_as_ccotels_status_line(value, ours):
    assert is_ours(value) is ours


# ------------------------------------------------------------------ how the client finds the daemon


@pytest.mark.parametrize(
    "env, file_text, flags",
    [
        ({}, None, {}),
        ({"XDG_STATE_HOME": "/xdg/state"}, None, {}),
        ({"XDG_STATE_HOME": "  "}, None, {}),
        ({"CCOTEL_STATE_DIR": "~/st"}, None, {}),
        ({}, 'state_dir = "rel/state"\n', {}),
        ({}, 'state_dir = "~/abs-state"\n', {}),
        ({"CCOTEL_STATE_DIR": "/from/env"}, 'state_dir = "/from/file"\n', {}),
        ({}, 'state_dir = "/from/file"\n', {"state-dir": "/from/flag"}),
    ],
)
def test_the_client_finds_the_state_dir_as_the_config_does(
    tmp_path, monkeypatch, env, file_text, flags
):
    for k in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "CCOTEL_STATE_DIR", "CCOTEL_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg_file = None
    if file_text is not None:
        cfg_file = tmp_path / "conf" / "config.toml"
        cfg_file.parent.mkdir()
        cfg_file.write_text(file_text)
        flags = {**flags, "config": str(cfg_file)}
    want = load(cfg_file, flags={"state_dir": flags["state-dir"]} if "state-dir" in flags else None)
    assert Path(client.state_dir(flags)) == want.resolved_state_dir()


def test_the_default_config_file_is_found_as_the_config_finds_it(tmp_path, monkeypatch):
    for k in ("XDG_STATE_HOME", "CCOTEL_STATE_DIR", "CCOTEL_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    f = tmp_path / "xdg" / "ccotel" / "config.toml"
    f.parent.mkdir(parents=True)
    f.write_text('state_dir = "/somewhere/else"\n')
    assert client.state_dir({}) == "/somewhere/else" == str(load().resolved_state_dir())


def _answering_socket(path: Path) -> threading.Thread:
    """A stand-in daemon: one connection, one line."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    os.chmod(path, 0o600)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nthe line")
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_the_installed_command_imports_nothing_heavy(tmp_path):
    """The command `install` writes: no site, no click, msgspec, json, re or socket module."""
    t = _answering_socket(tmp_path / "statusline.sock")
    cmd = fast_command(["--state-dir", str(tmp_path)])
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], input=b'{"session_id": "s"}',
                          capture_output=True, timeout=30)  # fmt: skip
    t.join(5)
    assert proc.returncode == 0 and proc.stdout == b"the line\n", proc
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()}
    assert "ccotel.statusline.client" in imported
    heavy = {"site", "click", "msgspec", "structlog", "sqlite3", "socket", "json", "re",
             "ccotel.config", "ccotel.cli", "tomllib", "threading"}  # fmt: skip
    assert not heavy & imported, heavy & imported


def test_ccotel_statusline_goes_to_the_client_before_the_cli_loads(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ccotel", "statusline", "--state-dir", str(tmp_path)],
        input=b'{"session_id": "s"}', capture_output=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0 and b"ccotel: daemon not running" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()}
    assert "ccotel.statusline.client" in imported
    assert not {"click", "msgspec", "ccotel.cli", "ccotel.config"} & imported


def test_the_short_line_imports_nothing_heavy_either(tmp_path):
    """With the daemon down the model's name still shows, without `json` (it imports `re`)."""
    cmd = fast_command(["--state-dir", str(tmp_path / "none")])
    body = b'{"session_id": "s", "model": {"id": "m", "display_name" : "Opus \\"4.6\\""}}'
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], input=body, capture_output=True,
                          timeout=30)  # fmt: skip
    assert proc.stdout == b'Opus "4.6" | ccotel: daemon not running (ccotel service install)\n'
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()}
    assert not {"json", "re", "site", "socket"} & imported
