"""Invariants of page + pack over random sessions, budgets and tasks (hypothesis)."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from runtime import NewBlock
from runtime.blocks import BlockKind
from runtime.errors import BudgetTooSmall
from runtime.packer.core import pack
from runtime.packer.rendering import RenderMode
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.tokenizers import get_tokenizer
from tests.properties import WITH_FIXTURES
from tests.runtime.pager_support import (
    Session,
    assert_valid_anthropic_conversation,
    chat_cost_of_request,
    example_store,
    profile,
)

# Bodies chosen to stress token boundaries: leading/trailing whitespace and newlines, "/", quotes,
# braces, non-Latin scripts and emoji.
pieces = st.sampled_from(
    ["refund", " seat", "\n", "  ", "/", ".", "}", '"', "gate B12", "漢字", "🙂", "\t", "'s", "42"]
)
bodies = st.lists(pieces, min_size=1, max_size=40).map("".join).filter(lambda b: b.strip())
steps = st.lists(
    st.one_of(
        st.tuples(st.just("user"), bodies),
        st.tuples(st.just("assistant"), bodies),
        st.tuples(st.just("tool"), bodies, st.booleans()),
        st.tuples(st.just("fact"), bodies),
        st.tuples(st.just("state"), bodies),
        st.tuples(st.just("system"), bodies),
    ),
    min_size=4,
    max_size=40,
)
# What every page property test draws besides its budget: a session, a task, a render mode and
# a tokenizer.
examples = {
    "plan_steps": steps,
    "task": bodies,
    "mode": st.sampled_from(list(RenderMode)),
    "tokenizer": st.sampled_from(["cl100k_base", "o200k_base"]),
}


def build(store, plan_steps):
    session = Session(store, "s")
    for step in plan_steps:
        kind, body = step[0], step[1]
        if kind == "user":
            session.user(body)
        elif kind == "assistant":
            session.assistant(body)
        elif kind == "tool":
            session.tool_turn("lookup", {"q": body[:10]}, body, said=body if step[2] else None)
        else:
            store.put("s", NewBlock(kind, body))
    return session


@settings(WITH_FIXTURES, max_examples=80)
@given(
    budget=st.integers(min_value=80, max_value=1500),
    cut=st.one_of(st.none(), st.integers(min_value=1, max_value=80)),
    **examples,
)
def test_page_and_pack_keep_every_invariant(
    tmp_path_factory, plan_steps, budget, task, mode, cut, tokenizer
):
    with example_store(tmp_path_factory, "prop") as store:
        build(store, plan_steps)
        total = len(store.entries("s"))
        request = PageRequest(
            "s", task, profile(budget, tokenizer=tokenizer), upto=None if cut is None else min(cut, total),
            options=PageOptions(render=mode),
        )  # fmt: skip
        try:
            plan = page(store, request)
        except BudgetTooSmall:
            event("refused: the task alone is over the budget")
            return
        event(f"selected {min(len(plan.selected), 10) // 5 * 5}+, omitted {bool(plan.omitted)}")
        check_plan(store, plan, request)
        check_packed(store, plan, mode, tokenizer)


def check_plan(store, plan, request):
    assert plan.tokens <= plan.budget
    decided = [(d.candidate.block_id, d.candidate.seq) for d in (*plan.selected, *plan.omitted)]
    assert len(decided) == len(set(decided))  # every candidate exactly once
    seqs = [s.candidate.seq for s in plan.selected]
    assert len(seqs) == len(set(seqs))  # no block twice
    assert all(seq is None or seq < plan.upto for seq in seqs)
    entries = {e.seq: e for e in store.entries("s") if e.seq < plan.upto}
    chosen = set(seqs)
    for seq in chosen:
        entry = entries[seq]
        if entry.kind in (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT):
            assert any(
                other != seq and entries[other].kind != entry.kind and other in chosen
                for other in entries
                if entries[other].kind in (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT)
            )


def check_packed(store, plan, mode, tokenizer):
    if not plan.task.strip() and not any(
        s.candidate.section.value == "recent" for s in plan.selected
    ):
        return
    out = pack(store, plan)
    exact = get_tokenizer(tokenizer).count(out.text)
    assert exact == out.text_tokens
    walked = chat_cost_of_request(out.request, tokenizer)
    assert walked <= out.chat_tokens
    if mode is not RenderMode.CHAT:
        assert exact <= plan.budget
    if mode is not RenderMode.STRING:
        assert walked <= out.chat_tokens <= plan.budget
    assert_valid_anthropic_conversation(out.request)
