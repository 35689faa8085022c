"""A year of heavy use, day by day: how the state file and the daemon's memory grow.

Drives the daemon's pipeline in this process (scan, read, commit, prune, as the live loop
does) with a clock moved a day at a time. Each simulated day writes that day's sessions
(a prompt, then assistant responses, half of them calling a tool, and the tool results),
and transcripts older than 30 days are deleted, as Claude Code does by default.

Prints, every `--every` days: responses held, the state's bytes (after a checkpoint) and
bytes per 100,000 responses, rows of the per-minute spend table, and the process's RSS.
What serves a time window must stay flat; what grows with history must grow slowly.

    python bench/growth.py                       # 365 days, 12 sessions x 80 responses a day
    python bench/growth.py --days 60 --every 10  # quick
    PYTHONPATH=/path/to/other/checkout python bench/growth.py   # the same on another version
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ccotel.config import Config
from ccotel.pipeline import Ingest
from ccotel.state.store import Store

START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-6", "claude-haiku-4-5-20251001")
PROJECTS = [f"/home/dev/work/project-{i:02d}" for i in range(25)]


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def session_lines(rng: random.Random, t: float, responses: int) -> tuple[str, list[str]]:
    sid = str(uuid.UUID(int=rng.getrandbits(128)))
    cwd = rng.choice(PROJECTS)
    base = {"sessionId": sid, "cwd": cwd, "version": "2.1.197", "gitBranch": "main"}
    out = [dumps({**base, "type": "user", "timestamp": iso(t), "uuid": str(uuid.uuid4()),
                  "message": {"role": "user", "content": "work on it"}})]  # fmt: skip
    model = rng.choice(MODELS)
    for _ in range(responses):
        t += rng.uniform(5, 60)
        if rng.random() < 0.02:  # now and then the session moves to another project
            base["cwd"] = cwd = rng.choice(PROJECTS)
        tool = rng.random() < 0.5
        tid = f"toolu_{rng.getrandbits(96):024x}"
        content = [{"type": "tool_use", "id": tid, "name": rng.choice(["Bash", "Read", "Edit"]),
                    "input": {"x": 1}}] if tool else [{"type": "text", "text": "ok"}]  # fmt: skip
        usage = {"input_tokens": rng.randint(1, 50), "output_tokens": rng.randint(10, 900),
                 "cache_read_input_tokens": rng.randint(0, 90000),
                 "cache_creation_input_tokens": rng.randint(0, 3000),
                 "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}  # fmt: skip
        usage["cache_creation"]["ephemeral_5m_input_tokens"] = usage["cache_creation_input_tokens"]
        out.append(dumps({**base, "type": "assistant", "timestamp": iso(t), "uuid": str(uuid.uuid4()),
                          "requestId": f"req_{rng.getrandbits(96):024x}",
                          "message": {"id": f"msg_{rng.getrandbits(96):024x}", "model": model,
                                      "role": "assistant", "content": content, "usage": usage}}))  # fmt: skip
        if tool:
            t += rng.uniform(0.1, 20)
            out.append(dumps({**base, "type": "user", "timestamp": iso(t), "uuid": str(uuid.uuid4()),
                              "message": {"role": "user", "content": [
                                  {"type": "tool_result", "tool_use_id": tid, "content": "out"}]}}))  # fmt: skip
    return sid, out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def state_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.iterdir() if p.name.startswith("state.db"))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--sessions", type=int, default=12, help="sessions a day")
    ap.add_argument("--responses", type=int, default=80, help="responses a session")
    ap.add_argument("--every", type=int, default=30, help="print every N days")
    ap.add_argument("--keep-days", type=int, default=30, help="transcripts deleted after")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", help="work dir (default: a temporary one, removed)")
    a = ap.parse_args()

    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="ccotel-growth-"))
    root, state = work / "claude", work / "state"
    proj = root / "projects"
    proj.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    now = [START]
    store = Store(state)
    ing = Ingest(Config(), store, [root], lambda: now[0])
    prune = getattr(ing, "prune", None) or (lambda: ing.totals.prune(now[0]))
    written: list[tuple[float, Path]] = []
    print(f"{'day':>4} {'responses':>10} {'state MB':>9} {'B/100k resp':>12} {'spend rows':>10} "
          f"{'RSS MB':>7} {'s':>6}")  # fmt: skip
    t0 = time.perf_counter()
    rows = []
    for day in range(a.days):
        day_start = START + day * 86400
        for _ in range(a.sessions):
            t = day_start + rng.uniform(8 * 3600, 20 * 3600)
            sid, lines = session_lines(rng, t, a.responses)
            d = proj / rng.choice(PROJECTS).replace("/", "-")
            d.mkdir(exist_ok=True)
            p = d / f"{sid}.jsonl"
            p.write_text("\n".join(lines) + "\n")
            written.append((day_start, p))
        now[0] = day_start + 86400 - 60
        while written and written[0][0] < now[0] - a.keep_days * 86400:
            written.pop(0)[1].unlink()
        for p in ing.scan():
            ing.ingest(p)
        ing.flush()
        prune()
        if (day + 1) % a.every == 0 or day + 1 == a.days:
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (n,) = store.db.execute("SELECT COUNT(*) FROM responses").fetchone()
            (spend,) = store.db.execute("SELECT COUNT(*) FROM spend_minutes").fetchone()
            size = state_bytes(state)
            row = {"day": day + 1, "responses": n, "state_bytes": size,
                   "bytes_per_100k": round(size / max(n, 1) * 100_000), "spend_rows": spend,
                   "rss_mb": round(rss_mb(), 1), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            rows.append(row)
            print(f"{row['day']:>4} {n:>10,} {size / 1e6:>9.1f} {row['bytes_per_100k']:>12,} "
                  f"{spend:>10,} {row['rss_mb']:>7.1f} {row['seconds']:>6}", flush=True)  # fmt: skip
    store.close()
    print(json.dumps({"params": vars(a), "rows": rows, "python": sys.version.split()[0],
                      "ccotel": os.path.dirname(sys.modules["ccotel"].__file__)}))  # fmt: skip
    if not a.dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
