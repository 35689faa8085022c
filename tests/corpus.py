"""Deterministic synthetic Claude Code 2.1.x transcript corpus, with its own ground truth.

``generate(root, files=..., target_bytes=..., seed=..., start=...)`` writes a Claude
config dir ``root/projects/<encoded-cwd>/...`` shaped like real Claude Code output
(see /work/shared/reference/transcript-format.md and the real fixtures):

* session files ``<uuid>.jsonl`` with user prompts, assistant responses written
  one content block per line (thinking / text / tool_use) that repeat
  ``message.id``, ``requestId`` and ``usage`` while ``output_tokens`` grows (the
  last line holds the largest count; some responses never get a final-usage
  line, as in real 2.1.3x files), ``tool_result`` user lines (some
  ``is_error``) with ``toolUseResult``, ``system`` (turn_duration,
  stop_hook_summary, compact_boundary), ``progress`` (hook/bash/agent),
  ``attachment``, ``queue-operation``, ``file-history-snapshot`` and
  ``last-prompt`` records;
* subagents in ``<session>/subagents/agent-<id>.jsonl`` + ``agent-<id>.meta.json``
  (``toolUseId`` = the parent's Agent tool_use id, whose tool_result carries
  ``toolUseResult.agentId``), compaction calls ``agent-acompact-<hex>.jsonl``,
  and ``progress``/``agent_progress`` lines in the parent that copy the
  subagent's messages (same message and request ids);
* legacy 2.0.x sessions with flat ``agent-<hex>.jsonl`` files beside the
  sessions (Task-linked ones and unlinked "Warmup" probes), and a few old
  sessions whose usage has no ``cache_creation`` breakdown;
* resumed-session copies: a new session file that re-writes a prefix of an
  earlier session (same uuids, message ids, request ids, timestamps; new
  sessionId), sometimes cut in the middle of a response, then continues;
* 5m and 1h cache writes, requests with more than 200k tokens in a category,
  several models, rare ``<synthetic>`` API-error lines with zero usage,
  ``server_tool_use.web_search_requests``, a few empty and metadata-only files.

Everything derives from ``random.Random(seed)`` and ``start``: the same
arguments give the same bytes. The generator records every API response it
invents (``(message.id, requestId)`` -> model and final usage), so
``CorpusInfo.expected`` is computed from what was meant, not by re-reading the
files; the pricing rules in ``cost_usd`` are ccusage 20.0.24's (``--offline``).
This module does not import ``ccotel``.

Small helpers for live tests: ``assistant_record``/``append_assistant`` append a
new assistant line with known usage to an existing transcript, ``append_lines``
appends arbitrary records (optionally split in two writes), ``write_session``
writes a new small session file.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import os
import random
import shutil
import string
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # msgspec writes the same compact JSON as JSON.stringify, much faster than json
    import msgspec

    _ENCODER = msgspec.json.Encoder()

    def _dumps(obj: Any) -> bytes:
        return _ENCODER.encode(obj)

except ImportError:  # pragma: no cover - msgspec is a ccotel dependency

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


REPO_ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------
# Models and ccusage 20.0.24 pricing (the ground truth; keep this small)
# ----------------------------------------------------------------------------

OPUS46 = "claude-opus-4-6"
OPUS41 = "claude-opus-4-1-20250805"
SONNET45 = "claude-sonnet-4-5-20250929"
SONNET46 = "claude-sonnet-4-6"
HAIKU45 = "claude-haiku-4-5-20251001"
SYNTHETIC = "<synthetic>"
MODELS = (OPUS46, SONNET45, SONNET46, OPUS41, HAIKU45)

# USD per million tokens: input, output, 5m cache write, 1h cache write, cache read
# (measured from ccusage 20.0.24 --offline).
PRICES: dict[str, tuple[float, float, float, float, float]] = {
    OPUS46: (5, 25, 6.25, 10, 0.5),
    OPUS41: (15, 75, 18.75, 30, 1.5),
    SONNET45: (3, 15, 3.75, 6, 0.3),
    SONNET46: (3, 15, 3.75, 6, 0.3),
    HAIKU45: (1, 5, 1.25, 2, 0.1),
}
# Sonnet 4/4.5: the part of a category above 200k tokens (per request) costs this.
PRICES_ABOVE_200K: dict[str, tuple[float, float, float, float, float]] = {
    SONNET45: (6, 22.5, 7.5, 12, 0.6),
}
TIER_THRESHOLD = 200_000


@dataclass(frozen=True)
class Usage:
    """Final token usage of one API response."""

    input: int = 0
    output: int = 0
    cache_5m: int = 0
    cache_1h: int = 0
    cache_read: int = 0
    web_search: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_5m + self.cache_1h

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_5m + self.cache_1h + self.cache_read


def cost_usd(model: str, u: Usage) -> float:
    """ccusage's cost of one deduplicated response: each category priced on its own,
    tiered marginally above 200k tokens for Sonnet 4/4.5; 1h writes at 2x input,
    5m writes at 1.25x, reads at 0.1x; ``<synthetic>`` is free."""
    if model == SYNTHETIC:
        return 0.0
    base = PRICES[model]
    above = PRICES_ABOVE_200K.get(model)
    total = 0.0
    counts = (u.input, u.output, u.cache_5m, u.cache_1h, u.cache_read)
    for i, n in enumerate(counts):
        if above is not None and n > TIER_THRESHOLD:
            total += TIER_THRESHOLD * base[i] + (n - TIER_THRESHOLD) * above[i]
        else:
            total += n * base[i]
    return total / 1e6


def _zero_totals() -> dict[str, Any]:
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "cache_write_tokens": 0,
        "cache_read_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
        "responses": 0,
        "web_search_requests": 0,
    }


def _add(t: dict[str, Any], model: str, u: Usage) -> None:
    t["input_tokens"] += u.input
    t["output_tokens"] += u.output
    t["cache_write_5m_tokens"] += u.cache_5m
    t["cache_write_1h_tokens"] += u.cache_1h
    t["cache_write_tokens"] += u.cache_write
    t["cache_read_tokens"] += u.cache_read
    t["total_tokens"] += u.total
    t["cost_usd"] += cost_usd(model, u)
    t["responses"] += 1
    t["web_search_requests"] += u.web_search


def expected_totals(
    responses: dict[tuple[str, str], tuple[str, Usage, str, str]],
) -> dict[str, Any]:
    """Totals, per model and per project, over unique responses
    ``{(message_id, request_id): (model, final usage, project dir, session id)}``."""
    total = _zero_totals()
    by_model: dict[str, dict[str, Any]] = {}
    by_project: dict[str, dict[str, Any]] = {}
    for model, u, project, _session in responses.values():
        _add(total, model, u)
        _add(by_model.setdefault(model, _zero_totals()), model, u)
        _add(by_project.setdefault(project, _zero_totals()), model, u)
    return {"totals": total, "by_model": by_model, "by_project": by_project}


# ----------------------------------------------------------------------------
# CorpusInfo
# ----------------------------------------------------------------------------


@dataclass
class CorpusInfo:
    root: str
    params: dict[str, Any]
    files: int = 0  # .jsonl files (transcripts)
    meta_files: int = 0  # agent-*.meta.json
    lines: int = 0  # newline-terminated lines over all .jsonl files
    bytes: int = 0  # bytes over all .jsonl files
    projects: dict[str, str] = field(default_factory=dict)  # encoded dir -> cwd
    sessions: int = 0  # distinct sessionIds of main session files (incl. resumed copies)
    sessions_with_usage: int = 0  # of those, how many own at least one unique response
    session_files: int = (
        0  # main <uuid>.jsonl files, incl. resumed copies, empty and meta-only ones
    )
    subagent_files: int = 0  # <session>/subagents/agent-*.jsonl (incl. acompact)
    compact_files: int = 0  # agent-acompact-*.jsonl
    legacy_agent_files: int = 0  # <project>/agent-<hex>.jsonl (incl. warmups)
    warmup_agent_files: int = 0
    resumed_copies: list[list[str]] = field(
        default_factory=list
    )  # [copy sid, origin sid, cut kind]
    empty_files: int = 0
    meta_only_files: int = 0
    line_types: dict[str, int] = field(default_factory=dict)  # "type" or "type/subtype" -> lines
    usage_lines: int = 0  # top-level assistant lines with usage (incl. duplicates, excl. synthetic)
    synthetic_lines: int = 0
    agent_progress_lines: int = 0
    responses: int = 0  # unique (message.id, requestId)
    tool_calls: int = 0  # unique tool_use ids
    tool_calls_by_status: dict[str, int] = field(default_factory=dict)  # ok / error / open
    tool_calls_by_name: dict[str, int] = field(default_factory=dict)
    open_tool_use_ids: list[str] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)  # see expected_totals()
    features: dict[str, int] = field(default_factory=dict)  # coverage counters
    generation_seconds: float = 0.0

    @property
    def totals(self) -> dict[str, Any]:
        return self.expected["totals"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CorpusInfo:
        return cls(**json.loads(text))


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------

_B62 = string.digits + string.ascii_letters
_HEX = "0123456789abcdef"


def _b62(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(_B62, k=n))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(_HEX, k=n))


def _uuid(rng: random.Random) -> str:
    h = rng.getrandbits(128)
    s = f"{h:032x}"
    return f"{s[:8]}-{s[8:12]}-4{s[13:16]}-{'89ab'[h & 3]}{s[17:20]}-{s[20:32]}"


def _msg_id(rng: random.Random) -> str:
    return "msg_01" + _b62(rng, 22)


def _req_id(rng: random.Random) -> str:
    return "req_011C" + _b62(rng, 18)


def _tool_id(rng: random.Random) -> str:
    return "toolu_01" + _b62(rng, 22)


def _ts(ms: int) -> str:
    s, r = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{r:03d}Z"


def encode_cwd(cwd: str) -> str:
    """Claude Code's project dir name: every non-alphanumeric character becomes '-'."""
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in cwd)


def _tok(chars: int) -> int:
    return max(1, int(chars / 3.6))


def _lognorm(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


# ----------------------------------------------------------------------------
# Text pool: realistic-looking content, built once per corpus, sliced cheaply
# ----------------------------------------------------------------------------

_PARTS = [
    "get",
    "set",
    "parse",
    "load",
    "save",
    "user",
    "session",
    "token",
    "cache",
    "file",
    "line",
    "count",
    "total",
    "build",
    "index",
    "record",
    "model",
    "state",
    "config",
    "path",
    "event",
    "metric",
    "span",
    "trace",
    "buffer",
    "offset",
    "reader",
    "writer",
    "handle",
    "queue",
    "batch",
    "price",
    "cost",
    "usage",
    "request",
    "response",
    "message",
    "tool",
    "result",
    "error",
    "value",
    "key",
    "item",
    "node",
    "tree",
    "list",
    "map",
    "data",
    "stream",
    "chunk",
    "frame",
    "window",
    "limit",
    "retry",
    "client",
    "server",
    "route",
    "auth",
    "store",
    "schema",
]
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "from",
    "or",
    "have",
    "an",
    "not",
    "which",
    "but",
    "at",
    "we",
    "can",
    "if",
    "will",
    "should",
    "when",
    "then",
    "so",
    "file",
    "test",
    "function",
    "code",
    "change",
    "update",
    "check",
    "run",
    "build",
    "error",
    "value",
    "return",
    "call",
    "fix",
    "add",
    "use",
    "need",
    "new",
    "data",
    "line",
    "read",
    "write",
    "config",
    "module",
    "import",
    "class",
    "type",
    "handle",
    "case",
    "path",
    "name",
    "output",
    "input",
    "make",
    "sure",
    "also",
    "first",
    "next",
    "now",
    "let",
]
_EXT = ("py", "ts", "tsx", "rs", "go", "md", "toml", "json", "yaml", "sh", "js", "css", "sql")
_UNICODE = ("→", "✓", "—", "é", "ü", "日本語", "🚀", "✗", "…", "°")


class _Pool:
    def __init__(self, rng: random.Random, n_files: int = 600):
        idents = ["_".join(rng.sample(_PARTS, rng.choice((1, 2, 2, 3)))) for _ in range(700)]
        classes = ["".join(p.capitalize() for p in i.split("_")) for i in idents[:200]]
        self.idents = idents
        self.classes = classes
        code = [self._code_line(rng) for _ in range(3000)]
        logs = [self._log_line(rng) for _ in range(2000)]
        prose = [self._sentence(rng) for _ in range(2000)]
        self.prose = " ".join(rng.choices(prose, k=25000))
        self.logs = "\n".join(rng.choices(logs, k=40000))
        # source files: (relative path, content, numbered "cat -n" content)
        files = []
        for _ in range(n_files):
            n = _lognorm(rng, 140, 1.0, 4, 2500)
            content = "\n".join(rng.choices(code, k=n)) + "\n"
            d = "/".join(rng.sample(_PARTS, rng.choice((1, 2, 3))))
            rel = f"{rng.choice(('src', 'lib', 'tests', 'app', 'pkg', 'docs'))}/{d}/{rng.choice(idents)}.{rng.choice(_EXT)}"
            files.append((len(content), rel, content))
        files.sort()
        self.files = [(rel, content) for _, rel, content in files]
        self.sizes = [s for s, _, _ in files]
        self._numbered: dict[int, str] = {}

    def _code_line(self, rng: random.Random) -> str:
        i = rng.choice
        ind = " " * rng.choice((0, 4, 4, 8, 8, 8, 12, 16))
        k = rng.randrange(16)
        a, b, c = i(self.idents), i(self.idents), i(self.idents)
        if k == 0:
            return f"{ind}def {a}(self, {b}: {i(self.classes)} | None = None) -> {i(self.classes)}:"
        if k == 1:
            return f"{ind}{a} = {b}.{c}({i(self.idents)}, {rng.randrange(1000)})"
        if k == 2:
            return f'{ind}raise {i(self.classes)}Error(f"{a} {{{b}!r}} is not a valid {c}")'
        if k == 3:
            return f"{ind}# {' '.join(rng.choices(_WORDS, k=rng.randrange(3, 12)))}"
        if k == 4:
            return f"{ind}if {a} is None or {b} > {rng.randrange(100)}:"
        if k == 5:
            return f'{ind}return {{"{a}": {b}, "{c}": self.{a}}}'
        if k == 6:
            return f"from {a}.{b} import {i(self.classes)}, {c}"
        if k == 7:
            return ""
        if k == 8:
            return f"{ind}for {a} in {b}.{c}():"
        if k == 9:
            return f"{ind}const {a} = await {b}({c}, {{ timeout: {rng.randrange(100, 9000)} }});"
        if k == 10:
            return f"{ind}let {a}: Vec<{i(self.classes)}> = {b}.iter().map(|x| x.{c}).collect();"
        if k == 11:
            return f'{ind}log.info("{" ".join(rng.choices(_WORDS, k=4))} {i(_UNICODE)} %s", {a})'
        if k == 12:
            return f'{ind}assert {a} == {b}, "expected \\"{c}\\""'
        if k == 13:
            return f"{ind}\t{a}\t= {rng.random():.6f}  // tab-aligned"
        if k == 14:
            return f"class {i(self.classes)}({i(self.classes)}):"
        return f"{ind}self.{a}.{b} = {c} or []"

    def _log_line(self, rng: random.Random) -> str:
        k = rng.randrange(8)
        a = rng.choice(self.idents)
        if k == 0:
            return f"tests/test_{a}.py::test_{rng.choice(self.idents)} PASSED{' ' * rng.randrange(1, 30)}[{rng.randrange(101):>3}%]"
        if k == 1:
            return f'  File "/usr/lib/python3.11/{a}.py", line {rng.randrange(1, 3000)}, in {rng.choice(self.idents)}'
        if k == 2:
            return f"2026-0{rng.randrange(1, 10)}-{rng.randrange(10, 28)}T12:{rng.randrange(10, 60)}:{rng.randrange(10, 60)}Z INFO {a}: {' '.join(rng.choices(_WORDS, k=6))}"
        if k == 3:
            return f"   Compiling {a} v0.{rng.randrange(30)}.{rng.randrange(10)}"
        if k == 4:
            return f"src/{a}.rs:{rng.randrange(1, 900)}:{rng.randrange(1, 80)}: warning: unused variable `{rng.choice(self.idents)}`"
        if k == 5:
            return f"{rng.choice(_UNICODE)} {a} ({rng.randrange(1, 900)} ms)"
        if k == 6:
            return f"-rw-r--r--  1 user user {rng.randrange(100, 99999):>6} Feb {rng.randrange(1, 28):>2} 12:{rng.randrange(10, 60)} {a}.{rng.choice(_EXT)}"
        return f'+ {a} = "{" ".join(rng.choices(_WORDS, k=3))}"'

    def _sentence(self, rng: random.Random) -> str:
        w = rng.choices(_WORDS, k=rng.randrange(5, 20))
        if rng.random() < 0.3:
            w.insert(rng.randrange(len(w)), f"`{rng.choice(self.idents)}`")
        if rng.random() < 0.05:
            w.append(rng.choice(_UNICODE))
        return " ".join(w).capitalize() + rng.choice((".", ".", ".", ":", "?"))

    # -- slicing
    @staticmethod
    def _slice(text: str, rng: random.Random, n: int, sep: str) -> str:
        n = max(1, min(n, len(text) - 2))
        start = rng.randrange(0, len(text) - n)
        j = text.find(sep, start)
        start = start if j < 0 or j - start > 200 else j + 1
        end = text.find(sep, start + n)
        return text[start : (end if end > 0 else start + n)]

    # Content draws (slices, sizes) come from their own stream, self.rng, set by the
    # generator: a range that depends on a size makes randrange consume a variable
    # number of bits, which would otherwise shift every later structural decision
    # when target_bytes changes the sizes.
    def prose_text(self, n: int) -> str:
        return self._slice(self.prose, self.rng, n, " ")

    def log_text(self, n: int) -> str:
        return self._slice(self.logs, self.rng, n, "\n")

    def pick_file(self, size: int) -> int:
        i = bisect.bisect_left(self.sizes, size)
        lo, hi = max(0, i - 15), min(len(self.sizes) - 1, i + 15)
        return self.rng.randint(lo, hi)

    def numbered(self, idx: int) -> str:
        s = self._numbered.get(idx)
        if s is None:
            s = "".join(
                f"{n:>6}→{line}\n" for n, line in enumerate(self.files[idx][1].split("\n")[:-1], 1)
            )
            self._numbered[idx] = s
        return s


# ----------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------

_PROJECT_NAMES = (
    "api-gateway",
    "ccotel",
    "web-frontend",
    "data-pipeline",
    "infra",
    "ml-experiments",
    "billing-service",
    "mobile-app",
    "docs-site",
    "cli-tools",
    "auth-service",
    "search",
    "analytics",
    "design-system",
    "payments",
    "notebooks",
    "scheduler",
    "edge-proxy",
)
_AGENT_TYPES = ("Explore", "general-purpose", "Plan", "Explore", "general-purpose")
_VERSIONS_21 = ("2.1.197", "2.1.196", "2.1.190", "2.1.181", "2.1.172")
_VERSIONS_20 = ("2.0.76", "2.0.74", "2.0.65")
_VERSIONS_10 = ("1.0.128", "1.0.98")
_TOOL_WEIGHTS = (
    ("Bash", 30),
    ("Read", 26),
    ("Edit", 12),
    ("Grep", 8),
    ("Glob", 5),
    ("Write", 3),
    ("TodoWrite", 4),
    ("WebFetch", 2),
    ("WebSearch", 2),
)
_TOOL_NAMES = [t for t, _ in _TOOL_WEIGHTS]
_TOOL_W = [w for _, w in _TOOL_WEIGHTS]
_MAIN_MODELS = (OPUS46, SONNET45, SONNET46, OPUS41, HAIKU45)
_MAIN_MODEL_W = (40, 22, 18, 8, 12)
_SYNTH_TEXTS = (
    "API Error: Request was aborted.",
    "No response requested.",
    'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    "Claude AI usage limit reached|1767225600",
)


@dataclass
class _Plan:
    kind: str  # modern | legacy | flat
    project: int
    model: str
    version: str
    cache_mode: str  # 1h | 5m | mixed | flat
    long_ctx: bool = False
    agents: int = 0  # subagent files (Agent calls / compactions) to write
    compacts: int = 0  # of which reserved for agent-acompact files
    legacy_agents: int = 0  # flat agent-<hex>.jsonl linked via Task
    warmups: int = 0  # flat unlinked Warmup agent files
    force: tuple[str, ...] = ()
    copies: int = 0  # resumed copies of this session
    copy_cut: str = "turn"  # turn | mid


class _Gen:
    def __init__(
        self, root: Path, files: int, target_bytes: int | None, seed: int, start: datetime
    ):
        self.root = Path(root)
        self.files_target = files
        self.target_bytes = target_bytes
        self.rng = random.Random(seed)
        self.pool = _Pool(random.Random(seed * 7919 + 17), n_files=600 if files > 60 else 150)
        self.end_ms = int(start.timestamp() * 1000)
        self.scale = 1.0
        self.scale_sum = 0.0
        self.crng = random.Random(seed * 7919 + 29)  # content: sizes and slices
        self.pool.rng = self.crng
        # ground truth
        self.responses: dict[tuple[str, str], tuple[str, Usage, str, str]] = {}
        self.tool_status: dict[str, str] = {}
        self.tool_name: dict[str, str] = {}
        self.agent_links: dict[str, str] = {}  # agentId -> Agent tool_use id (new layout)
        # counters
        self.n_files = 0
        self.n_lines = 0
        self.n_bytes = 0
        self.c = Counter()
        self.line_types: Counter = Counter()
        self.meta_files = 0
        self.sessions_main: list[str] = []
        self.resumed: list[list[str]] = []

    # -- output -------------------------------------------------------------
    def write_file(
        self, path: Path, lines: list[bytes], mtime_ms: int | None, kinds: list[str] = ()
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.line_types.update(kinds)
        data = b"\n".join(lines) + b"\n" if lines else b""
        with open(path, "wb") as f:
            f.write(data)
        if mtime_ms is not None:
            os.utime(path, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))
        self.n_files += 1
        self.n_lines += len(lines)
        self.n_bytes += len(data)
        self._adjust_scale()

    def _adjust_scale(self) -> None:
        """Steer the size of tool outputs so the corpus ends near target_bytes: assume a
        file's bytes grow with the scale it was written at, estimate bytes per file per
        unit of scale from what is written, and ask the remaining files for the rest."""
        self.scale_sum += self.scale
        if not self.target_bytes or self.n_files < 3:
            return
        left = self.files_target - self.n_files
        if left <= 0:
            return
        per_unit = self.n_bytes / self.scale_sum
        need = (self.target_bytes - self.n_bytes) / left / per_unit
        self.scale = min(30.0, max(0.03, self.scale / 2, min(self.scale * 2, need)))

    # -- plan ----------------------------------------------------------------
    def plan(self) -> tuple[list[_Plan], int, int]:
        rng = self.rng
        f = self.files_target
        n_copy = max(1, f // 20) if f >= 10 else 0
        n_legacy_agents = max(1, f // 20) if f >= 12 else 0
        n_special = f // 100 if f >= 50 else 0
        n_sub = round(f * 0.30) if f >= 4 else 0
        n_main = f - n_copy - n_legacy_agents - n_special - n_sub
        if n_main < 1:
            n_main, n_sub, n_copy, n_legacy_agents, n_special = f, 0, 0, 0, 0
        n_legacy = max(1, round(n_main * 0.06)) if n_legacy_agents else 0
        n_flat = max(1, round(n_main * 0.02)) if f >= 20 else 0
        n_modern = max(1, n_main - n_legacy - n_flat)
        n_legacy = n_main - n_modern - n_flat

        # projects
        n_proj = 1 if f < 10 else max(3, min(60, round(f / 80)))
        cwds = []
        for i in range(n_proj):
            name = _PROJECT_NAMES[i % len(_PROJECT_NAMES)] + (
                f"-{i // len(_PROJECT_NAMES)}" if i >= len(_PROJECT_NAMES) else ""
            )
            k = i % 5
            if k == 3:
                cwd = f"/home/user/src/github.com/acme/{name}"
            elif k == 4 and i == 4:
                cwd = "/home/user/.config/nvim"
            elif k == 4:
                cwd = f"/home/user/work/{name}/worktrees/{name}-{_hex(rng, 3)}"
            else:
                cwd = f"/home/user/{name}"
            cwds.append(cwd)
        self.cwds = cwds
        self.project_dirs = [encode_cwd(c) for c in cwds]
        hooked = min(1, n_proj - 1)  # at least one project runs hooks
        self.project_hooks = [rng.random() < 0.3 or i == hooked for i in range(n_proj)]
        self.project_branch = [
            rng.choice(("main", "main", "master", f"feat/{rng.choice(_PARTS)}")) for _ in cwds
        ]
        pw = [1.0 / (i + 1) for i in range(n_proj)]

        def proj() -> int:
            return rng.choices(range(n_proj), weights=pw)[0]

        presets = [
            dict(
                model=SONNET45,
                long_ctx=True,
                cache_mode="mixed",
                force=("miss_big", "nocache_big", "websearch", "bash_progress"),
            ),
            dict(model=OPUS46, long_ctx=True, cache_mode="1h", force=("synthetic", "error")),
            dict(model=HAIKU45, cache_mode="5m", force=("open_end", "error")),
            dict(model=OPUS41, cache_mode="1h", force=("compact",)),
            dict(
                model=SONNET46,
                long_ctx=True,
                cache_mode="5m",
                force=("websearch", "synthetic", "miss_big"),
            ),
        ]
        plans: list[_Plan] = []
        for i in range(n_modern):
            if i < len(presets):
                p = _Plan(
                    kind="modern", project=i % n_proj, version=_VERSIONS_21[i % 2], **presets[i]
                )
            else:
                model = rng.choices(_MAIN_MODELS, weights=_MAIN_MODEL_W)[0]
                r = rng.random()
                mode = "1h" if r < 0.4 else ("5m" if r < 0.9 else "mixed")
                force = []
                if rng.random() < 0.02:
                    force.append("open_end")
                p = _Plan(
                    kind="modern",
                    project=proj(),
                    model=model,
                    version=rng.choice(_VERSIONS_21),
                    cache_mode=mode,
                    long_ctx=model != HAIKU45 and rng.random() < 0.08,
                    force=tuple(force),
                )
            plans.append(p)
        for _ in range(n_legacy):
            plans.append(
                _Plan(
                    kind="legacy",
                    project=proj(),
                    model=rng.choice((SONNET45, OPUS41, SONNET45)),
                    version=rng.choice(_VERSIONS_20),
                    cache_mode=rng.choice(("5m", "1h")),
                )
            )
        for _ in range(n_flat):
            plans.append(
                _Plan(
                    kind="flat",
                    project=proj(),
                    model=SONNET45,
                    version=rng.choice(_VERSIONS_10),
                    cache_mode="flat",
                )
            )
        modern = [p for p in plans if p.kind == "modern"]
        legacy = [p for p in plans if p.kind == "legacy"]
        # subagent files: the first ones go to the presets that need them
        if n_sub:
            if len(modern) > 1:
                modern[1].agents += 1
                n_sub -= 1
            if n_sub and len(modern) > 3:
                modern[3].agents += 1
                modern[3].compacts += 1
                n_sub -= 1
            for _ in range(n_sub):
                rng.choice(modern).agents += 1
        if n_legacy_agents and legacy:
            warm = n_legacy_agents // 3
            for _ in range(warm):
                rng.choice(legacy).warmups += 1
            legacy[0].legacy_agents += 1
            for _ in range(n_legacy_agents - warm - 1):
                rng.choice(legacy).legacy_agents += 1
        for i in range(n_copy):
            origin = modern[0] if i == 0 else rng.choice(modern)
            origin.copies += 1
            if i == 0:
                origin.copy_cut = "mid"
        rng.shuffle(plans)
        return plans, n_special, n_copy

    # -- run -------------------------------------------------------------------
    def run(self) -> CorpusInfo:
        t0 = time.perf_counter()
        plans, n_special, _ = self.plan()
        span_ms = 30 * 86400 * 1000
        for p in plans:
            t = self.end_ms - span_ms + self.rng.randrange(int(span_ms * 0.93))
            _SessionGen(self, p, t).run()
        for i in range(n_special):
            self._special_file(i)
        return self._info(time.perf_counter() - t0)

    def _special_file(self, i: int) -> None:
        rng = self.rng
        pdir = self.root / "projects" / self.project_dirs[i % len(self.project_dirs)]
        sid = _uuid(rng)
        if i % 3 == 0:  # a 0-byte session file (resume artefact)
            self.write_file(pdir / f"{sid}.jsonl", [], None)
            self.c["empty_files"] += 1
            self.c["session_files"] += 1
            return
        t = self.end_ms - rng.randrange(30 * 86400 * 1000)
        lines = []
        for _ in range(rng.randint(1, 4)):
            mid = _uuid(rng)
            lines.append(
                _dumps(
                    {
                        "type": "file-history-snapshot",
                        "messageId": mid,
                        "snapshot": {
                            "messageId": mid,
                            "trackedFileBackups": {},
                            "timestamp": _ts(t),
                        },
                        "isSnapshotUpdate": False,
                    }
                )
            )
        kinds = ["file-history-snapshot"] * len(lines)
        if i % 3 == 1:
            lines.append(
                _dumps(
                    {
                        "type": "summary",
                        "summary": self.pool.prose_text(60),
                        "leafUuid": _uuid(rng),
                    }
                )
            )
            kinds.append("summary")
        self.write_file(pdir / f"{sid}.jsonl", lines, t, kinds)
        self.c["meta_only_files"] += 1
        self.c["session_files"] += 1

    def _info(self, secs: float) -> CorpusInfo:
        status = Counter(self.tool_status.values())
        names = Counter(self.tool_name.values())
        sessions_with_usage = {s for (_m, _u, _p, s) in self.responses.values()} & set(
            self.sessions_main
        )
        exp = expected_totals(self.responses)
        return CorpusInfo(
            root=str(self.root),
            params={},
            files=self.n_files,
            meta_files=self.meta_files,
            lines=self.n_lines,
            bytes=self.n_bytes,
            projects=dict(zip(self.project_dirs, self.cwds, strict=True)),
            sessions=len(set(self.sessions_main)),
            sessions_with_usage=len(sessions_with_usage),
            session_files=self.c["session_files"],
            subagent_files=self.c["subagent_files"],
            compact_files=self.c["compact_files"],
            legacy_agent_files=self.c["legacy_agent_files"],
            warmup_agent_files=self.c["warmup_agent_files"],
            resumed_copies=self.resumed,
            empty_files=self.c["empty_files"],
            meta_only_files=self.c["meta_only_files"],
            line_types=dict(sorted(self.line_types.items())),
            usage_lines=self.c["usage_lines"],
            synthetic_lines=self.c["synthetic_lines"],
            agent_progress_lines=self.line_types["progress/agent_progress"],
            responses=len(self.responses),
            tool_calls=len(self.tool_status),
            tool_calls_by_status={k: status.get(k, 0) for k in ("ok", "error", "open")},
            tool_calls_by_name=dict(sorted(names.items())),
            open_tool_use_ids=sorted(k for k, v in self.tool_status.items() if v == "open"),
            expected=exp,
            features={k: v for k, v in sorted(self.c.items()) if k.startswith("f_")},
            generation_seconds=round(secs, 3),
        )


class _SessionGen:
    """One transcript file (main session, subagent, legacy agent or resumed copy)."""

    def __init__(
        self,
        g: _Gen,
        plan: _Plan,
        t_ms: int,
        *,
        sid: str | None = None,
        agent_id: str | None = None,
        path: Path | None = None,
        model: str | None = None,
    ):
        self.g = g
        self.rng = g.rng
        self.pool = g.pool
        self.plan = plan
        self.t = t_ms
        self.sid = sid or _uuid(self.rng)
        self.agent_id = agent_id
        self.sidechain = agent_id is not None
        self.model = model or plan.model
        self.project = plan.project
        self.pdir_name = g.project_dirs[plan.project]
        self.pdir = g.root / "projects" / self.pdir_name
        self.cwd = g.cwds[plan.project]
        self.path = path or (self.pdir / f"{self.sid}.jsonl")
        self.modern = plan.kind == "modern"
        self.hooks = g.project_hooks[plan.project] and not self.sidechain
        self.lines: list[bytes] = []
        self.uuids: list[str | None] = []
        self.kinds: list[str] = []
        self.tool_file: dict[str, int] = {}  # tool_use id -> pool file index (Read/Edit)
        self.last_msg_id = ""
        self.turn_starts: list[int] = []
        self.mid_cuts: list[int] = []
        self.resp_starts: list[int] = []  # first line of each response in this file
        self.ctx_at: dict[int, int] = {}
        self.parent: str | None = None
        self.slug = "-".join(self.rng.sample(_WORDS, 3))
        if plan.kind == "modern":
            self.tail = {
                "userType": "external",
                "entrypoint": "cli",
                "cwd": self.cwd,
                "sessionId": self.sid,
                "version": plan.version,
                "gitBranch": g.project_branch[plan.project],
            }
        else:
            self.tail = {
                "userType": "external",
                "cwd": self.cwd,
                "sessionId": self.sid,
                "version": plan.version,
                "gitBranch": g.project_branch[plan.project],
                "slug": self.slug,
            }
        self.sys_tokens = self.rng.randint(9000, 24000)
        if plan.long_ctx and not self.sidechain:
            self.ctx = self.sys_tokens  # cached prefix
            self.pending = self.rng.randint(190_000, 420_000)  # a big codebase pulled into context
            self.compact_limit = 900_000
        else:
            self.ctx = self.sys_tokens
            self.pending = self.rng.randint(500, 6000)
            self.compact_limit = 165_000
        self.first_call = True
        self.force = set(plan.force) if not self.sidechain else set()
        self.compacts_left = plan.compacts if not self.sidechain else 0
        self.agents_left = plan.agents - self.compacts_left if not self.sidechain else 0
        self.legacy_left = plan.legacy_agents if not self.sidechain else 0
        self.calls = 0
        self.last_usage: Usage | None = None
        self.final_msgs: list[
            tuple[dict, str, str, int]
        ] = []  # subagent: (message, requestId, uuid, t)
        self.tool_uses = 0
        self.last_text = ""

    # -- primitives --------------------------------------------------------------
    def tick(self, lo: int, hi: int) -> int:
        self.t += self.rng.randint(lo, hi)
        return self.t

    def emit(self, obj: dict, kind: str, uuid: str | None = None) -> None:
        self.lines.append(_dumps(obj))
        self.uuids.append(uuid)
        self.kinds.append(kind)
        if uuid is not None:
            self.parent = uuid

    def env(self, d: dict) -> dict:
        d.update(self.tail)
        return d

    def head(self) -> dict:
        d: dict[str, Any] = {"parentUuid": self.parent, "isSidechain": self.sidechain}
        if self.agent_id is not None:
            d["agentId"] = self.agent_id
        return d

    # -- records -----------------------------------------------------------------
    def queue_ops(self, text: str) -> None:
        if not self.modern or self.sidechain:
            return
        t = self.tick(5, 40)
        for op in ("enqueue", "dequeue"):
            d = {
                "type": "queue-operation",
                "operation": op,
                "timestamp": _ts(t),
                "sessionId": self.sid,
            }
            if op == "enqueue":
                d["content"] = text
            self.emit(d, "queue-operation")

    def snapshot(self, update: bool) -> None:
        mid = _uuid(self.rng)
        backups = {}
        if update:
            for _ in range(self.rng.randint(1, 4)):
                rel = self.pool.files[self.rng.randrange(len(self.pool.files))][0]
                backups[rel] = {
                    "backupFileName": f"{_hex(self.rng, 16)}@v{self.rng.randint(1, 5)}",
                    "version": self.rng.randint(1, 5),
                    "backupTime": _ts(self.t),
                }
        self.emit(
            {
                "type": "file-history-snapshot",
                "messageId": mid,
                "snapshot": {
                    "messageId": mid,
                    "trackedFileBackups": backups,
                    "timestamp": _ts(self.t),
                },
                "isSnapshotUpdate": update,
            },
            "file-history-snapshot",
        )

    def user_prompt(self, text: str, *, first: bool = False) -> None:
        u = _uuid(self.rng)
        d = self.head()
        if self.modern:
            d["promptId"] = _uuid(self.rng)
        d["type"] = "user"
        d["message"] = {"role": "user", "content": text}
        d["uuid"] = u
        d["timestamp"] = _ts(self.tick(500, 60000))
        if not self.sidechain:
            d["permissionMode"] = self.rng.choice(("default", "acceptEdits", "bypassPermissions"))
            if self.modern:
                d["thinkingMetadata"] = {"maxThinkingTokens": 31999}
        self.emit(self.env(d), "user/prompt", u)
        self.pending += _tok(len(text))

    def attachment(self, att: dict) -> None:
        u = _uuid(self.rng)
        d = self.head()
        d["attachment"] = att
        d["type"] = "attachment"
        d["uuid"] = u
        d["timestamp"] = _ts(self.t)
        self.emit(self.env(d), "attachment", u)

    def system(self, subtype: str, extra: dict, *, parent_null: bool = False) -> None:
        u = _uuid(self.rng)
        d = self.head()
        if parent_null:
            d["logicalParentUuid"] = d["parentUuid"]
            d["parentUuid"] = None
        d["type"] = "system"
        d["subtype"] = subtype
        d.update(extra)
        d["timestamp"] = _ts(self.tick(5, 200))
        d["uuid"] = u
        self.emit(self.env(d), f"system/{subtype}", u)

    def progress(
        self, data: dict, tool_use_id: str, parent_tool_use_id: str, t: int | None = None
    ) -> None:
        u = _uuid(self.rng)
        d = self.head()
        d["type"] = "progress"
        d["data"] = data
        d["toolUseID"] = tool_use_id
        d["parentToolUseID"] = parent_tool_use_id
        d["uuid"] = u
        d["timestamp"] = _ts(t if t is not None else self.tick(50, 3000))
        self.emit(self.env(d), f"progress/{data['type']}", u)

    def usage_obj(self, u: Usage, final: bool) -> dict:
        flat = self.plan.cache_mode == "flat"
        d: dict[str, Any] = {
            "input_tokens": u.input,
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
        }
        if final:
            d["output_tokens"] = u.output
            d["server_tool_use"] = {"web_search_requests": u.web_search, "web_fetch_requests": 0}
            d["service_tier"] = "standard"
            if not flat:
                d["cache_creation"] = {
                    "ephemeral_1h_input_tokens": u.cache_1h,
                    "ephemeral_5m_input_tokens": u.cache_5m,
                }
            if self.modern:
                d["inference_geo"] = ""
                d["iterations"] = []
                d["speed"] = "standard"
        else:
            if not flat:
                d["cache_creation"] = {
                    "ephemeral_5m_input_tokens": u.cache_5m,
                    "ephemeral_1h_input_tokens": u.cache_1h,
                }
            d["output_tokens"] = u.output
            d["service_tier"] = "standard"
            if self.modern:
                d["inference_geo"] = "not_available"
        return d

    # -- usage model ----------------------------------------------------------------
    def next_usage(self, out_tokens: int, kind: str | None = None) -> Usage:
        rng = self.rng
        pend = self.pending
        if self.first_call:
            inp = rng.randint(2, 12)
            read, write = self.ctx, pend
            self.first_call = False
        elif kind == "miss_big" or (kind is None and rng.random() < 0.03):
            inp = rng.randint(2, 12)
            read = min(self.sys_tokens, self.ctx)
            write = self.ctx + pend - read
            self.g.c["f_cache_miss"] += 1
        elif kind == "nocache_big" or (kind is None and rng.random() < 0.004):
            inp, read, write = self.ctx + pend, 0, 0
            self.g.c["f_no_cache"] += 1
        else:
            inp = rng.randint(1, 12) if rng.random() < 0.9 else rng.randint(100, 6000)
            read, write = self.ctx, pend
        self.ctx = read + write + (inp if read == 0 else 0)
        self.pending = out_tokens
        mode = (
            self.plan.cache_mode if not (self.sidechain and self.plan.cache_mode == "1h") else "5m"
        )
        if mode == "1h":
            c1, c5 = write, 0
        elif mode == "mixed":
            c1 = self.g.crng.randint(0, write)
            c5 = write - c1
        else:
            c1, c5 = 0, write
        if c1:
            self.g.c["f_cache_1h"] += 1
        if max(inp, read, c1, c5) > TIER_THRESHOLD:
            self.g.c["f_over_200k_" + self.model] += 1
        assert min(inp, out_tokens, c5, c1, read) >= 0
        return Usage(inp, out_tokens, c5, c1, read)

    # -- assistant response ----------------------------------------------------------
    def response(
        self,
        blocks: list[dict],
        *,
        kind: str | None = None,
        websearch: int = 0,
        model: str | None = None,
    ) -> list[tuple[str, str, str]]:
        """Write one API response, one line per content block; return [(tool_id, name, line uuid)]."""
        rng = self.rng
        model = model or self.model
        out = 0
        for b in blocks:
            if b["type"] == "text":
                out += _tok(len(b["text"]))
            elif b["type"] == "thinking":
                out += _tok(len(b["thinking"])) + self.g.crng.randint(0, 400)
            else:
                out += _tok(len(_dumps(b["input"])))
        out += rng.randint(5, 60)
        u = self.next_usage(out, kind)
        # real 2.1.3x files lack the final-usage line for many responses (more so in subagents)
        has_final = bool(websearch or kind) or rng.random() < (0.45 if self.sidechain else 0.85)
        if websearch and has_final:
            u = Usage(u.input, u.output, u.cache_5m, u.cache_1h, u.cache_read, websearch)
            self.g.c["f_web_search"] += websearch
        n = len(blocks)
        # output_tokens grows across the lines; the last line holds the largest count
        if has_final:
            crng = self.g.crng
            partial = [*sorted(crng.randint(1, max(1, min(out, 40))) for _ in range(n - 1)), out]
        else:
            partial = sorted(rng.randint(1, 40) for _ in range(n))
            u = Usage(u.input, partial[-1], u.cache_5m, u.cache_1h, u.cache_read, 0)
        msg_id, req_id = _msg_id(rng), _req_id(rng)
        self.last_msg_id = msg_id
        tools = []
        t_start = self.tick(800, 9000)
        for i, b in enumerate(blocks):
            last = i == n - 1
            lu = Usage(
                u.input,
                partial[i],
                u.cache_5m,
                u.cache_1h,
                u.cache_read,
                u.web_search if last else 0,
            )
            msg = {
                "model": model,
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": [b],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self.usage_obj(lu, last and has_final),
            }
            if self.modern:
                msg["context_management"] = None
            uid = _uuid(rng)
            d = self.head()
            d["message"] = msg
            d["requestId"] = req_id
            d["type"] = "assistant"
            d["uuid"] = uid
            d["timestamp"] = _ts(t_start if i == 0 else self.tick(20, 2500))
            self.emit(self.env(d), f"assistant/{b['type']}", uid)
            self.g.c["usage_lines"] += 1
            if b["type"] == "tool_use":
                tools.append((b["id"], b["name"], uid))
                self.g.tool_status[b["id"]] = "open"
                self.g.tool_name[b["id"]] = b["name"]
                self.tool_uses += 1
            if last and self.sidechain:
                self.final_msgs.append((msg, req_id, uid, self.t))
        self.resp_starts.append(len(self.lines) - n)
        if n > 1:
            self.mid_cuts.append(len(self.lines) - n + 1)
        self.g.responses[(msg_id, req_id)] = (model, u, self.pdir_name, self.sid)
        self.last_usage = u
        self.calls += 1
        return tools

    def synthetic(self) -> None:
        rng = self.rng
        uid = _uuid(rng)
        d = self.head()
        d["type"] = "assistant"
        d["uuid"] = uid
        d["timestamp"] = _ts(self.tick(100, 5000))
        d["message"] = {
            "id": _uuid(rng),
            "container": None,
            "model": SYNTHETIC,
            "role": "assistant",
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "type": "message",
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                "service_tier": None,
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
            },
            "content": [{"type": "text", "text": rng.choice(_SYNTH_TEXTS)}],
            "context_management": None,
        }
        d["isApiErrorMessage"] = True
        self.emit(self.env(d), "assistant/synthetic", uid)
        self.g.c["synthetic_lines"] += 1
        self.g.c["f_synthetic"] += 1

    # -- content ---------------------------------------------------------------------
    def sz(self, median: float, sigma: float, lo: int, hi: int) -> int:
        return _lognorm(self.g.crng, median * self.g.scale, sigma, lo, hi)

    def text_block(self, n: int | None = None) -> dict:
        return {
            "type": "text",
            "text": self.pool.prose_text(n or self.sz(260, 1.0, 8, 6000)),
        }

    def thinking_block(self) -> dict:
        rng = self.g.crng
        sig = base64.b64encode(rng.randbytes(rng.randint(200, 900))).decode()
        return {
            "type": "thinking",
            "thinking": self.pool.prose_text(self.sz(700, 1.0, 30, 12000)),
            "signature": sig,
        }

    def abspath(self, rel: str) -> str:
        return f"{self.cwd}/{rel}"

    def tool_block(self, name: str) -> dict:
        rng, pool = self.g.crng, self.pool  # content only: the tool was chosen by the caller
        if name == "Bash":
            cmd = rng.choice(
                (
                    f"pytest -q tests/test_{rng.choice(pool.idents)}.py",
                    f"git diff --stat HEAD~{rng.randint(1, 5)}",
                    f"cargo build --release 2>&1 | tail -{rng.randint(20, 200)}",
                    f"rg -n '{rng.choice(pool.idents)}' src/ | head -50",
                    f"npm run {rng.choice(('build', 'test', 'lint'))}",
                    f"ls -la {rng.choice(pool.files)[0].rsplit('/', 1)[0]}",
                )
            )
            inp = {"command": cmd, "description": self.pool.prose_text(30)}
            if rng.random() < 0.05:
                inp["run_in_background"] = True
        elif name == "Read":
            idx = pool.pick_file(self.sz(6500, 1.0, 200, 70000))
            inp = {"file_path": self.abspath(pool.files[idx][0])}
        elif name == "Edit":
            idx = pool.pick_file(self.sz(5000, 0.9, 200, 60000))
            content = pool.files[idx][1]
            a = rng.randrange(max(1, len(content) - 400))
            old = content[a : a + rng.randint(40, 1200)]
            inp = {
                "file_path": self.abspath(pool.files[idx][0]),
                "old_string": old,
                "new_string": old.replace("self", "this", 2)
                + "\n"
                + self.pool.prose_text(rng.randint(10, 300)),
                "replace_all": False,
            }
        elif name == "Write":
            idx = pool.pick_file(self.sz(2500, 0.8, 100, 30000))
            inp = {"file_path": self.abspath(pool.files[idx][0]), "content": pool.files[idx][1]}
        elif name == "Grep":
            inp = {
                "pattern": rng.choice(pool.idents),
                "path": self.cwd,
                "output_mode": "content",
                "-n": True,
            }
        elif name == "Glob":
            inp = {"pattern": f"**/*.{rng.choice(_EXT)}"}
        elif name == "TodoWrite":
            inp = {
                "todos": [
                    {
                        "content": pool.prose_text(50),
                        "status": rng.choice(("pending", "in_progress", "completed")),
                        "activeForm": pool.prose_text(40),
                    }
                    for _ in range(rng.randint(2, 8))
                ]
            }
        elif name == "WebFetch":
            inp = {
                "url": f"https://docs.example.com/{rng.choice(pool.idents)}",
                "prompt": pool.prose_text(80),
            }
        elif name == "WebSearch":
            inp = {"query": " ".join(rng.sample(_WORDS, 4))}
        else:
            raise ValueError(name)
        b = {"type": "tool_use", "id": _tool_id(rng), "name": name, "input": inp}
        if name in ("Read", "Edit"):
            self.tool_file[b["id"]] = idx
        if self.modern:
            b["caller"] = {"type": "direct"}
        return b

    def tool_output(self, b: dict, error: bool) -> tuple[Any, Any]:
        """(tool_result content, toolUseResult) for a non-Agent tool_use block."""
        rng, pool, name, inp = self.g.crng, self.pool, b["name"], b["input"]
        if error:
            if name == "Bash":
                text = f"Exit code {rng.choice((1, 2, 101, 127))}\n" + pool.log_text(
                    self.sz(500, 1.2, 20, 30000)
                )
            elif name == "Read":
                text = "<tool_use_error>File does not exist.</tool_use_error>"
            elif name == "Edit":
                text = (
                    "<tool_use_error>String to replace not found in file.\nString: "
                    + inp["old_string"][:200]
                    + "</tool_use_error>"
                )
            else:
                text = f"<tool_use_error>{pool.prose_text(80)}</tool_use_error>"
            return text, "Error: " + text
        if name == "Bash":
            out = pool.log_text(self.sz(700, 1.5, 0, 90000))
            return out, {
                "stdout": out,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
                "noOutputExpected": False,
            }
        if name == "Read":
            idx = self.tool_file[b["id"]]
            content = pool.files[idx][1]
            numbered = pool.numbered(idx)
            nlines = content.count("\n")
            return numbered, {
                "type": "text",
                "file": {
                    "filePath": inp["file_path"],
                    "content": content,
                    "numLines": nlines,
                    "startLine": 1,
                    "totalLines": nlines,
                },
            }
        if name == "Edit":
            idx = self.tool_file[b["id"]]
            content = pool.files[idx][1]
            snippet = pool.numbered(idx)[: rng.randint(300, 1500)]
            text = f"The file {inp['file_path']} has been updated. Here's the result of running `cat -n` on a snippet of the edited file:\n{snippet}"
            old_lines = inp["old_string"].split("\n")
            new_lines = inp["new_string"].split("\n")
            start = rng.randint(1, 400)
            return text, {
                "filePath": inp["file_path"],
                "oldString": inp["old_string"],
                "newString": inp["new_string"],
                "originalFile": content,
                "structuredPatch": [
                    {
                        "oldStart": start,
                        "oldLines": len(old_lines),
                        "newStart": start,
                        "newLines": len(new_lines),
                        "lines": [" " + old_lines[0]]
                        + ["-" + x for x in old_lines[1:]]
                        + ["+" + x for x in new_lines],
                    }
                ],
                "userModified": False,
                "replaceAll": False,
            }
        if name == "Write":
            return (
                f"File created successfully at: {inp['file_path']}",
                {
                    "type": "create",
                    "filePath": inp["file_path"],
                    "content": inp["content"],
                    "structuredPatch": [],
                },
            )
        if name == "Grep":
            n = self.sz(1500, 1.2, 0, 40000)
            lines = pool.log_text(n).split("\n") if n else []
            files = sorted(
                {
                    self.abspath(pool.files[rng.randrange(len(pool.files))][0])
                    for _ in range(min(20, len(lines)))
                }
            )
            text = (
                "\n".join(
                    f"{files[i % len(files)]}:{rng.randint(1, 900)}:{ln}"
                    for i, ln in enumerate(lines)
                )
                if files
                else "No matches found"
            )
            return text, {
                "mode": "content",
                "numFiles": len(files),
                "filenames": [],
                "content": text,
                "numLines": len(lines),
            }
        if name == "Glob":
            files = [
                self.abspath(pool.files[rng.randrange(len(pool.files))][0])
                for _ in range(self.sz(25, 1.0, 0, 400))
            ]
            return (
                "\n".join(files) or "No files found",
                {
                    "filenames": files,
                    "durationMs": rng.randint(2, 400),
                    "numFiles": len(files),
                    "truncated": len(files) >= 100,
                },
            )
        if name == "TodoWrite":
            return (
                "Todos have been modified successfully. Ensure that you continue to use the todo list to track your progress.",
                {"oldTodos": [], "newTodos": inp["todos"]},
            )
        if name == "WebFetch":
            body = pool.prose_text(self.sz(3000, 0.8, 100, 40000))
            return body, {
                "bytes": len(body) * 3,
                "code": 200,
                "codeText": "OK",
                "result": body,
                "durationMs": rng.randint(200, 9000),
                "url": inp["url"],
            }
        if name == "WebSearch":
            results = [
                {
                    "title": pool.prose_text(40),
                    "url": f"https://example.org/{rng.choice(pool.idents)}",
                }
                for _ in range(10)
            ]
            text = (
                f'Web search results for query: "{inp["query"]}"\n\n'
                + json.dumps(results)
                + "\n\n"
                + pool.prose_text(self.sz(1500, 0.6, 100, 9000))
            )
            return text, {
                "query": inp["query"],
                "results": [
                    {"tool_use_id": f"srvtoolu_01{_b62(rng, 22)}", "content": results},
                    text[-500:],
                ],
                "durationSeconds": round(rng.uniform(1, 9), 3),
            }
        raise ValueError(name)

    def tool_result(
        self, tool_id: str, content: Any, tur: Any, is_error: bool, source_uuid: str
    ) -> None:
        u = _uuid(self.rng)
        d = self.head()
        if self.modern and not self.sidechain:
            d["promptId"] = self.prompt_id
        d["type"] = "user"
        d["message"] = {
            "role": "user",
            "content": [
                {
                    "tool_use_id": tool_id,
                    "type": "tool_result",
                    "content": content,
                    "is_error": is_error,
                }
            ],
        }
        d["uuid"] = u
        d["timestamp"] = _ts(self.tick(30, 20000))
        d["toolUseResult"] = tur
        if self.modern:
            d["sourceToolAssistantUUID"] = source_uuid
        self.emit(self.env(d), "user/tool_result", u)
        self.g.tool_status[tool_id] = "error" if is_error else "ok"
        clen = (
            len(content)
            if isinstance(content, str)
            else sum(len(x.get("text", "")) for x in content)
        )
        self.pending += _tok(clen)

    # -- conversation -----------------------------------------------------------------
    def run_tools(self, tools: list[tuple[str, str, str]], blocks_by_id: dict[str, dict]) -> None:
        rng = self.rng
        order = list(tools)
        if len(order) > 1 and rng.random() < 0.5:
            order.reverse()
        for tid, name, uid in order:
            b = blocks_by_id[tid]
            if name in ("Agent", "Task"):
                self.run_agent(b, uid)
                continue
            error = rng.random() < 0.06 or "error" in self.force
            if error and "error" in self.force:
                self.force.discard("error")
            if self.hooks:
                self.progress(
                    {
                        "type": "hook_progress",
                        "hookEvent": "PreToolUse",
                        "hookName": f"PreToolUse:{name}",
                        "command": "$HOME/.claude/hooks/guard.sh",
                    },
                    _uuid(rng),
                    tid,
                )
            if (
                name == "Bash"
                and not self.sidechain
                and (rng.random() < 0.12 or "bash_progress" in self.force)
            ):
                self.force.discard("bash_progress")
                full = ""
                for _ in range(rng.randint(1, 4)):
                    chunk = self.pool.log_text(self.sz(400, 1.0, 20, 8000))
                    full = (full + "\n" + chunk)[-20000:]
                    self.progress(
                        {
                            "type": "bash_progress",
                            "output": chunk[-600:],
                            "fullOutput": full,
                            "elapsedTimeSeconds": rng.randint(3, 300),
                            "totalLines": full.count("\n"),
                        },
                        f"bash-progress-{rng.randint(0, 99)}",
                        tid,
                    )
            content, tur = self.tool_output(b, error)
            self.tool_result(tid, content, tur, error, uid)
            if error:
                self.g.c["f_tool_error"] += 1
            if self.hooks:
                self.progress(
                    {
                        "type": "hook_progress",
                        "hookEvent": "PostToolUse",
                        "hookName": f"PostToolUse:{name}",
                        "command": "$HOME/.claude/hooks/format.sh",
                    },
                    _uuid(rng),
                    tid,
                )

    def compose(self, *, allow_tools: bool, final: bool) -> tuple[list[dict], dict[str, dict]]:
        rng = self.rng
        blocks: list[dict] = []
        if self.model != HAIKU45 and rng.random() < 0.3:
            blocks.append(self.thinking_block())
        if final or rng.random() < 0.6:
            blocks.append(self.text_block(self.sz(900, 0.9, 40, 8000) if final else None))
        by_id: dict[str, dict] = {}
        if allow_tools and not final:
            k = 1 if rng.random() < 0.82 else rng.randint(2, 3)
            for _ in range(k):
                name = rng.choices(_TOOL_NAMES, weights=_TOOL_W)[0]
                if "bash_progress" in self.force:
                    name = "Bash"
                if self.sidechain and name in ("Edit", "Write", "TodoWrite"):
                    name = "Read"
                b = self.tool_block(name)
                blocks.append(b)
                by_id[b["id"]] = b
        if not blocks:
            blocks.append(self.text_block())
        return blocks, by_id

    def call(self, *, final: bool, kind: str | None = None) -> None:
        """One API call and, unless final, its tool results."""
        blocks, by_id = self.compose(allow_tools=True, final=final)
        ws = 0
        if any(b.get("name") == "WebSearch" for b in by_id.values()) or "websearch" in self.force:
            ws = self.rng.randint(1, 3)
            self.force.discard("websearch")
        tools = self.response(blocks, kind=kind, websearch=ws)
        if tools:
            self.run_tools(tools, by_id)

    def maybe_compact(self) -> None:
        if self.ctx + self.pending < self.compact_limit and "compact" not in self.force:
            return
        self.force.discard("compact")
        rng = self.rng
        pre = self.ctx + self.pending
        if self.compacts_left > 0 or self.agents_left > 0:
            if self.compacts_left > 0:
                self.compacts_left -= 1
            else:
                self.agents_left -= 1
            aid = "acompact-" + _hex(rng, 6)
            sub = _SessionGen(
                self.g,
                self.plan,
                self.t,
                sid=self.sid,
                agent_id=aid,
                model=self.model,
                path=self.pdir / self.sid / "subagents" / f"agent-{aid}.jsonl",
            )
            sub.ctx, sub.pending = self.ctx, self.pending
            sub.first_call = False
            sub.user_prompt(
                "Your task is to create a detailed summary of the conversation so far. "
                + self.pool.prose_text(2000)
            )
            summary = self.pool.prose_text(self.sz(9000, 0.5, 1000, 40000))
            sub.response([{"type": "text", "text": summary}])
            sub.finish()
            self.g.c["compact_files"] += 1
            self.g.c["subagent_files"] += 1
            self.t = sub.t
        else:
            summary = self.pool.prose_text(self.sz(9000, 0.5, 1000, 40000))
        self.system(
            "compact_boundary",
            {
                "content": "Conversation compacted",
                "isMeta": False,
                "level": "info",
                "compactMetadata": {"trigger": "auto", "preTokens": pre},
            },
            parent_null=True,
        )
        u = _uuid(rng)
        d = self.head()
        d["type"] = "user"
        d["message"] = {
            "role": "user",
            "content": "This session is being continued from a previous conversation that ran out of context. The summary below covers the earlier portion of the conversation.\n\n"
            + summary,
        }
        d["isVisibleInTranscriptOnly"] = True
        d["isCompactSummary"] = True
        d["uuid"] = u
        d["timestamp"] = _ts(self.tick(10, 500))
        self.emit(self.env(d), "user/compact_summary", u)
        self.ctx = self.sys_tokens
        self.pending = _tok(len(summary)) + rng.randint(1000, 8000)
        self.first_call = True
        self.g.c["f_compaction"] += 1

    def turn(self, n_calls: int, turn_no: int, last_turn: bool) -> None:
        rng = self.rng
        self.turn_starts.append(len(self.lines))
        self.ctx_at[len(self.lines)] = self.ctx + self.pending
        prompt = self.pool.prose_text(
            self.sz(250, 1.2, 10, 12000) if rng.random() < 0.9 else self.sz(4000, 0.7, 500, 20000),
        )
        self.prompt_id = _uuid(rng)
        if rng.random() < 0.25:
            self.queue_ops(prompt[:200])
        if self.modern and turn_no == 0:
            self.queue_ops(prompt[:200])
        self.user_prompt(prompt)
        if self.modern and turn_no == 0:
            self.attachment(
                {
                    "type": "skill_listing",
                    "content": self.pool.prose_text(3500),
                    "skillCount": 13,
                    "isInitial": True,
                }
            )
            self.attachment(
                {
                    "type": "agent_listing_delta",
                    "addedTypes": ["Explore", "general-purpose", "Plan"],
                    "addedLines": [self.pool.prose_text(300) for _ in range(3)],
                    "removedTypes": [],
                    "isInitial": True,
                    "showConcurrencyNote": True,
                }
            )
        if rng.random() < 0.5:
            self.snapshot(update=turn_no > 0 and rng.random() < 0.5)
        if self.modern and rng.random() < 0.1:
            self.attachment({"type": "todo_reminder", "content": [], "itemCount": 0})
        if "synthetic" in self.force or rng.random() < 0.015:
            self.force.discard("synthetic")
            self.synthetic()
            if self.calls > 0 and not last_turn and rng.random() < 0.5:
                return
        # spread Agent calls / legacy Task calls over the turns
        turns_left = max(1, self.turns_total - turn_no)
        spawn = (
            sum(1 for _ in range(self.agents_left) if rng.random() < 1.0 / turns_left)
            if not last_turn
            else self.agents_left
        )
        spawn_legacy = (
            sum(1 for _ in range(self.legacy_left) if rng.random() < 1.0 / turns_left)
            if not last_turn
            else self.legacy_left
        )
        agent_slots = (
            set(rng.sample(range(n_calls), min(n_calls, spawn + spawn_legacy)))
            if n_calls > 1
            else set()
        )
        if spawn + spawn_legacy and not agent_slots:
            n_calls += 1
            agent_slots = {0}
        extra = spawn + spawn_legacy - len(agent_slots)
        for i in range(n_calls):
            final = i == n_calls - 1
            if i in agent_slots and self.agents_left + self.legacy_left > 0:
                k = 1 + (extra if i == min(agent_slots) else 0)
                self.agent_call(min(k, self.agents_left + self.legacy_left))
                self.maybe_compact()
                continue
            kind = None
            if i >= 1 and "miss_big" in self.force:
                kind = "miss_big"
                self.force.discard("miss_big")
            elif i >= 2 and "nocache_big" in self.force:
                kind = "nocache_big"
                self.force.discard("nocache_big")
            self.call(final=final, kind=kind)
            self.maybe_compact()
        if self.hooks:
            self.system(
                "stop_hook_summary",
                {
                    "hookCount": 2,
                    "hookInfos": [
                        {"command": "$HOME/.claude/hooks/notify.sh"},
                        {"command": "$HOME/.claude/hooks/format.sh"},
                    ],
                    "hookErrors": [],
                    "preventedContinuation": False,
                    "stopReason": "",
                    "hasOutput": True,
                    "level": "suggestion",
                    "toolUseID": _uuid(rng),
                },
            )
        if self.modern and rng.random() < 0.6:
            self.system("turn_duration", {"durationMs": rng.randint(2000, 900000), "isMeta": False})

    # -- subagents ---------------------------------------------------------------------
    def agent_call(self, k: int) -> None:
        """One response with k Agent (or legacy Task) tool_use blocks, then the subagents."""
        rng = self.rng
        blocks: list[dict] = []
        if rng.random() < 0.6:
            blocks.append(self.text_block())
        by_id = {}
        for _ in range(k):
            agent_type = rng.choice(_AGENT_TYPES)
            b = {
                "type": "tool_use",
                "id": _tool_id(rng),
                "name": "Agent" if self.modern else "Task",
                "input": {
                    "description": self.pool.prose_text(30),
                    "prompt": self.pool.prose_text(self.sz(900, 0.8, 60, 8000)),
                    "subagent_type": agent_type,
                },
            }
            if self.modern:
                b["caller"] = {"type": "direct"}
            blocks.append(b)
            by_id[b["id"]] = b
        tools = self.response(blocks)
        self.agent_msg_id = self.last_msg_id
        self.run_tools(tools, by_id)

    def run_agent(self, b: dict, source_uuid: str) -> None:
        rng = self.rng
        legacy = not self.modern
        if legacy:
            self.legacy_left -= 1
        else:
            self.agents_left -= 1
        agent_type = b["input"]["subagent_type"]
        prompt = b["input"]["prompt"]
        sub_model = (
            HAIKU45 if agent_type == "Explore" else rng.choice((self.model, self.model, SONNET45))
        )
        if legacy:
            aid = "a" + _hex(rng, 7)
            path = self.pdir / f"agent-{aid}.jsonl"
        else:
            aid = "a" + _hex(rng, 16)
            path = self.pdir / self.sid / "subagents" / f"agent-{aid}.jsonl"
        sub = _SessionGen(
            self.g, self.plan, self.t, sid=self.sid, agent_id=aid, model=sub_model, path=path
        )
        sub.user_prompt(prompt)
        t_first = sub.t
        first_user = {
            "type": "user",
            "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
            "uuid": sub.uuids[0],
            "timestamp": _ts(t_first),
        }
        n = _lognorm(rng, 6, 0.8, 1, 40)
        for i in range(n):
            sub.call(final=i == n - 1)
        sub.finish()
        if legacy:
            self.g.c["legacy_agent_files"] += 1
        else:
            self.g.c["subagent_files"] += 1
            meta = {
                "agentType": agent_type,
                "description": b["input"]["description"],
                "toolUseId": b["id"],
            }
            mp = path.with_name(f"agent-{aid}.meta.json")
            mp.write_bytes(_dumps(meta))
            self.g.meta_files += 1
            self.g.agent_links[aid] = b["id"]
            # agent_progress copies of the subagent's messages (same ids, the final usage line of each response)
            parent_msg = self.agent_msg_id
            base = {
                "normalizedMessages": [],
                "type": "agent_progress",
                "prompt": prompt,
                "agentId": aid,
            }
            self.progress(
                {"message": first_user, **base},
                f"agent_msg_{parent_msg}",
                b["id"],
                t=max(self.t, t_first),
            )
            for msg, req, uid, t in sub.final_msgs:
                self.progress(
                    {
                        "message": {
                            "type": "assistant",
                            "timestamp": _ts(t),
                            "message": msg,
                            "requestId": req,
                            "uuid": uid,
                        },
                        **base,
                    },
                    f"agent_msg_{parent_msg}",
                    b["id"],
                    t=max(self.t, t),
                )
        self.t = max(self.t, sub.t) + rng.randint(50, 2000)
        lu = sub.last_usage or Usage()
        report = sub.last_text or self.pool.prose_text(500)
        dur = max(1, sub.t - t_first)
        tail = (
            f"agentId: {aid} (use SendMessage with to: '{aid}', summary: '<5-10 word recap>' to continue this agent)\n"
            f"<usage>subagent_tokens: {lu.total}\ntool_uses: {sub.tool_uses}\nduration_ms: {dur}</usage>"
        )
        content = [{"type": "text", "text": report}, {"type": "text", "text": tail}]
        tur = {
            "status": "completed",
            "prompt": prompt,
            "agentId": aid,
            "agentType": agent_type,
            "content": [{"type": "text", "text": report}],
            "resolvedModel": sub_model,
            "totalDurationMs": dur,
            "totalTokens": lu.total,
            "totalToolUseCount": sub.tool_uses,
            "usage": sub.usage_obj(lu, True),
        }
        self.tool_result(b["id"], content, tur, False, source_uuid)

    def warmup(self) -> None:
        rng = self.rng
        aid = "a" + _hex(rng, 7)
        sub = _SessionGen(
            self.g,
            self.plan,
            self.t,
            sid=self.sid,
            agent_id=aid,
            model=HAIKU45,
            path=self.pdir / f"agent-{aid}.jsonl",
        )
        sub.user_prompt("Warmup")
        sub.response([sub.text_block(rng.randint(80, 600))])
        sub.finish()
        self.g.c["legacy_agent_files"] += 1
        self.g.c["warmup_agent_files"] += 1

    # -- session driver ----------------------------------------------------------------
    def finish(self) -> None:
        if self.sidechain:
            for line in reversed(self.lines):
                if b'"type":"text","text":"' in line and b'"role":"assistant"' in line:
                    self.last_text = json.loads(line)["message"]["content"][0]["text"]
                    break
        self.g.write_file(self.path, self.lines, self.t, self.kinds)

    def run(self, *, turns: int | None = None) -> None:
        rng = self.rng
        p = self.plan
        self.turns_total = turns or min(40, 1 + int(rng.expovariate(1 / 2.0)))
        if not self.sidechain:
            self.g.sessions_main.append(self.sid)
            self.g.c["session_files"] += 1
        for _ in range(p.warmups):
            self.warmup()
        if self.force:  # presets must get the chance to show their traps
            self.turns_total = max(self.turns_total, 3)
        for ti in range(self.turns_total):
            n = _lognorm(rng, 2.8, 0.9, 1, 60)
            if self.force:
                n = max(n, 4)
            self.turn(n, ti, ti == self.turns_total - 1)
            if self.t > self.g.end_ms - 3_600_000:
                break
        # whatever quota is left (a turn ended early): spend it now
        while self.compacts_left > 0:
            self.force.add("compact")
            self.maybe_compact()
        while self.agents_left > 0 or self.legacy_left > 0:
            self.agent_call(1)
        if "open_end" in self.force:  # the session was killed while a tool ran: no result
            self.force.discard("open_end")
            self.response([self.text_block(), self.tool_block("Bash")])
            self.g.c["f_open_tool_use"] += 1
        if self.modern and not self.sidechain and p.version >= "2.1.195":
            last_prompt = None
            for line in reversed(self.lines):
                if (
                    b'"content":"' in line
                    and b'"type":"user"' in line
                    and b'"tool_result"' not in line
                ):
                    last_prompt = json.loads(line)["message"]["content"]
                    break
            if last_prompt is not None:
                self.emit(
                    {
                        "type": "last-prompt",
                        "lastPrompt": last_prompt[:300],
                        "leafUuid": self.parent,
                        "sessionId": self.sid,
                    },
                    "last-prompt",
                )
        lines = self.lines
        self.finish()
        for _ in range(p.copies):
            self.resume_copy(lines)

    def resume_copy(self, lines: list[bytes]) -> None:
        rng = self.rng
        # the origin keeps its last response to itself, so that both files own usage
        # whichever of the two ccusage reads first (it breaks ties by path order)
        last = self.resp_starts[-1] if self.resp_starts else len(lines)
        first_uuid = next((i for i, u in enumerate(self.uuids) if u), 0)
        mids = [c for c in self.mid_cuts if c <= last]
        turns = [c for c in self.turn_starts[1:] if first_uuid < c <= last]
        mid = self.plan.copy_cut == "mid" and bool(mids)
        cuts = mids if mid else (turns or mids)
        cut = rng.choice(cuts) if cuts else first_uuid + 1  # at least the first prompt
        new_sid = _uuid(rng)
        old = self.sid.encode()
        prefix = [ln.replace(old, new_sid.encode()) for ln in lines[:cut]]
        t0 = min(self.g.end_ms - 1_800_000, self.t + rng.randint(300_000, 6 * 3_600_000))
        cp = _Plan(
            kind="modern",
            project=self.plan.project,
            model=self.model,
            version=self.plan.version,
            cache_mode=self.plan.cache_mode,
            long_ctx=False,
        )
        cont = _SessionGen(self.g, cp, max(t0, self.t + 1000), sid=new_sid)
        cont.lines = prefix
        cont.uuids = self.uuids[:cut]
        cont.kinds = self.kinds[:cut]
        cont.parent = next((u for u in reversed(cont.uuids) if u), None)
        cont.sys_tokens = self.sys_tokens
        cont.ctx = self.ctx_at.get(cut, self.sys_tokens + 20000)
        cont.pending = rng.randint(200, 3000)
        cont.first_call = False
        self.g.c["usage_lines"] += sum(
            1 for k in cont.kinds if k.startswith("assistant/") and k != "assistant/synthetic"
        )
        self.g.c["synthetic_lines"] += cont.kinds.count("assistant/synthetic")
        cont.run(turns=rng.randint(1, 3))
        self.g.resumed.append([new_sid, self.sid, "mid" if mid else "turn"])
        self.g.c["f_resumed_copy"] += 1


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def generate(
    root: Path,
    *,
    files: int,
    target_bytes: int | None = None,
    seed: int = 0,
    start: datetime | None = None,
) -> CorpusInfo:
    """Write a synthetic Claude config dir under ``root`` (``root/projects/...``).

    ``files`` is the number of ``.jsonl`` transcripts to write (meta.json files
    come on top). ``target_bytes``, if given, scales text and tool outputs so the total
    lands near it (within ~1% at the benchmark size; small corpora have a floor of
    fixed-size records). The structure (sessions, calls, lines) is drawn from a
    separate random stream, so it does not move with ``target_bytes``, except where
    bigger contexts trigger compactions sooner. Timestamps
    spread over the 30 days before ``start`` (default: now, UTC).
    """
    if files < 1:
        raise ValueError("files must be >= 1")
    if start is None:
        start = datetime.now(UTC)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    root = Path(root)
    if (root / "projects").exists():
        raise FileExistsError(f"{root / 'projects'} already exists")
    g = _Gen(root, files, target_bytes, seed, start)
    info = g.run()
    info.params = {
        "files": files,
        "target_bytes": target_bytes,
        "seed": seed,
        "start": start.isoformat(),
        "generator": GENERATOR_VERSION,
    }
    return info


def _source_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


GENERATOR_VERSION = _source_hash()


def jsonl_size(root: Path) -> tuple[int, int]:
    """(number of .jsonl files, total bytes) under root/projects."""
    n = b = 0
    for dirpath, _dirs, fnames in os.walk(Path(root) / "projects"):
        for f in fnames:
            if f.endswith(".jsonl"):
                n += 1
                b += os.stat(os.path.join(dirpath, f)).st_size
    return n, b


def generate_cached(
    cache_dir: Path,
    *,
    files: int,
    target_bytes: int | None = None,
    seed: int = 0,
    start: datetime | None = None,
    log=None,
) -> tuple[CorpusInfo, bool]:
    """Like generate(), but reuse ``cache_dir/corpus-<key>/`` when a complete copy with the
    same parameters and generator source exists and its files are intact.
    Returns (info, reused). ``start`` defaults to today 00:00 UTC so the cache lives a day."""
    if start is None:
        now = datetime.now(UTC)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    key = hashlib.sha256(
        json.dumps([files, target_bytes, seed, start.isoformat(), GENERATOR_VERSION]).encode()
    ).hexdigest()[:12]
    cache_dir = Path(cache_dir)
    d = cache_dir / f"corpus-{files}-{target_bytes or 'natural'}-s{seed}-{key}"
    info_path = d / "info.json"
    if info_path.exists():
        info = CorpusInfo.from_json(info_path.read_text())
        if jsonl_size(d) == (info.files, info.bytes):
            info.root = str(d)
            return info, True
        if log:
            log(f"cached corpus {d} was modified; regenerating")
    if d.exists():
        shutil.rmtree(d)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("corpus-*"):
        if old.is_dir() and old != d:  # keep one corpus around; they are big
            shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".corpus-", dir=cache_dir))
    info = generate(tmp, files=files, target_bytes=target_bytes, seed=seed, start=start)
    tmp.rename(d)
    info.root = str(d)
    info_path.write_text(info.to_json())
    return info, False


# ----------------------------------------------------------------------------
# Live-test helpers
# ----------------------------------------------------------------------------


def session_meta(path: Path) -> dict[str, Any]:
    """sessionId, cwd, version, gitBranch, isSidechain, agentId, last uuid of a transcript."""
    meta: dict[str, Any] = {}
    last_uuid = None
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if not meta and "sessionId" in d and "cwd" in d:
                meta = {
                    k: d.get(k)
                    for k in ("sessionId", "cwd", "version", "gitBranch", "isSidechain", "agentId")
                }
            if d.get("uuid"):
                last_uuid = d["uuid"]
    meta["lastUuid"] = last_uuid
    return meta


def assistant_record(
    *,
    session_id: str,
    cwd: str,
    usage: Usage,
    model: str = SONNET46,
    message_id: str | None = None,
    request_id: str | None = None,
    timestamp: datetime | str | None = None,
    parent_uuid: str | None = None,
    text: str = "Done.",
    version: str = "2.1.197",
    git_branch: str = "main",
    is_sidechain: bool = False,
    agent_id: str | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """A complete 2.1.197-style assistant line (final usage) with the given usage."""
    rng = rng or random.Random()
    if timestamp is None:
        timestamp = datetime.now(UTC)
    if isinstance(timestamp, datetime):
        timestamp = _ts(int(timestamp.timestamp() * 1000))
    d: dict[str, Any] = {"parentUuid": parent_uuid, "isSidechain": is_sidechain}
    if agent_id:
        d["agentId"] = agent_id
    d["message"] = {
        "id": message_id or _msg_id(rng),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input,
            "cache_creation_input_tokens": usage.cache_write,
            "cache_read_input_tokens": usage.cache_read,
            "output_tokens": usage.output,
            "server_tool_use": {"web_search_requests": usage.web_search, "web_fetch_requests": 0},
            "service_tier": "standard",
            "cache_creation": {
                "ephemeral_1h_input_tokens": usage.cache_1h,
                "ephemeral_5m_input_tokens": usage.cache_5m,
            },
            "inference_geo": "",
            "iterations": [],
            "speed": "standard",
        },
        "stop_details": None,
    }
    d["requestId"] = request_id or _req_id(rng)
    d["type"] = "assistant"
    d["uuid"] = _uuid(rng)
    d["timestamp"] = timestamp
    d.update(
        {
            "userType": "external",
            "entrypoint": "cli",
            "cwd": cwd,
            "sessionId": session_id,
            "version": version,
            "gitBranch": git_branch,
        }
    )
    return d


def append_lines(path: Path, records: list[dict[str, Any]], *, split_at: int | None = None) -> int:
    """Append records as compact JSON lines with one O_APPEND write (or two, cut at byte
    ``split_at`` of the data, to imitate a writer caught mid-line). Returns bytes written."""
    data = b"".join(_dumps(r) + b"\n" for r in records)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if split_at is None:
            os.write(fd, data)
        else:
            os.write(fd, data[:split_at])
            os.write(fd, data[split_at:])
    finally:
        os.close(fd)
    return len(data)


def append_assistant(
    path: Path,
    usage: Usage,
    *,
    model: str = SONNET46,
    meta: dict[str, Any] | None = None,
    rng: random.Random | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Append one new assistant line (new message and request ids) with ``usage`` to an
    existing transcript, stamped with its sessionId/cwd; returns the record written.
    Pass ``meta=session_meta(path)`` to skip re-reading the file."""
    m = meta or session_meta(Path(path))
    rec = assistant_record(
        session_id=m["sessionId"],
        cwd=m["cwd"],
        usage=usage,
        model=model,
        parent_uuid=m.get("lastUuid"),
        version=m.get("version") or "2.1.197",
        git_branch=m.get("gitBranch") or "main",
        is_sidechain=bool(m.get("isSidechain")),
        agent_id=m.get("agentId"),
        rng=rng,
        **kw,
    )
    append_lines(Path(path), [rec])
    if meta is not None:
        meta["lastUuid"] = rec["uuid"]
    return rec


def write_session(
    root: Path,
    *,
    cwd: str = "/home/user/live-project",
    session_id: str | None = None,
    usages: list[tuple[str, Usage]] | None = None,
    start: datetime | None = None,
    seed: int = 0,
) -> tuple[Path, dict[str, Any]]:
    """Write a new small session file (prompt, then one assistant line per usage) under
    root/projects/<encoded cwd>/; returns (path, expected totals of it)."""
    rng = random.Random(seed)
    session_id = session_id or _uuid(rng)
    usages = usages or [
        (SONNET46, Usage(3, 120, 2000, 0, 15000)),
        (HAIKU45, Usage(5, 40, 0, 500, 9000)),
    ]
    t = int((start or datetime.now(UTC)).timestamp() * 1000)
    tail = {
        "userType": "external",
        "entrypoint": "cli",
        "cwd": cwd,
        "sessionId": session_id,
        "version": "2.1.197",
        "gitBranch": "main",
    }
    u0 = _uuid(rng)
    recs = [
        {
            "parentUuid": None,
            "isSidechain": False,
            "promptId": _uuid(rng),
            "type": "user",
            "message": {"role": "user", "content": "live test prompt"},
            "uuid": u0,
            "timestamp": _ts(t),
            **tail,
        }
    ]
    parent = u0
    responses = {}
    for i, (model, u) in enumerate(usages):
        rec = assistant_record(
            session_id=session_id,
            cwd=cwd,
            usage=u,
            model=model,
            parent_uuid=parent,
            timestamp=_ts(t + 1000 * (i + 1)),
            rng=rng,
        )
        parent = rec["uuid"]
        recs.append(rec)
        responses[(rec["message"]["id"], rec["requestId"])] = (
            model,
            u,
            encode_cwd(cwd),
            session_id,
        )
    path = Path(root) / "projects" / encode_cwd(cwd) / f"{session_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    append_lines(path, recs)
    return path, expected_totals(responses)


# ----------------------------------------------------------------------------
# ccusage (the oracle)
# ----------------------------------------------------------------------------

CCUSAGE_VERSION = "20.0.24"


def find_ccusage() -> Path | None:
    """$CCOTEL_CCUSAGE if set, else tests/node/node_modules/.bin/ccusage (installed by
    scripts/install-test-deps); None if neither exists."""
    env = os.environ.get("CCOTEL_CCUSAGE")
    if env:
        return Path(env) if Path(env).exists() else None
    p = REPO_ROOT / "tests" / "node" / "node_modules" / ".bin" / "ccusage"
    return p if p.exists() else None


def ccusage_env(config_dir: Path, home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "CLAUDE_CONFIG_DIR": str(Path(config_dir).resolve()),
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
    }


def run_ccusage(
    config_dir: Path, report: str = "session", *, ccusage: Path | None = None, timeout: float = 600
) -> dict[str, Any]:
    """``ccusage REPORT --json --offline`` with CLAUDE_CONFIG_DIR=config_dir and an empty HOME."""
    exe = ccusage or find_ccusage()
    if exe is None:
        raise FileNotFoundError(
            "ccusage not found: run scripts/install-test-deps or set CCOTEL_CCUSAGE"
        )
    with tempfile.TemporaryDirectory(prefix="ccusage-home-") as home:
        p = subprocess.run(
            [str(exe), report, "--json", "--offline"],
            env=ccusage_env(config_dir, home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if p.returncode != 0:
        raise RuntimeError(f"ccusage {report} exited {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout)
