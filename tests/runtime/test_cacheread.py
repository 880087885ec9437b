"""The compare page's cache verdict checked against the cache reads the provider reported."""

from __future__ import annotations

import pytest

from runtime.blocks import canonical_json
from runtime.inspect.diff import diff_requests
from runtime.providers.usage import Usage
from runtime.tracing.cacheread import check_cache_read
from runtime.tracing.records import Provider, TraceRecord, new_call_id, prompt_hash

CACHED = {"type": "ephemeral"}


def _request(system: str, messages: list[str]) -> bytes:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant",
             "content": [{"type": "text", "text": m}]} for i, m in enumerate(messages)]  # fmt: skip
    msgs[-1]["content"][-1]["cache_control"] = CACHED
    return canonical_json({"max_tokens": 64, "messages": msgs, "model": "claude-haiku-4-5",
                           "system": [{"type": "text", "text": system}]})  # fmt: skip


def _record(raw: bytes, usage: Usage | None, started_at: int = 1_000) -> TraceRecord:
    return TraceRecord(call_id=new_call_id(), session="s", turn=1, started_at=started_at,
                       provider=Provider.ANTHROPIC, model="claude-haiku-4-5",
                       prompt_hash=prompt_hash(raw), request_size=len(raw), usage=usage)  # fmt: skip


KEPT = (_request("Be brief.", ["hi"]), _request("Be brief.", ["hi", "hello", "book it"]))
CHANGED = (_request("Time 15:00", ["hi"]), _request("Time 15:07", ["hi", "hello", "book it"]))


@pytest.mark.parametrize(
    ("pair", "read_b", "agrees"),
    [(KEPT, 2048, True), (KEPT, 0, False), (CHANGED, 0, True), (CHANGED, 2048, False)],
)
def test_the_prediction_is_checked_against_the_reported_cache_reads(
    pair: tuple[bytes, bytes], read_b: int, agrees: bool
) -> None:
    _, cache, _, _ = diff_requests(*pair)
    a = _record(pair[0], Usage(5, 9, cache_creation_input_tokens=2048))
    b = _record(pair[1], Usage(40, 9, cache_read_input_tokens=read_b))
    check = check_cache_read(cache, a, b)
    assert (check.prefix_tokens_a, check.reported_read_b, check.agrees) == (2048, read_b, agrees)
    assert f"{read_b:,} cache-read tokens" in check.note and "2,048 tokens" in check.note


def test_without_usage_nothing_is_judged() -> None:
    _, cache, _, _ = diff_requests(*KEPT)
    check = check_cache_read(cache, _record(KEPT[0], None), _record(KEPT[1], None))
    assert check.agrees is None and "no provider usage" in check.note


def test_a_miss_long_after_a_names_an_expired_entry_as_a_possible_cause() -> None:
    _, cache, _, _ = diff_requests(*KEPT)
    a = _record(KEPT[0], Usage(5, 9, cache_creation_input_tokens=2048), started_at=0)
    b = _record(KEPT[1], Usage(2100, 9), started_at=10 * 60 * 1000)
    check = check_cache_read(cache, a, b)
    assert check.agrees is False and "may have expired" in check.note
