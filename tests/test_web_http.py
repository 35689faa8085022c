"""The one HTTP server (page, API, /metrics, /healthz) with TLS and basic auth, and the
first log line of `ccotel run` naming the page's address."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ccotel.config import ConfigError, load
from tests.conftest import FIXTURES, free_port
from tests.test_live import start
from tests.test_traces_wire import _self_signed

ROUTES = ("/", "/app.js", "/api/summary", "/api/sessions", "/api/spend", "/metrics", "/healthz")


def fetch(url: str, ctx=None, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOTEL_")}
    env["CCOTEL_TRACES"] = "false"
    return env | extra


@pytest.mark.timeout(120)
def test_tls_and_basic_auth_on_every_route(tmp_path):
    crt, key = _self_signed(tmp_path)
    port = free_port()
    env = clean_env(
        CCOTEL_HTTP_TLS_CERT=crt,
        CCOTEL_HTTP_TLS_KEY=key,
        CCOTEL_HTTP_BASIC_AUTH_USER="me",
        CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH="sha256:" + hashlib.sha256(b"s3cret").hexdigest(),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccotel", "run", "--claude-dir", str(FIXTURES / "claude-2.1.197"), "--state-dir", str(tmp_path / "s"),
         "--metrics-addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=crt)
    base = f"https://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                code, body = fetch(base + "/healthz", ctx, ("me", "s3cret"))
                if code == 200 and json.loads(body)["ok"]:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        else:
            raise AssertionError("daemon did not become ready")
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "ccotel running" and first["page"] == f"{base}/"
        for path in ROUTES:
            assert fetch(base + path, ctx)[0] == 401, path
            assert fetch(base + path, ctx, ("me", "wrong"))[0] == 401, path
            assert fetch(base + path, ctx, ("you", "s3cret"))[0] == 401, path
            code, body = fetch(base + path, ctx, ("me", "s3cret"))
            assert code == 200 and body, path
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        # `ccotel status` speaks TLS and basic auth too (the password from the environment).
        status = [
            sys.executable,
            "-m",
            "ccotel",
            "status",
            "--json",
            "--metrics-addr",
            f"127.0.0.1:{port}",
        ]
        ok = subprocess.run(
            status, env=env | {"CCOTEL_HTTP_PASSWORD": "s3cret"}, capture_output=True, text=True
        )
        assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stderr
        no = subprocess.run(status, env=env, capture_output=True, text=True)
        assert no.returncode == 2 and "CCOTEL_HTTP_PASSWORD" in no.stderr
        bad = subprocess.run(
            status, env=env | {"CCOTEL_HTTP_PASSWORD": "nope"}, capture_output=True, text=True
        )
        assert bad.returncode == 1 and "refused" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.timeout(120)
def test_default_is_loopback_plain_http_and_first_line_names_the_page(tmp_path):
    port = free_port()
    proc = start(FIXTURES / "claude-2.1.197", tmp_path / "s", port, clean_env())
    try:
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "ccotel running"
        assert first["page"] == f"http://127.0.0.1:{port}/"
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # web = false: the page is off, /metrics stays.
    port = free_port()
    proc = start(FIXTURES / "claude-2.1.197", tmp_path / "s", port, clean_env(CCOTEL_WEB="false"))
    try:
        assert json.loads(proc.stdout.readline())["page"] is None
        assert fetch(f"http://127.0.0.1:{port}/api/summary")[0] == 404
        assert fetch(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_config_half_set_is_an_error():
    for env, key in (({"CCOTEL_HTTP_TLS_CERT": "/x.pem"}, "http_tls_cert"),
                     ({"CCOTEL_HTTP_BASIC_AUTH_USER": "me"}, "http_basic_auth_user"),
                     ({"CCOTEL_HTTP_BASIC_AUTH_USER": "me", "CCOTEL_HTTP_BASIC_AUTH_PASSWORD_HASH": "plain"},
                      "http_basic_auth_password_hash")):  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            load(env=env)
