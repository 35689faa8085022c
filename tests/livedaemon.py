"""The real daemon (`ccotel run`) for the live board's tests: start it over a Claude config
folder, read /api/live, /metrics and the event stream, wait for a session's row."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.interactive import wait_for

Row = dict[str, Any]


def ts(value: str) -> float:
    """A transcript timestamp as epoch seconds, as the API rounds it (ms)."""
    return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), 3)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCOTEL_", "OTEL_"))}
    return env | {"CCOTEL_TRACES": "false"} | extra


class LiveDaemon:
    def __init__(self, claude_dir: Path | list[Path], state: Path,
                 env: dict[str, str] | None = None, *args: str, port: int | None = None,
                 tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None):  # fmt: skip
        """``tls``: the daemon speaks HTTPS (this context trusts it); ``headers`` go with
        every request (basic auth)."""
        dirs = claude_dir if isinstance(claude_dir, list) else [claude_dir]
        self.claude_dir, self.state = claude_dir, state
        self.tls, self.headers = tls, headers or {}
        self.port = port or free_port()
        self.log = state.parent / f"daemon-{self.port}-{time.monotonic_ns()}.log"
        state.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ccotel", "run", *(f"--claude-dir={p}" for p in dirs),
                 "--state-dir", str(state), "--metrics-addr", f"127.0.0.1:{self.port}", *args],
                stdout=out, stderr=subprocess.STDOUT, env=env or clean_env(),
            )  # fmt: skip
        try:
            wait_for(self._ready, "the daemon to be ready", 60, self.log_text)
        except BaseException:
            self.stop()
            raise

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log_text()
        try:
            return bool(json.loads(self.get("/healthz")[1])["ok"])
        except (OSError, ValueError, KeyError):
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.tls) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def live(self) -> dict:
        status, body = self.get("/api/live")
        assert status == 200, body
        return json.loads(body)

    def row(self, sid: str) -> Row | None:
        return next((r for r in self.live()["sessions"] if r["id"] == sid), None)

    def wait_row(self, sid: str, pred: Callable[[Row], Any], what: str, timeout: float = 60) -> Row:
        """The session's row, once ``pred`` holds for it."""
        last: list[Row | None] = [None]

        def probe() -> Row | None:
            last[0] = r = self.row(sid)
            return r if r is not None and pred(r) else None

        return wait_for(probe, f"{sid[:8]} to be {what}", timeout, lambda: f"row: {last[0]}")

    def metrics(self) -> dict[str, dict[tuple, float]]:
        """name -> {sorted label items: value} of every ccotel_ sample."""
        status, body = self.get("/metrics")
        assert status == 200
        out: dict[str, dict[tuple, float]] = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def states(self) -> dict[str, float]:
        return {dict(k)["state"]: v for k, v in self.metrics()["ccotel_sessions_by_state"].items()}

    def waits(self) -> tuple[float, float]:
        """(count, sum) of ccotel_waiting_sessions_seconds."""
        m = self.metrics()
        return (m["ccotel_waiting_sessions_seconds_count"][()],
                m["ccotel_waiting_sessions_seconds_sum"][()])  # fmt: skip

    @contextlib.contextmanager
    def events(self, timeout: float = 30) -> Iterator[Callable[[], dict]]:
        """The event stream: ``next_board()`` returns the next board it sends."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", "/api/live/events")
        r = c.getresponse()
        assert r.status == 200, r.read()
        assert r.getheader("Content-Type") == "text/event-stream"

        def next_board() -> dict:
            while True:
                line = r.fp.readline()
                assert line, "the stream ended"
                if line.startswith(b"data: "):
                    return json.loads(line[6:])

        try:
            yield next_board
        finally:
            c.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        assert "Traceback" not in self.log.read_text(errors="replace"), self.log_text()

    def __enter__(self) -> LiveDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def lines_of(path: Path) -> list[dict]:
    raw = path.read_bytes()
    return [json.loads(x) for x in raw[: raw.rfind(b"\n") + 1].splitlines() if x.strip()]


def first(lines: list[dict], pred: Callable[[dict], Any]) -> dict:
    return next(x for x in lines if pred(x))


def last(lines: list[dict], pred: Callable[[dict], Any]) -> dict:
    return next(x for x in reversed(lines) if pred(x))


def stop_of(x: dict) -> str | None:
    return (x.get("message") or {}).get("stop_reason") if x.get("type") == "assistant" else None


def has_tool_use(x: dict, name: str | None = None) -> bool:
    c = (x.get("message") or {}).get("content")
    return isinstance(c, list) and any(
        b.get("type") == "tool_use" and (name is None or b.get("name") == name) for b in c
    )
