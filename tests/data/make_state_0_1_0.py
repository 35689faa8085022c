"""How tests/data/state-0.1.0.db was made: ccotel 0.1.0 (commit 084e159) backfilled the
real-transcript fixtures, metrics and traces, into a fresh state.

    git worktree add /tmp/v010 084e159
    PYTHONPATH=/tmp/v010 python tests/data/make_state_0_1_0.py /tmp/v010

The transcripts are copied under /tmp/ccotel-0.1.0/ first (the paths the state records);
the test then opens the state with those transcripts gone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.conftest import FIXTURES  # noqa: E402
from tests.test_traces_receiver import Receiver  # noqa: E402

VERSIONS = ["claude-1.0.17", "claude-2.0.74", "claude-2.1.38", "claude-2.1.39", "claude-2.1.197"]
WORK = Path("/tmp/ccotel-0.1.0")


def main(old_checkout: str) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    args = []
    for v in VERSIONS:
        shutil.copytree(FIXTURES / v, WORK / v)
        args += ["--claude-dir", str(WORK / v)]
    state = WORK / "state"
    env = {"PYTHONPATH": old_checkout, "PATH": "/usr/bin:/bin", "HOME": str(WORK)}
    with Receiver() as r:
        subprocess.run(
            [sys.executable, "-m", "ccotel", "backfill", *args, "--state-dir", str(state),
             "--traces", "--since", "3650d", "--otlp-endpoint", r.url],
            env=env, check=True, cwd=WORK,
        )  # fmt: skip
        print(f"{len(r.spans())} spans received")
    out = HERE / "state-0.1.0.db"
    shutil.copyfile(state / "state.db", out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
