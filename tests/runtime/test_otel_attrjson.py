"""JSON span attributes parsed once per distinct text, checked as runtime.limits checks them."""

from __future__ import annotations

import json

import pytest

from runtime import limits
from runtime.otel.attrjson import LIMITS, AttributeJson

HISTORY = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]},
           {"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]  # fmt: skip


@pytest.mark.parametrize("text", [
    json.dumps(HISTORY), json.dumps(HISTORY, indent=2), " [ ] ", "[1, 2.5, null, true]",
    '{"a": [1, {"b": "c"}]}', '"text"', "[[[]]]",
])  # fmt: skip
def test_a_value_is_what_limits_loads_gives(text):
    assert AttributeJson().load(text, "x") == limits.loads(text, "x", LIMITS)


def test_a_repeated_message_is_parsed_and_checked_once_and_shared():
    parsed = AttributeJson()
    first = parsed.load(json.dumps(HISTORY[:1]), "gen_ai.input.messages")
    longer = parsed.load(json.dumps(HISTORY), "gen_ai.input.messages")
    assert longer == HISTORY and longer[0] is first[0]


@pytest.mark.parametrize(("text", "why"), [
    ("[1, NaN]", "NaN"), ('{"a": Infinity}', "Infinity"), ("[1] x", "extra data"),
    ("[1 2]", "expected ','"), ("[" * 40 + "]" * 40, "nested deeper than 32"),
    ("[" * 5000 + "]" * 5000, "nested"), ("[" + "9" * 5000 + "]", "digits"), ("{", "invalid JSON"),
])  # fmt: skip
def test_bad_json_is_refused_saying_why(text, why):
    with pytest.raises(ValueError, match=why):
        AttributeJson().load(text, "gen_ai.input.messages")


@pytest.mark.parametrize(("first", "then"), [
    ("[12]", "[123]"), ("[12]", "[12.5, 1]"), ("[12]", "[12e3]"), ('["a", 1]', '["a", 1 , 2]'),
    ('["a"]', '["a"\n]'), ("[1, 2]", "[1, 2, [3, {}]]"), ("[true]", "[true, false]"),
])  # fmt: skip
def test_an_array_that_extends_the_last_one_is_what_limits_loads_gives(first, then):
    parsed = AttributeJson()
    parsed.load(first, "gen_ai.input.messages")
    assert parsed.load(then, "gen_ai.input.messages") == limits.loads(then, "x", LIMITS)


@pytest.mark.parametrize(("first", "then", "why"), [
    ("[1, 2]", "[1, 2 3]", "expected ','"), ("[1]", "[1, NaN]", "NaN"), ("[1]", "[1,", "invalid"),
    ("[1]", "[1] x", "extra data"), ("[1]", "[1", "invalid"),
])  # fmt: skip
def test_an_array_extending_the_last_one_badly_is_refused_as_it_would_be_alone(first, then, why):
    parsed = AttributeJson()
    parsed.load(first, "gen_ai.input.messages")
    with pytest.raises(ValueError, match=why) as extended:
        parsed.load(then, "gen_ai.input.messages")
    with pytest.raises(ValueError) as alone:
        AttributeJson().load(then, "gen_ai.input.messages")
    assert str(extended.value) == str(alone.value)


def test_the_history_sent_again_with_one_more_message_reuses_its_elements():
    parsed = AttributeJson()
    shorter = parsed.load(json.dumps(HISTORY[:1]), "gen_ai.input.messages")
    longer = parsed.load(json.dumps(HISTORY), "gen_ai.input.messages")
    assert longer == HISTORY and longer[0] is shorter[0] and longer is not shorter


def test_an_element_checked_in_one_request_is_not_checked_again_in_the_next():
    tools = json.dumps([{"name": "lookup", "parameters": {"type": "object", "n": 1}}])
    first = AttributeJson().load(tools, "gen_ai.tool.definitions")
    again = AttributeJson().load(tools, "gen_ai.tool.definitions")
    assert again == first and again[0] is first[0]
