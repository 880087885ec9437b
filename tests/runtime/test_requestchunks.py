"""Content-defined chunking: deterministic, shift-resistant, and the same fed whole or in pieces."""

from __future__ import annotations

import hashlib
import json
import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.blocks import canonical_json
from runtime.storage.chunking import (
    MAX_CHUNK,
    MAX_GROUP,
    MIN_CHUNK,
    WINDOW,
    ChunkStream,
    chunk_bytes,
    gear_hash_reference,
    gear_hashes,
    group_digests,
    split_digests,
)
from runtime.transfer.importer import _Requests


def _json_blob(seed: int, records: int) -> bytes:
    r = random.Random(seed)
    rows = [{"flight": f"HAT{r.randint(0, 999):03d}", "price": r.randint(50, 2000),
             "date": f"2024-05-{r.randint(1, 30):02d}"} for _ in range(records)]  # fmt: skip
    return json.dumps(rows).encode()


def test_the_vectorised_gear_hash_equals_its_byte_at_a_time_definition():
    data = os.urandom(3000)
    hashes = gear_hashes(data, 0, len(data))
    for i in [*range(40), 500, 1999, 2999]:
        assert int(hashes[i]) == gear_hash_reference(data, i), i
    assert int(gear_hashes(data, 1500, 1501)[0]) == gear_hash_reference(data, 1500)


def test_chunks_join_to_the_bytes_and_respect_the_size_bounds():
    data = _json_blob(1, 20_000) + b"z" * 200_000  # structured text, then no cut points at all
    chunks = chunk_bytes(data)
    assert b"".join(c.data for c in chunks) == data
    assert all(MIN_CHUNK <= len(c.data) <= MAX_CHUNK for c in chunks[:-1])
    assert all(c.digest == hashlib.sha256(c.data).digest() for c in chunks)
    assert [len(c.data) for c in chunks[-3:-1]] == [MAX_CHUNK, MAX_CHUNK]  # the run of z's


def test_chunking_is_deterministic_and_resynchronises_after_an_insertion():
    data = _json_blob(2, 30_000)
    first = chunk_bytes(data)
    assert [c.digest for c in chunk_bytes(data)] == [c.digest for c in first]
    shifted = chunk_bytes(b"an inserted prefix of some length" + data)
    shared = {c.digest for c in first} & {c.digest for c in shifted}
    assert len(shared) >= len(first) - 3  # only the chunks around the insertion differ


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 1000),
    cuts=st.lists(st.integers(0, 60_000), max_size=12),
    size=st.integers(0, 60_000),
)
def test_a_stream_fed_in_pieces_cuts_exactly_where_the_whole_is_cut(seed, cuts, size):
    data = random.Random(seed).randbytes(size // 2) + _json_blob(seed, size // 60)
    stream = ChunkStream()
    start = 0
    for cut in sorted(c for c in cuts if c <= len(data)):
        stream.append(data[start:cut])
        start = cut
    stream.append(data[start:])
    assert [c.digest for c in stream.chunks()] == [c.digest for c in chunk_bytes(data)]
    suffix = b"],tail" + _json_blob(seed + 1, size // 200)  # long enough to hold cuts
    parts = stream.parts_with(suffix)
    assert parts.join() == data + suffix and parts.size == len(data) + len(suffix)
    assert parts.prompt_hash == hashlib.sha256(data + suffix).hexdigest()
    assert [c.digest for c in parts.chunks] == [c.digest for c in chunk_bytes(data + suffix)]


def test_requests_sharing_a_prefix_share_every_chunk_that_ends_inside_it():
    prefix = _json_blob(3, 20_000)
    a, b = chunk_bytes(prefix + b"one ending"), chunk_bytes(prefix + b"another, longer ending")
    common = 0
    for x, y in zip(a, b, strict=False):
        if x.digest != y.digest:
            break
        common += len(x.data)
    assert common >= len(prefix) - MAX_CHUNK


def test_groups_are_content_defined_bounded_and_keep_every_digest_in_order():
    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(3000)]
    groups = group_digests(digests)
    assert [d for g in groups for d in split_digests(g)] == digests
    assert all(len(g) // 32 <= MAX_GROUP for g in groups)
    assert group_digests(digests[:2000])[:-1] == groups[: len(group_digests(digests[:2000])) - 1]


messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool", "system"])},
        optional={
            "content": st.text(max_size=40),
            "tool_calls": st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=2),
            "x": st.floats(allow_nan=False, allow_infinity=False),
        },
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(messages=messages, with_tools=st.booleans(), model=st.text(min_size=1, max_size=10))
def test_each_incremental_request_is_byte_identical_to_the_canonical_json_of_its_prefix(
    messages, with_tools, model
):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"b": 1, "a": [2]}}}]
    requests = _Requests(model, tools if with_tools else [])
    hashes_only = _Requests(model, tools if with_tools else [], chunked=False)
    for i in range(len(messages) + 1):
        whole: dict = {"model": model, "messages": messages[:i]}
        if with_tools:
            whole["tools"] = tools
        expected = canonical_json(whole)
        assert requests.parts().join() == expected
        digest = (hashlib.sha256(expected).hexdigest(), len(expected))
        assert requests.digest() == hashes_only.digest() == digest
        if i < len(messages):
            requests.add(messages[i])
            hashes_only.add(messages[i])


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 1000),
    sizes=st.lists(st.integers(0, 70_000), min_size=1, max_size=6),
    suffix_kind=st.sampled_from(["json", "random", "uncuttable", "short-window"]),
    suffix_size=st.integers(MIN_CHUNK, 3 * MAX_CHUNK),
)
def test_a_long_suffix_is_cut_as_cutting_the_whole_would_whatever_precedes_it(
    seed, sizes, suffix_kind, suffix_size
):
    r = random.Random(seed)
    suffix = {
        "json": lambda: _json_blob(seed, suffix_size // 45)[:suffix_size],
        "random": lambda: r.randbytes(suffix_size),
        "uncuttable": lambda: b"z" * suffix_size,  # cut only at MAX_CHUNK
        "short-window": lambda: r.randbytes(40) + b"z" * suffix_size,  # cuts near its start only
    }[suffix_kind]()
    for size in sizes:  # the same suffix after streams of many lengths: its cached cuts serve all
        data = r.randbytes(size // 3) + _json_blob(seed + size, size // 70)
        stream = ChunkStream()
        stream.append(data)
        parts = stream.parts_with(suffix)
        assert [c.digest for c in parts.chunks] == [c.digest for c in chunk_bytes(data + suffix)]
        assert parts.join() == data + suffix
        assert parts.prompt_hash == hashlib.sha256(data + suffix).hexdigest()
        assert [c.digest for c in stream.chunks()] == [c.digest for c in chunk_bytes(data)]


def test_a_cut_whose_window_spans_the_stream_and_the_suffix_is_found():
    # The gear hash at the suffix's first 31 offsets reads bytes of the stream too: find
    # (deterministically) a stream and suffix cut there, then check the stream cuts them so.
    suffix_tail = _json_blob(7, 300)
    for seed in range(5_000):
        r = random.Random(seed)
        data, suffix = r.randbytes(3_000), r.randbytes(20) + suffix_tail
        ends = [len(c.data) for c in chunk_bytes(data + suffix)]
        if len(data) < ends[0] <= len(data) + WINDOW - 1:
            break
    else:
        raise AssertionError("no such stream among 5,000 seeds")
    stream = ChunkStream()
    stream.append(data)
    assert [c.digest for c in stream.parts_with(suffix).chunks] == [
        c.digest for c in chunk_bytes(data + suffix)
    ]
