"""The API's JSON: one vocabulary for tokens everywhere, costs rounded at the edge.

Tokens, for a session, a model, a span or all time alike: ``uncached_input_tokens`` (input
tokens not read from or written to the cache: Anthropic's ``input_tokens``, ccusage's
``inputTokens``), ``cache_read_tokens``, ``cache_write_tokens``, ``output_tokens``, and
``tokens``, the sum of the four. A span's ``attrs`` keep the GenAI convention, whose
``gen_ai.usage.input_tokens`` includes the cache.
"""

from __future__ import annotations

import math
import os
from typing import Any

import msgspec

from ccotel.state import queries
from ccotel.traces import Span

COST_DECIMALS = 10  # per-token prices go down to ~1e-8 USD; float noise starts near 1e-15
KINDS = {"chat": "model", "execute_tool": "tool", "invoke_agent": "agent"}


def usage(u: queries.Usage) -> dict[str, Any]:
    return {
        "uncached_input_tokens": u.uncached_input,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "output_tokens": u.output,
        "tokens": u.uncached_input + u.cache_read + u.cache_write + u.output,
        "requests": u.requests,
        "cost_usd": u.cost,
    }


def encode(body: Any) -> bytes:
    return msgspec.json.encode(_rounded(body))


def encode_with(body: dict[str, Any], key: str, raw: bytes) -> bytes:
    """``body`` with ``key`` set to JSON already encoded (a cached span tree)."""
    head = encode(body)
    return (
        head[:-1] + (b"," if len(head) > 2 else b"") + msgspec.json.encode(key) + b":" + raw + b"}"
    )


def _rounded(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, COST_DECIMALS) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def bought(cost: float, added: float, removed: float, commits: float, prs: float) -> dict[str, Any]:
    """What the spend bought (ccotel.outcomes), and what each commit and 100 changed lines cost:
    None where there is nothing to divide by."""
    lines = added + removed
    return {
        "lines_added": int(added),
        "lines_removed": int(removed),
        "commits": int(commits),
        "pull_requests": int(prs),
        "cost_per_commit_usd": cost / commits if commits else None,
        "cost_per_100_lines_usd": cost * 100 / lines if lines else None,
    }


# --- health -------------------------------------------------------------------------------


def health(h: dict[str, Any], cfg: Any) -> dict[str, Any]:
    return {
        "ok": h.get("ok"),
        "files": h.get("files_tracked"),
        "lag_seconds": h.get("lag_seconds"),
        "parse_errors": h.get("parse_errors"),
        "pending_bytes": h.get("pending_bytes"),
        "lines": h.get("lines"),
        "version": h.get("version"),
        "traces": export_state(h.get("traces"), cfg, "TRACES"),
        "metrics_push": export_state(h.get("metrics_push"), cfg, "METRICS"),
    }


def export_state(d: dict[str, Any] | None, cfg: Any, signal: str) -> dict[str, Any]:
    """The health contract's ``state`` ("off", "waiting", "ok", "failing") with its error."""
    if not d or not d.get("enabled", True):
        return {"state": "off", "error": None, "endpoint": None}
    if "state" in d:
        return {k: d.get(k) for k in ("state", "error", "endpoint", "configured")}
    # A /healthz from before the contract says only "failing": it alarms only when the user
    # configured the endpoint (spans wait in the transcripts until one answers).
    configured = bool(
        getattr(cfg, "otlp_endpoint", "")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )
    failing = bool(d.get("failing"))
    state = ("failing" if configured else "waiting") if failing else "ok"
    return {
        "state": state,
        "error": d.get("error"),
        "endpoint": d.get("endpoint"),
        "configured": configured,
    }


# --- spans --------------------------------------------------------------------------------


def _kind(sp: Span) -> str:
    return (
        "session"
        if sp.parent_id == 0
        else KINDS.get(str(sp.attrs.get("gen_ai.operation.name")), "turn")
    )


def _span_usage(a: dict[str, Any]) -> queries.Usage | None:
    inp = a.get("gen_ai.usage.input_tokens")
    if inp is None:
        return None
    cr = a.get("gen_ai.usage.cache_read.input_tokens") or 0
    cw = a.get("gen_ai.usage.cache_creation.input_tokens") or 0
    unc = a.get("ccotel.usage.uncached_input_tokens", inp - cr - cw)
    reqs = a.get("ccotel.requests", 1 if a.get("gen_ai.operation.name") == "chat" else 0)
    return queries.Usage(
        unc, a.get("gen_ai.usage.output_tokens") or 0, cr, cw, reqs, a.get("ccotel.cost_usd") or 0.0
    )


def span_tree(spans: list[Span]) -> list[dict[str, Any]]:
    """Depth first, each span after its parent, siblings by start. A turn carries the sum of
    the model calls under it; ``turn`` names the turn a span belongs to (the page scales a
    turn's spans to the turn)."""
    by_id = {s.span_id: s for s in spans}
    children: dict[int, list[Span]] = {}
    roots = []
    for s in spans:
        if s.parent_id and s.parent_id in by_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            roots.append(s)
    out: list[dict[str, Any]] = []

    def walk(s: Span, depth: int, turn: int | None) -> queries.Usage:
        kind = _kind(s)
        own = _span_usage(s.attrs)
        row: dict[str, Any] = {
            "id": f"{s.span_id:016x}", "parent": f"{s.parent_id:016x}" if s.parent_id else None,
            "depth": depth, "kind": kind, "name": s.name, "start": s.start / 1e9, "end": s.end / 1e9,
            "duration_s": (s.end - s.start) / 1e9, "error": s.error,
            "model": s.attrs.get("gen_ai.response.model"), "tool": s.attrs.get("gen_ai.tool.name"),
            "turn": f"{turn:016x}" if turn else None, "children": len(children.get(s.span_id, ())),
            "attrs": {k: v for k, v in s.attrs.items() if isinstance(v, (str, int, float, bool))},
        }  # fmt: skip
        out.append(row)
        below = queries.Usage()
        for c in sorted(children.get(s.span_id, []), key=lambda c: (c.start, c.end, c.span_id)):
            below = below.plus(walk(c, depth + 1, s.span_id if kind == "turn" else turn))
        if kind == "model" and own is not None:
            below = own
        shown = own if own is not None else (below if kind == "turn" else None)
        row.update(usage(shown) if shown is not None else dict.fromkeys(usage(queries.Usage())))
        return below

    for r in sorted(roots, key=lambda s: (s.parent_id != 0, s.start, s.span_id)):
        walk(r, 0, None)
    return out
