"""Waste accounting: categories, totals, cache prefixes, cost, and the per-turn paging record."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.blocks import BlockKind, canonical_json
from runtime.errors import BudgetTooSmall, InvalidInput, UnknownModel
from runtime.paging.accounting import (
    RequestItem,
    SessionAccounting,
    TokenCategory,
    TurnAccounting,
    categorize,
    common_prefix_tokens,
    request_items,
)
from runtime.paging.eviction import EvictionConfig, EvictionPlan, StubScope, plan_eviction
from runtime.paging.faults import PagingState
from runtime.paging.turn import page_turn
from runtime.providers.pricing import CostEstimate, Price, estimate_cost, get_price
from tests.runtime.paging_builder import COUNT, SessionBuilder, big_result, random_session, standard

PRICE = Price("test-model", 2.0, 0.10, 1.25, "test", "2026-01")


def test_each_entry_gets_the_category_of_what_it_is():
    b, stale = standard(turns_after=5)
    dup_call = b.call("get_reservation_details", {"reservation_id": "ZFA04Y"})
    dup = b.result(dup_call, big_result("ZFA04Y"))
    fact = b.add(BlockKind.FACT, "The user prefers aisle seats.")
    waste = plan_eviction(b.entries, EvictionConfig(stub_schemas=StubScope.UNUSED), COUNT)
    cats = categorize(b.entries, waste)
    assert cats[0] is TokenCategory.TOOL_SCHEMAS  # get_reservation_details was called
    assert cats[1] is TokenCategory.UNUSED_TOOL_SCHEMAS
    assert cats[2] is TokenCategory.SYSTEM
    assert cats[3] is TokenCategory.CONVERSATION
    assert cats[dup.seq] is TokenCategory.DUPLICATES
    assert cats[fact.seq] is TokenCategory.RETRIEVED
    # The repeat refreshed the first copy: it is live again, its duplicate is the waste.
    assert cats[stale.seq] is TokenCategory.CONVERSATION


def test_a_stale_result_is_counted_as_stale_in_full_history_and_as_its_placeholder_packed():
    b, stale = standard(turns_after=5)
    paged = page_turn(b.entries, EvictionConfig(), PagingState(), COUNT, turn=1)
    cats = {c.category: c for c in paged.accounting.categories}
    stale_cat = cats[TokenCategory.STALE_TOOL_RESULTS]
    assert stale_cat.full == COUNT(stale.body)
    assert stale_cat.packed == COUNT(paged.plan.get(stale.seq).body)
    assert cats[TokenCategory.PAGING].full == 0 and cats[TokenCategory.PAGING].packed > 0
    assert paged.accounting.saved_tokens > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([None, 1500, 3000]))
def test_categories_add_up_to_the_request_totals(seed, budget):
    b = random_session(seed)
    try:
        paged = page_turn(b.entries, EvictionConfig(), PagingState(), COUNT, turn=1, budget=budget)
    except BudgetTooSmall:  # a budget below what cannot be paged out
        return
    acct = paged.accounting
    assert acct.full_tokens == sum(COUNT(e.body) for e in b.entries)
    assert acct.packed_tokens == sum(item.tokens for item in paged.request)
    assert acct.packed_tokens == sum(c.packed for c in acct.categories)
    assert acct.full_tokens - acct.packed_tokens == acct.saved_tokens
    assert budget is None or acct.packed_tokens <= budget


def test_request_items_put_tools_then_recall_then_system_then_messages():
    b, _ = standard(turns_after=5)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    cats = categorize(b.entries, plan)
    items = request_items(b.entries, plan, cats, COUNT)
    kinds = [b.entries[i.seq].kind if i.seq >= 0 else "recall" for i in items]
    assert kinds[:4] == [BlockKind.TOOL_SCHEMA, BlockKind.TOOL_SCHEMA, "recall", BlockKind.SYSTEM]


def test_cache_prefix_counts_only_the_leading_items_two_requests_share():
    a = [
        RequestItem(0, "k0", 10, TokenCategory.SYSTEM),
        RequestItem(1, "k1", 20, TokenCategory.CONVERSATION),
    ]
    b = [*a[:1], RequestItem(1, "changed", 25, TokenCategory.CONVERSATION), *a[1:]]
    assert common_prefix_tokens(a, a + [RequestItem(2, "k2", 5, TokenCategory.CONVERSATION)]) == 30
    assert common_prefix_tokens(a, b) == 10
    assert common_prefix_tokens([], a) == 0


def test_cost_with_cache_reads_the_shared_prefix_at_a_tenth_and_writes_the_rest_at_125_percent():
    cost = estimate_cost([(1_000_000, 0), (1_500_000, 1_000_000)], PRICE)
    assert cost.uncached_usd == pytest.approx(5.0)
    assert cost.cached_usd == pytest.approx(2.0 * 1.25 + 2.0 * (0.1 + 0.5 * 1.25))
    assert cost.to_json() == {"uncached_usd": 5.0, "cached_usd": round(cost.cached_usd, 6)}


def test_session_accounting_adds_turns_and_measures_the_reduction():
    b, _ = standard(turns_after=5)
    config = EvictionConfig()
    first = page_turn(b.entries[:6], config, PagingState(), COUNT, turn=1)
    second = page_turn(b.entries, config, PagingState(), COUNT, turn=2, previous=first)
    assert second.accounting.cached_packed > 0  # the schema stubs and system did not change
    total = SessionAccounting.of("s1", [first.accounting, second.accounting], PRICE)
    assert total.full_tokens == first.accounting.full_tokens + second.accounting.full_tokens
    assert total.packed_tokens == first.accounting.packed_tokens + second.accounting.packed_tokens
    assert total.reduction == pytest.approx(1 - total.packed_tokens / total.full_tokens)
    assert total.peak_full == second.accounting.full_tokens
    assert isinstance(total.packed_cost, CostEstimate)
    assert json.loads(canonical_json(total.to_json()))["turns"] == 2


def test_turn_accounting_reads_back_from_its_json():
    b, _ = standard(turns_after=5)
    acct = page_turn(b.entries, EvictionConfig(), PagingState(), COUNT, turn=4).accounting
    data = json.loads(canonical_json(acct.to_json()))
    assert TurnAccounting.from_json(data) == acct
    with pytest.raises(InvalidInput, match="not valid"):
        TurnAccounting.from_json({"turn": 1})


def test_prices_are_labelled_and_an_unknown_model_is_refused():
    price = get_price("claude-sonnet-4-5")
    assert (price.cache_read, price.cache_write) == (0.10, 1.25)
    assert price.source and price.as_of
    with pytest.raises(UnknownModel, match="no price"):
        get_price("no-such-model")


def test_a_paged_turn_record_is_canonical_json_and_the_same_every_time():
    b = random_session(7)
    one = page_turn(b.entries, EvictionConfig(), PagingState(), COUNT, turn=3, budget=3000)
    two = page_turn(list(b.entries), EvictionConfig(), PagingState(), COUNT, turn=3, budget=3000)
    assert canonical_json(one.to_json()) == canonical_json(two.to_json())
    data = one.to_json()
    assert data["turn"] == 3 and "accounting" in data and "plan" in data


def test_full_history_plan_packs_every_body_unchanged():
    b = SessionBuilder()
    b.system()
    b.user("hello")
    items = request_items(b.entries, EvictionPlan(), categorize(b.entries, EvictionPlan()), COUNT)
    assert [i.evicted for i in items] == [False, False]
    assert sum(i.tokens for i in items) == COUNT(b.entries[0].body) + COUNT(b.entries[1].body)
