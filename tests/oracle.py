"""ccusage 20.0.24 (tests/node) as the oracle for token and cost totals.

ccusage reads every supported agent's data it can find under HOME, so it runs
with HOME set to an empty temporary folder, a minimal environment, and
CLAUDE_CONFIG_DIR pointing at the config dir(s) under test: nothing else on the
machine is read. ``--offline`` uses the pricing table bundled in the binary.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = REPO_ROOT / "tests" / "node" / "node_modules" / ".bin"
INSTALL_HINT = "run `bash scripts/install-test-deps` (it installs tests/node with npm ci)"

TOTAL_KEYS = ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalCost")


class OracleError(RuntimeError):
    pass


def ccusage_bin() -> Path:
    """Path of the pinned ccusage CLI; raises OracleError naming the install script."""
    path = NODE_BIN / "ccusage"
    if not path.exists():
        raise OracleError(f"ccusage is not installed at {path}: {INSTALL_HINT}")
    return path


def _config_arg(config_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> str:
    dirs = [config_dir] if isinstance(config_dir, (str, os.PathLike)) else list(config_dir)
    for d in dirs:
        if not Path(d).is_dir():
            raise OracleError(f"config dir {d} does not exist")
    return ",".join(str(Path(d).resolve()) for d in dirs)


def ccusage_json(
    config_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    report: str = "session",
    *extra_args: str,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Run ``ccusage REPORT --json --offline`` on config_dir (one dir or several) and parse it."""
    cmd = [str(ccusage_bin()), report, "--json", "--offline", *extra_args]
    with tempfile.TemporaryDirectory(prefix="ccusage-home-") as empty_home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": empty_home,
            "CLAUDE_CONFIG_DIR": _config_arg(config_dir),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
        }
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=empty_home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise OracleError(
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
        )
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise OracleError(
            f"ccusage printed no JSON: {proc.stdout[:500]!r} {proc.stderr[-500:]!r}"
        ) from e


def ccusage_report(
    config_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> dict[str, Any]:
    """The whole ``ccusage session --json --offline`` report: ``{"session": [...], "totals": {...}}``.

    With no transcripts at all ccusage prints an empty list and no totals; this
    then returns zero totals so callers can compare uniformly.
    """
    data = ccusage_json(config_dir, "session")
    sessions = data.get("session") or []
    totals = data.get("totals") or dict.fromkeys(TOTAL_KEYS, 0)
    return {"session": sessions, "totals": totals}


def ccusage_totals(
    config_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> dict[str, Any]:
    """ccusage's ``totals``: inputTokens, outputTokens, cacheCreationTokens,
    cacheReadTokens, totalCost (USD) and totalTokens."""
    return ccusage_report(config_dir)["totals"]


def ccusage_sessions(
    config_dir: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> dict[str, dict[str, Any]]:
    """ccusage's per-session rows keyed by session id (its ``period`` field).

    Each row has inputTokens, outputTokens, cacheCreationTokens, cacheReadTokens,
    totalCost, totalTokens, modelsUsed, modelBreakdowns and metadata.lastActivity.
    Subagent transcripts count toward their parent session (same sessionId).
    """
    return {row["period"]: row for row in ccusage_report(config_dir)["session"]}
