"""The runtime's view models for the web pages, without Django: real LMDB, hypothesis where an
invariant is claimed (pages partition, segments rebuild lines, every diff line shown once)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import NewBlock, open_store
from runtime.blocks import BlockKind, canonical_json
from runtime.indexes.blockuses import block_uses, sync
from runtime.inspect.chat import PartKind, read_request, read_response
from runtime.inspect.compare import diff_rows, segments, side_by_side
from runtime.inspect.request import view_request
from runtime.inspect.sessions import SessionQuery, SortKey, query_sessions, summary_table
from runtime.inspect.textdiff import diff_views, line_opcodes
from runtime.inspect.timeline import section_tokens, session_timeline
from runtime.inspect.turn import entry_page, plan_entries, section_views
from runtime.providers.usage import Usage
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import (
    Provider,
    StoredTrace,
    TraceOrigin,
    TraceRecord,
    new_call_id,
    prompt_hash,
)


def _record(session: str, turn: int, block_ids: list[str], **extra: object) -> StoredTrace:
    request = canonical_json({"messages": [{"role": "user", "content": f"{session} {turn}"}]})
    plan = {"selected": [{"block_id": b, "section": "recent", "reason": "recent", "tokens": 3}
                         for b in block_ids],
            "omitted": [], "sections": [{"section": "recent", "allocated": 100, "used": 3}]}  # fmt: skip
    record = TraceRecord(
        call_id=new_call_id(), session=session, turn=turn, started_at=1_000 + turn,
        provider=Provider.ANTHROPIC, model="m", prompt_hash=prompt_hash(request),
        request_size=len(request), plan=plan, usage=Usage(10 * turn, 1),
    )  # fmt: skip
    return StoredTrace(replace(record, **extra), request)  # type: ignore[arg-type]


def _stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = open_store(tmp_path / "store")
    return store, LmdbTraceStore(store)


def test_session_pages_partition_the_matches_for_every_sort(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    for i in range(23):
        store.put_many(f"s{i:02d}", [NewBlock(BlockKind.USER_MESSAGE, f"hello {i % 3}")])
        traces.record_many([_record(f"s{i:02d}", t, []) for t in range(1, 2 + i % 4)])
    everything = {f"s{i:02d}" for i in range(23)}
    for key in SortKey:
        for descending in (True, False):
            seen: list[str] = []
            for offset in range(0, 23, 5):
                q = SessionQuery(sort=key, descending=descending, offset=offset, limit=5)
                seen += [r.session for r in query_sessions(store, traces, q).rows]
            assert sorted(seen) == sorted(everything) and len(seen) == 23, (key, descending)


def test_summary_table_follows_writes_and_deletes(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    store.put_many("a", [NewBlock(BlockKind.USER_MESSAGE, "x")])
    first = summary_table(store, traces)
    assert summary_table(store, traces) is first  # no write, same table
    traces.record_many([_record("a", 1, [])])
    store.put_many("b", [NewBlock(BlockKind.USER_MESSAGE, "y")])
    rows = {r.session: r for r in summary_table(store, traces).rows}
    assert rows["a"].turns == 1 and rows["a"].input_tokens == 10 and "b" in rows
    store.purge_session("b")
    assert [r.session for r in summary_table(store, traces).rows] == ["a"]


@given(st.text(max_size=40), st.lists(st.integers(0, 40), max_size=8))
def test_segments_rebuild_the_text_and_mark_exactly_the_spans(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    spans = [(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]
    pieces = segments(text, spans)
    assert "".join(p.text for p in pieces) == text
    marked = "".join(p.text for p in pieces if p.changed)
    assert marked == "".join(text[a:b] for a, b in spans)


LINES = st.lists(st.sampled_from(["a", "b", "c", "dd", "e e"]), max_size=12)


@settings(max_examples=60)
@given(LINES, LINES)
def test_side_by_side_shows_every_line_of_both_requests_once(a: list[str], b: list[str]) -> None:
    def request(lines: list[str]) -> bytes:
        return canonical_json({"messages": [{"role": "user", "content": "\n".join(lines)}]})

    va, vb = view_request(request(a)), view_request(request(b))
    diff = diff_views(va, vb, context=1000)
    rows = [row for hunk in side_by_side(diff, va, vb) for row in hunk.rows]
    left = [r.left.number for r in rows if r.left.number is not None]
    right = [r.right.number for r in rows if r.right.number is not None]
    if diff.identical:
        assert rows == []
    else:
        assert left == list(range(1, len(va.lines) + 1))
        assert right == list(range(1, len(vb.lines) + 1))


def test_diff_rows_pair_a_replacement_side_by_side() -> None:
    from runtime.replay.resend import diff_outputs

    rows = diff_rows(diff_outputs("one\ntwo", "one\n2\nthree").lines)
    assert [(r.left.op, r.right.op) for r in rows] == [
        ("same", "same"), ("removed", "added"), ("empty", "added")
    ]  # fmt: skip
    assert line_opcodes(["x"], ["x"]) == [("equal", 0, 1, 0, 1)]


def test_chat_reading_of_anthropic_openai_and_non_json_requests() -> None:
    anthropic = read_request(canonical_json({
        "model": "claude", "system": [{"type": "text", "text": "be brief", "cache_control": {}}],
        "tools": [{"name": "calc", "description": "adds", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                  {"type": "image", "source": {"data": "x"}}]},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                                        "name": "calc", "input": {"a": 1}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                   "content": [{"type": "text", "text": "2"}],
                                                   "is_error": True}]}]}))  # fmt: skip
    assert anthropic.parsed and anthropic.params == (("model", '"claude"'),)
    assert anthropic.system[0].cached and anthropic.tools[0].name == "calc"
    kinds = [[p.kind for p in m.parts] for m in anthropic.messages]
    assert kinds == [[PartKind.TEXT, PartKind.OTHER], [PartKind.TOOL_USE], [PartKind.TOOL_RESULT]]
    assert anthropic.messages[2].parts[0].is_error and anthropic.messages[2].parts[0].text == "2"
    openai = read_request(json.dumps({"messages": [
        {"role": "system", "content": "sys"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"}]}).encode())  # fmt: skip
    assert [m.role for m in openai.messages] == ["system", "assistant", "tool"]
    assert openai.messages[1].parts[0].text == '{"x": 1}'  # arguments kept verbatim
    assert openai.messages[2].parts[0].ref == "c1"
    raw = read_request(b"\xffnot json")
    assert not raw.parsed and "not json" in raw.text
    reply = read_response({"role": "assistant", "content": [{"type": "text", "text": "ok"}]})
    assert reply is not None and reply.parts[0].text == "ok"
    assert read_response(None) is None


def test_chat_reading_of_a_responses_request_and_response() -> None:
    request = read_request(json.dumps({
        "model": "gpt-4o", "instructions": "be brief",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                               {"type": "input_image", "image_url": "x"}]},
                  {"type": "reasoning", "id": "rs_1", "summary": []},
                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c1", "output": "done"},
                  {"type": "message", "role": "assistant",
                   "content": [{"type": "output_text", "text": "ok", "annotations": []}]}]}).encode())  # fmt: skip
    assert request.params == (("model", '"gpt-4o"'),)
    assert request.system[0].text == "be brief" and request.tools[0].name == "f"
    assert [m.role for m in request.messages] == ["user", "assistant", "assistant", "tool",
                                                  "assistant"]  # fmt: skip
    kinds = [[p.kind for p in m.parts] for m in request.messages]
    assert kinds == [[PartKind.TEXT, PartKind.OTHER], [PartKind.OTHER], [PartKind.TOOL_USE],
                     [PartKind.TOOL_RESULT], [PartKind.TEXT]]  # fmt: skip
    assert request.messages[3].parts[0].ref == "c1" and request.messages[3].parts[0].text == "done"
    assert [m.index for m in request.messages] == [0, 1, 2, 3, 4]  # positions in ``input``
    plain = read_request(json.dumps({"model": "gpt-4o", "input": "Hello"}).encode())
    assert [(m.role, m.parts[0].text) for m in plain.messages] == [("user", "Hello")]
    reply = read_response({"id": "r", "status": "completed", "output": [
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "It rains.", "annotations": []}]},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"a":1}'}]})  # fmt: skip
    assert reply is not None and [p.kind for p in reply.parts] == [PartKind.TEXT, PartKind.TOOL_USE]
    assert reply.parts[0].text == "It rains." and reply.parts[1].ref == "c2"


def test_timeline_groups_replays_and_orders_sections(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    store.put_many("s", [NewBlock(BlockKind.USER_MESSAGE, "x")])
    one, two = _record("s", 1, []), _record("s", 2, [])
    replay = _record("s", 2, [], origin=TraceOrigin.REPLAY, parent_call_id=two.record.call_id)
    traces.record_many([one, two, replay])
    timeline = session_timeline(traces, "s")
    assert [(r.turn, r.call_id, r.replays) for r in timeline.rows] == [
        (1, one.record.call_id, 0), (2, two.record.call_id, 1)
    ]  # fmt: skip
    plan = {"selected": [{"section": "recent", "tokens": 2}, {"section": "system", "tokens": 5},
                         {"section": "zzz", "tokens": 1}]}  # fmt: skip
    assert [s.section for s in section_tokens(plan)] == ["system", "recent", "zzz"]


def test_turn_sections_count_blocks_in_and_out_and_page_in_plan_order() -> None:
    plan = {"selected": [{"block_id": f"b{i}", "section": "recent", "tokens": 2} for i in range(7)],
            "omitted": [{"block_id": "o", "section": "retrieved", "reason": "over-budget",
                         "tokens": 9}]}  # fmt: skip
    views = {v.section: v for v in section_views(plan)}
    assert (views["recent"].blocks, views["recent"].used) == (7, 14)
    assert (views["retrieved"].omitted, views["retrieved"].omitted_tokens) == (1, 9)
    page = entry_page(plan, selected=True, section="recent", offset=5, limit=5)
    assert [e.block_id for e in page.entries] == ["b5", "b6"] and page.next_offset is None


def test_section_counts_read_odd_entries_as_the_entry_list_does() -> None:
    # The counts are summed from the raw plan (a big turn has thousands of entries); they must
    # read each entry exactly as plan_entries does, odd ones included.
    odd = [
        {"block_id": "a", "section": "recent", "tokens": True},
        "bare-id",
        7,
        {"block_id": "b", "section": None, "tokens": 3.5},
        {"section": "recent", "tokens": 4},
    ]
    plan = {"selected": odd, "omitted": [*odd, {"section": "retrieved", "tokens": 5}]}  # fmt: skip
    views = {v.section: v for v in section_views(plan)}
    for selected in (True, False):
        for e in plan_entries(plan, selected=selected):
            view = views[e.section]
            assert (view.blocks if selected else view.omitted) == sum(
                1 for x in plan_entries(plan, selected=selected) if x.section == e.section
            )
    assert (views["recent"].blocks, views["recent"].used, views["recent"].omitted) == (2, 4, 2)
    assert (views[""].blocks, views["retrieved"].omitted_tokens) == (3, 5)


def test_block_uses_follow_added_deleted_and_swapped_records(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    ids = [e.id for e in store.put_many("s", [NewBlock(BlockKind.USER_MESSAGE, f"m{i}")
                                              for i in range(3)])]  # fmt: skip
    traces.record_many([_record("s", 1, ids[:1]), _record("s", 2, ids[:2])])
    assert block_uses(store, traces, ids[0]).records == 2
    assert [u.turn for u in block_uses(store, traces, ids[1]).uses] == [2]
    store.put_many("t", [NewBlock(BlockKind.USER_MESSAGE, "m0")])
    traces.record_many([_record("t", 1, ids[:1])])
    assert block_uses(store, traces, ids[0]).records == 3
    traces.delete_session("s")
    assert [u.session for u in block_uses(store, traces, ids[0]).uses] == ["t"]
    traces.delete_session("t")  # then as many records as before, but different ones
    traces.record_many([_record("s", 1, ids[2:])])
    sync(store, traces)
    assert block_uses(store, traces, ids[0]).records == 0
    assert block_uses(store, traces, ids[2]).records == 1


def test_block_uses_rebuild_after_a_delete_then_more_adds_than_were_deleted(
    tmp_path: Path,
) -> None:
    store, traces = _stores(tmp_path)
    ids = [e.id for e in store.put_many("a", [NewBlock(BlockKind.USER_MESSAGE, f"m{i}")
                                              for i in range(3)])]  # fmt: skip
    traces.record_many([_record("a", t, ids[:1]) for t in (1, 2)])
    sync(store, traces)
    traces.delete_session("a")
    store.put_many("b", [NewBlock(BlockKind.USER_MESSAGE, "m1")])
    traces.record_many([_record("b", t, ids[1:2]) for t in (1, 2, 3)])
    sync(store, traces)
    assert block_uses(store, traces, ids[0]).records == 0
    assert [u.turn for u in block_uses(store, traces, ids[1]).uses] == [1, 2, 3]


def test_trace_generation_counts_adds_and_deletes_in_the_write(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    first = traces.generation()
    records = [_record("a", t, []) for t in (1, 2)]
    traces.record_many(records)
    traces.flag(records[0].record.call_id)
    traces.delete_session("a")
    last = traces.generation()
    assert (first.added, first.deleted) == (0, 0)
    assert (last.added, last.deleted) == (2, 2) and last.writes == first.writes + 3


def test_sessions_sort_by_id_descending_and_ascending(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    for name in ("b", "d", "a", "c"):
        store.put_many(name, [NewBlock(BlockKind.USER_MESSAGE, name)])
    for descending, expected in ((True, ["d", "c", "b", "a"]), (False, ["a", "b", "c", "d"])):
        q = SessionQuery(sort=SortKey.SESSION, descending=descending)
        assert [r.session for r in query_sessions(store, traces, q).rows] == expected
