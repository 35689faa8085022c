"""Real Claude Code transcripts, made offline: the pinned CLI (tests/node) runs
against the scripted Messages API of tests/fakeapi.py.

A pytest plugin (``pytest_plugins = ["tests.realcli"]``) and a library:

* :func:`claude_bin` - the pinned CLI; raises :class:`HarnessError` naming
  ``scripts/install-test-deps`` when it is not installed (tests never skip).
* :func:`run_claude` - one ``claude -p`` run in a HOME of its own choosing.
* :func:`make_transcripts` / :func:`append_sessions` - run scenarios into a HOME
  (new or existing); :func:`load_home` reads back what a HOME holds.
* :data:`SCENARIOS` - the default scenario set; :func:`scenario` looks one up.
* fixtures ``real_claude_home`` (session-scoped, every default scenario once),
  ``claude_cli`` (path of the CLI) and ``fake_anthropic`` (a running stand-in).

Each run's transcript lands in ``HOME/.claude/projects/<encoded cwd>/<session>.jsonl``
(subagents in ``<session>/subagents/agent-<id>.jsonl`` + ``.meta.json``). The
harness keeps a manifest of every run in ``HOME/ccotel-harness.json`` (outside
the config dir, so nothing that reads ``.claude`` sees it): scenario, tag,
session id, model, and every API response served with its ids and usage. From it
:meth:`Transcripts.expected_totals` gives the totals a correct accountant (and
ccusage) must report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakeapi import FakeAnthropic, Step, ToolCall, Usage

__all__ = [
    "SCENARIOS",
    "HarnessError",
    "Scenario",
    "SessionRun",
    "Step",
    "ToolCall",
    "Transcripts",
    "Usage",
    "agent_prompt",
    "append_sessions",
    "ccusage_shape",
    "claude_bin",
    "clone_home",
    "encode_cwd",
    "load_home",
    "make_transcripts",
    "read_jsonl",
    "run_claude",
    "scenario",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = REPO_ROOT / "tests" / "node" / "node_modules" / ".bin"
INSTALL_HINT = "run `bash scripts/install-test-deps` (it installs tests/node with npm ci)"
MANIFEST = "ccotel-harness.json"
CLAUDE_VERSION = "2.1.197"
DEFAULT_TIMEOUT = 90.0


class HarnessError(RuntimeError):
    """The real-CLI harness could not produce what was asked."""


# ---------------------------------------------------------------------------- binaries
def claude_bin() -> Path:
    """``tests/node/node_modules/.bin/claude`` (Claude Code 2.1.197).

    If npm skipped claude-code's postinstall and left its placeholder in place,
    the native binary of the platform package is used instead.
    """
    path = NODE_BIN / "claude"
    if not path.exists():
        raise HarnessError(f"Claude Code CLI not installed at {path}: {INSTALL_HINT}")
    real = path.resolve()
    if real.stat().st_size < 1_000_000:  # the wrapper's placeholder stub
        for native in sorted(
            (REPO_ROOT / "tests" / "node" / "node_modules" / "@anthropic-ai").glob(
                "claude-code-*/claude"
            )
        ):
            if os.access(native, os.X_OK):
                return native
        raise HarnessError(
            f"{real} is claude-code's placeholder and no native binary was found: {INSTALL_HINT}"
        )
    return path


# ---------------------------------------------------------------------------- scenarios
_AGENT_RE = re.compile(r"\{\{agent:([A-Za-z0-9_\-]+)\}\}")


def agent_prompt(thread: str, text: str = "Do the delegated part of the ccotel scenario.") -> str:
    """The ``prompt`` input of an Agent tool call whose subagent follows ``subagents[thread]``."""
    return f"{text} {{{{agent:{thread}}}}}"


@dataclass(frozen=True)
class Scenario:
    """One scripted ``claude -p`` run.

    ``steps`` answer the main thread in order; ``subagents[name]`` answer the
    subagent spawned by an Agent tool call whose prompt is ``agent_prompt(name)``.
    ``expect`` is free-form data for tests (what the transcript must show).
    """

    name: str
    model: str
    steps: tuple[Step, ...]
    subagents: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    prompt: str = "Run the ccotel harness scenario."
    project: str = "work"  # cwd = HOME/src/<project>
    nonessential_traffic: bool = False  # True: let Claude Code make its side requests
    allowed_tools: tuple[str, ...] = ("Bash", "Agent")  # --allowedTools; others are refused
    expect: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "subagents", {k: tuple(v) for k, v in self.subagents.items()})


GREET = 'def greet(name=None):\n    """Say hello."""\n    return "hello"\n\n\nprint(greet())\n'


def _bash(command: str, description: str) -> ToolCall:
    return ToolCall("Bash", {"command": command, "description": description})


SONNET = "claude-sonnet-4-5-20250929"
OPUS = "claude-opus-4-6"
HAIKU = "claude-haiku-4-5-20251001"

SCENARIOS: tuple[Scenario, ...] = (
    # (a) one Bash call, then a final text
    Scenario(
        name="bash",
        model=SONNET,
        project="alpha",
        steps=(
            Step(
                text="I'll run the command.",
                tools=(_bash("echo ccotel-bash-ok", "Print a marker"),),
            ),
            Step(text="The command printed ccotel-bash-ok."),
        ),
        expect={"tools": ["Bash"], "errors": 0, "stdout": ["ccotel-bash-ok"]},
    ),
    # (b) two Bash calls in one response
    Scenario(
        name="parallel",
        model=OPUS,
        project="alpha",
        steps=(
            Step(
                text="Running both at once.",
                tools=(
                    _bash("echo ccotel-one", "Print one"),
                    _bash("echo ccotel-two", "Print two"),
                ),
            ),
            Step(text="Both commands succeeded."),
        ),
        expect={"tools": ["Bash", "Bash"], "errors": 0, "stdout": ["ccotel-one", "ccotel-two"]},
    ),
    # (c) a failing tool call: exit status 3 -> tool_result.is_error = true
    Scenario(
        name="error",
        model=HAIKU,
        project="beta",
        steps=(
            Step(tools=(_bash("echo ccotel-failing >&2; exit 3", "Run a failing command"),)),
            Step(text="The command failed with exit code 3."),
        ),
        expect={"tools": ["Bash"], "errors": 1},
    ),
    # (d) an Agent call whose subagent runs Bash and answers; then the parent answers
    Scenario(
        name="agent",
        model=OPUS,
        project="beta",
        steps=(
            Step(
                text="Delegating to a subagent.",
                tools=(
                    ToolCall(
                        "Agent",
                        {
                            "description": "Run a subagent check",
                            "prompt": agent_prompt("sub"),
                            "subagent_type": "general-purpose",
                        },
                    ),
                ),
            ),
            Step(text="The subagent finished: ccotel-from-subagent."),
        ),
        subagents={
            "sub": (
                Step(tools=(_bash("echo ccotel-from-subagent", "Print a subagent marker"),)),
                Step(text="Subagent result: ccotel-from-subagent."),
            ),
        },
        expect={"tools": ["Agent"], "errors": 0, "agents": 1, "subagent_tools": ["Bash"]},
    ),
    # (d') the subagent runs on another model than its parent (Agent `model` override)
    Scenario(
        name="agent-haiku",
        model=SONNET,
        project="alpha",
        steps=(
            Step(
                tools=(
                    ToolCall(
                        "Agent",
                        {
                            "description": "Quick haiku check",
                            "prompt": agent_prompt("fast"),
                            "subagent_type": "general-purpose",
                            "model": "haiku",
                        },
                    ),
                ),
            ),
            Step(text="Done."),
        ),
        subagents={
            "fast": (
                Step(tools=(_bash("echo ccotel-haiku", "Print a marker"),)),
                Step(text="ccotel-haiku"),
            ),
        },
        expect={"tools": ["Agent"], "errors": 0, "agents": 1, "subagent_tools": ["Bash"]},
    ),
    # (f) what the spend bought, in a git repository (issue 14): a file written and committed,
    # edited and committed again (quietly: git prints nothing), a commit with nothing to
    # commit (fails), a pull request opened with a stand-in `gh` the session writes itself
    Scenario(
        name="git",
        model=SONNET,
        project="omega",
        allowed_tools=("Bash", "Agent", "Write", "Edit"),
        steps=(
            Step(
                text="Starting a repository.",
                tools=(
                    _bash(
                        "git init -q && git config user.email ccotel@example.com"
                        " && git config user.name ccotel",
                        "Start a repository",
                    ),
                ),
            ),
            Step(tools=(ToolCall("Write", {"file_path": "{{cwd}}/greet.py", "content": GREET}),)),
            Step(tools=(_bash("git add greet.py && git commit -m 'Add greet'", "Commit it"),)),
            Step(
                tools=(
                    ToolCall(
                        "Edit",
                        {
                            "file_path": "{{cwd}}/greet.py",
                            "old_string": '    return "hello"\n',
                            "new_string": '    name = name or "world"\n    return f"hello {name}"\n',
                        },
                    ),
                )
            ),
            Step(tools=(_bash("git commit -qam 'Greet by name'", "Commit quietly"),)),
            Step(tools=(_bash("git commit -m 'Nothing new'", "Commit nothing"),)),
            Step(
                tools=(
                    _bash(
                        'mkdir -p "$HOME/bin" && printf \'#!/bin/sh\\necho '
                        'https://github.com/ccotel/demo/pull/42\\n\' > "$HOME/bin/gh"'
                        ' && chmod +x "$HOME/bin/gh" && PATH="$HOME/bin:$PATH"'
                        " gh pr create --title 'Greet by name' --body 'From the scenario'",
                        "Open a pull request",
                    ),
                )
            ),
            Step(text="Two commits and a pull request."),
        ),
        expect={
            "tools": ["Bash", "Write", "Bash", "Edit", "Bash", "Bash", "Bash"],
            "errors": 1,
            "stdout": ["ccotel/demo/pull/42"],
        },
    ),
    # (e) the models: sonnet-4-5, opus-4-6 and haiku-4-5 are spread over the runs
    # above; this one answers in plain text on haiku with Claude Code's side
    # requests switched on (title generation), to show they stay out of usage
    Scenario(
        name="text-side",
        model=HAIKU,
        project="gamma",
        nonessential_traffic=True,
        steps=(Step(text="Hello from the ccotel harness."),),
        expect={"tools": [], "errors": 0},
    ),
)


def scenario(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; have {[s.name for s in SCENARIOS]}")


# ---------------------------------------------------------------------------- results
@dataclass
class SessionRun:
    scenario: str
    tag: str
    model: str
    session_id: str
    cwd: str
    transcript: str  # path of <session>.jsonl
    # scenario responses (main thread + subagents), as ServedResponse.to_json()
    served: list[dict[str, Any]]
    side: list[dict[str, Any]]  # side requests Claude Code made during this run
    duration_s: float
    result: dict[str, Any] = field(default_factory=dict)  # the CLI's --output-format json
    # calls the stand-in did not recognize during this run ([method, path]), e.g.
    # CONNECT api.anthropic.com:443 refused by the egress guard
    unknown: list[list[str]] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return Usage.total(Usage(**r["usage"]) for r in self.served)

    @property
    def subagent_files(self) -> list[Path]:
        sub = Path(self.transcript).with_suffix("") / "subagents"
        return sorted(sub.glob("agent-*.jsonl")) if sub.is_dir() else []

    def lines(self) -> list[dict[str, Any]]:
        return read_jsonl(self.transcript)


@dataclass
class Transcripts:
    """A HOME with real transcripts: ``config_dir`` (HOME/.claude), ``session_ids``, ``runs``."""

    home: Path
    runs: list[SessionRun]

    @property
    def config_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def projects_dir(self) -> Path:
        return self.config_dir / "projects"

    @property
    def session_ids(self) -> list[str]:
        return [r.session_id for r in self.runs]

    def run(self, scenario_name: str) -> SessionRun:
        """The first run of a scenario."""
        for r in self.runs:
            if r.scenario == scenario_name:
                return r
        raise KeyError(scenario_name)

    def usage(self) -> Usage:
        """Sum of the usage the stand-in reported for scenario requests."""
        return Usage.total(r.usage for r in self.runs)

    def expected_totals(self) -> dict[str, int]:
        """ccusage-shaped token totals every run's scenario responses add up to."""
        return ccusage_shape(self.usage())


def ccusage_shape(u: Usage) -> dict[str, int]:
    return {
        "inputTokens": u.input_tokens,
        "outputTokens": u.output_tokens,
        "cacheCreationTokens": u.cache_creation,
        "cacheReadTokens": u.cache_read,
    }


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode_cwd(cwd: str | os.PathLike[str]) -> str:
    """Claude Code's project folder name for a cwd (non-alphanumerics become '-')."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


# ---------------------------------------------------------------------------- manifest
_manifest_lock = threading.Lock()


@contextlib.contextmanager
def _manifest(home: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write HOME/ccotel-harness.json under a lock."""
    path = home / MANIFEST
    with _manifest_lock, open(home / (MANIFEST + ".lock"), "a+") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        data = (
            json.loads(path.read_text())
            if path.exists()
            else {
                "seed": f"home-{uuid.uuid4().hex[:12]}",
                "next": 0,
                "runs": [],
            }
        )
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def load_home(home: str | os.PathLike[str]) -> Transcripts:
    """The Transcripts of a HOME made by this harness (from its manifest)."""
    home = Path(home)
    path = home / MANIFEST
    if not path.exists():
        raise HarnessError(f"{home} has no {MANIFEST}: not made by tests.realcli")
    data = json.loads(path.read_text())
    return Transcripts(home=home, runs=[SessionRun(**r) for r in data["runs"]])


def _allocate(home: Path, name: str, seed: str | None) -> tuple[str, str]:
    with _manifest(home) as data:
        if seed is not None:
            if data["next"] == 0:
                data["seed"] = seed
            elif data["seed"] != seed:
                raise HarnessError(f"{home} already uses seed {data['seed']!r}, not {seed!r}")
        n = data["next"]
        data["next"] = n + 1
        return f"{name}-{n}", data["seed"]


def _record(home: Path, run: SessionRun) -> None:
    with _manifest(home) as data:
        data["runs"].append(dataclasses.asdict(run))


# ---------------------------------------------------------------------------- running
def _resolve_agent_markers(
    steps: Sequence[Step], tag: str, api: FakeAnthropic, cwd: Path | None = None
) -> list[Step]:
    """Agent markers become the stand-in's thread markers; ``{{cwd}}`` the run's directory."""

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            if cwd is not None:
                value = value.replace("{{cwd}}", str(cwd))
            return _AGENT_RE.sub(lambda m: api.marker(f"{tag}/{m.group(1)}"), value)
        if isinstance(value, Mapping):
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    return [
        dataclasses.replace(s, tools=tuple(ToolCall(t.name, sub(dict(t.input))) for t in s.tools))
        for s in steps
    ]


def _claude_env(home: Path, api: FakeAnthropic, nonessential_traffic: bool) -> dict[str, str]:
    """A minimal environment: nothing of the caller's Claude/Anthropic setup leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "USER": os.environ.get("USER", "ccotel"),
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TZ": "UTC",
        "TMPDIR": str(home / "tmp"),
        "ANTHROPIC_BASE_URL": api.base_url,
        "ANTHROPIC_API_KEY": "any",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # Belt and braces: anything that tries to leave the machine goes through
        # this "proxy", which is the stand-in itself and refuses CONNECT.
        "HTTPS_PROXY": api.base_url,
        "HTTP_PROXY": api.base_url,
        "https_proxy": api.base_url,
        "http_proxy": api.base_url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if not nonessential_traffic:
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    return env


def run_claude(
    home: str | os.PathLike[str],
    prompt: str | None = None,
    model: str | None = None,
    scenario: Scenario | Sequence[Step] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    *,
    api: FakeAnthropic | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    seed: str | None = None,
) -> SessionRun:
    """Run ``claude -p PROMPT --allowedTools Bash Agent --model M --output-format json``
    once, with HOME=home, against the stand-in (``api``, or a private one), no stdin.

    ``scenario`` scripts the answers (a :class:`Scenario` or a list of steps; by
    default one text answer); the scenario's marker is appended to ``prompt``
    (default: the scenario's prompt). ``model`` defaults to the scenario's model,
    ``cwd`` to ``HOME/src/<scenario.project>``. Records the run in the HOME's
    manifest and returns it. Raises :class:`HarnessError` when the CLI fails,
    times out, asks for an unscripted step, or writes no transcript.
    """
    home = Path(home).resolve()
    if scenario is None:
        scenario = Scenario(name="text", model=model or SONNET, steps=(Step(text="OK"),))
    elif not isinstance(scenario, Scenario):
        scenario = Scenario(name="custom", model=model or SONNET, steps=tuple(scenario))
    model = model or scenario.model
    if api is None:
        with _manifest(home_dirs(home)) as data:
            home_seed = seed or data["seed"]
        with FakeAnthropic(seed=home_seed) as own:
            return run_claude(
                home, prompt, model, scenario, cwd, extra_args, api=own, timeout=timeout, seed=seed
            )

    binary = claude_bin()
    home_dirs(home)
    tag, _ = _allocate(home, scenario.name, seed)
    cwd = Path(cwd) if cwd is not None else home / "src" / scenario.project
    cwd.mkdir(parents=True, exist_ok=True)
    api.script(tag, _resolve_agent_markers(scenario.steps, tag, api, cwd))
    for thread, steps in scenario.subagents.items():
        api.script(f"{tag}/{thread}", _resolve_agent_markers(steps, tag, api, cwd))

    text = f"{prompt or scenario.prompt} {api.marker(tag)}"
    cmd = [
        str(binary),
        "-p",
        text,
        "--allowedTools",
        *scenario.allowed_tools,
        "--model",
        model,
        "--output-format",
        "json",
        *extra_args,
    ]
    env = _claude_env(home, api, scenario.nonessential_traffic)
    n_unknown = len(api.unknown)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError(
            f"claude timed out after {timeout}s for scenario {scenario.name} ({tag})\n"
            f"{_diagnostics(api, e.stdout, e.stderr)}"
        ) from e
    duration = time.monotonic() - t0

    result: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        result = json.loads(proc.stdout)
    served = [
        r for r in api.served if r.tag is not None and (r.tag == tag or r.tag.startswith(tag + "/"))
    ]
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}")
    if not result:
        problems.append("no JSON result on stdout")
    elif result.get("is_error"):
        problems.append(f"result is an error: {result.get('subtype')} {result.get('result')!r}")
    if any(r.kind == "exhausted" for r in served):
        problems.append("the CLI asked for more steps than scripted")
    session_id = result.get("session_id")
    transcript = None
    if session_id:
        found = sorted((home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
        transcript = found[0] if found else None
        if transcript is None:
            problems.append(f"no transcript {session_id}.jsonl under {home}/.claude/projects")
    if problems:
        raise HarnessError(
            f"claude run for scenario {scenario.name} ({tag}) failed: {'; '.join(problems)}\n"
            f"{_diagnostics(api, proc.stdout, proc.stderr)}"
        )
    assert session_id is not None and transcript is not None
    run = SessionRun(
        scenario=scenario.name,
        tag=tag,
        model=model,
        session_id=session_id,
        cwd=str(cwd),
        transcript=str(transcript),
        served=[r.to_json() for r in served if r.kind == "scenario"],
        side=[r.to_json() for r in api.side_responses() if r.session_id == session_id],
        duration_s=round(duration, 3),
        result=result,
        unknown=[list(u) for u in api.unknown[n_unknown:]],
    )
    _record(home, run)
    return run


def home_dirs(home: Path) -> Path:
    """Create HOME and its tmp folder; returns HOME."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return home


def _diagnostics(api: FakeAnthropic, stdout: Any, stderr: Any) -> str:
    def tail(x: Any) -> str:
        if isinstance(x, bytes):
            x = x.decode("utf-8", "replace")
        return (x or "")[-3000:]

    reqs = "\n".join(
        f"  {r.method} {r.path} model={r.model} tools={r.n_tools} msgs={r.n_messages} -> {r.kind}"
        for r in api.requests[-30:]
    )
    return (
        f"stdout:\n{tail(stdout)}\nstderr:\n{tail(stderr)}\n"
        f"requests to the stand-in (last 30):\n{reqs}\nunknown paths: {api.unknown[-20:]}"
    )


def make_transcripts(
    home: str | os.PathLike[str],
    scenarios: Iterable[Scenario | str] = SCENARIOS,
    *,
    seed: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Transcripts:
    """Run each scenario once (in order) into HOME, new or existing, with one stand-in.

    Returns the runs made by this call (``load_home(home)`` gives all of them).
    Tags, and so message/request/tool ids, never repeat within a HOME.
    """
    home = home_dirs(Path(home).resolve())
    with _manifest(home) as data:
        if seed is not None and data["next"] == 0:
            data["seed"] = seed
        home_seed = data["seed"]
    runs = []
    with FakeAnthropic(seed=home_seed) as api:
        for sc in scenarios:
            sc = scenario(sc) if isinstance(sc, str) else sc
            runs.append(run_claude(home, None, None, sc, api=api, timeout=timeout))
    return Transcripts(home=home, runs=runs)


def append_sessions(
    home: str | os.PathLike[str],
    scenarios: Iterable[Scenario | str] = ("bash",),
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Transcripts:
    """Add sessions to an existing HOME (e.g. while a daemon watches it)."""
    home = Path(home)
    if not (home / MANIFEST).exists():
        raise HarnessError(f"{home} is not a harness HOME (no {MANIFEST}); use make_transcripts")
    return make_transcripts(home, scenarios, timeout=timeout)


def clone_home(
    src: Transcripts | str | os.PathLike[str], dst: str | os.PathLike[str]
) -> Transcripts:
    """Copy a harness HOME (transcripts + manifest) so a test can append to its copy."""
    src_home = src.home if isinstance(src, Transcripts) else Path(src)
    dst = Path(dst)
    shutil.copytree(
        src_home,
        dst,
        symlinks=True,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("tmp", MANIFEST + ".lock"),
    )
    home_dirs(dst)
    data = json.loads((dst / MANIFEST).read_text())
    old, new = str(src_home.resolve()), str(dst.resolve())
    for r in data["runs"]:  # paths now point into the copy (cwd stays: it names the project)
        r["transcript"] = r["transcript"].replace(old, new, 1)
    (dst / MANIFEST).write_text(json.dumps(data, indent=1))
    return load_home(dst)


# ---------------------------------------------------------------------------- fixtures
def _fail(e: Exception) -> None:
    pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """Path of the pinned Claude Code CLI (fails, never skips, when not installed)."""
    try:
        return claude_bin()
    except HarnessError as e:
        _fail(e)
        raise


@pytest.fixture(scope="session")
def real_claude_home(tmp_path_factory: pytest.TempPathFactory) -> Transcripts:
    """One HOME with every default scenario run once, built once per test session.

    Use ``.config_dir`` (HOME/.claude), ``.session_ids``, ``.runs`` and
    ``.expected_totals()``. Treat it as read-only; ``clone_home`` it to append.
    """
    try:
        claude_bin()
        return make_transcripts(tmp_path_factory.mktemp("real-claude-home"), SCENARIOS)
    except HarnessError as e:
        _fail(e)
        raise


@pytest.fixture
def fake_anthropic(request: pytest.FixtureRequest) -> Iterator[FakeAnthropic]:
    """A running stand-in for the Messages API, for tests that drive the CLI themselves
    (``run_claude(home, ..., api=fake_anthropic)``). Its id seed is the test's node id:
    deterministic, and distinct from every other test's."""
    with FakeAnthropic(seed=f"fixture:{request.node.nodeid}") as api:
        yield api
