"""Reading only a session's new messages: the recorder writes exactly what reading whole
requests writes, and the request scanner parses exactly as ``json.loads`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import open_store
from runtime.proxy.apis import Wire
from runtime.proxy.conversation import ConversationReader, _scan, read_conversation
from runtime.proxy.turns import TurnWriter
from runtime.storage.lmdb.traces import LmdbTraceStore
from tests.proxy.scripted import record_script, scripted_exchanges, stored_state


def _recorded(path: Path, reuse: int) -> tuple[dict[str, object], int]:
    store = open_store(path)
    try:
        traces = LmdbTraceStore(store)
        writer = TurnWriter(store, traces, reuse=reuse)
        record_script(store, traces, writer)
        return stored_state(store, traces), writer.reader.reused
    finally:
        store.close()


def test_reading_only_new_messages_stores_what_reading_each_request_whole_stores(
    tmp_path: Path,
) -> None:
    whole, none_reused = _recorded(tmp_path / "whole", reuse=0)
    suffix, reused = _recorded(tmp_path / "suffix", reuse=4096)
    assert none_reused == 0 and reused > 20  # the script's sessions grow call after call
    assert len(whole["records"]) == len(scripted_exchanges())  # type: ignore[arg-type]
    assert suffix == whole


def test_each_request_reads_as_a_whole_read_of_its_parsed_body() -> None:
    reader = ConversationReader(1 << 20)
    for ex in scripted_exchanges():
        marks = b"cache_control" in ex.request_body or b"\\u" in ex.request_body
        data, conv = reader.read(ex.api.wire, ex.request_body, cache_marks=marks)
        try:
            expected = json.loads(ex.request_body)
        except ValueError:
            assert data is None and conv is None
            continue
        assert data == expected
        assert conv == read_conversation(ex.api.wire, expected, 1 << 20, cache_marks=marks)


def test_a_rewritten_history_is_read_whole_again() -> None:
    reader = ConversationReader(1 << 20)
    a, b, c = ({"role": r, "content": t} for r, t in (("user", "a"), ("assistant", "b"),
                                                       ("user", "c")))  # fmt: skip
    edited = {"role": "assistant", "content": "B"}
    spaced = b'{"model": "m", "messages": [{"role": "user",  "content": "a"}]}'
    steps = [([a, b], 0), ([a, b, c], 2), ([a, edited, c], 2), ([a, edited, c, b], 5), (spaced, 5)]
    for messages, reused in steps:
        if isinstance(messages, bytes):  # the same first message, spelled with other spacing
            body = messages
        else:
            body = json.dumps({"model": "m", "messages": messages}).encode()
        _, conv = reader.read(Wire.MESSAGES, body)
        assert conv == read_conversation(Wire.MESSAGES, json.loads(body), 1 << 20)
        assert reader.reused == reused


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[]}',
        b' \n{ "a" : 1 , "messages" : [ {"x":[1,2,{"y":null}]} , 3 , "s" ] }\r\n',
        b'{"messages":[{"a":1}],"messages":[{"b":2}],"system":"one","system":"two"}',
        b'{"messages":"not a list","messages":[{"a":1}]}',
        b'\xef\xbb\xbf{"messages":[{"t":"\\u00e9\\ud83d\\ude00"}]}',
        '{"messages":[{"t":"é"}]}'.encode("utf-16"),
        b'{"messages":[{"n":NaN,"f":1e400}]}',
    ],
)
def test_the_scanner_parses_a_request_object_as_json_loads_does(body: bytes) -> None:
    scanned = _scan(body, ("system", "messages"))
    assert scanned is not None
    # As text, so key order counts and NaN equals NaN.
    assert json.dumps(scanned[0]) == json.dumps(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages":[{"a":1},]}',
        b'{"messages":[{"a":1}],}',
        b'{"messages":[{"a":1}]} x',
        b'{"messages":[{"a":1}]',
        b'[{"messages":[]}]',
        b'{"messages":"text"}',
        b'{"model":"m"}',
        b'{"messages":[{"a":"\x01"}]}',
        b"\xff\xfe\x00",
        b"",
    ],
)
def test_the_scanner_leaves_to_json_loads_what_is_not_an_object_with_a_list(body: bytes) -> None:
    assert _scan(body, ("system", "messages")) is None
