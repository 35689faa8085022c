#!/usr/bin/env python3
"""Web page benchmark: time to first render of the sessions page and of a 2,000-span
session, in headless Chromium, against `ccotel run` on the generated corpus.

    python bench/web.py                            # 1,000 files (~130 MB) + one 2,000-span session
    python bench/web.py --files 3500 --bytes 450000000

"First render" is the browser's own clock: from navigation start to the moment the
page has drawn its data (``performance.now()`` when the first API answers are on
screen). Also the server time of each API call (median of 5, warm) and the first,
cold call of the big session (the span tree built from its transcript).
Writes bench/out/web/results.json. Always exits 0 (a report).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.corpus import Usage, append_lines, assistant_record, encode_cwd, generate_cached  # noqa: E402

OUT = REPO / "bench" / "out" / "web"
BIG = "b16b16b1-0000-4000-8000-000000002000"


def big_session(root: Path, calls: int) -> None:
    """One session of ``calls`` model calls each with a tool call: 2*calls + 2 spans."""
    cwd = "/home/user/bigproject"
    d = root / "projects" / encode_cwd(cwd)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{BIG}.jsonl"
    path.unlink(missing_ok=True)
    rng = random.Random(7)
    t = datetime.now(UTC) - timedelta(hours=3)
    base = {
        "sessionId": BIG,
        "cwd": cwd,
        "version": "2.1.197",
        "gitBranch": "main",
        "userType": "external",
        "isSidechain": False,
    }
    prev = "u0"
    recs = [
        base
        | {
            "type": "user",
            "uuid": prev,
            "parentUuid": None,
            "timestamp": t.isoformat().replace("+00:00", "Z"),
            "message": {"role": "user", "content": "refactor everything"},
        }
    ]
    for i in range(calls):
        t += timedelta(milliseconds=900)
        a = assistant_record(session_id=BIG, cwd=cwd, usage=Usage(input=10, output=200, cache_read=20000, cache_5m=300),
                             timestamp=t, parent_uuid=prev, rng=rng)  # fmt: skip
        tid = f"toolu_{i:020d}"
        a["message"]["content"] = [
            {
                "type": "tool_use",
                "id": tid,
                "name": "Bash" if i % 3 else "Read",
                "input": {"command": "true"},
            }
        ]
        a["message"]["stop_reason"] = "tool_use"
        recs.append(a)
        t += timedelta(milliseconds=400)
        prev = f"r{i}"
        recs.append(base | {"type": "user", "uuid": prev, "parentUuid": a["uuid"], "timestamp": t.isoformat().replace("+00:00", "Z"),
                            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tid, "content": "ok",
                                                                     "is_error": i % 50 == 0}]}})  # fmt: skip
    append_lines(path, recs)


def get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    body = urllib.request.urlopen(url, timeout=120).read()
    return (time.perf_counter() - t0) * 1000, body


def browser_ttfr(url: str, profile: Path) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_web_browser import chromium

    d = chromium(profile)
    try:
        out = []
        for _ in range(3):
            d.get("about:blank")
            d.get(url)
            WebDriverWait(d, 120).until(
                lambda d: d.execute_script("return document.body.dataset.ready === '1'")
            )
            out.append(float(d.execute_script("return document.body.dataset.readyAt")))
        return statistics.median(out)
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--bytes", type=int, default=130_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--calls",
        type=int,
        default=999,
        help="model calls of the big session (spans = 2*calls + 2)",
    )
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    info, _ = generate_cached(OUT, files=a.files, target_bytes=a.bytes, seed=a.seed)
    corpus = Path(info.root)
    res: dict = {"files": a.files, "bytes": info.bytes}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big"
        big_session(big, a.calls)
        state = Path(tmp) / "state"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")} | {
            "CCOTEL_TRACES": "false",
            "CCOTEL_CLAUDE_DIRS": f"{corpus},{big}",
        }
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ccotel", "backfill", "--state-dir", str(state)],
            env=env,
            check=True,
            capture_output=True,
        )
        res["backfill_s"] = round(time.perf_counter() - t0, 2)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        p = subprocess.Popen([sys.executable, "-m", "ccotel", "run", "--state-dir", str(state),
                              "--http-addr", f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if json.loads(get(base + "/healthz")[1])["ok"]:
                        break
                except OSError:
                    time.sleep(0.1)
            ms, body = get(f"{base}/api/sessions/{BIG}")
            res["big_session_spans"] = len(json.loads(body)["spans"])
            res["api_big_session_cold_ms"] = round(ms, 1)
            for name, path in (
                ("summary", "/api/summary"),
                ("spend_hour", "/api/spend?by=model&bucket=hour"),
                ("spend_day_project", "/api/spend?by=project&bucket=day"),
                ("sessions", "/api/sessions?limit=100"),
                ("sessions_by_cost", "/api/sessions?sort=cost&limit=100"),
                ("sessions_by_active", "/api/sessions?sort=active&limit=100"),
                ("sessions_by_project", "/api/sessions?project=web&limit=100"),
                ("big_session_warm", f"/api/sessions/{BIG}"),
            ):
                res[f"api_{name}_ms"] = round(
                    statistics.median(get(base + path)[0] for _ in range(5)), 1
                )
            res["sessions"] = json.loads(get(base + "/api/sessions?limit=1")[1])["total"]
            res["ttfr_sessions_page_ms"] = round(browser_ttfr(base + "/", Path(tmp) / "p1"), 1)
            res["ttfr_big_session_ms"] = round(
                browser_ttfr(f"{base}/#/session/{BIG}", Path(tmp) / "p2"), 1
            )
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    w = max(map(len, res))
    for k, v in res.items():
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
