"""Trace records and the LMDB trace store: hashes, indexes, flags, aggregates, deletes."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import open_store
from runtime.blocks import canonical_json
from runtime.errors import (
    AmbiguousPrefix,
    InvalidInput,
    StoreCorrupted,
    StoreNotAStore,
    TraceNotFound,
)
from runtime.providers.usage import Usage
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore, pack_bytes, unpack_bytes
from runtime.tracing.records import (
    AttemptRecord,
    Flag,
    Provider,
    StoredTrace,
    TokenizerInfo,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    _CallIds,
    new_call_id,
    prompt_hash,
)
from tests.properties import WITH_FIXTURES


def make(session="s1", turn=1, request=b'{"messages":[]}', **fields) -> TraceRecord:
    call_id = fields.pop("call_id", new_call_id())
    base = {
        "call_id": call_id, "session": session, "turn": turn, "started_at": int(call_id[:13]) if call_id[:13].isdigit() else 0,
        "provider": Provider.ANTHROPIC, "model": "claude-haiku-4-5",
        "prompt_hash": prompt_hash(request), "request_size": len(request),
    }  # fmt: skip
    return TraceRecord(**(base | fields))


def req(text: str) -> bytes:
    return canonical_json({"messages": [{"role": "user", "content": text}], "model": "m"})


@pytest.fixture
def env(tmp_path):
    store = open_store(tmp_path / "store")
    yield store, LmdbTraceStore(store)
    store.close()


@pytest.fixture
def traces(env):
    return env[1]


def test_record_round_trips_every_field(traces):
    request = req("hello")
    record = make(
        request=request, status=TraceStatus.ERROR, origin=TraceOrigin.REPLAY,
        parent_call_id=new_call_id(), latency_ms=812.5, runtime_version="0.1.0",
        tokenizer=TokenizerInfo("cl100k_base", "tiktoken-x/cl100k_base/abc"),
        profile={"name": "claude-haiku-4-5", "max_context_tokens": 200000},
        config={"budgets": {"recent": 0.2}}, task="book a flight", upto_seq=7,
        plan={"selected": [{"block_id": "ab" * 32, "section": "recent", "tokens": 5}]},
        estimated_input_tokens=42, response={"type": "message"}, response_hash=prompt_hash(b"{}"),
        estimated_output_tokens=3, usage=Usage(10, 2, 30, 5), stop_reason="end_turn",
        error=TraceError("rate_limit_error", "slow down", 429),
        attempts=(AttemptRecord(1, 429, "rate_limit_error", "slow down", 12.5, 1000.0),),
        paging={"faults": 1, "tokens_by_category": {"live": 40}},
    )  # fmt: skip
    traces.record(record, request, b"{}")
    loaded = traces.get(record.call_id)
    assert replace(loaded, replay_complete=False) == record
    assert loaded.replay_complete
    assert traces.response_bytes(record.call_id) == b"{}"


def test_record_refuses_a_prompt_hash_that_is_not_the_hash_of_the_request(traces):
    wrong = make(request=req("a"))
    with pytest.raises(InvalidInput, match="hash"):
        traces.record(wrong, req("b"))
    # The reference design's bug: the hash of empty input recorded for a real request.
    empty = make(request=req("a"), prompt_hash=prompt_hash(b""))
    with pytest.raises(InvalidInput):
        traces.record(empty, req("a"))
    assert traces.count() == 0


def test_record_refuses_a_response_that_does_not_match_its_hash(traces):
    record = make(request=req("a"), response_hash=prompt_hash(b"right"))
    with pytest.raises(InvalidInput, match="response"):
        traces.record(record, req("a"), b"wrong")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"turn": 0}, "turn"),
        ({"session": "has space"}, "session"),
        ({"call_id": "not-an-id"}, "call id"),
        ({"status": TraceStatus.ERROR}, "error"),
        ({"error": TraceError("x", "y")}, "error"),
        ({"parent_call_id": "123"}, "call id"),
    ],
)
def test_record_refuses_malformed_records(traces, change, message):
    with pytest.raises(InvalidInput, match=message):
        traces.record(make(request=req("a"), **change), req("a"))


def test_records_never_change_once_stored(traces):
    record = make(request=req("a"))
    traces.record(record, req("a"))
    with pytest.raises(InvalidInput, match="already recorded"):
        traces.record(replace(record, turn=2), req("a"))
    assert traces.get(record.call_id).turn == 1


def test_reading_a_record_checks_its_request_is_stored_and_verify_checks_its_hash(env):
    store, traces = env
    record = make(request=req("a"))
    traces.record(record, req("a"))
    assert traces.get(record.call_id).replay_complete
    db = store.env.db(b"trace_requests")
    lmdbenv.write(
        store.env,
        lambda txn: txn.put(bytes.fromhex(record.prompt_hash), pack_bytes(req("tampered")), db=db),
    )
    # Pages read records without hashing their requests: damage shows where the bytes are read.
    with pytest.raises(StoreCorrupted, match="no longer hashes"):
        traces.request_bytes(record.prompt_hash)
    assert "request-damaged" in {p.code for p in traces.verify().problems}
    lmdbenv.write(store.env, lambda txn: txn.delete(bytes.fromhex(record.prompt_hash), db=db))
    assert not traces.get(record.call_id).replay_complete
    assert not traces.list()[0].replay_complete


def test_a_new_record_with_good_bytes_repairs_a_damaged_stored_request(env):
    store, traces = env
    first = make(request=req("a"))
    traces.record(first, req("a"))
    db = store.env.db(b"trace_requests")
    lmdbenv.write(
        store.env, lambda txn: txn.put(bytes.fromhex(first.prompt_hash), b"\x01junk", db=db)
    )
    with pytest.raises(StoreCorrupted):
        traces.request_bytes(first.prompt_hash)
    traces.record(make(request=req("a"), turn=2), req("a"))
    assert traces.request_bytes(first.prompt_hash) == req("a")


def test_request_bytes_are_stored_once_per_hash(env):
    store, traces = env
    traces.record_many(
        [StoredTrace(make(turn=t, request=req("same")), req("same")) for t in (1, 2, 3)]
    )
    db = store.env.db(b"trace_requests")
    assert lmdbenv.read(store.env, lambda txn: txn.stat(db)["entries"]) == 1
    assert traces.request_bytes(prompt_hash(req("same"))) == req("same")


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(5000), b"abc" * 10_000])
def test_stored_bytes_come_back_exactly_compressed_or_not(data):
    assert unpack_bytes(pack_bytes(data)) == data


def test_unknown_codec_or_bad_compressed_bytes_are_reported_as_corruption():
    with pytest.raises(StoreCorrupted):
        unpack_bytes(b"\x07abc")
    with pytest.raises(StoreCorrupted):
        unpack_bytes(b"\x01not zlib")


def test_get_accepts_a_unique_prefix_and_refuses_ambiguous_or_unknown_ids(traces):
    a, b = make(turn=1, request=req("a")), make(turn=2, request=req("b"))
    traces.record_many([StoredTrace(a, req("a")), StoredTrace(b, req("b"))])
    assert traces.get(a.call_id[:-3]).call_id == a.call_id
    with pytest.raises(InvalidInput, match="ambiguous"):
        traces.get(a.call_id[:6])
    with pytest.raises(TraceNotFound):
        traces.get("9" * 25)
    with pytest.raises(TraceNotFound):
        traces.get("99999")
    with pytest.raises(InvalidInput):
        traces.get("zz")


def _fill(traces):
    """Two sessions; s1 has 3 turns (turn 2 failed), s2 has 2; one s1 turn is a replay."""
    items = [
        make("s1", 1, req("1")), make("s1", 2, req("2"), status=TraceStatus.ERROR, error=TraceError("api_error", "boom", 500)),
        make("s2", 1, req("x")), make("s1", 3, req("3")), make("s2", 2, req("1")),
        make("s1", 3, req("3"), origin=TraceOrigin.REPLAY),
    ]  # fmt: skip
    traces.record_many([StoredTrace(r, req_of(r)) for r in items])
    return items


def req_of(record):
    for text in ("1", "2", "3", "x"):
        if prompt_hash(req(text)) == record.prompt_hash:
            return req(text)
    raise AssertionError("unknown request")


def test_list_by_session_is_in_turn_order_and_newest_first_by_default(traces):
    items = _fill(traces)
    in_order = traces.list(session="s1", newest_first=False, limit=None)
    assert [r.turn for r in in_order] == [1, 2, 3, 3]
    assert [r.call_id for r in traces.list(limit=None)] == [r.call_id for r in reversed(items)]


def test_list_filters_by_status_flag_and_prompt_hash(traces):
    items = _fill(traces)
    assert [r.call_id for r in traces.list(status="error")] == [items[1].call_id]
    assert {r.call_id for r in traces.list(prompt_hash=prompt_hash(req("1")))} == {
        items[0].call_id, items[4].call_id
    }  # fmt: skip
    traces.flag(items[3].call_id, "wrong answer")
    assert [r.call_id for r in traces.list(flagged=True)] == [items[3].call_id]
    assert len(traces.list(flagged=False, limit=None)) == 5
    assert [r.call_id for r in traces.list(session="s1", status="ok", flagged=True)] == [
        items[3].call_id
    ]
    assert traces.list(session="s2", status="error") == []


def test_list_pages_with_offset_and_limit(traces):
    items = _fill(traces)
    pages = [traces.list(offset=o, limit=2) for o in (0, 2, 4)]
    assert [r.call_id for page in pages for r in page] == [r.call_id for r in reversed(items)]
    traces.flag(items[4].call_id)
    for filters in ({"flagged": False}, {"session": "s1", "status": "ok"}, {"status": "ok"}):
        everything = [r.call_id for r in traces.list(limit=None, **filters)]
        assert [r.call_id for r in traces.list(offset=1, limit=2, **filters)] == everything[1:3]


def test_listing_one_session_never_reads_another_sessions_records(env):
    store, traces = env
    items = _fill(traces)
    db = store.env.db(b"traces")
    lmdbenv.write(store.env, lambda txn: txn.put(items[2].call_id.encode(), b"garbage", db=db))
    assert len(traces.list(session="s1", limit=None)) == 4  # s2's damaged record is not touched
    with pytest.raises(StoreCorrupted):
        traces.list(limit=None)


def test_flag_and_unflag_keep_counts_in_step(traces):
    items = _fill(traces)
    flagged = traces.flag(items[0].call_id, "hallucinated a flight")
    assert flagged.flag is not None and flagged.flag.note == "hallucinated a flight"
    again = traces.flag(items[0].call_id[:20], "new note")
    assert again.flag.note == "new note"
    assert traces.count(flagged=True) == 1
    assert traces.session_stats(["s1"])[0].flagged == 1
    assert traces.unflag(items[0].call_id).flag is None
    assert traces.count(flagged=True) == 0 and traces.session_stats(["s1"])[0].flagged == 0
    assert traces.get(items[0].call_id).flag is None


def test_session_stats_are_kept_with_each_write(traces):
    request = req("u")
    with_usage = make("s9", 1, request, usage=Usage(100, 20, 1000, 50), estimated_input_tokens=5)
    estimated = make("s9", 2, request, estimated_input_tokens=300, estimated_output_tokens=7)
    traces.record_many([StoredTrace(with_usage, request), StoredTrace(estimated, request)])
    stats = traces.session_stats(["s9", "nothing"])
    assert stats[0].calls == 2 and stats[0].turns == 2 and stats[0].errors == 0
    assert stats[0].input_tokens == 100 + 1000 + 50 + 300  # Anthropic's three counts add up
    assert stats[0].output_tokens == 27 and stats[0].total_tokens == 1477
    assert stats[0].first_at == with_usage.started_at and stats[0].last_at == estimated.started_at
    assert stats[1].calls == 0 and stats[1].first_at is None


def test_counts_agree_with_listings(traces):
    items = _fill(traces)
    traces.flag(items[1].call_id)
    for kwargs in ({}, {"session": "s1"}, {"status": "ok"}, {"status": "error"}, {"flagged": True},
                   {"flagged": False}, {"session": "s1", "status": "error"},
                   {"session": "s1", "flagged": False}, {"status": "error", "flagged": True}):  # fmt: skip
        assert traces.count(**kwargs) == len(traces.list(limit=None, **kwargs)), kwargs
    assert traces.session_stats(["s1"])[0].turns == 3  # the replay is not a turn


def test_delete_session_removes_its_records_and_unshared_bytes(env):
    store, traces = env
    items = _fill(traces)
    traces.flag(items[0].call_id)
    assert traces.delete_session("s1") == 4
    assert traces.count() == 2 and traces.count(flagged=True) == 0
    assert traces.session_stats(["s1"])[0].calls == 0
    assert traces.list(session="s1") == []
    assert traces.request_bytes(prompt_hash(req("2"))) is None
    assert traces.request_bytes(prompt_hash(req("1"))) == req("1")  # s2 turn 2 still uses it
    assert all(r.replay_complete for r in traces.list(limit=None))
    with pytest.raises(TraceNotFound):
        traces.get(items[0].call_id)
    for name in (b"trace_by_time", b"trace_by_status", b"trace_by_hash", b"trace_flags"):
        db = store.env.db(name)
        rows = lmdbenv.read(store.env, lambda txn, db=db: [k for k, _ in txn.cursor(db=db)])
        assert not any(items[0].call_id.encode() in k for k in rows), name


def test_call_ids_sort_by_creation_even_when_the_clock_steps_back():
    ids = _CallIds()
    made = [ids.next(now_ms=t) for t in (5000, 5000, 4000, 6000, 6000)]
    assert made == sorted(made) and len(set(made)) == 5
    assert all(len(cid) == 25 for cid in made)
    many = [new_call_id() for _ in range(2000)]
    assert many == sorted(many) and len(set(many)) == 2000


def test_decoding_refuses_an_unknown_schema_version():
    raw = canonical_json({**make().stored_json(), "schema": 99})
    with pytest.raises(StoreCorrupted, match="schema 99"):
        TraceRecord.decode(raw)


def test_trace_store_refuses_a_folder_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreNotAStore):
        LmdbTraceStore(tmp_path)


def test_trace_store_opens_from_a_path_in_the_same_environment(tmp_path):
    store = open_store(tmp_path / "s")
    record = make(request=req("a"))
    LmdbTraceStore(tmp_path / "s").record(record, req("a"))
    assert LmdbTraceStore(store).get(record.call_id).call_id == record.call_id
    store.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(WITH_FIXTURES, max_examples=60)
@given(
    session=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,30}", fullmatch=True),
    turn=st.integers(1, 10**6),
    request=st.binary(max_size=300),
    plan=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    tokens=st.none() | st.integers(0, 10**7),
    note=st.none() | st.text(max_size=40),
)
def test_any_record_round_trips_through_the_store(
    traces, session, turn, request, plan, tokens, note
):
    record = make(session, turn, request, plan=plan, estimated_input_tokens=tokens)
    traces.record(record, request)
    if note is not None:
        traces.flag(record.call_id, note)
    loaded = traces.get(record.call_id)
    assert replace(loaded, flag=None, replay_complete=False) == record
    assert loaded.replay_complete and traces.request_bytes(record.prompt_hash) == request
    assert (loaded.flag is not None) == (note is not None)
    assert TraceRecord.decode(record.encode()) == record


def test_flag_is_a_value_with_note_and_time(traces):
    record = make(request=req("a"))
    traces.record_many([StoredTrace(record, req("a"), None, Flag("bad", 123))])
    assert traces.get(record.call_id).flag == Flag("bad", 123)
    assert traces.count(flagged=True) == 1


def test_verify_finds_damage_and_repair_rebuilds_what_can_be_rebuilt(env):
    store, traces = env
    items = _fill(traces)
    traces.flag(items[0].call_id, "x")
    assert traces.verify().ok
    db = store.env.db

    def damage(txn):
        txn.delete(
            b"s2\x00" + (1).to_bytes(4, "big") + items[2].call_id.encode(),
            db=db(b"trace_by_session"),
        )
        txn.put(b"ok\x00" + b"9" * 25, b"", db=db(b"trace_by_status"))
        txn.put(
            bytes.fromhex(items[1].prompt_hash), pack_bytes(b"changed"), db=db(b"trace_requests")
        )
        txn.put(b"\x00" * 32, pack_bytes(b"nobody uses me"), db=db(b"trace_requests"))
        txn.put(b"s1", canonical_json({"calls": 99}), db=db(b"trace_sessions"))

    lmdbenv.write(store.env, damage)
    codes = sorted({p.code for p in traces.verify().problems})
    assert codes == [
        "chunk-count",  # the overwritten request's chunks are still counted ...
        "chunk-orphan",  # ... but no request names them any more
        "count-mismatch",
        "index-dangling",
        "index-missing",
        "node-orphan",
        "request-damaged",
        "request-orphan",
    ]
    assert traces.list(session="s2", limit=None)[0].call_id == items[4].call_id  # turn 1 lost
    report = traces.repair()
    assert [p.code for p in report.unfixable] == ["request-damaged"]
    after = traces.verify()
    assert [p.code for p in after.problems] == ["request-damaged"] and after.entries == 6
    assert [r.turn for r in traces.list(session="s2", newest_first=False, limit=None)] == [1, 2]
    assert traces.session_stats(["s1"])[0].calls == 4 and traces.count(flagged=True) == 1
    with pytest.raises(StoreCorrupted, match="no longer hashes"):
        traces.request_bytes(items[1].prompt_hash)


def test_a_read_only_store_can_be_read_but_not_written(tmp_path):
    store = open_store(tmp_path / "s")
    record = make(request=req("a"))
    LmdbTraceStore(store).record(record, req("a"))
    store.close()
    readonly = open_store(tmp_path / "s", readonly=True)
    traces = LmdbTraceStore(readonly)
    assert traces.get(record.call_id).replay_complete
    from runtime.errors import StoreReadOnly

    with pytest.raises(StoreReadOnly):
        traces.flag(record.call_id, "x")
    readonly.close()


def test_a_trace_layout_from_another_version_is_refused(env, tmp_path):
    store, _ = env
    lmdbenv.write(store.env, lambda txn: txn.put(b"schema", b"3", db=store.env.db(b"trace_meta")))
    with pytest.raises(StoreCorrupted, match="layout b'3'"):
        LmdbTraceStore(store)


# Two requests whose prompt hashes share their first 8 hex characters (351ff2e6), found by
# counting n up from 0; they differ at the 9th.
TWINS = (b'{"messages":[],"n":26350}', b'{"messages":[],"n":57230}')


def test_a_prompt_hash_is_found_by_any_unique_prefix_of_eight_or_more(traces):
    a, b = (make(request=r) for r in TWINS)
    other = make(request=req("other"))
    traces.record_many([StoredTrace(a, TWINS[0]), StoredTrace(b, TWINS[1]),
                        StoredTrace(other, req("other"))])  # fmt: skip
    assert a.prompt_hash[:8] == b.prompt_hash[:8] and a.prompt_hash[8] != b.prompt_hash[8]
    for prefix in (other.prompt_hash[:8], other.prompt_hash[:12].upper(), other.prompt_hash):
        assert traces.resolve_prompt_hash(prefix) == other.prompt_hash
        assert [r.call_id for r in traces.list(prompt_hash=prefix)] == [other.call_id]
    assert traces.resolve_prompt_hash(a.prompt_hash[:9]) == a.prompt_hash
    assert traces.list(prompt_hash="0123456789ab") == []
    with pytest.raises(TraceNotFound, match="no trace sent a prompt whose hash starts with"):
        traces.resolve_prompt_hash("0123456789ab")


def test_an_ambiguous_prompt_hash_prefix_lists_its_candidates(traces):
    traces.record_many([StoredTrace(make(request=r), r) for r in TWINS])
    first, second = sorted(prompt_hash(r) for r in TWINS)
    for lookup in (traces.resolve_prompt_hash, lambda p: traces.list(prompt_hash=p)):
        with pytest.raises(AmbiguousPrefix) as caught:
            lookup(first[:8])
        assert caught.value.candidates == (first, second)
        message = str(caught.value)
        assert f"matches 2 hashes: {first[:12]}, {second[:12]}; give more characters" in message


def test_a_prompt_hash_prefix_under_eight_characters_is_refused(traces):
    record = make()
    traces.record(record, b'{"messages":[]}')
    for short in (record.prompt_hash[:4], record.prompt_hash[:7]):
        with pytest.raises(InvalidInput, match="too short: give at least 8 hex characters"):
            traces.resolve_prompt_hash(short)
    with pytest.raises(InvalidInput, match="expected 8-64 hex characters"):
        traces.list(prompt_hash="not-a-hash")
