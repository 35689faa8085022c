"""Price table and the cost of one API response.

Two rule sets: ``ccusage`` (default; equals ccusage 20.0.24 --offline) and
``anthropic`` (Anthropic's own billing: a Sonnet 4/4.5 request whose whole
prompt exceeds 200k tokens is billed entirely at the long-context rates, and
the dated aliases ccusage leaves unpriced get their list price).
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import Struct

from ccotel.records import Usage

Rules = Literal["ccusage", "anthropic"]
THRESHOLD = 200_000
_MTOK = 1_000_000.0
# A version digit after a key ("claude-opus-4" + "-0") names another model.
_VERSION_REST = re.compile(r"-\d{1,2}(?:$|\D)")


class Tier(Struct, forbid_unknown_fields=True):
    input: float
    output: float
    cache_write_5m: float
    cache_read: float
    cache_write_1h: float | None = None


class Rates(Tier, forbid_unknown_fields=True):
    """USD per million tokens: a Tier, with a fast-mode factor and the rates above 200k."""

    fast: float = 1.0
    above_200k: Tier | None = None


class PriceFile(Struct, forbid_unknown_fields=True):
    models: dict[str, Rates] = {}
    aliases: dict[str, str] = {}
    source: str = ""
    date: str = ""
    web_search_per_request: float | None = None


class PricingError(ValueError):
    pass


def _load(text: str, where: str) -> PriceFile:
    try:
        return msgspec.convert(tomllib.loads(text), PriceFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise PricingError(f"{where}: {exc}") from exc


class PriceTable:
    def __init__(
        self, override: Path | None = None, rules: Rules = "ccusage", web_search: bool = False
    ):
        base = _load(
            resources.files("ccotel.data").joinpath("prices.toml").read_text(), "prices.toml"
        )
        self.models = dict(base.models)
        self.aliases = dict(base.aliases)
        self.source, self.date = base.source, base.date
        self.web_search_price = base.web_search_per_request or 0.0
        if override is not None:
            user = _load(override.read_text(), str(override))
            self.models.update(user.models)
            self.aliases.update(user.aliases)
            if user.web_search_per_request is not None:
                self.web_search_price = user.web_search_per_request
        self.rules: Rules = rules
        self.price_web_search = web_search
        self.lookup = lru_cache(maxsize=256)(self._lookup)

    def _lookup(self, model: str | None) -> Rates | None:
        if not model:
            return None
        name = model[model.find("claude") :] if "claude" in model else model
        name = name.replace("@", "-").replace(".", "-")
        if name in self.aliases:
            return self.models.get(self.aliases[name]) if self.rules == "anthropic" else None
        if name in self.models:
            return self.models[name]
        keys = [
            k for k in self.models if name.startswith(k) and not _VERSION_REST.match(name[len(k) :])
        ]
        return self.models[max(keys, key=len)] if keys else None

    def cost(self, u: Usage) -> float | None:
        """USD for one response; None when the model has no price. A line's own costUSD
        (Claude Code <= 1.0.8 wrote it) is its cost, as in ccusage's default mode ("auto")."""
        if u.cost_usd is not None:
            return u.cost_usd
        rates = self.lookup(u.model)
        if rates is None:
            return None
        c = _whole_request(u, rates) if self.rules == "anthropic" else _per_category(u, rates)
        c *= rates.fast if u.fast else 1.0
        if self.price_web_search and u.web_search:
            c += u.web_search * self.web_search_price
        return c


def _one_hour(r: Rates | Tier) -> float:
    return r.cache_write_1h if r.cache_write_1h is not None else r.input * 2.0


def _tiered(tokens: int, base: float, above: float | None) -> float:
    if above is not None and tokens > THRESHOLD:
        return (THRESHOLD * base + (tokens - THRESHOLD) * above) / _MTOK
    return tokens * base / _MTOK


def _per_category(u: Usage, r: Rates) -> float:
    """ccusage: the 200k threshold applies to each token category on its own."""
    a = r.above_200k
    return (
        _tiered(u.input, r.input, a.input if a else None)
        + _tiered(u.output, r.output, a.output if a else None)
        + _tiered(u.cache_write_5m, r.cache_write_5m, a.cache_write_5m if a else None)
        + _tiered(u.cache_write_1h, _one_hour(r), _one_hour(a) if a else None)
        + _tiered(u.cache_read, r.cache_read, a.cache_read if a else None)
    )


def _whole_request(u: Usage, r: Rates) -> float:
    """Anthropic: a prompt over 200k tokens bills every token at the long-context rates."""
    prompt = u.input + u.cache_read + u.cache_write_5m + u.cache_write_1h
    t: Rates | Tier = r.above_200k if r.above_200k is not None and prompt > THRESHOLD else r
    return (
        u.input * t.input
        + u.output * t.output
        + u.cache_write_5m * t.cache_write_5m
        + u.cache_write_1h * _one_hour(t)
        + u.cache_read * t.cache_read
    ) / _MTOK
