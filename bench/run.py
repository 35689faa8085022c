#!/usr/bin/env python3
"""ccotel benchmark: ccotel against ccusage, side by side, on one synthetic corpus.

    python bench/run.py                       # everything, ~450 MB / 3,500 files
    python bench/run.py --only ccusage        # corpus + ccusage only
    python bench/run.py --files 300 --bytes 40000000 --appends 50 --idle-seconds 10

Phases (``--only`` takes a comma list of them; the corpus is always made):

corpus    generate (or reuse) the corpus under bench/out/ (tests/corpus.py)
ccusage   ``ccusage session --json --offline``, CLAUDE_CONFIG_DIR=corpus, empty HOME:
          best-of-N wall time and peak RSS (wait4 rusage of the process tree);
          its totals are checked against the generator's ground truth
backfill  ``ccotel backfill`` into a fresh state dir, best of N, peak RSS; then
          ``ccotel report --json`` totals against ccusage's
live      ``ccotel run`` on the backfilled state: append one assistant line at a time
          and poll /metrics until ccotel_lines_total moves (latency percentiles); /metrics'
          totals then against ``ccusage session`` on the files as the appends left them;
          then idle CPU and RSS of the daemon over --idle-seconds

Prints a table with the targets and writes bench/out/results.json. Exits 0 whatever
the figures are (it is a report); exits 2 only on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import platform
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.corpus import (  # noqa: E402
    OPUS46,
    SONNET45,
    SONNET46,
    CorpusInfo,
    Usage,
    append_assistant,
    ccusage_env,
    cost_usd,
    find_ccusage,
    generate_cached,
    session_meta,
)

OUT = REPO / "bench" / "out"
PHASES = ("corpus", "ccusage", "backfill", "report", "live")
TARGETS = {  # issue 13
    "backfill_vs_ccusage": 1.0,  # ccotel backfill wall / ccusage session wall
    "report_vs_ccusage": 0.1,  # ccotel report --by day / ccusage daily
    "report_ms": 100.0,  # ccotel report --by day, wall
    "p99_ms": 20.0,  # append -> /metrics, in every round
    "idle_cpu_pct": 0.05,  # of one core, from --idle-after s after start, over --idle-seconds
    "rss_mb": 100.0,  # daemon, idle
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- processes


GNU_TIME = "/usr/bin/time"

# Linux carries the parent's RSS high-water mark into a child's ru_maxrss at exec
# (signal->maxrss takes the old mm's hiwater), so wait4() on a direct child of this
# (large) Python process reports at least our own RSS. Measure through a small
# intermediate process instead: GNU time if present, else a minimal Python helper
# (whose own ~10 MB then is the floor of what can be seen).
_HELPER = (
    "import os,sys\n"
    "pid=os.fork()\n"
    "if pid==0:\n"
    "    os.execvp(sys.argv[2],sys.argv[2:])\n"
    "_,st,ru=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write('%d\\n'%ru.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(st))\n"
)


def measured(cmd: list[str], *, env: dict[str, str], cwd: str, timeout: float) -> dict[str, Any]:
    """Run cmd to completion; wall time and the peak RSS of its process tree."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rssf,
    ):
        if os.access(GNU_TIME, os.X_OK):
            wrapped = [GNU_TIME, "-f", "%M", "-o", rssf.name, *cmd]
        else:
            wrapped = [sys.executable, "-S", "-c", _HELPER, rssf.name, *cmd]
        t0 = time.perf_counter()
        p = subprocess.Popen(
            wrapped,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, lambda: _killpg(p.pid))
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        rss_kb = None
        lines = [ln for ln in rssf.read().split("\n") if ln.strip()]
        if (
            lines and lines[-1].strip().isdigit()
        ):  # GNU time may first say "Command exited with ..."
            rss_kb = int(lines[-1])
        return {
            "wall_s": wall,
            "rss_mb": rss_kb / 1024 if rss_kb is not None else None,
            "rc": p.returncode,
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, 9)


def best_of(n: int, label: str, make_cmd, *, env, cwd, timeout, before=None) -> dict[str, Any]:
    runs = []
    for i in range(n):
        if before:
            before(i)
        r = measured(make_cmd(i), env=env, cwd=cwd, timeout=timeout)
        log(
            f"{label} run {i + 1}/{n}: {r['wall_s']:.2f} s, peak RSS {r['rss_mb']:.0f} MB, rc={r['rc']}"
        )
        if r["rc"] != 0:
            log(f"{label} failed:\n{r['stderr'][-3000:]}")
            return {"error": f"exit {r['rc']}", "stderr": r["stderr"][-3000:], "runs": runs}
        runs.append(r)
    best = min(runs, key=lambda r: r["wall_s"])
    return {
        "wall_s": best["wall_s"],
        "walls_s": [round(r["wall_s"], 3) for r in runs],
        "rss_mb": max((r["rss_mb"] for r in runs if r["rss_mb"] is not None), default=None),
        "cpu_s": best["cpu_s"],
        "stdout": best["stdout"],
    }


def ccotel_cmd(args) -> list[str]:
    if args.ccotel:
        return shlex.split(args.ccotel)
    return [sys.executable, "-m", "ccotel"]


def ccotel_env(home: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "NO_COLOR": "1",
    }
    for k, v in os.environ.items():  # let the caller tune ccotel / OTel through the environment
        if k.startswith(("CCOTEL_", "OTEL_")) and k != "CCOTEL_CCUSAGE":
            env[k] = v
    return env


# ---------------------------------------------------------------------------- phases


def phase_corpus(args, res) -> CorpusInfo:
    OUT.mkdir(parents=True, exist_ok=True)
    if args.fresh_corpus:
        for d in OUT.glob("corpus-*"):
            shutil.rmtree(d)
    t0 = time.perf_counter()
    info, reused = generate_cached(
        OUT, files=args.files, target_bytes=args.bytes, seed=args.seed, log=log
    )
    secs = time.perf_counter() - t0
    log(f"corpus {'reused' if reused else 'generated'} in {secs:.1f} s: {info.root}")
    res["corpus"] = {
        "root": info.root,
        "reused": reused,
        "generation_s": info.generation_seconds,
        "files": info.files,
        "meta_files": info.meta_files,
        "lines": info.lines,
        "bytes": info.bytes,
        "projects": len(info.projects),
        "sessions": info.sessions,
        "subagent_files": info.subagent_files,
        "legacy_agent_files": info.legacy_agent_files,
        "resumed_copies": len(info.resumed_copies),
        "responses": info.responses,
        "usage_lines": info.usage_lines,
        "tool_calls": info.tool_calls,
        "tool_calls_by_status": info.tool_calls_by_status,
        "expected_totals": info.totals,
        "params": info.params,
    }
    return info


def phase_ccusage(args, res, info: CorpusInfo) -> None:
    exe = find_ccusage()
    if exe is None:
        res["ccusage"] = {
            "error": "ccusage not found: run scripts/install-test-deps or set CCOTEL_CCUSAGE"
        }
        log(res["ccusage"]["error"])
        return
    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    home = tempfile.mkdtemp(prefix="bench-home-")
    try:
        env = ccusage_env(Path(info.root), home)
        r = best_of(
            args.runs,
            "ccusage",
            lambda i: [str(exe), "session", "--json", "--offline"],
            env=env,
            cwd=home,
            timeout=args.timeout,
        )
        native = _native_ccusage(exe)
        rn = None
        if native and "error" not in r:
            rn = best_of(
                args.runs,
                "ccusage (native binary)",
                lambda i: [str(native), "session", "--json", "--offline"],
                env=env,
                cwd=home,
                timeout=args.timeout,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {"version": version, "path": str(exe)}
    if "error" in r:
        out.update(error=r["error"], stderr=r.get("stderr"))
        res["ccusage"] = out
        return
    data = json.loads(r.pop("stdout"))
    t = data.get("totals") or {}
    out.update(
        wall_s=r["wall_s"],
        walls_s=r["walls_s"],
        rss_mb=r["rss_mb"],
        cpu_s=r["cpu_s"],
        sessions=len(data.get("session") or []),
        totals=t,
    )
    if rn and "error" not in rn:
        rn.pop("stdout", None)
        out["native"] = {
            "path": str(native),
            "wall_s": rn["wall_s"],
            "walls_s": rn["walls_s"],
            "rss_mb": rn["rss_mb"],
        }
    e = info.totals
    mism = _compare(
        {
            "input": t.get("inputTokens"),
            "output": t.get("outputTokens"),
            "cache_write": t.get("cacheCreationTokens"),
            "cache_read": t.get("cacheReadTokens"),
            "cost": t.get("totalCost"),
        },
        {
            "input": e["input_tokens"],
            "output": e["output_tokens"],
            "cache_write": e["cache_write_tokens"],
            "cache_read": e["cache_read_tokens"],
            "cost": e["cost_usd"],
        },
    )
    out["vs_ground_truth"] = "OK" if not mism else "MISMATCH"
    out["vs_ground_truth_diff"] = mism
    res["ccusage"] = out


def _native_ccusage(exe: Path) -> Path | None:
    """The platform binary the npm wrapper (node) spawns, to show the wrapper's share."""
    try:
        nm = Path(exe).resolve().parents[2]  # node_modules/ccusage/src/cli.js -> node_modules
    except IndexError:
        return None
    for cand in sorted(nm.glob("@ccusage/ccusage-*/bin/ccusage")):
        if os.access(cand, os.X_OK):
            return cand
    return None


def _compare(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    diff = {}
    for k, w in want.items():
        g = got.get(k)
        if k == "cost":
            ok = isinstance(g, (int, float)) and abs(g - w) <= 1e-6 * max(1.0, abs(w))
        else:
            ok = g == w
        if not ok:
            diff[k] = {"got": g, "want": w}
    return diff


def phase_backfill(args, res, info: CorpusInfo, *, runs: int) -> str | None:
    """Returns the state dir of the last successful backfill."""
    home = tempfile.mkdtemp(prefix="bench-home-")
    states = [tempfile.mkdtemp(prefix=f"state-{i}-", dir=OUT) for i in range(runs)]
    base = ccotel_cmd(args)
    try:
        r = best_of(
            runs,
            "ccotel backfill",
            lambda i: [*base, "backfill", "--claude-dir", info.root, "--state-dir", states[i]],
            env=ccotel_env(home),
            cwd=home,
            timeout=args.timeout,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for s in states[:-1]:
        shutil.rmtree(s, ignore_errors=True)
    out: dict[str, Any] = {}
    if "error" in r:
        res["backfill"] = {"error": r["error"], "stderr": r.get("stderr")}
        shutil.rmtree(states[-1], ignore_errors=True)
        return None
    out.update(wall_s=r["wall_s"], walls_s=r["walls_s"], rss_mb=r["rss_mb"], cpu_s=r["cpu_s"])
    state = states[-1]
    # totals from the state
    home = tempfile.mkdtemp(prefix="bench-home-")
    try:
        rep = subprocess.run(
            [*base, "report", "--json", "--state-dir", state],
            env=ccotel_env(home),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if rep.returncode != 0:
        out["report_error"] = rep.stderr[-2000:]
    else:
        try:
            t = json.loads(rep.stdout)["totals"]
            out["totals"] = t
            cc = (res.get("ccusage") or {}).get("totals")
            ref = (
                {
                    "input": cc["inputTokens"],
                    "output": cc["outputTokens"],
                    "cache_write": cc["cacheCreationTokens"],
                    "cache_read": cc["cacheReadTokens"],
                    "cost": cc["totalCost"],
                }
                if cc
                else {
                    "input": info.totals["input_tokens"],
                    "output": info.totals["output_tokens"],
                    "cache_write": info.totals["cache_write_tokens"],
                    "cache_read": info.totals["cache_read_tokens"],
                    "cost": info.totals["cost_usd"],
                }
            )
            out["compared_with"] = "ccusage" if cc else "ground truth (ccusage not run)"
            mism = _compare(
                {
                    "input": t.get("input_tokens"),
                    "output": t.get("output_tokens"),
                    "cache_write": t.get("cache_write_tokens"),
                    "cache_read": t.get("cache_read_tokens"),
                    "cost": t.get("cost_usd"),
                },
                ref,
            )
            out["totals_check"] = "OK" if not mism else "MISMATCH"
            out["totals_diff"] = mism
        except (ValueError, KeyError, TypeError) as e:
            out["report_error"] = f"unexpected report output ({e}): {rep.stdout[:500]}"
    cc_wall = (res.get("ccusage") or {}).get("wall_s")
    if cc_wall:
        out["vs_ccusage"] = r["wall_s"] / cc_wall
    res["backfill"] = out
    return state


def phase_report(args, res, info: CorpusInfo, state: str) -> None:
    """`ccotel report --by day --json` against `ccusage daily --json --offline`, alternating
    (so both see the same load), best of max(--runs, 5) each; their totals compared."""
    exe = find_ccusage()
    home = tempfile.mkdtemp(prefix="bench-home-")
    n = max(args.runs, 5)
    out: dict[str, Any] = {"runs": n}
    res["report"] = out
    try:
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for i in range(n):
            if exe is not None:
                r = measured([str(exe), "daily", "--json", "--offline"],
                             env=ccusage_env(Path(info.root), home), cwd=home, timeout=args.timeout)  # fmt: skip
                theirs.append(r)
            r = measured([*ccotel_cmd(args), "report", "--by", "day", "--json", "--state-dir", state],
                         env=ccotel_env(home), cwd=home, timeout=args.timeout)  # fmt: skip
            ours.append(r)
            log(f"report run {i + 1}/{n}: ccotel {r['wall_s'] * 1000:.0f} ms"
                + (f", ccusage daily {theirs[-1]['wall_s'] * 1000:.0f} ms" if theirs else ""))  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if any(r["rc"] for r in ours):
        out["error"] = "ccotel report failed: " + next(r for r in ours if r["rc"])["stderr"][-500:]
        return
    best = min(ours, key=lambda r: r["wall_s"])
    out.update(wall_s=best["wall_s"], walls_s=[round(r["wall_s"], 4) for r in ours])
    if theirs and not any(r["rc"] for r in theirs):
        cb = min(theirs, key=lambda r: r["wall_s"])
        out.update(ccusage_wall_s=cb["wall_s"], ccusage_walls_s=[round(r["wall_s"], 3) for r in theirs],
                   vs_ccusage=best["wall_s"] / cb["wall_s"])  # fmt: skip
        t, d = json.loads(best["stdout"])["totals"], json.loads(cb["stdout"])["totals"]
        same = (t["input_tokens"], t["output_tokens"], t["cache_read_tokens"], t["cache_write_tokens"]) == (
            d["inputTokens"], d["outputTokens"], d["cacheReadTokens"], d["cacheCreationTokens"])  # fmt: skip
        out["totals_check"] = (
            "OK"
            if same and abs(t["cost_usd"] - d["totalCost"]) <= 1e-6 * max(1, d["totalCost"])
            else "MISMATCH"
        )


class Scraper:
    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                if r.will_close:
                    self.close()
                return r.status, body
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def metric_sum(body: bytes, name: str) -> float | None:
    """Sum of all samples of a metric in Prometheus text format (None if absent)."""
    nb = name.encode()
    total, found = 0.0, False
    for line in body.split(b"\n"):
        if not line.startswith(nb) or line[len(nb) : len(nb) + 1] not in (b" ", b"{"):
            continue
        line = line.split(b" # ", 1)[0]  # OpenMetrics exemplar
        rest = line[line.rfind(b"}") + 1 :] if b"{" in line else line[len(nb) :]
        parts = rest.split()
        if parts:
            total += float(parts[0])
            found = True
    return total if found else None


def proc_tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    s = f.read()
                ppid = int(s[s.rfind(b")") + 2 :].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    n = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                s = f.read()
            fields = s[s.rfind(b")") + 2 :].split()
            n += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return n


def rss_mb(pids: list[int], key: str = "VmRSS") -> float:
    kb = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        kb += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return kb / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_targets(root: Path, n: int) -> list[Path]:
    """The n most recently written main session files with a conversation in them,
    from different projects if possible."""
    cands = sorted(
        (
            (p.stat().st_mtime, p)
            for p in (root / "projects").glob("*/*.jsonl")
            if not p.name.startswith("agent-")
        ),
        key=lambda x: (-x[0], str(x[1])),
    )
    out: list[Path] = []
    for distinct in (True, False):
        for _, p in cands:
            if len(out) == n:
                return out
            if p in out or (distinct and p.parent in {q.parent for q in out}):
                continue
            if p.stat().st_size > 0 and "sessionId" in session_meta(p):
                out.append(p)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def phase_live(args, res, info: CorpusInfo, state: str) -> None:
    port = free_port()
    home = tempfile.mkdtemp(prefix="bench-home-")
    logf = open(OUT / "daemon.log", "wb")  # noqa: SIM115 - closed in the finally below
    cmd = [
        *ccotel_cmd(args),
        "run",
        "--claude-dir",
        info.root,
        "--state-dir",
        state,
        "--http-addr",
        f"127.0.0.1:{port}",
    ]
    log("starting " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=ccotel_env(home),
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out: dict[str, Any] = {"port": port, "log": str(OUT / "daemon.log")}
    res["live"] = out
    sc = Scraper(port)
    targets = pick_targets(Path(info.root), 4)
    sizes = {p: p.stat().st_size for p in targets}
    mtimes = {p: p.stat().st_mtime_ns for p in targets}
    try:
        # healthy?
        deadline = time.monotonic() + args.timeout
        while True:
            if proc.poll() is not None:
                out["error"] = f"daemon exited {proc.returncode} before /healthz answered"
                return
            try:
                st, body = sc.get("/healthz", timeout=2)
                if st == 200:
                    out["healthz"] = body.decode(errors="replace")[:500]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                out["error"] = "/healthz did not answer in time"
                return
            time.sleep(0.05)
        out["startup_s"] = time.perf_counter() - t0
        log(f"daemon healthy after {out['startup_s']:.2f} s")
        # settled? (ccotel_lines_total stops moving)
        last, stable_since = None, time.monotonic()
        while time.monotonic() < deadline:
            v = metric_sum(sc.get("/metrics")[1], "ccotel_lines_total")
            if v != last:
                last, stable_since = v, time.monotonic()
            elif time.monotonic() - stable_since > 1.0:
                break
            time.sleep(0.1)
        out["settle_s"] = time.perf_counter() - t0
        body0 = sc.get("/metrics")[1]
        lines0 = metric_sum(body0, "ccotel_lines_total")
        if lines0 is None:
            out["error"] = "/metrics has no ccotel_lines_total"
            return
        tokens0 = metric_sum(body0, "ccotel_tokens_total") or 0.0
        cost0 = metric_sum(body0, "ccotel_cost_usd_total") or 0.0
        out["lines_total_at_start"] = lines0
        # what one poll costs (the latency loop below polls back to back)
        st = []
        for _ in range(20):
            t1 = time.perf_counter()
            sc.get("/metrics")
            st.append((time.perf_counter() - t1) * 1000)
        out["scrape"] = {
            "bytes": len(body0),
            "series": body0.count(b"\n") - body0.count(b"\n#"),
            "p50_ms": pct(st, 0.5),
            "max_ms": max(st),
        }
        log(f"/metrics: {len(body0):,} bytes, one scrape {out['scrape']['p50_ms']:.1f} ms (p50)")

        # append -> /metrics latency, in --live-rounds rounds of --appends appends
        # Not Random(seed): the corpus generator's stream, whose message and request ids the
        # appends would repeat (a repeated response counts once, for ccusage as for ccotel).
        rng = random.Random(f"bench appends {args.seed}")
        metas = {p: session_meta(p) for p in targets}
        lat, timeouts, want_tokens, want_cost = [], 0, 0, 0.0
        rounds: list[float] = []
        models = (SONNET46, OPUS46, SONNET45)
        for i in range(args.appends * args.live_rounds):
            p = targets[i % len(targets)]
            model = models[i % len(models)]
            u = Usage(
                rng.randint(1, 20),
                rng.randint(10, 900),
                rng.randint(0, 4000),
                rng.randint(0, 2000),
                rng.randint(1000, 90000),
            )
            before = metric_sum(sc.get("/metrics")[1], "ccotel_lines_total") or 0.0
            t_w = time.perf_counter()
            append_assistant(p, u, model=model, meta=metas[p], rng=rng)
            limit = t_w + args.append_timeout
            while True:
                v = metric_sum(sc.get("/metrics")[1], "ccotel_lines_total") or 0.0
                now = time.perf_counter()
                if v > before:
                    lat.append((now - t_w) * 1000)
                    break
                if now > limit:  # lost (or later than the timeout): count it at the timeout
                    timeouts += 1
                    lat.append(args.append_timeout * 1000)
                    break
                time.sleep(0.001)
            want_tokens += u.total
            want_cost += cost_usd(model, u)
            if (i + 1) % args.appends == 0:
                rounds.append(pct(lat[-args.appends :], 0.99))
                log(f"latency round {len(rounds)}: p99 {rounds[-1]:.1f} ms")
            time.sleep(rng.uniform(0.005, 0.03))
        out.update(
            appends=args.appends * args.live_rounds,
            timeouts=timeouts,
            latency_ms={
                "p50": pct(lat, 0.5),
                "p95": pct(lat, 0.95),
                "p99": pct(lat, 0.99),
                "max": max(lat) if lat else None,
                "mean": sum(lat) / len(lat) if lat else None,
                "p99_rounds": rounds,
            },
        )
        time.sleep(1.0)
        body1 = sc.get("/metrics")[1]
        tokens1 = metric_sum(body1, "ccotel_tokens_total") or 0.0
        cost1 = metric_sum(body1, "ccotel_cost_usd_total") or 0.0
        out["appended"] = {  # what the writer wrote (information: ids may repeat old ones)
            "tokens_written": want_tokens,
            "tokens_got": tokens1 - tokens0,
            "cost_written": want_cost,
            "cost_got": cost1 - cost0,
        }
        # The check: ccotel's live totals against ccusage on the same files, appends included
        out["appended"].update(_live_vs_ccusage(args, info, tokens1, cost1))
        lp = out["latency_ms"]
        log(
            f"latency p50 {lp['p50']:.1f} ms, p99 {lp['p99']:.1f} ms, max {lp['max'] or float('nan'):.1f} ms, "
            f"timeouts {timeouts}"
        )
        sc.close()

        # idle
        log(f"idle for {args.idle_seconds:.0f} s, from {args.idle_after:.0f} s after start")
        time.sleep(max(2.0, args.idle_after - (time.perf_counter() - t0)))
        pids = proc_tree(proc.pid)
        c0, w0 = cpu_ticks(pids), time.monotonic()
        t0_mono = w0 - (time.perf_counter() - t0)
        samples = []
        while time.monotonic() - w0 < args.idle_seconds:
            time.sleep(min(1.0, args.idle_seconds))
            samples.append(rss_mb(proc_tree(proc.pid)))
        pids = proc_tree(proc.pid)
        c1, w1 = cpu_ticks(pids), time.monotonic()
        out["idle"] = {
            "seconds": w1 - w0,
            "after_s": w0 - t0_mono,
            "cpu_pct": (c1 - c0) / CLK_TCK / (w1 - w0) * 100,
            "rss_mb": rss_mb(pids),
            "rss_max_mb": max(samples) if samples else None,
            "hwm_mb": rss_mb(pids, "VmHWM"),
            "processes": len(pids),
            "threads": _threads(proc.pid),
        }
        log(
            f"idle CPU {out['idle']['cpu_pct']:.3f} % of a core, RSS {out['idle']['rss_mb']:.1f} MB"
        )
    finally:
        sc.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid)
                proc.wait()
        out["exit_code"] = proc.returncode
        logf.close()
        shutil.rmtree(home, ignore_errors=True)
        for p, n in sizes.items():  # leave the cached corpus as generated
            os.truncate(p, n)
            os.utime(p, ns=(mtimes[p], mtimes[p]))


def _live_vs_ccusage(args, info: CorpusInfo, tokens: float, cost: float) -> dict[str, Any]:
    """`ccusage session` on the corpus as the appends left it, against /metrics' totals."""
    exe = find_ccusage()
    if exe is None:
        return {"check": "n/a (no ccusage)"}
    home = tempfile.mkdtemp(prefix="bench-home-")
    try:
        r = subprocess.run([str(exe), "session", "--json", "--offline"], capture_output=True,
                           text=True, env=ccusage_env(Path(info.root), home), cwd=home,
                           timeout=args.timeout, check=False)  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if r.returncode != 0:
        return {"check": f"n/a (ccusage exit {r.returncode})"}
    t = json.loads(r.stdout)["totals"]
    cc_tokens = sum(t[k] for k in ("inputTokens", "outputTokens", "cacheCreationTokens",
                                   "cacheReadTokens"))  # fmt: skip
    ok = cc_tokens == tokens and abs(t["totalCost"] - cost) <= 1e-6 * max(1, cost)
    return {"ccusage_tokens": cc_tokens, "ccotel_tokens": tokens, "ccusage_cost": t["totalCost"],
            "ccotel_cost": cost, "check": "OK" if ok else "MISMATCH"}  # fmt: skip


def _threads(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


# ---------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    mem = 0.0
    with contextlib.suppress(ValueError, OSError):
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
    }


def fmt(v: Any, unit: str = "", nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        if v == float("inf"):
            return "inf"
        return f"{v:,.{nd}f}{unit}"
    return f"{v:,}{unit}"


def report(res: dict[str, Any]) -> None:
    c = res.get("corpus", {})
    cc = res.get("ccusage", {})
    bf = res.get("backfill", {})
    lv = res.get("live", {})
    print()
    print(
        f"ccotel benchmark  {res['when']}  ({res['machine']['cpus']} CPUs, {res['machine']['mem_gib']} GiB, "
        f"commit {res['machine']['commit']})"
    )
    if c:
        print(
            f"corpus: {c['files']:,} .jsonl files (+{c['meta_files']:,} meta.json), {c['lines']:,} lines, "
            f"{c['bytes'] / 1e6:,.1f} MB, {c['projects']} projects, {c['sessions']:,} sessions, "
            f"{c['responses']:,} API responses; "
            f"{'reused' if c['reused'] else 'generated'} (generation took {c['generation_s']:.1f} s)"
        )
    print()
    rows = []
    if cc:
        if "error" in cc:
            rows.append(("ccusage session --offline", cc["error"], "", "", ""))
        else:
            rows.append(
                (
                    f"ccusage {cc['version'].split()[-1]} session (npm bin)",
                    fmt(cc["wall_s"], " s"),
                    fmt(cc["rss_mb"], " MB", 0),
                    "",
                    f"totals vs ground truth: {cc['vs_ground_truth']}",
                )
            )
            if cc.get("native"):
                n = cc["native"]
                rows.append(
                    (
                        "  (native binary, no node)",
                        fmt(n["wall_s"], " s"),
                        fmt(n["rss_mb"], " MB", 0),
                        "",
                        "",
                    )
                )
    if bf:
        if "error" in bf:
            rows.append(("ccotel backfill", bf["error"], "", "", ""))
        else:
            ratio = bf.get("vs_ccusage")
            met = None if ratio is None else ratio <= TARGETS["backfill_vs_ccusage"]
            rows.append(
                (
                    "ccotel backfill (cold state)",
                    fmt(bf["wall_s"], " s"),
                    fmt(bf["rss_mb"], " MB", 0),
                    f"{fmt(ratio, 'x')} of ccusage (target <= {TARGETS['backfill_vs_ccusage']}x, aim < 1x)",
                    _met(met),
                )
            )
            rows.append(
                (
                    "ccotel report totals",
                    bf.get("totals_check", bf.get("report_error", "n/a")[:60]),
                    "",
                    "",
                    f"vs {bf.get('compared_with', '')}",
                )
            )
    rp = res.get("report", {})
    if rp:
        if "error" in rp:
            rows.append(("ccotel report --by day", rp["error"][:60], "", "", ""))
        elif "wall_s" in rp:
            ratio = rp.get("vs_ccusage")
            met = (ratio is not None and ratio <= TARGETS["report_vs_ccusage"]
                   and rp["wall_s"] * 1000 < TARGETS["report_ms"])  # fmt: skip
            rows.append(("ccusage daily", fmt(rp.get("ccusage_wall_s"), " s"), "", "", ""))
            rows.append((
                "ccotel report --by day",
                fmt(rp["wall_s"] * 1000, " ms", 1),
                "",
                f"{fmt(ratio, 'x', 3)} of ccusage daily (target <= {TARGETS['report_vs_ccusage']}x, "
                f"< {TARGETS['report_ms']:.0f} ms); totals {rp.get('totals_check', 'n/a')}",
                _met(met),
            ))  # fmt: skip
    if lv:
        if "latency_ms" in lv:
            lp = lv["latency_ms"]
            rows.append(
                (
                    "append -> /metrics p50/p95",
                    f"{fmt(lp['p50'], ' ms', 1)} / {fmt(lp['p95'], ' ms', 1)}",
                    "",
                    "",
                    "",
                )
            )
            rows.append(
                (
                    "append -> /metrics p99 / max",
                    f"{fmt(lp['p99'], ' ms', 1)} / {fmt(lp['max'], ' ms', 1)}",
                    "",
                    f"target <= {TARGETS['p99_ms']:.0f} ms ({lv['appends']} appends, {lv['timeouts']} lost)",
                    "",
                )
            )
            rr = lp.get("p99_rounds") or []
            rows.append(
                (
                    "append -> /metrics p99 per round",
                    " / ".join(fmt(x, "", 1) for x in rr) + " ms",
                    "",
                    f"target <= {TARGETS['p99_ms']:.0f} ms in every round",
                    _met(bool(rr) and max(rr) <= TARGETS["p99_ms"]),
                )
            )
            sc = lv.get("scrape") or {}
            if sc:
                rows.append(
                    (
                        "one /metrics scrape (p50)",
                        fmt(sc["p50_ms"], " ms", 1),
                        "",
                        f"{sc['bytes']:,} bytes, {sc['series']:,} samples",
                        "",
                    )
                )
            ap = lv.get("appended", {})
            rows.append(("/metrics after the appends", ap.get("check", "n/a"), "", "",
                         "totals vs ccusage session on the same files"))  # fmt: skip
        if "idle" in lv:
            idle = lv["idle"]
            rows.append(
                (
                    f"idle CPU ({idle['seconds']:.0f} s from {idle.get('after_s', 0):.0f} s)",
                    fmt(idle["cpu_pct"], " %", 3),
                    "",
                    f"target < {TARGETS['idle_cpu_pct']} % of a core",
                    _met(idle["cpu_pct"] < TARGETS["idle_cpu_pct"]),
                )
            )
            rows.append(
                (
                    "daemon RSS (idle)",
                    fmt(idle["rss_mb"], " MB", 1),
                    "",
                    f"target < {TARGETS['rss_mb']:.0f} MB (peak {fmt(idle['hwm_mb'], ' MB', 0)})",
                    _met(idle["rss_mb"] < TARGETS["rss_mb"]),
                )
            )
        if "error" in lv:
            rows.append(("ccotel run", lv["error"], "", "", ""))
        if "startup_s" in lv:
            rows.append(
                ("daemon start on backfilled state", fmt(lv["startup_s"], " s"), "", "", "")
            )
    w = [max(len(str(r[i])) for r in rows) if rows else 0 for i in range(5)]
    hdr = ("what", "wall / value", "peak RSS", "ratio / target", "")
    w = [max(w[i], len(hdr[i])) for i in range(5)]
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)).rstrip())
    print("  ".join("-" * w[i] for i in range(4)))
    for r in rows:
        print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)).rstrip())
    t = res.get("targets_met", {})
    if t:
        print()
        print(
            "targets: "
            + ", ".join(
                f"{k} {'MET' if v else ('NOT MET' if v is False else 'n/a')}" for k, v in t.items()
            )
        )


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def targets_met(res: dict[str, Any]) -> dict[str, bool | None]:
    bf, lv, rp = res.get("backfill", {}), res.get("live", {}), res.get("report", {})
    idle = lv.get("idle", {})
    rounds = lv.get("latency_ms", {}).get("p99_rounds") or []
    T = TARGETS
    return {
        f"backfill<={T['backfill_vs_ccusage']}x ccusage": None
        if bf.get("vs_ccusage") is None
        else bf["vs_ccusage"] <= T["backfill_vs_ccusage"],
        f"report<={T['report_vs_ccusage']}x daily and <{T['report_ms']:.0f}ms": None
        if rp.get("vs_ccusage") is None
        else rp["vs_ccusage"] <= T["report_vs_ccusage"] and rp["wall_s"] * 1000 < T["report_ms"],
        f"p99<={T['p99_ms']:.0f}ms every round": None if not rounds else max(rounds) <= T["p99_ms"],
        f"idle CPU<{T['idle_cpu_pct']}%": None
        if idle.get("cpu_pct") is None
        else idle["cpu_pct"] < T["idle_cpu_pct"],
        "RSS<100MB": None if idle.get("rss_mb") is None else idle["rss_mb"] < T["rss_mb"],
        "totals equal ccusage": None
        if "totals_check" not in bf
        else bf["totals_check"] == "OK"
        and rp.get("totals_check", "OK") == "OK"
        and lv.get("appended", {}).get("check") != "MISMATCH",
    }


def guarded(res: dict[str, Any], name: str, fn, *a, **kw):
    """Run a phase; a crash is recorded in the results instead of ending the report."""
    try:
        return fn(*a, **kw)
    except Exception as e:  # the bench reports, it does not stop at the first problem
        import traceback

        log(f"{name} crashed: {e!r}")
        res.setdefault(name, {})["error"] = f"crashed: {e!r}"
        res[name]["traceback"] = traceback.format_exc()[-3000:]
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--files", type=int, default=3500, help="transcript files in the corpus (default 3500)"
    )
    ap.add_argument(
        "--bytes", type=int, default=450_000_000, help="corpus size target in bytes (default 450e6)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--only", default=",".join(PHASES), help=f"comma list of phases: {','.join(PHASES)}"
    )
    ap.add_argument(
        "--runs", type=int, default=3, help="repetitions for best-of timing (default 3)"
    )
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument(
        "--append-timeout", type=float, default=5.0, help="seconds before an append counts as lost"
    )
    ap.add_argument(
        "--live-rounds", type=int, default=3, help="rounds of --appends (p99 of each, default 3)"
    )
    ap.add_argument("--idle-seconds", type=float, default=120.0)
    ap.add_argument(
        "--idle-after", type=float, default=30.0, help="idle measured from this long after start"
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="per command")
    ap.add_argument(
        "--ccotel", help="command to run ccotel (default: python -m ccotel from this checkout)"
    )
    ap.add_argument(
        "--fresh-corpus", action="store_true", help="regenerate the corpus even if cached"
    )
    args = ap.parse_args(argv)
    phases = {p.strip() for p in args.only.split(",") if p.strip()}
    if not phases <= set(PHASES) or args.files < 1 or args.runs < 1:
        ap.error(f"--only takes {','.join(PHASES)}; --files and --runs must be >= 1")

    # one run at a time: runs share bench/out (corpus, appends to it, results.json)
    OUT.mkdir(parents=True, exist_ok=True)
    lock = open(OUT / ".lock", "w")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another bench run holds bench/out/.lock; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)

    res: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": vars(args),
        "targets": TARGETS,
    }
    info = phase_corpus(args, res)
    if "ccusage" in phases:
        guarded(res, "ccusage", phase_ccusage, args, res, info)
    state = None
    if phases & {"backfill", "report", "live"}:
        state = guarded(
            res,
            "backfill",
            phase_backfill,
            args,
            res,
            info,
            runs=args.runs if "backfill" in phases else 1,
        )
        if "backfill" not in phases:
            res.pop("backfill", None)
    if "report" in phases and state:
        guarded(res, "report", phase_report, args, res, info, state)
    if "live" in phases:
        if state:
            guarded(res, "live", phase_live, args, res, info, state)
        else:
            res["live"] = {"error": "no backfilled state (backfill failed)"}
    if state:
        shutil.rmtree(state, ignore_errors=True)
    res["targets_met"] = targets_met(res)
    report(res)
    (OUT / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
