"""A new user's mistakes on the command line: each gets one line on stderr that says what to do,
a non-zero exit, and never a traceback (issue 11). Everything runs the real `ccotel`."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ccotel, daemon_port, free_port

FX = FIXTURES / "claude-2.1.197"
NODAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
         "--bounding-set=-dac_override,-dac_read_search"]  # fmt: skip


def clean_env(home: Path, **extra: str) -> dict:
    """No ccotel, OTLP or Claude settings from the developer's shell; an empty home."""
    drop = ("CCOTEL_", "OTEL_", "CLAUDE_CONFIG_DIR", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return env | {"HOME": str(home), "CCOTEL_TRACES": "false"} | extra


def one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ccotel: "), lines[0]
    assert proc.returncode == code, (proc.returncode, lines[0])
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def _files(t: Path) -> None:
    (t / "latin1.toml").write_bytes("# caf\xe9\nweb = true\n".encode("latin-1"))
    (t / "strings.toml").write_text('[budget]\ndaily_usd = "100"\n')
    (t / "empty").mkdir()
    (t / "afile").write_text("")
    (t / "key.pem").write_text("")
    (t / "tls.toml").write_text(f'http_tls_cert = "missing.pem"\nhttp_tls_key = "{t}/key.pem"\n')


MISTAKES = [
    # (args, extra environment, exit code, what the line must say)
    (["run", "--metrics-addr", "256.1.1.1:9485"], {}, 2,
     ["--metrics-addr: '256.1.1.1' is not an IP address"]),
    (["run", "--metrics-addr", "::1:9486"], {}, 2, ["brackets, like [::1]:9486"]),
    (["run", "--metrics-addr", "127.0.0.1:70000"], {}, 2, ["port up to 65535"]),
    (["run", "--metrics-addr", "nosuch.invalid:9470"], {}, 2,
     ["http_addr: cannot listen on 'nosuch.invalid'"]),
    (["run", "--metrics-addr", "192.0.2.1:9470"], {}, 2,
     ["192.0.2.1", "allow_unauthenticated_network_access"]),
    (["run"], {"CCOTEL_METRICS_ADDR": "999.0.0.1:1"}, 2, ["CCOTEL_METRICS_ADDR: "]),
    (["run", "--http-addr", "999.0.0.1:1"], {}, 2, ["--http-addr: "]),
    (["run", "--http-addr", "127.0.0.1:1", "--metrics-addr", "127.0.0.1:2"], {}, 2,
     ["--http-addr and --metrics-addr (its old name) are both set", "keep one"]),
    (["run", "--log-level", "loud"], {}, 2, ["'--log-level'", "ccotel run --help"]),
    (["run"], {"CCOTEL_LOG_LEVEL": "loud"}, 2, ["CCOTEL_LOG_LEVEL: expected one of"]),
    (["run"], {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "CCOTEL_TRACES": "true"}, 2,
     ["OTLP protocol 'http/json'"]),
    (["run"], {"CCOTEL_OTLP_ENDPOINT": "collector:4318"}, 2,
     ["CCOTEL_OTLP_ENDPOINT: expected a URL like http://collector:4318"]),
    # metrics_push_interval unset: the push runs at its default interval, so its endpoint is checked
    (["run"], {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://[::1"}, 2,
     ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]),
    (["--config", "{t}/latin1.toml", "report"], {}, 2, ["is not UTF-8 text", "save it as UTF-8"]),
    (["--config", "{t}/missing.toml", "report"], {}, 2, ["config: no such file"]),
    (["--config", "{t}/empty", "report"], {}, 2, ["'--config'", "is a directory"]),
    (["report"], {"CCOTEL_CONFIG": "{t}/missing.toml"}, 2, ["config: no such file"]),
    (["--config", "{t}/strings.toml", "report"], {}, 2,
     ['budget.daily_usd in {t}/strings.toml: expected a number from 0 to 1e+09, got the string "100"']),
    (["report"], {"CCOTEL_BUDGET_HOURLY_USD": "abc"}, 2,
     ["CCOTEL_BUDGET_HOURLY_USD: expected a number from 0 to 1e+09, got 'abc'"]),
    (["--config", "{t}/tls.toml", "status"], {}, 2,
     ["http_tls_cert in {t}/tls.toml: {t}/missing.pem does not exist"]),
    (["report"], {"CCOTEL_HTTP_BASIC_AUTH_USER": "me"}, 2, ["http_basic_auth_user: set both"]),
    (["report", "--since", "yesterday"], {}, 2,
     ["'--since': expected YYYY-MM-DD, YYYYMMDD or a duration like 12h or 7d"]),
    (["report", "--since", "2026-02-30"], {}, 2, ["'2026-02-30' is not a date"]),
    (["report", "--by", "sessions"], {}, 2, ["'sessions' is not one of", "ccotel report --help"]),
    (["report", "--state-dir", "{t}/nothing"], {}, 1, ["no state at", "ccotel backfill"]),
    (["report", "--state-dir", "{t}/afile"], {}, 2, ["--state-dir: {t}/afile is a file"]),
    (["backfill", "--claude-dir", "{t}/empty", "--state-dir", "{t}/s"], {}, 2,
     ["claude dir {t}/empty has no projects/ folder; expected a Claude config folder"]),
    (["backfill", "--claude-dir", "{t}/nope", "--state-dir", "{t}/s"], {}, 2,
     ["claude dir {t}/nope does not exist"]),
    (["backfill", "--claude-dir", f"{FX}/projects", "--state-dir", "{t}/s"], {}, 2,
     [f"looks like the projects folder itself; name its parent, {FX}"]),
    (["backfill", "--claude-dir", "{t}/afile", "--state-dir", "{t}/s"], {}, 2,
     ["claude dir {t}/afile is a file"]),
    (["backfill", "--state-dir", "{t}/s"], {"CLAUDE_CONFIG_DIR": "{t}/empty"}, 2,
     ["CLAUDE_CONFIG_DIR entry {t}/empty has no projects/ folder"]),
    (["backfill", "--claude-dir", str(FX), "--state-dir", "{t}/s"],
     {"CCOTEL_PRICING_FILE": "{t}/strings.toml"}, 2, ["configuration error: pricing_file: "]),
    (["run"], {"CCOTEL_PRICING_FILE": "{t}/latin1.toml"}, 2,
     ["pricing_file: {t}/latin1.toml is not UTF-8 text"]),
    (["backfill", "--since", "7 days"], {}, 2, ["'--since'"]),
    (["reprot"], {}, 2, ["No such command 'reprot'", "Did you mean 'report'"]),
    (["report", "--bogus"], {}, 2, ["No such option '--bogus'"]),
    (["status", "--metrics-addr", "127.0.0.1:1"], {}, 3, ["the daemon is not running at"]),
    (["status", "--http-addr", "127.0.0.1:1"], {}, 3,
     ["the daemon is not running at http://127.0.0.1:1/"]),
    (["status", "--http-addr", "127.0.0.1:0"], {"CCOTEL_STATE_DIR": "{t}/s"}, 3,
     ["http_addr asks for any free port", "{t}/s/daemon.json", "the daemon is not running"]),
    (["service", "status", "--platform", "windows"], {}, 2, ["'--platform'"]),
    (["service", "install", "--dry-run", "--exec", "{t}/afile"], {}, 2,
     ["'--exec': {t}/afile is not executable"]),
    (["service", "install", "--dry-run", "--exec", "{t}/nope"], {}, 2, ["does not exist"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "extra", "code", "needles"),
    MISTAKES,
    ids=[" ".join(a)[:60] + (f" {next(iter(e))}" if e else "") for a, e, _, _ in MISTAKES],
)
def test_mistake_is_one_line(tmp_path, home, args, extra, code, needles):
    _files(tmp_path)
    t = str(tmp_path)
    args = [a.replace("{t}", t) for a in args]
    if args[0] == "run":
        args += ["--claude-dir", str(FX), "--state-dir", f"{t}/s"]
    env = clean_env(home, **{k: v.replace("{t}", t) for k, v in extra.items()})
    proc = subprocess.run([sys.executable, "-m", "ccotel", *args], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip
    one_line(proc, code, *(n.replace("{t}", t) for n in needles))


def test_unreadable_config_file_and_state_dir(tmp_path, home):
    conf = tmp_path / "c.toml"
    conf.write_text("web = true\n")
    conf.chmod(0)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    env = clean_env(home)

    def run(*args):
        return subprocess.run([*NODAC, sys.executable, "-m", "ccotel", *args],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip

    one_line(run("--config", str(conf), "report"), 2, f"'{conf}' is not readable")
    env["CCOTEL_CONFIG"] = str(conf)  # or named by the variable
    one_line(run("report"), 2, f"'{conf}' is not readable")
    del env["CCOTEL_CONFIG"]
    default = home / ".config" / "ccotel" / "config.toml"  # or found where it is expected
    default.parent.mkdir(parents=True)
    default.write_text("web = true\n")
    default.chmod(0)
    one_line(run("report"), 2, f"config: cannot read {default} (Permission denied)")
    default.unlink()
    line = one_line(
        run("backfill", "--claude-dir", str(FX), "--state-dir", str(ro / "s")), 1, str(ro)
    )
    assert "ermission" in line


def test_metrics_addr_in_use(tmp_path, home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = ccotel("run", "--claude-dir", str(FX), "--state-dir", str(tmp_path / "s"),
                      "--metrics-addr", f"127.0.0.1:{port}", env=clean_env(home), check=False)  # fmt: skip
    one_line(proc, 1, f"http_addr 127.0.0.1:{port} is in use")


def test_status_json_when_the_daemon_is_down(home):
    port = free_port()
    proc = ccotel("status", "--json", "--metrics-addr", f"127.0.0.1:{port}",
                  env=clean_env(home), check=False)  # fmt: skip
    one_line(proc, 3, "the daemon is not running at")
    out = json.loads(proc.stdout)
    assert out["running"] is False and out["ok"] is False
    assert out["url"] == f"http://127.0.0.1:{port}/healthz"
    assert "Connection refused" in out["error"]


def test_status_against_something_that_is_not_ccotel(home):
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>hello</html>"
            self.send_response(404 if self.path == "/healthz" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        addr = f"127.0.0.1:{srv.server_address[1]}"
        proc = ccotel("status", "--metrics-addr", addr, env=clean_env(home), check=False)
        one_line(proc, 3, "something other than ccotel answers", "is http_addr right?")
        proc = ccotel("status", "--json", "--metrics-addr", addr, env=clean_env(home), check=False)
        assert proc.returncode == 3 and "something other" in json.loads(proc.stdout)["error"]
    finally:
        srv.shutdown()
    # A port that accepts and closes at once (not HTTP at all).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        def slam():
            try:
                while True:
                    c, _ = s.accept()
                    c.close()
            except OSError:  # the listening socket closed: done
                return

        threading.Thread(target=slam, daemon=True).start()
        proc = ccotel("status", "--metrics-addr", f"127.0.0.1:{port}", env=clean_env(home),
                      check=False)  # fmt: skip
    one_line(proc, 3, f"127.0.0.1:{port}/healthz")


def plant_ages(claude: Path, hours_ago: dict[str, float], now: float) -> None:
    """One session per entry, its one response that many hours before ``now``."""
    from datetime import UTC, datetime

    from tests.lines import assistant

    proj = claude / "projects" / "-home-u-proj"
    proj.mkdir(parents=True, exist_ok=True)
    for i, (sid, hours) in enumerate(hours_ago.items()):
        ts = datetime.fromtimestamp(now - hours * 3600, UTC).isoformat(timespec="milliseconds")
        line = assistant(f"msg_{i}", f"req_{i}", ts=ts.replace("+00:00", "Z"), session=sid)
        (proj / f"{sid}.jsonl").write_text(line + "\n")


def test_since_accepts_the_same_forms_everywhere(tmp_path, home):
    """One parser for every --since: YYYY-MM-DD, YYYYMMDD, and durations (90m, 12h, 7d, 2w),
    in report and backfill alike. Ages are hours away from every cut."""
    from datetime import datetime

    now = time.time()
    ages = {"a-4h": 4, "b-30h": 30, "c-5d": 120, "d-20d": 480}
    plant_ages(tmp_path / "claude", ages, now)
    state = str(tmp_path / "s")
    env = clean_env(home)
    ccotel("backfill", "--claude-dir", str(tmp_path / "claude"), "--state-dir", state, env=env)

    def sessions(*since: str) -> list[str]:
        args = ["--since", *since] if since else []
        out = ccotel("report", "--json", "--by", "session", *args, "--state-dir", state, env=env)
        return sorted(r["session"] for r in json.loads(out.stdout)["rows"])

    assert sessions() == sorted(ages)
    for since, want in (("90m", []), ("12h", ["a-4h"]), ("3d", ["a-4h", "b-30h"]),
                        ("7d", ["a-4h", "b-30h", "c-5d"]), ("2w", ["a-4h", "b-30h", "c-5d"]),
                        ("30d", sorted(ages)), ("2000-01-01", sorted(ages)),
                        ("2099-01-01", [])):  # fmt: skip
        assert sessions(since) == want, since
        proc = ccotel("backfill", "--since", since, "--claude-dir", str(tmp_path / "claude"),
                      "--state-dir", state, env=env, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    day = datetime.fromtimestamp(now - 120 * 3600).date()  # the day of c-5d: from it on
    assert (
        sessions(day.isoformat()) == sessions(day.strftime("%Y%m%d")) == ["a-4h", "b-30h", "c-5d"]
    )


def test_report_into_a_closed_pipe(tmp_path, home):
    state = str(tmp_path / "s")
    env = clean_env(home, COLUMNS="80")
    ccotel("backfill", "--claude-dir", str(FIXTURES / "claude-2.1.38"), "--state-dir", state,
           env=env)  # fmt: skip
    for args in (["report", "--by", "session"], ["report", "--json", "--by", "session"]):
        p = subprocess.Popen([sys.executable, "-m", "ccotel", *args, "--state-dir", state],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
        p.stdout.read(10)
        p.stdout.close()  # the reader (`| head -1`) leaves
        err = p.stderr.read().decode()
        p.wait(timeout=60)
        assert "Traceback" not in err and "Exception" not in err, err


# ------------------------------------------------------------------------ the daemon, live


def _wait_health(url: str, proc: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            return json.loads(urllib.request.urlopen(url, timeout=1).read())
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


def _run(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ccotel", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return proc.stderr.read().decode()


@pytest.mark.timeout(120)
def test_ipv6_metrics_addr_end_to_end(tmp_path, home):
    """The daemon serves on [::1] (any free port: it says which in daemon.json); `ccotel
    status` reaches it there, from the flag, and from the config's port 0 through that file."""
    env = clean_env(home, CCOTEL_METRICS_ADDR="[::1]:0")
    proc = _run(env, "--claude-dir", str(FX), "--state-dir", str(tmp_path / "s"),
                "--log-format", "json")  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
        h = _wait_health(f"http://[::1]:{port}/healthz", proc)
        assert h["state_dir"] == str(tmp_path / "s")
        first = json.loads(proc.stdout.readline())
        assert first["page"] == f"http://[::1]:{port}/"
        out = ccotel("status", "--metrics-addr", f"[::1]:{port}", env=clean_env(home)).stdout
        assert f"at http://[::1]:{port}/" in out and str(tmp_path / "s") in out
        out = ccotel("status", "--json", env=env | {"CCOTEL_STATE_DIR": str(tmp_path / "s")}).stdout
        assert json.loads(out)["running"] is True  # port 0 in CCOTEL_METRICS_ADDR: daemon.json
        with pytest.raises(OSError):  # IPv6 only: nothing on the IPv4 loopback
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        err = _stop(proc)
    assert "Traceback" not in err


@pytest.mark.timeout(120)
def test_run_warns_about_a_claude_dir_without_projects_and_keeps_running(tmp_path, home):
    (tmp_path / "claude").mkdir()
    proc = _run(clean_env(home), "--claude-dir", str(tmp_path / "claude"), "--state-dir",
                str(tmp_path / "s"), "--http-addr", "127.0.0.1:0")  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
        h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        assert h["unreadable"] == []
        # The folder appears later: the daemon counts what lands in it.
        shutil.copytree(FX / "projects", tmp_path / "claude" / "projects")
        deadline = time.monotonic() + 30
        while h["lines"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        assert h["lines"] > 0
    finally:
        err = _stop(proc)
    first = err.splitlines()[0]
    assert first == (
        f"ccotel: warning: claude dir {tmp_path / 'claude'} has no projects/ folder; expected a "
        "Claude config folder (like ~/.claude) holding projects/<project>/<session>.jsonl"
    )
    assert "Traceback" not in err


@pytest.mark.timeout(120)
def test_healthz_unreadable_is_only_what_cannot_be_read_and_clears(tmp_path, home):
    """The default folders that do not exist are not "unreadable"; a folder that cannot be read
    is listed, and leaves the list once it can be read again."""
    claude = tmp_path / "claude"
    shutil.copytree(FX, claude)
    denied = claude / "projects" / "-denied"
    denied.mkdir()
    denied.chmod(0)
    env = clean_env(home, CLAUDE_CONFIG_DIR=f"{claude},{home}/.config/claude",
                    CCOTEL_RESCAN_INTERVAL="0.3")  # fmt: skip
    proc = subprocess.Popen([*NODAC, sys.executable, "-m", "ccotel", "run", "--state-dir",
                             str(tmp_path / "s"), "--http-addr", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        port = daemon_port(tmp_path / "s", proc)
        h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        assert h["unreadable"] == [str(denied)]  # not ~/.config/claude/projects: it is absent
        status = ccotel("status", "--metrics-addr", f"127.0.0.1:{port}", env=env).stdout
        assert f"unreadable {denied}" in status
        denied.chmod(0o755)
        deadline = time.monotonic() + 20
        while h["unreadable"] and time.monotonic() < deadline:
            time.sleep(0.2)
            h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        assert h["unreadable"] == []
        denied.chmod(0)  # unreadable again: listed again
        deadline = time.monotonic() + 20
        while not h["unreadable"] and time.monotonic() < deadline:
            time.sleep(0.2)
            h = _wait_health(f"http://127.0.0.1:{port}/healthz", proc)
        assert h["unreadable"] == [str(denied)]
    finally:
        denied.chmod(0o755)
        err = _stop(proc)
    assert "Traceback" not in err


def test_commands_import_only_what_they_use(tmp_path, home):
    """`--help`, `report`, `report --json` and `status` start without OpenTelemetry, watchdog,
    gRPC, Prometheus or structlog; only the table needs rich."""
    state = str(tmp_path / "s")
    env = clean_env(home)
    ccotel("backfill", "--claude-dir", str(FX), "--state-dir", state, env=env)
    heavy = ("opentelemetry", "watchdog", "grpc", "google", "prometheus_client", "structlog",
             "rich")  # fmt: skip
    probe = (
        "import json, sys\n"
        "from ccotel.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))\n"
        "sys.stderr.write('\\nIMPORTED ' + json.dumps(heavy))\n"
    )
    cases = {
        ("--help",): [],
        ("report", "--json", "--state-dir", state): [],
        ("report", "--state-dir", state): ["rich"],
        ("status", "--metrics-addr", "127.0.0.1:1"): [],
        ("status", "--json", "--metrics-addr", "127.0.0.1:1"): [],
        ("service", "--help"): [],
    }
    for args, allowed in cases.items():
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, env=env, timeout=60)  # fmt: skip
        imported = json.loads(proc.stderr.rsplit("IMPORTED ", 1)[1])
        assert imported == allowed, (args, imported)
