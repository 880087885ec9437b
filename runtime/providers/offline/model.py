"""The offline model: a deterministic stand-in for Claude, used by the demo and tests without a key.

Owns: ``OfflineProvider`` (the provider named ``offline``), its client ``OfflineModel``, and the
small rules it answers by.

Invariants:
- The response bytes are a function of the request bytes alone: no clock, randomness, network
  or environment. The same request gives the same ``ModelResponse`` (latency is reported as 0).
- Every reply is labelled: ``"model": "llm386-offline"`` and text starting with
  ``[offline model]``, so nowhere can it be mistaken for a real model's answer.
- Rules, checked on the last message: it carries tool results -> answer in text from them; it
  asks for arithmetic and a calculator tool is offered -> call it; it asks about a user or
  profile and a lookup tool is offered -> call it; otherwise a short reply saying what it is.
- Usage is counted with the ``cl100k_base`` tokenizer (the estimate Claude profiles use).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from runtime.blocks import canonical_json
from runtime.providers.base import MessagesProvider
from runtime.providers.response import (
    Attempt,
    ModelResponse,
    RawResponse,
    check_request,
    messages_response,
    parse_request,
)
from runtime.providers.usage import Usage
from runtime.tokenizers import get_tokenizer

OFFLINE_MODEL_NAME = "llm386-offline"
LABEL = "[offline model]"
USAGE_TOKENIZER = "cl100k_base"

_ARITHMETIC = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/×x])\s*(-?\d+(?:\.\d+)?)")
_PROFILE_WORDS = re.compile(r"\b(?:profile|user|account)\b", re.IGNORECASE)
# The name is in a lookahead so "profile of user alice" yields both "user" and "alice".
_NAMED_AFTER = re.compile(r"\b(?:user|for|of|about)\s+(?=[\"'@]?([A-Za-z0-9_.@-]+))", re.IGNORECASE)
_NOT_NAMES = frozenset({"a", "an", "the", "user", "profile", "account", "me", "my", "this"})
_CALC_HINTS = ("calc", "math", "arith")
_LOOKUP_HINTS = ("profile", "user", "lookup", "account")

Json = dict[str, Any]


class OfflineProvider(MessagesProvider):
    """The offline model as a provider: Messages requests in, Messages replies out, free."""

    name = "offline"
    label = "the offline model"

    def client(self, **settings: Any) -> OfflineModel:
        """Return the offline model; it has no settings, so ``settings`` are ignored."""
        return OfflineModel()

    def price(self, usage: Usage | None, model: str) -> float | None:
        return None  # nothing is paid for the offline model

    def answering_model(self, requested: str) -> str:
        return OFFLINE_MODEL_NAME  # whatever model the request names, this one answers

    def model_of(self, request: bytes) -> str:
        return OFFLINE_MODEL_NAME  # no need to parse the request to know it

    def model_label(self, model: str) -> str:
        return f"offline model {model}"


class OfflineModel:
    """Answer Messages requests locally and deterministically; see the module docstring."""

    provider = OfflineProvider.name
    name = OFFLINE_MODEL_NAME

    def __repr__(self) -> str:
        return "OfflineModel()"

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        """Answer ``request_bytes``; raise ReplayMismatch if they do not hash to the expected."""
        raw = self.send_raw(request_bytes, expected_sha256=expected_sha256)
        return messages_response(raw, (Attempt(1, 200, None, "ok", 0.0),))

    def send_raw(self, request_bytes: bytes, *, expected_sha256: str | None) -> RawResponse:
        """Answer ``request_bytes`` as the API would: status 200, a JSON Messages reply."""
        digest = check_request(request_bytes, expected_sha256)
        content, stop_reason = reply_content(parse_request(request_bytes), digest)
        message = {
            "id": f"msg_offline_{digest[:24]}",
            "type": "message",
            "role": "assistant",
            "model": OFFLINE_MODEL_NAME,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _usage(request_bytes, content),
        }
        headers = (("content-type", "application/json"),)
        return RawResponse(200, headers, canonical_json(message), digest, 0.0)

    def close(self) -> None:
        """Nothing to release; present so every model client can be closed alike."""


def reply_content(request: Mapping[str, Any], digest: str) -> tuple[list[Json], str]:
    """Return the reply's content blocks and stop reason for a parsed request."""
    messages = request["messages"]
    last = messages[-1] if messages and isinstance(messages[-1], Mapping) else {}
    results = _blocks_of(last, "tool_result")
    if results:
        return [_text(_answer_from_results(results, messages))], "end_turn"
    said = _text_of(last)
    call = _plan_tool_call(said, _tools(request), digest)
    if call is not None:
        return [_text(f"{LABEL} I will ask the {call['name']} tool."), call], "tool_use"
    return [_text(_plain_reply(said, len(messages), len(_tools(request))))], "end_turn"


def _text(text: str) -> Json:
    return {"type": "text", "text": text}


def _blocks_of(message: Mapping[str, Any], block_type: str) -> list[Mapping[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, Mapping) and b.get("type") == block_type]


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(block.get("text", "")) for block in _blocks_of(message, "text"))


def _tools(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = request.get("tools")
    if not isinstance(tools, list):
        return []
    return [t for t in tools if isinstance(t, Mapping) and isinstance(t.get("name"), str)]


def _plan_tool_call(said: str, tools: Sequence[Mapping[str, Any]], digest: str) -> Json | None:
    arithmetic = _ARITHMETIC.search(said)
    calculator = _pick_tool(tools, _CALC_HINTS, "expression")
    if arithmetic and calculator is not None:
        left, op, right = arithmetic.groups()
        expression = f"{left}{'*' if op in 'x×' else op}{right}"
        return _tool_use(calculator, expression, digest)
    lookup = _pick_tool(tools, _LOOKUP_HINTS, "user_id")
    if _PROFILE_WORDS.search(said) and lookup is not None:
        return _tool_use(lookup, _named_user(said), digest)
    return None


def _pick_tool(
    tools: Sequence[Mapping[str, Any]], hints: Sequence[str], property_name: str
) -> Mapping[str, Any] | None:
    """Return the first offered tool whose name contains a hint or whose input has the property."""
    for tool in tools:
        name = str(tool["name"]).lower()
        if any(hint in name for hint in hints) or property_name in _properties(tool):
            return tool
    return None


def _properties(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = tool.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    return properties if isinstance(properties, Mapping) else {}


def _argument_name(tool: Mapping[str, Any]) -> str:
    """The input property to fill: the first required one, else the first declared, sorted."""
    schema = tool.get("input_schema")
    required = schema.get("required") if isinstance(schema, Mapping) else None
    if isinstance(required, list) and required:
        return str(sorted(str(name) for name in required)[0])
    names = sorted(str(name) for name in _properties(tool))
    return names[0] if names else "input"


def _tool_use(tool: Mapping[str, Any], value: str, digest: str) -> Json:
    return {
        "type": "tool_use",
        "id": f"toolu_offline_{digest[:24]}",
        "name": tool["name"],
        "input": {_argument_name(tool): value},
    }


def _named_user(said: str) -> str:
    for candidate in _NAMED_AFTER.findall(said):
        cleaned = candidate.strip(".,;:!?")
        if cleaned and cleaned.lower() not in _NOT_NAMES:
            return cleaned
    return "me"


def _answer_from_results(results: Sequence[Mapping[str, Any]], messages: Sequence[Any]) -> str:
    calls = _tool_calls_by_id(messages)
    lines = [_describe_result(result, calls) for result in results]
    return f"{LABEL} " + " ".join(lines)


def _tool_calls_by_id(messages: Sequence[Any]) -> dict[str, Mapping[str, Any]]:
    calls: dict[str, Mapping[str, Any]] = {}
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            calls.update((str(b.get("id")), b) for b in _blocks_of(message, "tool_use"))
    return calls


def _describe_result(result: Mapping[str, Any], calls: Mapping[str, Mapping[str, Any]]) -> str:
    call = calls.get(str(result.get("tool_use_id")), {})
    name = str(call.get("name", "the tool"))
    output = _result_text(result.get("content"))
    if result.get("is_error"):
        return f"The {name} tool failed: {output}"
    tool_input = call.get("input")
    if isinstance(tool_input, Mapping) and isinstance(tool_input.get("expression"), str):
        return f"{tool_input['expression']} = {output}."
    return f"The {name} tool returned: {output}"


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(b.get("text", "")) for b in content if isinstance(b, Mapping)]
        return " ".join(part for part in parts if part)
    return ""


def _plain_reply(said: str, message_count: int, tool_count: int) -> str:
    quoted = said.strip().replace("\n", " ")
    if len(quoted) > 120:
        quoted = quoted[:119] + "…"
    return (
        f"{LABEL} This reply comes from llm386's offline model, not Claude "
        "(set ANTHROPIC_API_KEY to call the real API). "
        f"I saw {message_count} message(s) and {tool_count} tool(s); "
        f'your last message was: "{quoted}"'
    )


def _usage(request_bytes: bytes, content: Sequence[Json]) -> dict[str, int]:
    tokenizer = get_tokenizer(USAGE_TOKENIZER)
    return {
        "input_tokens": tokenizer.count(request_bytes.decode("utf-8")),
        "output_tokens": tokenizer.count(canonical_json(list(content)).decode("utf-8")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
