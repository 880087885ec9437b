"""The paging benchmark's metric and replay: identifiers, references, misses, hashes."""

from __future__ import annotations

import json

from bench.bench_paging import POLICIES, measure, run
from bench.paging_replay import (
    IdentRule,
    MissTally,
    RefIndex,
    Residency,
    identifiers,
    is_identifier,
    render_request,
)
from runtime.paging.eviction import EvictionConfig, paged_view, plan_eviction
from tests.runtime.paging_builder import COUNT, SessionBuilder, big_result, standard


def test_identifiers_need_four_characters_a_digit_and_a_letter_or_underscore():
    for token in ("mia_li_3668", "HAT001", "ZFA04Y", "credit_card_4421486", "20th"):
        assert is_identifier(token, IdentRule.ISSUE)
    for token in ("2024-05-20", "1234", "A1", "call", "a_b_c", "HA1"):
        assert not is_identifier(token, IdentRule.ISSUE)
    assert is_identifier("2024-05-20", IdentRule.NUMERIC)
    assert is_identifier("234.50", IdentRule.NUMERIC)
    assert not is_identifier("Hello", IdentRule.NUMERIC)


def test_identifiers_are_read_as_whole_joined_tokens_in_first_seen_order():
    text = "Flights HAT001 and HAT002 on 2024-05-20; user mia_li_3668 paid $1,234.50 (HAT001)."
    assert identifiers(text, IdentRule.ISSUE) == ("HAT001", "HAT002", "mia_li_3668")
    assert identifiers(text, IdentRule.NUMERIC) == (
        "HAT001", "HAT002", "2024-05-20", "mia_li_3668", "1,234.50"[2:],
    )  # fmt: skip


def test_a_token_only_in_the_latest_user_message_is_not_a_reference():
    b = SessionBuilder()
    b.system("Policy text.")
    old = b.user("My reservation is ZFA04Y.")
    b.assistant("Noted.")
    latest = b.user("Also look at HAT077 please.")
    out = b.assistant("Checking ZFA04Y and HAT077.")
    index = RefIndex(IdentRule.ISSUE)
    index.extend(b.entries[: out.seq])
    refs = index.references([out], latest.seq)
    assert refs == (("ZFA04Y", (old.seq,)),)


def test_a_reference_is_a_hit_soft_miss_or_hard_miss_by_its_best_occurrence():
    tally = MissTally()
    assert tally.add([Residency.ABSENT, Residency.FULL]) is Residency.FULL
    assert tally.add([Residency.PLACEHOLDER, Residency.ABSENT]) is Residency.PLACEHOLDER
    assert tally.add([Residency.ABSENT]) is Residency.ABSENT
    data = tally.to_json()
    assert (data["references"], data["soft_misses"], data["hard_misses"]) == (3, 1, 1)
    assert data["miss_rate"] == round(2 / 3, 6)


def test_rendered_request_alternates_roles_and_keeps_evicted_results_paired():
    b, result = standard(turns_after=5)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    request = json.loads(render_request("gpt-4o", paged_view(b.entries, plan), plan.offers_recall))
    roles = [m["role"] for m in request["messages"]]
    assert roles[0] == "user"
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    uses = [c["id"] for m in request["messages"] for c in m["content"] if c["type"] == "tool_use"]
    results = [c for m in request["messages"] for c in m["content"] if c["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == uses
    assert results[0]["content"].startswith("[Paged out: block " + result.block.short_id)
    assert request["tools"][-1]["name"] == "recall"


def _write_dataset(tmp_path):
    traj = [
        {"role": "system", "content": "You are an airline agent. Follow the policy."},
        {"role": "user", "content": "Hi, I am mia_li_3668 and want to change ZFA04Y."},
    ]
    content = big_result("ZFA04Y", 1200)
    traj.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {
            "name": "get_reservation_details", "arguments": '{"reservation_id":"ZFA04Y"}'}}]})  # fmt: skip
    traj.append(
        {"role": "tool", "tool_call_id": "call_1", "name": "get_reservation_details",
         "content": content}
    )  # fmt: skip
    for i in range(6):
        traj.append({"role": "assistant", "content": f"Step {i} for ZFA04Y done."})
        traj.append({"role": "user", "content": f"Next step {i}, please."})
    traj.append({"role": "assistant", "content": "HAT006 is on reservation ZFA04Y."})
    sessions = [{"task_id": 0, "trial": 0, "reward": 1.0, "info": {}, "traj": traj}]
    tools = [{"type": "function", "function": {
        "name": "get_reservation_details", "description": "Get the details of a reservation.",
        "parameters": {"type": "object", "properties": {"reservation_id": {"type": "string"}},
                       "required": ["reservation_id"]}}}]  # fmt: skip
    (tmp_path / "sessions.json").write_text(json.dumps(sessions))
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    return tmp_path / "sessions.json", tmp_path / "tools.json"


def test_replay_counts_every_turn_under_every_policy_and_repeats_byte_for_byte(tmp_path):
    sessions, tools = _write_dataset(tmp_path)
    stats, replays = run(sessions, tools, budget=4000)
    assert len(replays) == 1 and len(replays[0].turns) == 8
    for name in POLICIES:
        assert stats[name].turns == 8
    full = stats["full"]
    assert full.misses.references > 0 and full.misses.soft == full.misses.hard == 0
    assert stats["age-based"].misses.soft > 0  # the ZFA04Y details were paged out
    again, _ = run(sessions, tools, budget=4000)
    for name, s in stats.items():
        assert [r.sha256 for r in s.requests] == [r.sha256 for r in again[name].requests]


def test_measure_compares_hashes_with_a_fresh_process(tmp_path):
    sessions, tools = _write_dataset(tmp_path)
    result = measure(sessions, tools, 4000, fresh_runs=1)
    assert all(v["identical_rate"] == 1.0 for v in result["determinism"]["per_policy"].values())
    assert set(result["policies"]) == set(POLICIES)
    assert result["targets"]["zero_budget_violations"]["met"]


def test_every_policy_is_priced_with_caching_and_the_strict_metric_is_never_laxer(tmp_path):
    from bench.bench_paging import BASELINES, HEADLINE_MODEL, summarize

    sessions, tools = _write_dataset(tmp_path)
    stats, _ = run(sessions, tools, budget=4000)
    assert set(BASELINES) < set(stats) and "cache-aware" in stats
    full_tokens = sum(r.tokens for r in stats["full"].requests)
    for name, s in stats.items():
        assert s.strict.references == s.misses.references
        assert s.strict.soft + s.strict.hard >= s.misses.soft + s.misses.hard, name
        priced = summarize(name, s, full_tokens)["cost_with_caching"][HEADLINE_MODEL]
        assert priced["input_tokens"] == sum(r.tokens for r in s.requests)
        # a tiny session may stay under the 1,024-token minimum: then nothing is cached
        assert 0 < priced["cost_with_caching_usd"] <= priced["cost_without_caching_usd"]


def test_issue15_targets_say_met_for_each_and_budgets_are_checked(tmp_path):
    import argparse

    import pytest

    from bench.bench_paging import _budgets, issue15

    sessions, tools = _write_dataset(tmp_path)
    result = measure(sessions, tools, 4000, fresh_runs=1)
    section = issue15({4000: result})["by_budget"]["4000"]
    assert all(isinstance(t["met"], bool) for t in section["targets"].values())
    assert section["targets"]["zero_budget_violations"]["met"]
    assert section["frontier"] and "cache_aware_usd_by_category" in section
    assert _budgets("8000,6000") == [8000, 6000]
    with pytest.raises(argparse.ArgumentTypeError, match="integers"):
        _budgets("8k")
