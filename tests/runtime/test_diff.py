"""Turn diff: plan changes, the sectioned text diff with in-line highlights, and the cache check."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import open_store
from runtime.blocks import canonical_json
from runtime.errors import StoreCorrupted
from runtime.inspect.diff import (
    CacheVerdict,
    diff_plans,
    diff_requests,
    diff_stored,
    first_divergence,
)
from runtime.inspect.request import cache_units, cached_prefix_bytes, view_request
from runtime.inspect.textdiff import LineOp, aligned_opcodes, char_spans, diff_views
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import Provider, StoredTrace, TraceRecord, new_call_id, prompt_hash

EPHEMERAL = {"type": "ephemeral"}


def item(block_id, section="recent", reason="high-relevance", score=0.5, tokens=10, **extra):
    return {"block_id": block_id, "section": section, "reason": reason, "score": score,
            "tokens": tokens, **extra}  # fmt: skip


def test_plan_diff_reports_added_removed_kept_and_reason_and_score_changes():
    a = {"selected": [item("a"), item("b", reason="recency"), item("c", score=0.2)],
         "omitted": [item("d", reason="budget")]}  # fmt: skip
    b = {"selected": [item("a"), item("b", reason="pinned"), item("c", score=0.9), item("d", tokens=7, via="b")],
         "omitted": [item("c2", reason="budget")]}  # fmt: skip
    b["selected"].pop(0)
    b["omitted"].append(item("a", reason="budget"))
    d = diff_plans(a, b)
    assert [c.block_id for c in d.added] == ["d"] and d.added[0].omitted_a.reason == "budget"
    assert d.added[0].b.via == "b" and d.kept[0].b.via is None
    assert [c.block_id for c in d.removed] == ["a"] and d.removed[0].omitted_b.reason == "budget"
    assert [(c.block_id, c.reason_changed, c.score_changed) for c in d.kept] == [
        ("b", True, False), ("c", False, True)]  # fmt: skip
    assert d.tokens_a == 30 and d.tokens_b == 27 and d.summary() == "+1 -1 ~1 (-3 tokens)"


def test_plan_diff_counts_a_block_listed_twice_per_occurrence():
    a = {"selected": [item("yes", seq=3)]}
    b = {"selected": [item("yes", seq=3), item("yes", seq=9)]}
    d = diff_plans(a, b)
    assert len(d.added) == 1 and len(d.kept) == 1


def test_plan_diff_reads_sections_from_the_plan_or_sums_them_in_canonical_order():
    a = {"selected": [item("x", "tools", tokens=5), item("y", "system", tokens=3)]}
    b = {"selected": [item("x", "tools", tokens=5)],
         "sections": [{"section": "recent", "allocated": 100, "used": 0},
                      {"section": "tools", "allocated": 50, "used": 5}]}  # fmt: skip
    sections = diff_plans(a, b).sections
    assert [(s.section, s.used_a, s.used_b, s.delta) for s in sections] == [
        ("system", 3, 0, -3), ("tools", 5, 5, 0), ("recent", 0, 0, 0)]  # fmt: skip
    assert sections[1].allocated_b == 50 and sections[1].allocated_a is None


def test_plan_diff_accepts_plans_that_list_bare_ids():
    d = diff_plans({"selected": ["a", "b"]}, {"selected": ["b", "c"]})
    assert [c.block_id for c in d.added] == ["c"] and [c.block_id for c in d.removed] == ["a"]


def request(system="You are a helpful agent.", messages=(), breakpoint_at=None, **extra) -> bytes:
    msgs = []
    for i, (role, text) in enumerate(messages):
        block = {"type": "text", "text": text}
        if breakpoint_at == i:
            block["cache_control"] = EPHEMERAL
        msgs.append({"role": role, "content": [block]})
    sys_block = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]
    return canonical_json({"model": "claude-haiku-4-5", "max_tokens": 1024, "system": sys_block,
                           "messages": msgs, **extra})  # fmt: skip


CONVERSATION = [("user", "Book a flight\nfrom JFK to SEA"), ("assistant", "Which date?"),
                ("user", "May 20")]  # fmt: skip


def test_identical_requests_have_no_hunks_and_an_identical_cache_verdict():
    raw = request(messages=CONVERSATION)
    text, cache, _, _ = diff_requests(raw, raw)
    assert text.identical and text.hunks == () and text.same == len(view_request(raw).lines)
    assert cache.verdict is CacheVerdict.IDENTICAL and cache.first_divergent_byte is None


def test_a_new_turn_shows_as_added_lines_labelled_by_its_message():
    a = request(messages=CONVERSATION, breakpoint_at=2)
    b = request(
        messages=[*CONVERSATION, ("assistant", "Booked."), ("user", "Thanks")], breakpoint_at=4
    )
    text, cache, _, vb = diff_requests(a, b)
    assert text.removed == 0 and text.added == 4
    added = [line.text for h in text.hunks for line in h.lines if line.op is LineOp.ADDED]
    assert added == ["### assistant", "Booked.", "### user", "Thanks"]
    assert text.hunks[0].label == "messages[3] assistant"
    assert cache.verdict is CacheVerdict.PREFIX_KEPT
    assert cache.breakpoint_unit == "messages[2].content[0]"
    assert cache.first_divergent_unit == "messages[3].content[0]"


def test_a_timestamp_in_the_system_prompt_breaks_the_cache_and_is_highlighted_in_line():
    a = request("Current time: 15:00:00\nBe brief.", CONVERSATION, breakpoint_at=2)
    b = request("Current time: 15:00:07\nBe brief.", CONVERSATION, breakpoint_at=2)
    text, cache, _, _ = diff_requests(a, b)
    assert cache.verdict is CacheVerdict.PREFIX_CHANGED
    assert cache.first_divergent_unit == "system[0]" and cache.units_kept == 1  # only the model
    (hunk,) = text.hunks
    assert hunk.label == "system[0]"
    removed, added = [line for line in hunk.lines if line.op is not LineOp.SAME]
    assert (
        removed.text[slice(*removed.spans[0])] == "0" and added.text[slice(*added.spans[0])] == "7"
    )
    at = cache.first_divergent_byte
    assert a[:at] == b[:at] and a[at] != b[at]
    # In canonical JSON "system" sorts after "messages", so by raw byte position the change
    # comes after the marker; in cache order it is inside the cached prefix, as the verdict says.
    assert at > cached_prefix_bytes(a)
    assert cache.diverges_before_breakpoint is True
    assert cache.cache_divergent_byte < cache.cached_prefix_bytes


def test_a_new_message_after_a_system_breakpoint_keeps_the_prefix_by_every_measure():
    # The breakpoint is on the system prompt; B only adds a message. Sorted JSON puts
    # "messages" before "system", so the stored bytes differ before A's marker, yet the cache
    # (tools, system, messages) keeps everything up to the breakpoint.
    a = request(messages=CONVERSATION)
    b = request(messages=[*CONVERSATION, ("assistant", "Booked.")])
    _, cache, _, _ = diff_requests(a, b)
    assert cache.first_divergent_byte < cached_prefix_bytes(a)  # the stored order's view
    assert cache.verdict is CacheVerdict.PREFIX_KEPT and cache.breakpoint_unit == "system[0]"
    assert cache.diverges_before_breakpoint is False
    assert cache.cache_divergent_byte >= cache.cached_prefix_bytes


TEXTS = st.text(alphabet="ab ", max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    system=st.tuples(TEXTS, TEXTS),
    turns=st.tuples(
        st.lists(TEXTS, min_size=1, max_size=4), st.lists(TEXTS, min_size=1, max_size=4)
    ),
    marks=st.tuples(st.none() | st.integers(0, 3), st.none() | st.integers(0, 3)),
)
def test_the_cache_box_never_says_prefix_kept_and_divergence_inside_at_once(system, turns, marks):
    raws = []
    for text, msgs, mark in zip(system, turns, marks, strict=True):
        roles = [("user" if i % 2 == 0 else "assistant", m) for i, m in enumerate(msgs)]
        raws.append(request(text, roles, breakpoint_at=mark))
    _, cache, _, _ = diff_requests(*raws)
    if cache.verdict is CacheVerdict.IDENTICAL:
        return
    kept = cache.verdict is CacheVerdict.PREFIX_KEPT
    assert cache.diverges_before_breakpoint is (not kept)
    if cache.cache_divergent_byte is not None:
        assert (cache.cache_divergent_byte >= cache.cached_prefix_bytes) is kept


def test_a_sliding_window_aligns_by_message_not_by_position():
    turns = [("user" if i % 2 == 0 else "assistant", f"message number {i}") for i in range(30)]
    a = request(messages=turns, breakpoint_at=29)
    b = request(messages=turns[4:] + [("user", "new")], breakpoint_at=26)
    text, cache, _, _ = diff_requests(a, b)
    assert text.removed == 8 and text.added == 2  # 4 dropped messages, 1 new (header + text)
    assert [h.label for h in text.hunks] == ["messages[0] user", "messages[26] user"]
    assert cache.verdict is CacheVerdict.PREFIX_CHANGED


def test_no_breakpoint_is_reported_as_such():
    a = canonical_json({"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]})
    b = canonical_json({"model": "gpt-4o", "messages": [{"role": "user", "content": "b"}]})
    _, cache, _, _ = diff_requests(a, b)
    assert cache.verdict is CacheVerdict.NO_BREAKPOINT and cache.cached_prefix_bytes is None
    assert cache.first_divergent_unit == "messages[0]"


def test_cached_prefix_bytes_ends_right_after_the_last_marker():
    raw = request(messages=CONVERSATION, breakpoint_at=1)
    end = cached_prefix_bytes(raw)
    assert raw[:end].endswith(b'"cache_control":{"type":"ephemeral"}')
    assert raw.rfind(b"cache_control") < end and cached_prefix_bytes(b"{}") is None


def test_cache_units_follow_the_providers_order_not_the_json_key_order():
    raw = request(messages=CONVERSATION, tools=[{"name": "t", "input_schema": {}}])
    paths = [u.path for u in cache_units(json.loads(raw))]
    assert paths == ["model", "tools[0]", "system[0]", "messages[0].content[0]",
                     "messages[1].content[0]", "messages[2].content[0]"]  # fmt: skip


def test_bytes_that_are_not_json_are_diffed_as_plain_text():
    text, cache, va, _ = diff_requests(b"line one\nline two", b"line one\nline 2")
    assert va.units[0].label == "request" and text.removed == 1 and text.added == 1
    assert cache.verdict is CacheVerdict.NO_BREAKPOINT and cache.first_divergent_byte == 14


def test_openai_requests_show_tool_calls_and_tool_results():
    raw = canonical_json({"model": "gpt-4o", "tools": [{"type": "function", "function": {"name": "f"}}],
        "messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"}]})  # fmt: skip
    view = view_request(raw)
    assert [u.label for u in view.units] == [
        "params",
        "tools[0] f",
        "messages[0] assistant",
        "messages[1] tool",
    ]
    assert "[tool call f id=c1] {}" in view.lines and "[tool result for c1]" in view.lines


def test_the_hunks_stop_at_max_lines_and_say_so():
    a = request(messages=[("user", "\n".join(f"line {i}" for i in range(200)))])
    b = request(messages=[("user", "\n".join(f"other {i}" for i in range(200)))])
    text = diff_views(view_request(a), view_request(b), max_lines=50)
    assert text.truncated and sum(len(h.lines) for h in text.hunks) == 50
    assert text.removed == 200 and text.added == 200  # counts stay complete


def test_char_spans_mark_whole_middles_of_unrelated_lines_and_exact_words_of_similar_ones():
    assert char_spans("the cat sat", "the dog sat") == (((4, 7),), ((4, 7),))
    spans_a, spans_b = char_spans("abcdefghij klm", "zyxwvutsrq klm")
    assert spans_a == ((0, 10),) and spans_b == ((0, 10),)
    assert char_spans("same", "same") == ((), ())
    assert char_spans("ab", "abc") == ((), ((2, 3),))


lines = st.lists(st.sampled_from(["a", "b", "c", "d", "### user", "x y", ""]), max_size=25)


@settings(max_examples=150, deadline=None)
@given(a=st.lists(lines, max_size=6), b=st.lists(lines, max_size=6))
def test_every_line_is_accounted_for_once_so_both_sides_can_be_rebuilt(a, b):
    va = view_request(request(messages=[("user", "\n".join(m)) for m in a]))
    vb = view_request(request(messages=[("user", "\n".join(m)) for m in b]))
    rebuilt_a, rebuilt_b = [], []
    for tag, i1, i2, j1, j2 in aligned_opcodes(va, vb):
        if tag == "equal":
            assert va.lines[i1:i2] == vb.lines[j1:j2]
        rebuilt_a += va.lines[i1:i2]
        rebuilt_b += vb.lines[j1:j2]
    assert rebuilt_a == list(va.lines) and rebuilt_b == list(vb.lines)
    text = diff_views(va, vb, context=1)
    assert text.same + text.removed == len(va.lines) and text.same + text.added == len(vb.lines)


@settings(max_examples=200, deadline=None)
@given(prefix=st.binary(max_size=200_000), a=st.binary(max_size=20), b=st.binary(max_size=20))
def test_first_divergence_is_the_first_differing_byte(prefix, a, b):
    x, y = prefix + a, prefix + b
    at = first_divergence(x, y)
    if x == y:
        assert at is None
    else:
        assert x[:at] == y[:at] and (at == min(len(x), len(y)) or x[at] != y[at])


def _record(session, turn, raw, plan):
    cid = new_call_id()
    return TraceRecord(cid, session, turn, int(cid[:13]), Provider.ANTHROPIC, "m", prompt_hash(raw),
                       len(raw), plan=plan)  # fmt: skip


def test_diff_stored_compares_two_records_from_the_store(tmp_path):
    store = open_store(tmp_path / "s")
    traces = LmdbTraceStore(store)
    a_raw, b_raw = request(messages=CONVERSATION[:1]), request(messages=CONVERSATION)
    a = _record("s", 1, a_raw, {"selected": [item("u1")]})
    b = _record("s", 2, b_raw, {"selected": [item("u1"), item("a1"), item("u2")]})
    traces.record_many([StoredTrace(a, a_raw), StoredTrace(b, b_raw)])
    d = diff_stored(traces, a.call_id[:20], b.call_id)
    assert d.plan.summary() == "+2 -0 ~0 (+20 tokens)" and d.text.added == 4
    assert json.loads(json.dumps(d.to_json()))["cache"]["verdict"] == "prefix-kept"
    db = store.env.db(b"trace_requests")
    lmdbenv.write(store.env, lambda txn: txn.delete(bytes.fromhex(b.prompt_hash), db=db))
    with pytest.raises(StoreCorrupted, match="no stored request"):
        diff_stored(traces, a.call_id, b.call_id)
    store.close()
