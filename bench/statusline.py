#!/usr/bin/env python3
"""`ccotel statusline` against `ccusage statusline`, on the same input, in one run.

    python bench/statusline.py                         # the ~450 MB benchmark corpus
    python bench/statusline.py --corpus DIR            # an existing corpus (a CLAUDE_CONFIG_DIR)
    python bench/statusline.py --files 300 --bytes 40000000 --renders 50   # quick

What runs, one render at a time, paced like Claude Code (``--pace``, 0.3 s):

- ``ccotel statusline`` with the daemon running on the backfilled corpus, four ways:
  the console script of this checkout's venv (an editable install: its import hook costs
  ~10 ms at start-up), the same script over a plain install (a venv whose site-packages
  points at the package, as pipx or ``uv tool`` lay it out; pip's script imports ``re``),
  the command ``ccotel statusline install`` writes (that venv's ``python -I -S`` running the
  client), and the documented ``curl --unix-socket`` line;
- ``ccusage statusline`` (20.0.24) with ``CLAUDE_CONFIG_DIR`` = the corpus, empty ``HOME``:
  as users run it (its 1-second output cache on) and with ``--no-cache`` (every render
  computes);
- ``ccotel statusline`` with the daemon stopped (the short line).

Wall time from spawn to exit, p50/p95/p99/max in ms; the daemon's CPU over the ccotel
renders. Targets: p99 < 50 ms with the daemon running (aim < 10 ms), < 300 ms with it down.
Writes bench/out/statusline.json; always exits 0 (a report, not a gate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import OUT, ccotel_env, cpu_ticks, free_port, log, pct, proc_tree  # noqa: E402
from ccotel.statusline.cli import fast_command  # noqa: E402
from tests.corpus import (  # noqa: E402
    SONNET46,
    Usage,
    append_lines,
    assistant_record,
    ccusage_env,
    find_ccusage,
    generate_cached,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], stdin: bytes, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=60)
    return (time.perf_counter() - t0) * 1000, p.stdout.decode(errors="replace").strip()


def series(name: str, cmd: list[str], stdin: bytes, env: dict, n: int, pace: float) -> dict:
    xs, line = [], ""
    for _ in range(3):  # warm the page cache and ccusage's own cache
        timed(cmd, stdin, env)
    for _ in range(n):
        t0 = time.monotonic()
        ms, line = timed(cmd, stdin, env)
        xs.append(ms)
        time.sleep(max(0.0, pace - (time.monotonic() - t0)))
    out = {"renders": n, "p50_ms": pct(xs, 0.5), "p95_ms": pct(xs, 0.95),
           "p99_ms": pct(xs, 0.99), "max_ms": max(xs), "line": line[:200]}  # fmt: skip
    log(
        f"{name:<38} p50 {out['p50_ms']:7.1f}  p99 {out['p99_ms']:7.1f}  max {out['max_ms']:7.1f} ms"
    )
    return out


def plain_install(where: Path) -> Path:
    """A venv holding ccotel as a plain package path (no editable hook) and pip's script."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next(where.glob("lib/python*/site-packages"))
    (site / "ccotel.pth").write_text(str(REPO) + "\n")
    script = where / "bin" / "ccotel"
    script.write_text(
        f"#!{where / 'bin' / 'python'}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
        "from ccotel.entry import main\nif __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return script


def pick_session(root: Path) -> dict:
    """The newest main-thread transcript of the corpus: its id, path and cwd."""
    files = sorted((p for p in root.glob("projects/*/*.jsonl")), key=lambda p: p.stat().st_mtime)
    path = files[-1]
    cwd = "/"
    with path.open("rb") as f:
        for raw in f:
            d = json.loads(raw)
            if d.get("cwd"):
                cwd = d["cwd"]
                break
    now = int(time.time())
    return {
        "session_id": path.stem, "transcript_path": str(path), "cwd": cwd,
        "model": {"id": "claude-sonnet-4-5-20250929", "display_name": "Sonnet 4.5"},
        "workspace": {"current_dir": cwd, "project_dir": cwd, "added_dirs": []},
        "version": "2.1.197", "output_style": {"name": "default"},
        "cost": {"total_cost_usd": 1.23, "total_duration_ms": 60000, "total_api_duration_ms": 20000,
                 "total_lines_added": 10, "total_lines_removed": 2},
        "context_window": {"total_input_tokens": 76000, "total_output_tokens": 500,
                           "context_window_size": 200000, "used_percentage": 38,
                           "remaining_percentage": 62, "current_usage": {
                               "input_tokens": 1000, "output_tokens": 500,
                               "cache_creation_input_tokens": 1200, "cache_read_input_tokens": 73000}},
        "rate_limits": {"five_hour": {"used_percentage": 42.5, "resets_at": now + 3 * 3600},
                        "seven_day": {"used_percentage": 17, "resets_at": now + 4 * 86400}},
    }  # fmt: skip


def add_recent(session: dict, n: int = 60) -> int:
    """Give the session an active block: n responses over the last two hours (the corpus
    ends at midnight). Returns the file's old size, to truncate it back afterwards."""
    import random

    path = Path(session["transcript_path"])
    size = path.stat().st_size
    now, rng = time.time(), random.Random(7)
    recs = []
    for i in range(n):
        ts = now - 7200 + i * 7200 / n
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"
        recs.append(assistant_record(session_id=session["session_id"], cwd=session["cwd"],
                                     usage=Usage(10, 300, 2000, 0, 40000), model=SONNET46,
                                     timestamp=stamp, rng=rng))  # fmt: skip
    append_lines(path, recs)
    return size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, help="an existing corpus (a CLAUDE_CONFIG_DIR)")
    ap.add_argument("--files", type=int, default=3500)
    ap.add_argument("--bytes", type=int, default=450_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--renders", type=int, default=200, help="per ccotel series")
    ap.add_argument("--ccusage-renders", type=int, default=60)
    ap.add_argument("--pace", type=float, default=0.3, help="seconds between renders")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    import fcntl

    lock = open(OUT / ".lock", "w")  # noqa: SIM115 - as bench/run.py: one run at a time
    fcntl.flock(lock, fcntl.LOCK_EX)
    if args.corpus:
        root = args.corpus.resolve()
    else:
        info, _ = generate_cached(
            OUT, files=args.files, target_bytes=args.bytes, seed=args.seed, log=log
        )
        root = Path(info.root)
    size = sum(p.stat().st_size for p in root.rglob("*.jsonl"))
    log(f"corpus {root}: {size / 1e6:.0f} MB")
    res: dict = {"corpus": str(root), "corpus_bytes": size, "pace_s": args.pace}
    work = Path(tempfile.mkdtemp(prefix="ccotel-bench-sl-"))
    home = work / "home"
    home.mkdir()
    env = ccotel_env(str(home))
    env.pop("PYTHONPATH", None)
    venv_ccotel = Path(sys.executable).parent / "ccotel"
    state = work / "state"
    daemon = None
    session = pick_session(root)
    old_size = add_recent(session)
    try:
        t0 = time.perf_counter()
        subprocess.run([str(venv_ccotel), "backfill", "--claude-dir", str(root), "--state-dir", str(state)],
                       env=env, check=True, capture_output=True)  # fmt: skip
        log(f"backfill {time.perf_counter() - t0:.1f} s")
        port = free_port()
        daemon = subprocess.Popen(
            [str(venv_ccotel), "run", "--claude-dir", str(root), "--state-dir", str(state),
             "--metrics-addr", f"127.0.0.1:{port}"],
            env={**env, "CCOTEL_TRACES": "false"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sock = state / "statusline.sock"
        import urllib.request

        for _ in range(600):
            try:
                h = json.loads(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                )
                if h.get("ok") and sock.exists():
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(2)  # the blocks' first computation
        stdin = json.dumps(session).encode()
        plain = plain_install(work / "venv")
        fast = fast_command(["--state-dir", str(state)])
        fast[0] = str(plain.parent / "python")
        ticks0 = cpu_ticks(proc_tree(daemon.pid))
        ccotel_args = ["statusline", "--state-dir", str(state)]
        runs = {
            "ccotel (this venv, editable)": [str(venv_ccotel), *ccotel_args],
            "ccotel (plain install)": [str(plain), *ccotel_args],
            "ccotel (as installed: python -I -S)": fast,
            # the floor under any Python client on this machine, now
            "python -I -S -c pass (floor)": [
                str(plain.parent / "python"),
                "-I",
                "-S",
                "-c",
                "pass",
            ],
        }
        curl = shutil.which("curl")
        if curl:
            runs["curl --unix-socket"] = [curl, "-s", "--max-time", "1", "--unix-socket", str(sock),
                                          "--data-binary", "@-", "http://ccotel/statusline"]  # fmt: skip
        res["ccotel"] = {}
        for name, cmd in runs.items():
            res["ccotel"][name] = series(name, cmd, stdin, env, args.renders, args.pace)
        ticks = cpu_ticks(proc_tree(daemon.pid)) - ticks0
        total = sum(r["renders"] + 3 for k, r in res["ccotel"].items() if "floor" not in k)
        res["daemon_cpu_ms_per_render"] = ticks / CLK_TCK * 1000 / total
        log(f"daemon CPU per render: {res['daemon_cpu_ms_per_render']:.2f} ms")
        exe = find_ccusage()
        if exe is None:
            log("ccusage not found (scripts/install-test-deps): its series is skipped")
        else:
            cenv = {**ccusage_env(str(root), str(home)), "TZ": "UTC"}
            res["ccusage"] = {
                "ccusage statusline": series("ccusage statusline", [str(exe), "statusline"], stdin,
                                             cenv, args.ccusage_renders, args.pace),
                "ccusage statusline --no-cache": series(
                    "ccusage statusline --no-cache", [str(exe), "statusline", "--no-cache"], stdin,
                    cenv, max(10, args.ccusage_renders // 3), args.pace),
            }  # fmt: skip
        daemon.terminate()
        daemon.wait(30)
        daemon = None
        time.sleep(3)  # let its exit settle
        res["ccotel_down"] = series("ccotel, daemon down (as installed)", fast,
                                    stdin, env, max(20, args.renders // 5), args.pace)  # fmt: skip
    finally:
        if daemon is not None:
            daemon.kill()
        shutil.rmtree(work, ignore_errors=True)
        os.truncate(session["transcript_path"], old_size)  # the cached corpus as generated
    best = res["ccotel"]["ccotel (as installed: python -I -S)"]
    res["targets"] = {
        "p99_daemon_running_under_50ms": best["p99_ms"] < 50,
        "p99_under_10ms_aim": best["p99_ms"] < 10,
        "p99_daemon_down_under_300ms": res["ccotel_down"]["p99_ms"] < 300,
    }
    (OUT / "statusline.json").write_text(json.dumps(res, indent=2))
    res["load_average"] = os.getloadavg()
    log(f"load average {res['load_average']}; targets: {res['targets']}; "
        f"written to {OUT / 'statusline.json'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
