"""Exporting and importing a whole session as JSON Lines, verified on arrival."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from runtime import open_store
from runtime.blocks import BlockKind, Edge, EdgeKind, NewBlock, Provenance, canonical_json
from runtime.errors import InvalidInput, MalformedFile
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import (
    Flag,
    Provider,
    StoredTrace,
    TraceRecord,
    new_call_id,
    prompt_hash,
)
from runtime.transfer.exchange import export_lines, export_session, import_session, read_file


def _open(path):
    store = open_store(path)
    return store, LmdbTraceStore(store)


@pytest.fixture
def source(tmp_path):
    """A session with blocks (one repeated), edges, meta, two traces (a replay), a flag."""
    store, traces = _open(tmp_path / "a")
    blocks = [NewBlock("system", "Be brief."), NewBlock("user-message", "hi", 0.9, Provenance("cli", (), ("pinned",)), 1234),
              NewBlock("assistant-message", "hello"), NewBlock("user-message", "hi")]  # fmt: skip
    entries = store.put_many("trip-1", blocks)
    store.add_edge(entries[2].id, "parent", entries[1].id)
    other = store.put("elsewhere", NewBlock("fact", "shared fact"))
    store.add_edge(entries[2].id, "supports", other.id)
    store.set_session_meta("trip-1", model="claude-haiku-4-5", reward=0.0, failing=True)
    request = canonical_json({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    first = _record(
        "trip-1", 1, request, upto_seq=2, plan={"selected": [{"block_id": entries[1].id}]}
    )
    replay = _record("trip-1", 1, request, parent_call_id=first.call_id)
    traces.record_many([StoredTrace(first, request, b'{"type":"message"}', Flag("wrong", 5)),
                        StoredTrace(replay, request, b"\xff\xfe binary")])  # fmt: skip
    yield store, traces
    store.close()


def _record(session, turn, request, **fields) -> TraceRecord:
    cid = new_call_id()
    return TraceRecord(cid, session, turn, int(cid[:13]), Provider.OFFLINE, "offline", prompt_hash(request),
                       len(request), **fields)  # fmt: skip


def test_a_session_moves_to_another_store_with_everything_intact(source, tmp_path):
    store, traces = source
    report = export_session(store, traces, "trip-1", tmp_path / "trip.jsonl")
    assert (report.blocks, report.entries, report.edges, report.traces) == (3, 4, 1, 2)
    assert report.edges_left_out == 1  # the edge to another session's block cannot travel
    store2, traces2 = _open(tmp_path / "b")
    imported = import_session(
        store2, traces2, read_file(tmp_path / "trip.jsonl"), name="trip.jsonl"
    )
    assert imported.sha256 == report.sha256
    assert [e.to_json() for e in store2.entries("trip-1")] == [
        e.to_json() for e in store.entries("trip-1")
    ]
    assert store2.session_info("trip-1").meta == store.session_info("trip-1").meta
    (edge,) = store2.edges_from(store2.entries("trip-1")[2].id)
    assert edge.kind is EdgeKind.PARENT
    original = traces.list(session="trip-1", newest_first=False, limit=None)
    moved = traces2.list(session="trip-1", newest_first=False, limit=None)
    assert [r.to_json() for r in moved] == [r.to_json() for r in original]
    assert all(r.replay_complete for r in moved) and moved[0].flag == Flag("wrong", 5)
    assert traces2.response_bytes(moved[1].call_id) == b"\xff\xfe binary"
    store2.close()


def test_exporting_twice_gives_the_same_bytes(source):
    store, traces = source
    assert export_lines(store, traces, "trip-1")[0] == export_lines(store, traces, "trip-1")[0]


def _lines(source):
    return [json.loads(line) for line in export_lines(*source, "trip-1")[0]]


def _file(items, *, fix_digest=True) -> bytes:
    body = b"".join(canonical_json(i) + b"\n" for i in items[:-1])
    footer = items[-1]
    if fix_digest:
        footer = {"type": "footer", "sha256": hashlib.sha256(body).hexdigest()}
    return body + canonical_json(footer) + b"\n"


def _rejected(tmp_path, data: bytes, match: str):
    store, traces = _open(tmp_path / "target")
    with pytest.raises(MalformedFile, match=match):
        import_session(store, traces, data, name="x.jsonl")
    assert store.session_count() == 0 and traces.count() == 0  # nothing was written
    store.close()


def _edit(items, kind, fn):
    index = next(i for i, item in enumerate(items) if item["type"] == kind)
    fn(items[index])
    return index + 1  # its line number


def test_a_changed_block_body_is_caught_by_its_hash(source, tmp_path):
    items = _lines(source)
    line = _edit(items, "block", lambda b: b.update(body=b["body"] + "!"))
    _rejected(tmp_path, _file(items), f"x.jsonl line {line}: block: the block's id is not the hash")


def test_changed_request_bytes_are_caught_even_with_a_matching_sha256_field(source, tmp_path):
    items = _lines(source)

    def tamper(trace):
        trace["request"]["text"] = trace["request"]["text"].replace("hi", "ho")
        trace["request"]["sha256"] = prompt_hash(trace["request"]["text"].encode())

    line = _edit(items, "trace", tamper)
    _rejected(
        tmp_path, _file(items), f"line {line}: trace: request bytes do not hash to the record"
    )


def test_changed_response_bytes_are_caught(source, tmp_path):
    items = _lines(source)
    line = _edit(items, "trace", lambda t: t["response"].update(text='{"type":"other"}'))
    _rejected(tmp_path, _file(items), f"line {line}: trace: response bytes do not hash")


def test_any_edit_without_a_new_digest_is_caught_by_the_footer(source, tmp_path):
    items = _lines(source)
    _edit(items, "entry", lambda e: e.update(priority=0.1))
    _rejected(tmp_path, _file(items, fix_digest=False), f"line {len(items)}: the file's SHA-256")


def test_a_file_cut_short_is_refused(source, tmp_path):
    data = b"".join(export_lines(*source, "trip-1")[0])
    cut = data[: data.rfind(b"\n", 0, len(data) - 1) + 1]
    _rejected(tmp_path, cut, "the last line is not the footer: the file is cut short")
    _rejected(tmp_path, b"", "the file is empty")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda items: items[0].update(format="other"), "line 1: not an llm386 session export"),
        (lambda items: items[0].update(version=2), "line 1: format version 2"),
        (lambda items: items[0].update(session="bad id"), "line 1: session id"),
        (lambda items: items[0]["counts"].update(blocks=9), "header counts 9 blocks, the file holds 3"),
        (lambda items: items.insert(1, {"type": "mystery"}), "line 2: mystery: unknown line type"),
        (lambda items: next(i for i in items if i["type"] == "entry").update(block="00" * 32), "names block 000000000000, not in the file"),
        (lambda items: next(i for i in items if i["type"] == "edge").update(kind="likes"), "edge: unknown edge kind"),
        (lambda items: next(i for i in items if i["type"] == "edge").update(to="11" * 32), "an edge names a block not in the file"),
        (lambda items: next(i for i in items if i["type"] == "trace")["record"].update(session="other"), "belongs to 'other'"),
        (lambda items: next(i for i in items if i["type"] == "trace")["record"].pop("prompt_hash"), "trace record data is not valid"),
    ],
)  # fmt: skip
def test_a_wrong_file_is_rejected_with_its_line_and_nothing_written(source, tmp_path, edit, match):
    items = _lines(source)
    edit(items)
    _rejected(tmp_path, _file(items), match)


def test_a_line_that_is_not_json_is_rejected_with_its_number(source, tmp_path):
    lines = export_lines(*source, "trip-1")[0]
    lines[2] = b'{"type": "block", oops}\n'
    body = b"".join(lines[:-1])
    footer = canonical_json({"type": "footer", "sha256": hashlib.sha256(body).hexdigest()}) + b"\n"
    _rejected(tmp_path, body + footer, "x.jsonl line 3: invalid JSON")


def test_importing_over_an_existing_session_is_refused_but_a_renamed_copy_is_fine(source, tmp_path):
    store, traces = source
    data = b"".join(export_lines(store, traces, "trip-1")[0])
    with pytest.raises(InvalidInput, match="already exists here"):
        import_session(store, traces, data)
    report = import_session(store, traces, data, as_session="trip-1-copy")
    copies = traces.list(session="trip-1-copy", newest_first=False, limit=None)
    originals = traces.list(session="trip-1", newest_first=False, limit=None)
    assert report.traces == 2 and {c.call_id for c in copies}.isdisjoint(
        o.call_id for o in originals
    )
    assert copies[1].parent_call_id == copies[0].call_id  # the replay still points at its parent
    assert [replace(c, call_id="", parent_call_id=None, session="").to_json() for c in copies] == [
        replace(o, call_id="", parent_call_id=None, session="").to_json() for o in originals]  # fmt: skip
    assert [e.id for e in store.entries("trip-1-copy")] == [e.id for e in store.entries("trip-1")]


def test_a_call_id_that_already_exists_is_refused(source, tmp_path):
    store, traces = source
    data = b"".join(export_lines(store, traces, "trip-1")[0])
    store.purge_session("trip-1")  # the blocks go, the traces stay
    with pytest.raises(InvalidInput, match="already exists here"):
        import_session(store, traces, data)


def test_entry_gaps_are_renumbered_and_trace_inputs_follow(source, tmp_path):
    store, traces = source
    store.delete_block(store.entries("trip-1")[0].id)  # seq 0 goes: seqs are 1, 2, 3
    export_session(store, traces, "trip-1", tmp_path / "gap.jsonl")
    store2, traces2 = _open(tmp_path / "b")
    import_session(store2, traces2, read_file(tmp_path / "gap.jsonl"))
    assert [e.seq for e in store2.entries("trip-1")] == [0, 1, 2]
    first = traces2.list(session="trip-1", newest_first=False, limit=1)[0]
    assert first.upto_seq == 1  # entries before old seq 2: only old seq 1
    store2.close()


def test_export_of_an_unknown_session_or_to_an_unwritable_path_fails_clearly(source, tmp_path):
    store, traces = source
    from runtime.errors import SessionNotFound

    with pytest.raises(SessionNotFound):
        export_session(store, traces, "nope", tmp_path / "x.jsonl")
    with pytest.raises(InvalidInput, match="cannot write"):
        export_session(store, traces, "trip-1", tmp_path / "missing-dir" / "x.jsonl")
    with pytest.raises(InvalidInput, match="cannot read"):
        read_file(tmp_path / "missing.jsonl")


def test_tool_blocks_and_edges_survive_the_trip(tmp_path):
    store, traces = _open(tmp_path / "a")
    call = NewBlock(BlockKind.TOOL_CALL, '{"id":"c","input":{},"name":"f"}')
    result = NewBlock(BlockKind.TOOL_RESULT, '{"content":"ok","is_error":false,"tool_use_id":"c"}')
    entries = store.put_many("t", [call, result])
    store.add_edge(entries[0].id, EdgeKind.TOOL_INVOCATION, entries[1].id)
    data = b"".join(export_lines(store, traces, "t")[0])
    store2, traces2 = _open(tmp_path / "b")
    import_session(store2, traces2, data)
    assert store2.edges_from(entries[0].id) == [
        Edge(entries[0].id, EdgeKind.TOOL_INVOCATION, entries[1].id)
    ]
    store.close()
    store2.close()
