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
