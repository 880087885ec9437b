"""Prompt-cache pricing: hand-computed examples of the Anthropic and OpenAI rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import ConfigError, UnknownModel
from runtime.paging.accounting import RequestItem, TokenCategory
from runtime.paging.cachecost import CacheLedger, cache_rules, default_breakpoints

SONNET, GPT = "claude-sonnet-4-6", "gpt-4o"


def items(*sizes: int, tag: str = "") -> list[RequestItem]:
    """Items of the given token sizes; the first is the system prompt, the rest messages."""
    out = []
    for n, size in enumerate(sizes):
        cat = TokenCategory.SYSTEM if n == 0 else TokenCategory.CONVERSATION
        out.append(RequestItem(n, f"{tag}{n}-{size}".ljust(8, "x"), size, cat))
    return out


def test_rules_are_dated_per_family_and_unknown_models_say_what_is_known():
    assert cache_rules("claude-sonnet-4-6").min_cacheable == 1024
    assert cache_rules("claude-haiku-4-5").min_cacheable == 4096
    assert cache_rules("claude-opus-4-5").min_cacheable == 4096
    assert cache_rules(GPT).increment == 128
    assert all(cache_rules(m).as_of for m in (SONNET, GPT))
    with pytest.raises(UnknownModel, match="known families"):
        cache_rules("llama-3")


def test_default_breakpoints_follow_the_stable_prefix_and_the_last_block():
    assert default_breakpoints(items(2000, 300, 400)) == (1, 3)


def test_anthropic_first_request_writes_up_to_the_last_breakpoint_then_reads_it():
    ledger = CacheLedger(SONNET)
    first = ledger.add(items(2000, 300, 400), at=0)
    assert (first.cache_read, first.cache_write, first.plain) == (0, 2700, 0)
    # 3.00 $/Mtok: 2700 written at 1.25x
    assert first.usd(ledger.price) == pytest.approx(2700 * 1.25 * 3.0 / 1e6)
    second = ledger.add(items(2000, 300, 400, 500), at=30)
    assert (second.cache_read, second.cache_write, second.plain) == (2700, 500, 0)
    assert second.usd(ledger.price) == pytest.approx((2700 * 0.1 + 500 * 1.25) * 3.0 / 1e6)


def test_anthropic_change_in_the_middle_reads_only_up_to_the_stable_breakpoint():
    ledger = CacheLedger(SONNET)
    ledger.add(items(2000, 300, 400), at=0)
    changed = items(2000, 300, 400)
    changed[1] = RequestItem(1, "placeholder-key", 20, TokenCategory.CONVERSATION, True)
    out = ledger.add(changed, at=10)
    assert (out.cache_read, out.cache_write) == (2000, 420)


def test_anthropic_prefix_below_the_minimum_is_plain_input():
    ledger = CacheLedger(SONNET)
    out = ledger.add(items(500, 300), at=0)  # 800 < 1,024: nothing is cached
    assert (out.cache_read, out.cache_write, out.plain) == (0, 0, 800)
    again = ledger.add(items(500, 300), at=1)
    assert again.cache_read == 0
    haiku = CacheLedger("claude-haiku-4-5").add(items(2000, 300), at=0)
    assert haiku.plain == 2300  # 4,096 minimum for Haiku 4.5


def test_anthropic_entries_expire_after_five_minutes_and_reads_refresh_them():
    ledger = CacheLedger(SONNET)
    ledger.add(items(2000, 300), at=0)
    assert ledger.add(items(2000, 300), at=299).cache_read == 2300  # refreshed at 299
    assert ledger.add(items(2000, 300), at=598).cache_read == 2300  # within 5 min of 299
    late = ledger.add(items(2000, 300), at=599 + 300)
    assert (late.cache_read, late.cache_write) == (0, 2300)


def test_anthropic_lookback_finds_a_prefix_at_most_20_blocks_before_a_breakpoint():
    ledger = CacheLedger(SONNET)
    base = items(2000, *([10] * 5))
    ledger.add(base, at=0, breakpoints=[6])
    near = items(2000, *([10] * 24))  # breakpoint 25 looks back to block 6
    assert ledger.add(near, at=1, breakpoints=[25]).cache_read == 2050
    far = CacheLedger(SONNET)
    far.add(base, at=0, breakpoints=[6])
    longer = items(2000, *([10] * 30))  # breakpoint 31: block 6 is 25 blocks back
    out = far.add(longer, at=1, breakpoints=[31])
    assert (out.cache_read, out.cache_write) == (0, 2300)
    # With a second breakpoint at the old end the read is found again.
    again = CacheLedger(SONNET)
    again.add(base, at=0, breakpoints=[6])
    assert again.add(longer, at=1, breakpoints=[6, 31]).cache_read == 2050


def test_anthropic_allows_at_most_four_breakpoints():
    ledger = CacheLedger(SONNET)
    with pytest.raises(ConfigError, match="1 to 4 breakpoints"):
        ledger.add(items(2000, 1, 1, 1, 1, 1), at=0, breakpoints=[1, 2, 3, 4, 5])


def test_openai_caches_1024_tokens_then_128_token_steps_at_half_price():
    ledger = CacheLedger(GPT)
    first = ledger.add(items(1000, 500), at=0)
    assert (first.cache_read, first.cache_write, first.plain) == (0, 0, 1500)
    second = ledger.add(items(1000, 500, 700), at=5)
    # shared prefix 1,500 tokens: 1,024 + 3 x 128 = 1,408 cached
    assert second.cache_read == 1408
    price = ledger.price
    assert second.usd(price) == pytest.approx((1408 * 0.5 + (2200 - 1408)) * 2.5 / 1e6)


def test_openai_short_prefix_is_never_cached_and_entries_expire():
    ledger = CacheLedger(GPT)
    ledger.add(items(900, 50), at=0)
    assert ledger.add(items(900, 50, 2000), at=1).cache_read == 0  # shared 950 < 1,024
    assert ledger.add(items(900, 50, 2000), at=2).cache_read == 2944  # 1024 + 15 x 128
    assert ledger.add(items(900, 50, 2000), at=400).cache_read == 0  # expired


def test_totals_split_tokens_by_billing_class():
    ledger = CacheLedger(SONNET)
    ledger.add(items(2000, 300), at=0)
    ledger.add(items(2000, 300, 100), at=1)
    t = ledger.totals()
    assert (t["input_tokens"], t["cache_read_tokens"], t["cache_write_tokens"]) == (
        4700,
        2300,
        2400,
    )
    assert t["tokens_not_read_from_cache"] == 2400


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from([SONNET, "claude-haiku-4-5", GPT]),
    sizes=st.lists(st.lists(st.integers(1, 900), min_size=1, max_size=12), min_size=1, max_size=8),
    gap=st.floats(0, 400),
)
def test_property_every_token_is_billed_once_and_reads_follow_the_rules(model, sizes, gap):
    ledger = CacheLedger(model)
    rules = ledger.rules
    for n, turn in enumerate(sizes):
        # each request repeats a prefix of the previous one, then adds its own blocks
        req = items(*turn, tag=str(n % 2))
        out = ledger.add(req, at=n * gap)
        assert out.cache_read + out.cache_write + out.plain == sum(turn)
        assert min(out.cache_read, out.cache_write, out.plain) >= 0
        if out.cache_read:
            assert out.cache_read >= rules.min_cacheable
            if rules.increment:
                assert (out.cache_read - rules.min_cacheable) % rules.increment == 0
        assert out.usd(ledger.price) <= sum(turn) * 1.25 * ledger.price.input_usd_per_mtok / 1e6
