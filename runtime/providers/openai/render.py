"""OpenAI requests from the packer's Messages requests: how a re-page reaches OpenAI.

Owns: ``chat_request`` (a packed Anthropic Messages request, as a dict, written as an OpenAI
Chat Completions request), ``responses_request`` (the same written as an OpenAI Responses API
request, for a turn that was one) and ``recorded_request`` (the settings a turn's own stored
request carries over to its re-page, and which of the two APIs it spoke).

Invariants:
- A pure function of its arguments: no clock, no set order, no hash seed. The provider's
  ``render`` writes the result as canonical JSON, so the same plan gives the same bytes in any
  process.
- ``system`` becomes one system message (``developer`` for a model without a system role); each
  tool ``{name, description, input_schema}`` becomes ``{"type": "function", "function": {name,
  description, parameters}}``; an assistant's ``tool_use`` blocks become its ``tool_calls``,
  their input as a JSON string (canonical JSON; an input kept as the model's own string is sent
  as that string); each ``tool_result`` becomes a ``role: "tool"`` message with its
  ``tool_call_id``, right after the assistant message that made the call. One text block is
  sent as a string, several as a list of text parts (their boundaries kept).
- Tool pairs stay whole: a call is sent only with its result, so a call whose result is not in
  the request is dropped with it (and an assistant message left with nothing), and a result
  whose call is not in the message before it is sent as the user's text.
- Settings of the recorded request (``temperature``, ``tool_choice``, ``stream``,
  ``max_tokens`` or ``max_completion_tokens``...) are kept; only what the re-page rewrites is
  replaced (``model``, ``messages``, ``tools``, the legacy ``functions``). Without a recorded
  output limit, ``max_completion_tokens`` is the packed request's ``max_tokens`` (the profile's
  output reserve): the parameter OpenAI documents, and the only one its o-series take. Prompt
  caching is automatic on OpenAI, so the packer's ``cache_control`` marks are not sent.
- Tool result ``is_error`` has no Chat Completions field: the content is sent as it is.
- A Responses re-page follows the same rules with that API's shapes: the system text becomes
  ``instructions`` (several system blocks joined by a blank line: the API takes one string);
  each tool ``{"type": "function", name, description, parameters}``; the conversation becomes
  ``input`` items in order: a user's or an assistant's text a message (one text a string,
  several a list of ``input_text`` / ``output_text`` parts), a ``tool_use`` a ``function_call``
  item (``call_id``, ``name``, ``arguments`` as a JSON string) and its ``tool_result`` a
  ``function_call_output`` item. The recorded settings are kept but ``input``, ``instructions``,
  ``model`` and ``tools`` (rewritten) and ``previous_response_id`` and ``conversation``
  (dropped: the re-page carries the whole history itself). Without a recorded output limit,
  ``max_output_tokens`` is the packed request's ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import limits
from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, Llm386Error

__all__ = [
    "REWRITTEN",
    "RESPONSES_REWRITTEN",
    "Recorded",
    "chat_request",
    "recorded_request",
    "responses_request",
]

# Keys of a recorded request that a re-page writes afresh (the rest are kept).
REWRITTEN = ("function_call", "functions", "messages", "model", "tools")
OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens")
TOOL_SETTINGS = ("parallel_tool_calls", "tool_choice")  # meaningless without tools
# A Responses request's: rewritten, or (the history OpenAI keeps) dropped.
RESPONSES_REWRITTEN = ("conversation", "input", "instructions", "model", "previous_response_id",
                       "tools")  # fmt: skip


@dataclass(frozen=True)
class Recorded:
    """A turn's stored request as a re-page reads it: its settings, and whether it was a
    Responses API request (``input``, no ``messages``)."""

    settings: Mapping[str, Any]
    responses: bool = False


def recorded_request(request_bytes: bytes | None) -> Recorded:
    """Return a turn's stored request (no settings when there is none, or it is not JSON)."""
    if not request_bytes:
        return Recorded({})
    try:
        data = limits.loads(request_bytes, "the recorded request")
    except Llm386Error:
        return Recorded({})  # not JSON: nothing to keep from it
    if not isinstance(data, dict):
        return Recorded({})
    return Recorded(data, "input" in data and "messages" not in data)


def chat_request(
    packed: Mapping[str, Any],
    *,
    system_role: bool = True,
    recorded: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the Chat Completions request for the packed Messages request ``packed``."""
    out = {key: value for key, value in (recorded or {}).items() if key not in REWRITTEN}
    if not any(key in out for key in OUTPUT_LIMITS) and "max_tokens" in packed:
        out["max_completion_tokens"] = packed["max_tokens"]
    system = _system(packed.get("system"), "system" if system_role else "developer")
    out["messages"] = system + _conversation(packed.get("messages") or ())
    out["model"] = packed["model"]
    _set_tools(out, [_tool(tool) for tool in packed.get("tools") or ()])
    return out


def _set_tools(out: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    """Put ``tools`` in the request, or, with none, drop the settings that need them."""
    if tools:
        out["tools"] = tools
    else:
        for key in TOOL_SETTINGS:
            out.pop(key, None)


def responses_request(
    packed: Mapping[str, Any], *, recorded: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the Responses API request for the packed Messages request ``packed``."""
    out = {k: v for k, v in (recorded or {}).items() if k not in RESPONSES_REWRITTEN}
    if "max_output_tokens" not in out and "max_tokens" in packed:
        out["max_output_tokens"] = packed["max_tokens"]
    system = packed.get("system")
    if system:
        texts = [system] if isinstance(system, str) else [block["text"] for block in system]
        out["instructions"] = "\n\n".join(texts)
    out["input"] = _items(_conversation(packed.get("messages") or ()))
    out["model"] = packed["model"]
    _set_tools(
        out, [{"type": "function", **_tool(t)["function"]} for t in packed.get("tools") or ()]
    )
    return out


def _items(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return Chat Completions messages (as ``_conversation`` writes them) as Responses items."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role == "tool":
            out.append({"call_id": message["tool_call_id"], "output": content,
                        "type": "function_call_output"})  # fmt: skip
            continue
        if content is not None:
            part = "output_text" if role == "assistant" else "input_text"
            if not isinstance(content, str):
                content = [{"text": p["text"], "type": part} for p in content]
            out.append({"content": content, "role": role})
        for call in message.get("tool_calls") or ():
            fn = call["function"]
            out.append({"arguments": fn["arguments"], "call_id": call["id"], "name": fn["name"],
                        "type": "function_call"})  # fmt: skip
    return out


def _system(system: Any, role: str) -> list[dict[str, Any]]:
    if not system:
        return []
    texts = [system] if isinstance(system, str) else [block["text"] for block in system]
    return [{"content": _content(texts), "role": role}]


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"]}
    if "description" in tool:
        function["description"] = tool["description"]
    if "input_schema" in tool:
        function["parameters"] = tool["input_schema"]
    if "strict" in tool:
        function["strict"] = tool["strict"]
    return {"function": function, "type": "function"}


def _conversation(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    called: tuple[str, ...] = ()  # the calls sent in the assistant message just before
    for n, message in enumerate(messages):
        blocks = list(message.get("content") or ())
        if message.get("role") == "assistant":
            following = messages[n + 1].get("content") if n + 1 < len(messages) else ()
            answered = {b.get("tool_use_id") for b in following or () if _is(b, "tool_result")}
            sent, called = _assistant(blocks, answered)
            out.extend(sent)
        else:
            out.extend(_user(blocks, called))
            called = ()
    return out


def _assistant(
    blocks: Sequence[Mapping[str, Any]], answered: set[Any]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    texts = [_text_of(b) for b in blocks if not _is(b, "tool_use")]
    calls = [_tool_call(b) for b in blocks if _is(b, "tool_use") and b.get("id") in answered]
    if not texts and not calls:
        return [], ()
    message: dict[str, Any] = {"content": _content(texts) if texts else None, "role": "assistant"}
    if calls:
        message["tool_calls"] = calls
    return [message], tuple(call["id"] for call in calls)


def _user(blocks: Sequence[Mapping[str, Any]], called: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for block in blocks:
        if _is(block, "tool_result") and block.get("tool_use_id") in called:
            out.append({"content": _result_text(block.get("content")), "role": "tool",
                        "tool_call_id": block["tool_use_id"]})  # fmt: skip
        elif _is(block, "tool_result"):
            texts.append(_result_text(block.get("content")))  # its call is not in the request
        else:
            texts.append(_text_of(block))
    if texts:
        out.append({"content": _content(texts), "role": "user"})
    return out


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    arguments = block.get("input")
    if not isinstance(arguments, str):
        arguments = canonical_json(arguments if arguments is not None else {}).decode()
    return {"function": {"arguments": arguments, "name": block["name"]}, "id": block["id"],
            "type": "function"}  # fmt: skip


def _is(block: Any, kind: str) -> bool:
    return isinstance(block, Mapping) and block.get("type") == kind


def _text_of(block: Mapping[str, Any]) -> str:
    if not _is(block, "text"):
        raise InvalidInput(
            f"the packed request holds a {block.get('type')!r} block, which the Chat "
            "Completions render does not write; re-page for an Anthropic model"
        )
    return str(block["text"])


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(_text_of(part) for part in content or ())


def _content(texts: Sequence[str]) -> str | list[dict[str, str]]:
    if len(texts) == 1:
        return texts[0]
    return [{"text": text, "type": "text"} for text in texts]
