"""`ccotel statusline install | uninstall`: the ``statusLine`` of Claude Code's settings.json.

The file is Claude Code's (and the user's): every other key is kept as it was, in its order;
the file is copied aside first (``settings.json.bak-<time>``), and written whole to a
temporary file beside it that then replaces it (a crash leaves the old file or the new, never
half of one). A symlinked settings.json (dotfile managers) is written where it points. A
different ``statusLine`` is replaced only with ``force`` (and shown); a read-only file, or
one that is not a JSON object, is not touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class InstallError(Exception):
    """Nothing was changed; the message says why and what to do."""


@dataclass
class Result:
    path: Path
    changed: bool
    message: str
    backup: Path | None = None
    old: object = None  # the statusLine that was there
    new: object = None  # the statusLine now (or that would be, with dry_run)


def settings_path(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Claude Code's user settings: CLAUDE_CONFIG_DIR's (its first entry), else ~/.claude."""
    env = os.environ if env is None else env
    d = env.get("CLAUDE_CONFIG_DIR", "").split(",")[0].strip()
    base = Path(d).expanduser() if d else (home or Path.home()) / ".claude"
    return base / "settings.json"


def entry(command: str) -> dict[str, Any]:
    return {"type": "command", "command": command, "padding": 0}


def is_ours(value: object) -> bool:
    """A statusLine that runs `ccotel statusline` (any path, flags, or python -m ccotel)."""
    if not isinstance(value, dict) or not isinstance(value.get("command"), str):
        return False
    if "from ccotel.statusline.client import main" in value["command"]:
        return True
    try:
        argv = shlex.split(value["command"])
    except ValueError:
        return False
    if "statusline" not in argv:
        return False
    head = argv[: argv.index("statusline")]
    return any(os.path.basename(a).startswith("ccotel") for a in head) or (
        "-m" in head and "ccotel" in head
    )


def _read(path: Path) -> tuple[dict[str, Any], str | None]:
    """The settings and the file's text (None: no file yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not UTF-8 text; not touched") from None
    except OSError as exc:
        raise InstallError(f"cannot read {path} ({exc.strerror}); not touched") from None
    if not text.strip():
        return {}, text
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InstallError(f"{path} is not valid JSON ({exc}); fix it first, not touched") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object; not touched")
    return data, text


def _writable(real: Path, existed: bool) -> None:
    if existed:
        mode = os.stat(real).st_mode
        if not mode & stat.S_IWUSR or not os.access(real, os.W_OK):
            raise InstallError(f"{real} is read-only; not touched")
    folder = real.parent
    if folder.exists() and not os.access(folder, os.W_OK):
        raise InstallError(f"{folder} is not writable; not touched")


def _write(path: Path, data: dict[str, Any], old_text: str | None) -> Path | None:
    """Back up, then replace atomically; returns the backup (None when there was no file)."""
    real = path.resolve() if path.is_symlink() else path
    _writable(real, old_text is not None)
    real.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    mode = 0o600
    if old_text is not None:
        mode = stat.S_IMODE(os.stat(real).st_mode)
        backup = real.with_name(f"{real.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while backup.exists():
            n += 1
            backup = real.with_name(f"{real.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        _atomic(backup, old_text, mode)
    _atomic(real, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode)
    return backup


def _atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.ccotel-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InstallError(f"cannot write {path} ({exc.strerror}); not touched") from None


def install(path: Path, command: str, *, force: bool = False, dry_run: bool = False) -> Result:
    data, text = _read(path)
    old = data.get("statusLine")
    new = entry(command)
    if old == new:
        return Result(path, False, f"{path}: the status line is already ccotel's", old=old, new=new)
    if old is not None and not is_ours(old) and not force:
        raise InstallError(
            f"{path} already has a different statusLine: {json.dumps(old, ensure_ascii=False)}; "
            "add --force to replace it (the file is backed up first)"
        )
    data["statusLine"] = new
    if dry_run:
        return Result(path, False, f"would set statusLine in {path}", old=old, new=new)
    backup = _write(path, data, text)
    return Result(path, True, f"{path}: statusLine set", backup=backup, old=old, new=new)


def uninstall(path: Path, *, force: bool = False, dry_run: bool = False) -> Result:
    data, text = _read(path)
    old = data.get("statusLine")
    if old is None:
        return Result(path, False, f"{path} has no statusLine; nothing to do")
    if not is_ours(old) and not force:
        raise InstallError(
            f"the statusLine in {path} is not ccotel's: {json.dumps(old, ensure_ascii=False)}; "
            "left as it is (--force removes it)"
        )
    del data["statusLine"]
    if dry_run:
        return Result(path, False, f"would remove statusLine from {path}", old=old)
    backup = _write(path, data, text)
    return Result(path, True, f"{path}: statusLine removed", backup=backup, old=old)
