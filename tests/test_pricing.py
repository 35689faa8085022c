"""Prices equal what ccusage 20.0.24 --offline charges (measured per model and token type)."""

from __future__ import annotations

import pytest

from ccotel.pricing import PriceTable, PricingError
from ccotel.records import Usage

M = 1_000_000


def usage(model, inp=0, out=0, cr=0, w5=0, w1=0, web=0, fast=False):
    return Usage("m", "r", model, inp, out, cr, w5, w1, web, fast, fast, False)


# USD for 1M tokens of one type: (input, output, 5m write, 1h write, cache read), measured with ccusage.
MEASURED = {
    "claude-opus-4-8": (5, 25, 6.25, 10, 0.5),
    "claude-opus-4-6": (5, 25, 6.25, 10, 0.5),
    "claude-opus-4-5-20251101": (5, 25, 6.25, 10, 0.5),
    "claude-opus-4-1-20250805": (15, 75, 18.75, 30, 1.5),
    "claude-opus-4-20250514": (15, 75, 18.75, 30, 1.5),
    "claude-sonnet-4-6": (3, 15, 3.75, 6, 0.3),
    "claude-sonnet-4-5-20250929": (5.4, 21, 6.75, 10.8, 0.54),  # tiered above 200k
    "claude-sonnet-4-20250514": (5.4, 21, 6.75, 10.8, 0.54),
    "claude-haiku-4-5-20251001": (1, 5, 1.25, 2, 0.1),
    "claude-3-7-sonnet-20250219": (3, 15, 3.75, 6, 0.3),
    "claude-3-5-haiku-20241022": (0.8, 4, 1, 1.6, 0.08),
    "claude-3-haiku-20240307": (0.25, 1.25, 0.3, 0.5, 0.03),
    "claude-3-opus-20240229": (15, 75, 18.75, 30, 1.5),
    "claude-opus-4-6[1m]": (5, 25, 6.25, 10, 0.5),
    "claude-opus-5": (5, 25, 6.25, 10, 0.5),
    "claude-sonnet-5": (2, 10, 2.5, 4, 0.2),
}


@pytest.mark.parametrize("model", sorted(MEASURED))
def test_matches_ccusage(model):
    p = PriceTable()
    got = (
        p.cost(usage(model, inp=M)),
        p.cost(usage(model, out=M)),
        p.cost(usage(model, w5=M)),
        p.cost(usage(model, w1=M)),
        p.cost(usage(model, cr=M)),
    )
    assert got == pytest.approx(MEASURED[model], rel=1e-9)


def test_tier_is_per_category_in_ccusage_rules():
    p = PriceTable()
    # 300k input + 300k cache read on Sonnet 4.5: each category tiered alone (ccusage: 1.32).
    assert p.cost(usage("claude-sonnet-4-5", inp=300_000, cr=300_000)) == pytest.approx(1.32)
    # 150k + 150k: neither category crosses 200k.
    assert p.cost(usage("claude-sonnet-4-5", inp=150_000, cr=150_000)) == pytest.approx(0.495)


def test_anthropic_rules_bill_whole_request_at_long_context_rates():
    p = PriceTable(rules="anthropic")
    # 150k input + 150k cache read: the prompt is 300k, so every token is at $6 / $0.60.
    assert p.cost(usage("claude-sonnet-4-5", inp=150_000, cr=150_000, out=1000)) == pytest.approx(
        0.9 + 0.09 + 0.0225
    )
    assert p.cost(usage("claude-sonnet-4-5", inp=100_000, out=1000)) == pytest.approx(0.3 + 0.015)


def test_fast_mode_multiplier():
    p = PriceTable()
    assert p.cost(usage("claude-opus-4-6", inp=M, fast=True)) == pytest.approx(30)
    assert p.cost(usage("claude-opus-4-8", inp=M, fast=True)) == pytest.approx(10)
    assert p.cost(usage("claude-haiku-4-5", inp=M, fast=True)) == pytest.approx(1)


def test_unknown_and_aliases():
    p = PriceTable()
    for model in ("claude-haiku-5", "claude-sonnet-4-7", "claude-opus-4-0", "gpt-4o", None, ""):
        assert p.cost(usage(model, inp=M)) is None
    assert PriceTable(rules="anthropic").cost(usage("claude-opus-4-0", inp=M)) == pytest.approx(15)


def test_web_search_priced_only_when_asked():
    assert PriceTable().cost(usage("claude-opus-4-6", web=3)) == 0
    assert PriceTable(web_search=True).cost(usage("claude-opus-4-6", web=3)) == pytest.approx(0.03)


def test_override_file(tmp_path):
    f = tmp_path / "prices.toml"
    f.write_text(
        "[models.claude-fable-1]\ninput = 1.0\noutput = 2.0\ncache_write_5m = 1.25\ncache_read = 0.1\n"
        "[models.claude-opus-4-6]\ninput = 4.0\noutput = 20.0\ncache_write_5m = 5.0\ncache_read = 0.4\n"
    )
    p = PriceTable(f)
    assert p.cost(usage("claude-fable-1-20261101", out=M)) == pytest.approx(2)
    assert p.cost(usage("claude-opus-4-6", inp=M)) == pytest.approx(4)
    f.write_text("[models.x]\ninput = 'cheap'\n")
    with pytest.raises(PricingError, match="input"):
        PriceTable(f)
