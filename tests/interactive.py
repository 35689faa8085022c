"""The real Claude Code CLI run interactively in tmux against the stand-in API.

``claude -p`` (tests/realcli.py) never shows a status line, never waits for the
user and never asks permission. This module runs the pinned 2.1.197 CLI the way
a person does: in a terminal (a private tmux server), typed into with
``tmux send-keys`` and read with ``tmux capture-pane -p``.

* :class:`InteractiveClaude` - one session: its own HOME (prepared so the CLI
  skips onboarding, the folder-trust dialog and the API-key question), a
  ``statusLine`` command that records every JSON Claude Code pipes to it
  (:meth:`~InteractiveClaude.statusline_inputs`) before handing it to an optional
  command of the test's choosing, and helpers to wait on the pane, the status
  line, the transcript and the stand-in, each with a timeout and never a fixed
  sleep;
* ``auth="oauth"`` logs in with ``CLAUDE_CODE_OAUTH_TOKEN``: with
  :func:`tests.fakeapi.ratelimit_headers` on the stand-in, the status-line JSON
  carries ``rate_limits``;
* fixture ``interactive_claude``: a factory that starts sessions on one stand-in
  and tears every one down (``from tests.interactive import
  interactive_claude_fixture  # noqa: F401`` makes it available to a test module).

Nothing is read from stdin; tmux runs detached, so it works under CI.

Example (see tests/test_interactive_*.py)::

    from tests.interactive import interactive_claude_fixture  # noqa: F401

    def test_x(interactive_claude):
        interactive_claude.api.extra_headers.update(ratelimit_headers(0.42, 0.17))
        s = interactive_claude([Step(text="Hi.")], auth="oauth",
                               statusline="ccotel statusline")  # or True: the recorder
        s.submit("Hello")            # types, waits for the input box, Enter, the request
        s.wait_idle()                # answered and written; the CLI waits for the user
        s.statusline_inputs()[-1]    # the JSON Claude Code piped to the command
        s.statusline_shown()         # the line under the input box
        s.transcript_lines()         # complete lines of the session's transcript
        s.exit()                     # /exit; returns the exit status

``api.hold(tag, step)`` keeps a request in flight until the test sets the event;
:func:`gate_command` makes a Bash tool that runs until the test creates a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.fakeapi import FakeAnthropic, Step
from tests.realcli import SONNET, HarnessError, _claude_env, claude_bin, read_jsonl

__all__ = [
    "API_KEY",
    "OAUTH_TOKEN",
    "InteractiveClaude",
    "gate_command",
    "interactive_claude_fixture",
    "tmux_bin",
    "wait_for",
]

API_KEY = "sk-ant-api03-ccotel-test-key-000000000000000000000000"
OAUTH_TOKEN = "sk-ant-oat01-ccotel-test-token-0000000000000000000000"
STATUSLINE_PREFIX = "CCOTEL-SL"
DEFAULT_TIMEOUT = float(os.environ.get("CCOTEL_INTERACTIVE_TIMEOUT", "120"))
POLL = 0.05
PROMPT = "\u276f"  # the input box's prompt character
PROMPT_LINE = re.compile(rf"^\s*{PROMPT}", re.M)
EMPTY_PROMPT = re.compile(rf"^\s*{PROMPT}\s*$", re.M)
# the spinner line while a request or tool runs ("· Hyperspacing…", "✻ Churning… (esc to interrupt)")
BUSY = re.compile(r"^\s*[·✢✳✶✻✽*]\s+\S+…|esc to interrupt", re.M)

T = TypeVar("T")
# tmux itself runs without the caller's tmux variables (tests may run inside tmux)
_TMUX_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}


def tmux_bin() -> str:
    path = shutil.which("tmux")
    if path is None:
        raise HarnessError(
            "tmux is not installed: run `bash scripts/install-test-deps` (apt package tmux)"
        )
    return path


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; raise HarnessError naming ``what``."""
    deadline = time.monotonic() + timeout
    delay = POLL
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def gate_command(gate: Path) -> str:
    """A shell command that runs until ``gate`` exists: a tool call that lasts exactly as
    long as the test wants (create the file to let it finish)."""
    g = shlex.quote(str(gate))
    return f"until [ -e {g} ]; do sleep 0.1; done; echo ccotel-gate-open"


_RECORDER = """#!/bin/sh
# ccotel test status line: keep what Claude Code piped in, then answer.
dir={dir}
f="$dir/$(date +%s%N)-$$.json"
cat > "$f.part" && mv "$f.part" "$f"
n=$(ls "$dir" | grep -c '[.]json$')
if [ -x {command} ]; then exec {command} < "$f"; fi
echo "{prefix} $n"
"""


class InteractiveClaude:
    """One interactive Claude Code 2.1.197 in a private, detached tmux server.

    ``steps`` script the main thread (all turns of the session: the stand-in picks
    a step by the number of assistant messages so far, so turn two continues where
    turn one stopped). The first :meth:`submit` carries the scenario marker.

    ``statusline``: ``True`` installs the recorder, which prints
    ``CCOTEL-SL <n>`` (n = inputs recorded so far); a string is a shell command
    that receives the JSON on stdin after it is recorded and whose output is shown
    instead; ``False`` configures no status line.

    ``auth``: ``"api-key"`` (approved in ~/.claude.json, shows "API Usage
    Billing", no ``rate_limits``) or ``"oauth"`` (``CLAUDE_CODE_OAUTH_TOKEN``).
    ``settings`` are merged into ~/.claude/settings.json (e.g. ``permissions``).
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        api: FakeAnthropic,
        steps: Sequence[Step] = (Step(text="OK"),),
        *,
        model: str = SONNET,
        cwd: str | os.PathLike[str] | None = None,
        auth: str = "api-key",
        statusline: bool | str = True,
        settings: Mapping[str, Any] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        tag: str | None = None,
        width: int = 160,
        height: int = 50,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if auth not in ("api-key", "oauth"):
            raise ValueError(f"auth must be 'api-key' or 'oauth', not {auth!r}")
        self.home = Path(home).resolve()
        self.api = api
        self.model = model
        self.cwd = Path(cwd).resolve() if cwd is not None else self.home / "src" / "work"
        self.auth = auth
        self.statusline = statusline
        self.settings = dict(settings or {})
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.width, self.height = width, height
        self.timeout = timeout
        self.tag = api.script(tag or f"interactive-{id(self):x}-{time.monotonic_ns()}", steps)
        self.statusline_dir = self.home / "statusline"
        self._sock_dir: str | None = None
        self.pane_pid: int | None = None
        self._submitted = 0

    # ------------------------------------------------------------------ setup
    @property
    def config_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def socket(self) -> str:
        assert self._sock_dir is not None, "not started"
        return os.path.join(self._sock_dir, "tmux")

    def _prepare_home(self) -> dict[str, str]:
        for d in (self.home / "tmp", self.cwd, self.config_dir, self.statusline_dir):
            d.mkdir(parents=True, exist_ok=True)
        env = _claude_env(self.home, self.api, nonessential_traffic=False)
        env["TERM"] = "xterm-256color"
        env["COLUMNS"], env["LINES"] = str(self.width), str(self.height)
        state: dict[str, Any] = {
            "hasCompletedOnboarding": True,
            "lastOnboardingVersion": "2.1.197",
            "numStartups": 1,
            "projects": {
                str(self.cwd): {"hasTrustDialogAccepted": True, "allowedTools": []},
            },
        }
        if self.auth == "oauth":
            env.pop("ANTHROPIC_API_KEY", None)
            env["CLAUDE_CODE_OAUTH_TOKEN"] = OAUTH_TOKEN
        else:
            env["ANTHROPIC_API_KEY"] = API_KEY
            state["customApiKeyResponses"] = {"approved": [API_KEY[-20:]], "rejected": []}
        env.update(self.extra_env)
        claude_json = self.home / ".claude.json"
        if claude_json.exists():  # a second session in the same HOME keeps what the CLI wrote
            old = json.loads(claude_json.read_text())
            old.setdefault("projects", {}).update(state.pop("projects"))
            state = {**old, **state}
        claude_json.write_text(json.dumps(state, indent=1))
        settings = dict(self.settings)
        if self.statusline is not False:
            settings["statusLine"] = {"type": "command", "command": str(self._recorder())}
        (self.config_dir / "settings.json").write_text(json.dumps(settings, indent=1))
        return env

    def _recorder(self) -> Path:
        target = self.home / "statusline-command.sh"
        if isinstance(self.statusline, str):
            target.write_text(f"#!/bin/sh\n{self.statusline}\n")
            target.chmod(0o755)
        path = self.home / "statusline-recorder.sh"
        path.write_text(
            _RECORDER.format(
                dir=shlex.quote(str(self.statusline_dir)),
                command=shlex.quote(str(target)),
                prefix=STATUSLINE_PREFIX,
            )
        )
        path.chmod(0o755)
        return path

    def start(self) -> InteractiveClaude:
        """Launch the CLI and wait until it shows its prompt (and status line)."""
        tmux = tmux_bin()
        env = self._prepare_home()
        launcher = self.home / "launch-claude.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        cmd = shlex.join([str(claude_bin()), "--model", self.model, *self.args])
        launcher.write_text(f"#!/bin/sh\n{exports}cd {shlex.quote(str(self.cwd))}\nexec {cmd}\n")
        launcher.chmod(0o755)
        # a short private socket path (sun_path is ~108 bytes), a config of our own
        self._sock_dir = tempfile.mkdtemp(prefix="cctmux-")
        conf = os.path.join(self._sock_dir, "tmux.conf")
        Path(conf).write_text("set -g remain-on-exit on\nset -g history-limit 10000\n")
        subprocess.run(
            [
                *(tmux, "-S", self.socket, "-f", conf, "new-session", "-d", "-s", "cc"),
                *("-x", str(self.width), "-y", str(self.height), "env", "-i", str(launcher)),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_TMUX_ENV,
            timeout=30,
        )
        self.pane_pid = int(self._display("#{pane_pid}"))
        ready = "the CLI's prompt" + (" and status line" if self.statusline is not False else "")
        wait_for(self._ready, ready, self.timeout, self.diagnostics)
        return self

    def _ready(self) -> bool:
        if self.exited():
            raise HarnessError(f"claude exited during start-up\n{self.diagnostics()}")
        pane = self.pane()
        if not PROMPT_LINE.search(pane):
            return False
        return self.statusline is False or bool(self.statusline_inputs())

    # ------------------------------------------------------------------ tmux
    def _tmux(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [tmux_bin(), "-S", self.socket, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=_TMUX_ENV,
            timeout=30,
        )
        if check and proc.returncode != 0:
            raise HarnessError(f"tmux {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _display(self, fmt: str) -> str:
        return self._tmux("display-message", "-p", "-t", "cc", fmt).strip()

    def pane(self) -> str:
        """The visible screen, as text."""
        return self._tmux("capture-pane", "-p", "-t", "cc", check=False)

    def send_keys(self, *keys: str) -> None:
        """tmux key names (``Enter``, ``Escape``, ``C-c``, ``Down``...)."""
        self._tmux("send-keys", "-t", "cc", *keys)

    def type(self, text: str) -> None:
        """Type literal text into the input box."""
        self._tmux("send-keys", "-t", "cc", "-l", text)

    def exited(self) -> bool:
        """The CLI has ended and tmux has reaped it (only then is its status known:
        tmux marks the pane dead at the terminal's end of file, which can come first)."""
        if self._display("#{pane_dead}") != "1":
            return False
        try:
            os.kill(self.pane_pid or 0, 0)
        except ProcessLookupError:
            return True
        # a zombie tmux has not reaped: tmux 3.3a sometimes misses the SIGCHLD (seen
        # after SIGKILL), then the status stays unknown; nudge our server to reap it
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(self._display("#{pid}")), signal.SIGCHLD)
        return False

    def exit_status(self) -> int | None:
        """The CLI's exit status, ``-N`` when signal N killed it, None while it runs."""
        if not self.exited():
            return None
        status, _, sig = self._display("s#{pane_dead_status}:#{pane_dead_signal}")[1:].partition(
            ":"
        )
        return int(status) if status else -int(sig or 0)

    # ------------------------------------------------------------------ driving
    def _scenario_requests(self) -> int:
        with self.api._lock:
            return sum(1 for r in self.api.served if r.tag == self.tag)

    def submit(self, text: str = "Run the ccotel interactive scenario.") -> None:
        """Type a prompt (the first one gets the scenario marker) and press Enter; return
        once the stand-in has been asked for the next scripted step."""
        if self._submitted == 0:
            text = f"{text} {self.api.marker(self.tag)}"
        self._submitted += 1
        before = self._scenario_requests()
        probe = "".join(text.split())[-24:]
        self.type(text)
        # Enter only once the input box shows the text: sent together, Enter could be
        # taken as part of a paste
        wait_for(
            lambda: probe in "".join(self.input_box().split()),
            f"the prompt {text[-24:]!r} in the input box",
            self.timeout,
            self.diagnostics,
        )
        self.send_keys("Enter")
        wait_for(
            lambda: self._scenario_requests() > before or self.api.held(self.tag),
            "the stand-in to receive the prompt",
            self.timeout,
            self.diagnostics,
        )

    def wait_pane(self, pattern: str | re.Pattern[str], timeout: float | None = None) -> str:
        """Wait until the screen matches the regex; return the screen."""
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        return wait_for(
            lambda: (p := self.pane()) and rx.search(p) and p,
            f"the pane to match {rx.pattern!r}",
            timeout or self.timeout,
            self.diagnostics,
        )

    def wait_idle(self, timeout: float | None = None) -> str:
        """Wait until the CLI waits for the user: no spinner, an empty input box, and the
        last scripted answer served and written to the transcript."""

        def idle() -> str | None:
            pane = self.pane()
            if BUSY.search(pane):
                return None
            if not EMPTY_PROMPT.search(pane):
                return None
            if self.api.held(self.tag):
                return None
            with self.api._lock:
                served = [r for r in self.api.served if r.tag == self.tag]
            if not served or served[-1].stop_reason != "end_turn":
                return None
            done = served[-1].message_id
            if not any(
                (x.get("message") or {}).get("id") == done
                and (x.get("message") or {}).get("stop_reason") == "end_turn"
                for x in self.transcript_lines()
            ):
                return None
            return pane

        return wait_for(
            idle, "the CLI to wait for the user", timeout or self.timeout, self.diagnostics
        )

    def exit(self, timeout: float | None = None) -> int:
        """Leave as a user does (``/exit``); wait for the process to end; its exit status."""
        self.type("/exit")
        wait_for(lambda: self.input_box() == "/exit", "/exit typed", self.timeout, self.diagnostics)
        self.send_keys("Enter")
        wait_for(
            self.exited, "claude to exit after /exit", timeout or self.timeout, self.diagnostics
        )
        status = self.exit_status()
        assert status is not None
        return status

    def processes(self) -> list[str]:
        """Command lines of the CLI's descendant processes (e.g. a running Bash tool)."""
        return [cmd for _, cmd in _descendants(self.pane_pid)] if self.pane_pid else []

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.pane_pid is not None, "not started"
        os.kill(self.pane_pid, sig)

    # ------------------------------------------------------------------ reading
    def statusline_inputs(self) -> list[dict[str, Any]]:
        """Every JSON document Claude Code piped to the status line, oldest first."""
        out = []
        if not self.statusline_dir.is_dir():
            return out
        for f in sorted(self.statusline_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(f.read_text()))
        return out

    def wait_statusline(
        self, pred: Callable[[dict[str, Any]], Any], what: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """The first recorded status-line input for which ``pred`` is true."""
        return wait_for(
            lambda: next((d for d in self.statusline_inputs() if pred(d)), None),
            f"a status-line input with {what}",
            timeout or self.timeout,
            self.diagnostics,
        )

    def _rules(self, rows: list[str]) -> list[int]:
        return [i for i, r in enumerate(rows) if r.strip() and set(r.strip()) == {"─"}]

    def input_box(self) -> str:
        """The text between the input box's two rules ('' when no box is shown)."""
        rows = self.pane().splitlines()
        rules = self._rules(rows)
        if len(rules) < 2:
            return ""
        return "\n".join(rows[rules[-2] + 1 : rules[-1]]).replace(PROMPT, "", 1).strip()

    def statusline_shown(self) -> str | None:
        """The status line as the pane shows it: the first line under the input box
        (stripped; Claude Code may add its own notes at the right). None before it shows."""
        rows = self.pane().splitlines()
        rules = self._rules(rows)
        if len(rules) < 2 or rules[-1] + 1 >= len(rows):
            return None
        return rows[rules[-1] + 1].strip() or None

    @property
    def session_id(self) -> str:
        d = self.wait_statusline(lambda d: d.get("session_id"), "a session id", 30)
        return d["session_id"]

    @property
    def transcript(self) -> Path:
        """The session's transcript (the path the status line reports)."""
        d = self.wait_statusline(lambda d: d.get("transcript_path"), "a transcript path", 30)
        return Path(d["transcript_path"])

    def transcript_lines(self) -> list[dict[str, Any]]:
        """The transcript's complete lines so far ([] before it exists)."""
        path = self.transcript
        if not path.exists():
            return []
        raw = path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        return [json.loads(x) for x in complete.splitlines() if x.strip()]

    def wait_transcript(
        self,
        pred: Callable[[list[dict[str, Any]]], T | None],
        what: str,
        timeout: float | None = None,
    ) -> T:
        return wait_for(
            lambda: pred(self.transcript_lines()),
            f"the transcript to show {what}",
            timeout or self.timeout,
            self.diagnostics,
        )

    def diagnostics(self) -> str:
        reqs = "\n".join(
            f"  {r.method} {r.path} tools={r.n_tools} msgs={r.n_messages} -> {r.kind}"
            for r in self.api.requests[-15:]
        )
        tail = ""
        with contextlib.suppress(Exception):
            path = self.transcript
            if path.exists():
                tail = "\n".join(
                    f"  {x.get('type')} {(x.get('message') or {}).get('stop_reason')}"
                    for x in read_jsonl(path)[-8:]
                )
        pane = ""
        with contextlib.suppress(Exception):
            pane = self.pane()
        return (
            f"pane:\n{pane}\nstatus-line inputs: {len(self.statusline_inputs())}\n"
            f"stand-in requests (last 15):\n{reqs}\ntranscript tail:\n{tail}"
        )

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Kill the tmux server and make sure the CLI is gone."""
        if self._sock_dir is None:
            return
        pids = [p for p, _ in _descendants(self.pane_pid)] if self.pane_pid else []
        if self.pane_pid is not None and not self._pid_gone(self.pane_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pane_pid, signal.SIGTERM)
            with contextlib.suppress(HarnessError):
                wait_for(lambda: self._pid_gone(self.pane_pid), "claude to stop", 10)
            pids.append(self.pane_pid)
        for pid in pids:  # the CLI and whatever tool it left running
            if not self._pid_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        subprocess.run(
            [tmux_bin(), "-S", self.socket, "kill-server"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=_TMUX_ENV,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self._sock_dir, ignore_errors=True)
        self._sock_dir = None

    @staticmethod
    def _pid_gone(pid: int | None) -> bool:
        if pid is None:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie child of the tmux server counts as gone
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z"
        return False

    def __enter__(self) -> InteractiveClaude:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _descendants(root: int) -> list[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            out.append((pid, cmd.decode("utf-8", "replace").strip()))
        todo += children.get(pid, [])
    return out


@pytest.fixture(name="interactive_claude")
def interactive_claude_fixture(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., InteractiveClaude]]:
    """Factory: ``start(steps, **kw)`` runs an :class:`InteractiveClaude` in a HOME of its
    own under tmp_path, on one stand-in per test (``start.api``); all are closed after."""
    sessions: list[InteractiveClaude] = []
    with FakeAnthropic(seed=f"interactive:{request.node.nodeid}") as api:

        def start(steps: Sequence[Step] = (Step(text="OK"),), **kw: Any) -> InteractiveClaude:
            home = kw.pop("home", None) or tmp_path / f"home{len(sessions)}"
            s = InteractiveClaude(home, api, steps, **kw)
            sessions.append(s)
            try:
                return s.start()
            except HarnessError as e:
                pytest.fail(str(e), pytrace=False)

        start.api = api  # type: ignore[attr-defined]
        try:
            yield start
        finally:
            for s in sessions:
                s.close()
