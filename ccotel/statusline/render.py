"""The status line's text, from the facts the daemon gathers (``Facts``) and the
``statusline_*`` settings. Every segment is left out when it has nothing to say."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

SEGMENTS = ("model", "costs", "block", "burn", "context", "plan", "budget")
_COLORS = {"ok": "\x1b[32m", "warn": "\x1b[33m", "bad": "\x1b[31m"}
_RESET = "\x1b[0m"
WARN_AT, BAD_AT = 0.8, 1.0  # the page's budget bar: amber from 80 %, red from 100 %


@dataclass
class Facts:
    model: str | None = None
    session_usd: float | None = None
    today_usd: float | None = None
    block_usd: float | None = None
    block_left_s: float | None = None
    burn_usd_per_hour: float | None = None
    context: tuple[float, int] | None = None  # (used ratio, window tokens)
    plan: dict[str, tuple[float, float | None]] = field(
        default_factory=dict
    )  # window -> (ratio, resets_at)
    budget_ratio: float | None = None  # the highest spend / budget over the configured windows
    now: float = 0.0


def usd(x: float) -> str:
    return f"${x:,.2f}"


def duration(s: float) -> str:
    m = int(s // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"


def pct(ratio: float) -> str:
    """A ratio as a whole percentage, halves up (42.5 % -> 43 %, as people round)."""
    if not math.isfinite(ratio):
        return "?%"
    return f"{math.floor(round(ratio * 100, 6) + 0.5)}%"


def level(ratio: float) -> str:
    return "bad" if ratio >= BAD_AT else "warn" if ratio >= WARN_AT else "ok"


def _paint(text: str, lvl: str, color: bool) -> str:
    return f"{_COLORS[lvl]}{text}{_RESET}" if color else text


def _reset_time(ts: float, now: float, window: str) -> str:
    t = time.localtime(ts)
    if window == "5h" or ts - now < 20 * 3600:
        return time.strftime("%H:%M", t)
    return time.strftime("%a %H:%M", t)


def _plan(f: Facts, color: bool) -> str:
    parts = []
    for window in ("5h", "7d"):
        got = f.plan.get(window)
        if got is None:
            continue
        ratio, resets_at = got
        if resets_at is not None and resets_at <= f.now:
            continue  # that window has reset since: its figure is no longer true
        text = _paint(f"{window} {pct(ratio)}", level(ratio), color)
        if resets_at is not None:
            text += f" ↻{_reset_time(resets_at, f.now, window)}"
        parts.append(text)
    return " · ".join(parts)


def segment(name: str, f: Facts, color: bool) -> str:
    if name == "model":
        return f.model or ""
    if name == "costs":
        parts = []
        if f.session_usd is not None:
            parts.append(f"{usd(f.session_usd)} session")
        if f.today_usd is not None:
            parts.append(f"{usd(f.today_usd)} today")
        return " · ".join(parts)
    if name == "block":
        if f.block_usd is None:
            return ""
        left = f" ({duration(f.block_left_s)} left)" if f.block_left_s is not None else ""
        return f"{usd(f.block_usd)} block{left}"
    if name == "burn":
        return f"{usd(f.burn_usd_per_hour)}/h" if f.burn_usd_per_hour is not None else ""
    if name == "context":
        if f.context is None:
            return ""
        ratio, _size = f.context
        return "ctx " + _paint(pct(ratio), level(ratio), color and ratio >= WARN_AT)
    if name == "plan":
        return _plan(f, color)
    if name == "budget":
        if f.budget_ratio is None:
            return ""
        return _paint(f"budget {pct(f.budget_ratio)}", level(f.budget_ratio), color)
    return ""


def render(
    f: Facts, segments: Iterable[str] = SEGMENTS, separator: str = " | ", color: bool = True
) -> str:
    line = separator.join(s for s in (segment(n, f, color) for n in segments) if s)
    return line.replace("\n", " ").replace("\r", " ")
