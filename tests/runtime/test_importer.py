"""Importing OpenAI-format transcripts: all 120 tau-bench sessions, idempotency, bad files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runtime import open_store
from runtime.blocks import (
    BlockKind,
    EdgeKind,
    ToolCall,
    ToolResult,
    canonical_json,
    parse_tool_call,
)
from runtime.errors import InvalidInput, MalformedFile
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import Provider, TraceOrigin, prompt_hash
from runtime.transfer.failing import diverging_call
from runtime.transfer.importer import (
    DEMO_DIR,
    ImportOptions,
    import_file,
    import_transcripts,
    load_demo_sessions,
)
from runtime.transfer.transcripts import read_tools

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tau-bench-airline"
SESSIONS = json.loads((DEMO_DIR / "sessions.json").read_bytes())
TOOLS = json.loads((DEMO_DIR / "tools.json").read_bytes())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The shipped demo data imported once into a real store (the slowest step, ~5 s)."""
    store = open_store(tmp_path_factory.mktemp("demo") / "store")
    traces = LmdbTraceStore(store)
    report = load_demo_sessions(store, traces)
    yield store, traces, report
    store.close()


@pytest.fixture
def env(tmp_path):
    store = open_store(tmp_path / "store")
    yield store, LmdbTraceStore(store)
    store.close()


def session_of(item) -> str:
    return f"tau-airline-task{item['task_id']:03d}-trial{item['trial']}"


def test_all_120_tau_bench_sessions_import_with_one_turn_per_assistant_message(demo):
    store, traces, report = demo
    assistant_messages = sum(m["role"] == "assistant" for s in SESSIONS for m in s["traj"])
    assert len(report.sessions) == len(SESSIONS) == 120
    assert report.turns_recorded == assistant_messages == traces.count()
    assert report.failing == sum(s["reward"] == 0 for s in SESSIONS) == 84
    assert store.session_count() == 120


def test_each_turn_records_the_exact_chat_request_gpt4o_received(demo):
    _, traces, _ = demo
    for item in SESSIONS[:12] + SESSIONS[-3:]:
        records = traces.list(session=session_of(item), newest_first=False, limit=None)
        turns = [i for i, m in enumerate(item["traj"]) if m["role"] == "assistant"]
        assert [r.turn for r in records] == list(range(1, len(turns) + 1))
        for record, index in zip(records, turns, strict=True):
            expected = canonical_json(
                {"model": "gpt-4o", "messages": item["traj"][:index], "tools": TOOLS}
            )
            assert traces.request_bytes(record.prompt_hash) == expected
            assert record.prompt_hash == hashlib.sha256(expected).hexdigest()
            assert record.replay_complete and record.provider is Provider.OPENAI
            assert record.origin is TraceOrigin.IMPORT and record.response == item["traj"][index]
            assert traces.response_bytes(record.call_id) == canonical_json(item["traj"][index])


def test_each_plan_selects_every_earlier_block_as_required_with_o200k_counts(demo):
    store, traces, _ = demo
    session = session_of(SESSIONS[5])
    entries = store.entries(session)
    for record in traces.list(session=session, limit=None):
        selected = record.plan["selected"]
        assert [s["seq"] for s in selected] == [e.seq for e in entries if e.seq < record.upto_seq]
        assert [s["block_id"] for s in selected] == [e.id for e in entries[: len(selected)]]
        assert {s["reason"] for s in selected} == {"required"} and record.plan["omitted"] == []
        assert record.plan["upto"] == record.upto_seq and record.plan["session"] == session
        counts = store.token_counts([s["block_id"] for s in selected], "o200k_base")
        assert [s["tokens"] for s in selected] == counts
        assert record.estimated_input_tokens == sum(counts) == record.plan["tokens"]
        assert record.tokenizer is not None and record.tokenizer.name == "o200k_base"


def test_blocks_follow_the_conventions_for_tools_calls_and_results(demo):
    store, _, _ = demo
    item = SESSIONS[0]
    entries = store.entries(session_of(item))
    kinds = [e.kind for e in entries]
    assert kinds[:14] == [BlockKind.TOOL_SCHEMA] * 14 and kinds[14] == BlockKind.SYSTEM
    schema = json.loads(entries[0].body)
    assert set(schema) == {"description", "input_schema", "name"}
    assert schema["input_schema"] == TOOLS[0]["function"]["parameters"]
    calls = [e for e in entries if e.kind == BlockKind.TOOL_CALL]
    results = [e for e in entries if e.kind == BlockKind.TOOL_RESULT]
    assert len(calls) == len(results) == sum(len(m.get("tool_calls") or []) for m in item["traj"])
    for call in calls:
        (edge,) = store.edges_from(call.id, EdgeKind.TOOL_INVOCATION)
        result = store.get(edge.dst)
        assert json.loads(result.body)["tool_use_id"] == parse_tool_call(call.body).call_id


def test_assistant_text_with_tool_calls_links_each_call_to_the_text(env):
    store, traces = env
    traj = [
        {"role": "user", "content": "find my trip"},
        {"role": "assistant", "content": "Looking it up.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"id": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "found"},
        {"role": "assistant", "content": "Here it is."},
    ]  # fmt: skip
    import_transcripts(store, traces, json.dumps([{"session": "t1", "traj": traj}]).encode())
    call_id = [e for e in store.entries("t1") if e.kind == BlockKind.TOOL_CALL][0].id
    assert store.get(call_id).body == ToolCall("c1", "lookup", {"id": 1}).body()
    (parent,) = store.edges_from(call_id, EdgeKind.PARENT)
    assert store.get(parent.dst).body == "Looking it up."
    (invocation,) = store.edges_from(call_id, EdgeKind.TOOL_INVOCATION)
    assert store.get(invocation.dst).body == ToolResult("c1", "found").body()
    assert traces.count(session="t1") == 2


def test_failing_sessions_keep_their_reward_and_one_turn_is_flagged(demo):
    store, traces, _ = demo
    for item in SESSIONS[:8]:
        session = session_of(item)
        meta = store.session_info(session).meta
        assert meta["reward"] == item["reward"] and meta["failing"] is (item["reward"] == 0)
        assert meta["source"] == "tau-bench-airline" and "MIT" in meta["license"]
        flagged = traces.list(session=session, flagged=True, limit=None)
        assert len(flagged) == (item["reward"] == 0)
    assert traces.count(flagged=True) == 84


def _assistant_index(item, turn: int) -> int:
    return [i for i, m in enumerate(item["traj"]) if m["role"] == "assistant"][turn - 1]


def test_a_failing_run_is_flagged_on_its_first_call_that_departs_from_the_expected_actions(demo):
    store, traces, _ = demo
    moved = 0
    for item in [x for x in SESSIONS if x["reward"] == 0]:
        (rec,) = traces.list(session=session_of(item), flagged=True, limit=None)
        found = diverging_call(item["traj"], item["info"])
        last = traces.list(session=session_of(item), limit=1)[0].turn
        if found is None:
            assert rec.turn == last and "its last turn" in rec.flag.note
            continue
        assert _assistant_index(item, rec.turn) == found[0]
        assert f"first to call {found[1]} with arguments it did not expect" in rec.flag.note
        moved += rec.turn != last
    assert moved > 0  # the data does let the flag leave the last turn


def test_reimporting_the_same_file_adds_nothing(demo):
    store, traces, _ = demo
    before = [(i.session, i.count) for i in store.sessions()]
    report = load_demo_sessions(store, traces)
    assert report.turns_recorded == 0 and report.sessions_written == 0
    assert report.turns_skipped == traces.count()
    assert [(i.session, i.count) for i in store.sessions()] == before


def test_the_shipped_copy_is_the_shared_data_unchanged():
    sums = dict(line.split()[::-1] for line in (DEMO_DIR / "SHA256SUMS").read_text().splitlines())
    for name in ("sessions.json", "tools.json"):
        assert hashlib.sha256((DEMO_DIR / name).read_bytes()).hexdigest() == sums[name]
        if SHARED.is_dir():
            assert (DEMO_DIR / name).read_bytes() == (SHARED / name).read_bytes()
    assert "Copyright (c) 2024 Sierra" in (DEMO_DIR / "LICENSE").read_text()
    assert "MIT" in (DEMO_DIR / "README.md").read_text()


def test_content_as_text_parts_imports_as_the_joined_text_and_the_request_keeps_the_parts(env):
    store, traces = env
    parts = [{"type": "text", "text": "find my "}, {"type": "text", "text": "trip"}]
    traj = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": [{"type": "text", "text": "Here it is."}]},
    ]
    import_transcripts(store, traces, json.dumps([{"session": "p1", "traj": traj}]).encode())
    bodies = [(e.kind, store.get(e.id).body) for e in store.entries("p1")]
    assert bodies == [(BlockKind.SYSTEM, "Be brief."), (BlockKind.USER_MESSAGE, "find my trip"),
                      (BlockKind.ASSISTANT_MESSAGE, "Here it is.")]  # fmt: skip
    (record,) = traces.list(limit=None)
    assert json.loads(traces.request_bytes(record.prompt_hash))["messages"][1]["content"] == parts


def test_a_content_part_that_is_not_text_is_refused_naming_its_type(env):
    store, traces = env
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    traj = [{"role": "user", "content": [image]}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(MalformedFile, match="image_url"):
        import_transcripts(store, traces, json.dumps([{"session": "p2", "traj": traj}]).encode())
    assert store.sessions() == []


def test_json_lines_input_imports_one_session_per_line(env, tmp_path):
    store, traces = env
    lines = "\n".join(json.dumps(s) for s in SESSIONS[:2]) + "\n\n"
    path = tmp_path / "two.jsonl"
    path.write_text(lines)
    (tmp_path / "tools.json").write_text(json.dumps(TOOLS))
    report = import_file(store, traces, path, options=ImportOptions(prefix="x"))
    assert report.sessions == ("x-task000-trial0", "x-task001-trial0")
    assert len(store.entries("x-task000-trial0")) > 14  # the tools file beside it was used


def test_a_session_that_already_holds_other_content_is_refused_untouched(env):
    store, traces = env
    one = [
        {
            "session": "s",
            "traj": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        }
    ]
    import_transcripts(store, traces, json.dumps(one).encode())
    one[0]["traj"][0]["content"] = "changed"
    with pytest.raises(InvalidInput, match="already holds different blocks"):
        import_transcripts(store, traces, json.dumps(one).encode())
    assert [e.body for e in store.entries("s")] == ["a", "b"] and traces.count() == 1


def test_a_bad_session_late_in_the_file_leaves_the_store_empty(env):
    store, traces = env
    bad = SESSIONS[:3] + [{"task_id": 99, "trial": 0, "traj": [{"role": "robot", "content": "x"}]}]
    with pytest.raises(MalformedFile, match="session item 3, message 0"):
        import_transcripts(store, traces, json.dumps(bad).encode(), name="bad.json")
    assert store.session_count() == 0 and traces.count() == 0


def _error(data: bytes | str, name: str = "f.json") -> str:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(MalformedFile) as info:
        import_transcripts_into_nothing(raw, name)
    return str(info.value)


def import_transcripts_into_nothing(raw: bytes, name: str) -> None:
    from runtime.transfer.transcripts import read_transcripts

    read_transcripts(raw, name)


def msgs(*messages) -> str:
    return json.dumps([{"traj": list(messages)}])


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    "data, expected",
    [
        ('[{"traj": [}]', "f.json line 1 column 12: invalid JSON"),
        ('[\n  {"traj": []},\n  {"traj": [1,]}\n]', "line 3 column"),
        ('{"traj": [{"role": "user", "content": "a"}]}\n{"traj": ', "f.json line 2 column"),
        (b'[{"traj": [{"role": "user", "content": "\xff"}]}]', "line 1 column 41: invalid UTF-8 (byte 40)"),
        (b'[\n{"traj": 1},\n\xc3\x28]', "line 3 column 1: invalid UTF-8"),
        ("", "the file is empty"),
        ('"just text"', "session item 0: expected an object"),
        ("[1]", "session item 0: expected an object, found int"),
        ('[{"task_id": 1}]', '"traj" (or "messages") is missing'),
        ('[\n{"traj": []}]', 'line 2: session item 0: "traj"'),
        (msgs({"role": "robot", "content": "x"}), 'message 0: "role" is \'robot\''),
        (msgs("hi"), "message 0: expected an object, found a string"),
        (msgs({"role": "user"}), '(user) "content" is missing'),
        (msgs({"role": "user", "content": 5}), '"content" must be a string or null'),
        (msgs(USER, {"role": "assistant", "content": None}), 'message 1: (assistant) has neither'),
        (msgs(USER, {"role": "assistant", "tool_calls": {}}), '"tool_calls" must be a list'),
        (msgs(USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}), 'tool_calls[0] has no "id"'),
        (msgs(USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}), 'has no "function.name"'),
        (msgs(USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}), "arguments is not a string"),
        (msgs(USER, {"role": "tool", "content": "r"}), '(tool) "tool_call_id" is missing'),
        (msgs(USER, {"role": "tool", "tool_call_id": "nope", "content": "r"}), "answers call 'nope', which no earlier"),
        (msgs(USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}] * 2}), "used again before it was answered"),
        (json.dumps([{"traj": [USER], "reward": "high"}]), '"reward" must be a number'),
        (json.dumps([{"traj": [USER], "task_id": "7"}]), '"task_id" must be int'),
        (json.dumps([{"traj": [USER], "info": []}]), '"info" must be dict'),
    ],
)  # fmt: skip
def test_malformed_files_are_rejected_with_the_line_and_reason(data, expected):
    assert expected in _error(data)


def test_duplicate_session_ids_in_one_file_are_rejected(env):
    store, traces = env
    item = {"task_id": 1, "trial": 0, "traj": [USER]}
    with pytest.raises(MalformedFile, match="session items 0 and 1 are both"):
        import_transcripts(store, traces, json.dumps([item, item]).encode(), name="d.json")
    assert store.session_count() == 0


def test_a_session_id_that_is_not_usable_is_reported_with_its_item(env):
    store, traces = env
    with pytest.raises(MalformedFile, match="line 1: session item 0: session id"):
        import_transcripts(
            store, traces, json.dumps([{"session": "no spaces", "traj": [USER]}]).encode()
        )


def test_a_call_id_may_be_reused_after_its_call_was_answered(env):
    store, traces = env
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    traj = [USER, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c", "content": "one"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c", "content": "two"}]  # fmt: skip
    report = import_transcripts(
        store, traces, json.dumps([{"session": "r", "traj": traj}]).encode()
    )
    assert report.turns_recorded == 2
    (call_block,) = {e.id for e in store.entries("r") if e.kind == BlockKind.TOOL_CALL}
    assert len(store.edges_from(call_block, EdgeKind.TOOL_INVOCATION)) == 2


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"{", "invalid JSON"),
        (b'{"a": 1}', "expected a JSON list of tool definitions"),
        (b'[{"type": "function"}]', 'tool 0 has no "function" with a "name"'),
        (b'[{"function": {"name": "f", "parameters": 3}}]', '"parameters" is not an object'),
        (b'[{"function": {"name": "f", "description": 3}}]', '"description" is not text'),
    ],
)
def test_malformed_tool_files_are_rejected(data, expected):
    with pytest.raises(MalformedFile, match=expected.replace("(", r"\(")):
        read_tools(data, "tools.json")


def test_an_unreadable_file_is_reported(env, tmp_path):
    store, traces = env
    with pytest.raises(InvalidInput, match="cannot read"):
        import_file(store, traces, tmp_path / "missing.json")


def test_a_tool_call_whose_arguments_are_not_json_keeps_them_as_written(env):
    store, traces = env
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    traj = [USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    import_transcripts(store, traces, json.dumps([{"session": "j", "traj": traj}]).encode())
    (block,) = [e for e in store.entries("j") if e.kind == BlockKind.TOOL_CALL]
    assert parse_tool_call(block.body).input == "{oops"
    assert (
        prompt_hash(canonical_json({"model": "gpt-4o", "messages": [USER]}))
        == traces.list()[0].prompt_hash
    )


def test_reimporting_after_a_recorded_repage_of_an_imported_turn_adds_nothing(env):
    from runtime.profiles.catalog import get_profile
    from runtime.replay.repage import repage

    store, traces = env
    one = [
        {
            "session": "s",
            "traj": [
                {"role": "system", "content": "You are an airline agent."},
                {"role": "user", "content": "Cancel reservation ZX123"},
                {"role": "assistant", "content": "Done."},
            ],
        }
    ]
    raw = json.dumps(one).encode()
    import_transcripts(store, traces, raw)
    ((turn, call_id),) = traces.turns("s")
    repage(store, traces, call_id, profile=get_profile("claude-sonnet-4-6"), record=True)
    assert traces.count() == 2  # the re-page record shares the imported turn's number
    report = import_transcripts(store, traces, raw)  # `make run` does this every time
    assert report.turns_recorded == 0 and traces.count() == 2
