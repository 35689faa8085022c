"""How fast `ccotel --help`, `report` and `status` start, and what they import.

    .venv/bin/python bench/cli_startup.py [--python OTHER_VENV/bin/python] [--runs N]

Each command runs N times under ``python -X importtime`` with bytecode caches on (in a temporary
PYTHONPYCACHEPREFIX, as an installed package has them); prints the median and the best of the
summed top-level import times, the median wall time, and which heavy packages were imported. ``--src`` measures
another checkout (e.g. ``git worktree add /tmp/base main``) with this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("opentelemetry", "watchdog", "grpc", "google", "prometheus_client", "rich", "structlog")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def corpus_state(python: str, tmp: Path) -> Path:
    """A state to report on: the real fixture transcripts, backfilled once."""
    fixtures = Path(os.environ.get("CCOTEL_FIXTURES", "/work/shared/fixtures/real-transcripts"))
    state = tmp / "state"
    for d in sorted(fixtures.glob("claude-*")):
        subprocess.run([python, "-m", "ccotel", "backfill", "--claude-dir", str(d),
                        "--state-dir", str(state)], env=_env(tmp), check=True, cwd=tmp,
                       capture_output=True)  # fmt: skip
    return state


def _env(tmp: Path) -> dict:
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp / "pyc"), COLUMNS="80")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CCOTEL_CONFIG", None)
    return env


def measure(python: str, args: list[str], runs: int, tmp: Path) -> dict:
    env = _env(tmp)
    imports, walls, heavy = [], [], set()
    for _ in range(runs + 1):  # the first run writes the bytecode caches
        t = time.perf_counter()
        proc = subprocess.run([python, "-X", "importtime", "-m", "ccotel", *args],
                              env=env, capture_output=True, text=True, cwd=tmp)  # fmt: skip
        walls.append(time.perf_counter() - t)
        total = 0
        for line in proc.stderr.splitlines():
            m = _LINE.match(line)
            if m:
                heavy.update(h for h in HEAVY if m.group(4).split(".")[0] == h)
                if m.group(3) == " ":
                    total += int(m.group(2))
        imports.append(total / 1000)
    return {
        "command": " ".join(args[:2]),
        "imports_ms": round(statistics.median(imports[1:]), 1),
        "wall_ms": round(statistics.median(walls[1:]) * 1000, 1),
        "best_imports_ms": round(min(imports[1:]), 1),  # the least disturbed by a busy machine
        "heavy": sorted(heavy),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        state = str(corpus_state(opts.python, tmp))
        commands = [
            ["--help"],
            ["report", "--state-dir", state],
            ["report", "--json", "--state-dir", state],
            ["status", "--http-addr", "127.0.0.1:1"],
            ["status", "--json", "--http-addr", "127.0.0.1:1"],
        ]
        rows = [measure(opts.python, c, opts.runs, tmp) for c in commands]
    if opts.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'command':<18}{'imports ms':>11}{'best':>7}{'wall ms':>9}  heavy packages imported")
    for r in rows:
        print(f"{r['command']:<18}{r['imports_ms']:>11}{r['best_imports_ms']:>7}{r['wall_ms']:>9}"
              f"  {', '.join(r['heavy'])}")  # fmt: skip


if __name__ == "__main__":
    main()
