"""The ``recall`` tool on the wire: finding its calls in a reply, answering them, hiding them.

Owns: ``tool_calls`` (a Messages, Chat Completions or Responses reply's tool calls, as
``ToolCall``), ``continued`` (the request that carries on after the proxy answered the recall
calls: the reply's assistant turn, or its output items, and one tool result per call
appended), ``merged`` (a call's rounds as one reply, as a stream gives them) and
``without_recall`` (the reply as the client gets it: the recall calls taken out, the stop
reason fixed when no call is left).

Invariants:
- The client never sees a call of a tool it did not offer: ``without_recall`` removes every
  recall call, and a reply left with no tool call says it ended its turn.
- ``continued`` never mutates its inputs; the continuation keeps every byte-level choice of the
  paged request (it is that request plus two messages).
- A client gets every round's content, in order, once: what the model said (text, thinking)
  before a recall call is in the reply it gets, whether it streamed or not. Its usage is the
  rounds' sum, a JSON reply's and a stream's closing usage alike (``streamfilter``), and the
  record keeps every round's usage (``paging.proxy.usage``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import ToolCall
from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.proxy.apis import Wire
from runtime.proxy.conversation import call_arguments, function_of


@dataclass(frozen=True)
class Answer:
    """What the proxy answers one recall call with."""

    call_id: str
    content: str
    is_error: bool = False


def tool_calls(wire: Wire, reply: Mapping[str, Any]) -> list[ToolCall]:
    """Return the reply's tool calls in order (none for an error or a reply of another shape)."""
    if wire is Wire.MESSAGES:
        return [ToolCall(str(c.get("id")), str(c.get("name")), c.get("input"))
                for c in _content(reply) if c.get("type") == "tool_use"]  # fmt: skip
    if wire is Wire.RESPONSES:
        return [ToolCall(str(c.get("call_id")), str(c.get("name")), call_arguments(c.get("arguments")))
                for c in _output(reply) if c.get("type") == "function_call"]  # fmt: skip
    calls = []
    for call in _chat_message(reply).get("tool_calls") or ():
        if isinstance(call, dict):
            fn = function_of(call)
            arguments = call_arguments(fn.get("arguments"))
            calls.append(ToolCall(str(call.get("id")), str(fn.get("name")), arguments))
    return calls


def recall_calls(wire: Wire, reply: Mapping[str, Any]) -> list[ToolCall]:
    """Return the reply's calls of ``recall``."""
    return [c for c in tool_calls(wire, reply) if c.name == RECALL_TOOL_NAME]


def only_recalls(wire: Wire, reply: Mapping[str, Any]) -> bool:
    """Whether the reply calls tools and every one of them is ``recall``."""
    if wire is Wire.RESPONSES:  # a custom tool's or the computer's call is the client's too
        calls_made = [c for c in _output(reply) if c.get("type") in CLIENT_CALL_ITEMS]
        return bool(calls_made) and all(is_recall_item(c) for c in calls_made)
    calls = tool_calls(wire, reply)
    return bool(calls) and all(c.name == RECALL_TOOL_NAME for c in calls)


def continued(
    wire: Wire, request: Mapping[str, Any], reply: Mapping[str, Any], answers: Sequence[Answer]
) -> dict[str, Any]:
    """Return ``request`` with the reply's assistant turn and the answers to its calls appended."""
    out = dict(request)  # the earlier messages are shared, never written to
    if wire is Wire.RESPONSES:
        given = out.get("input")
        items = (
            [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
        )
        items += copy.deepcopy(_output(reply))  # the model's items as it made them (reasoning too)
        items += [{"type": "function_call_output", "call_id": a.call_id, "output": a.content}
                  for a in answers]  # fmt: skip
        out["input"] = items
        return out
    messages = list(out.get("messages") or [])
    if wire is Wire.MESSAGES:
        messages.append({"role": "assistant", "content": copy.deepcopy(_content(reply))})
        results = [{"type": "tool_result", "tool_use_id": a.call_id, "content": a.content,
                    **({"is_error": True} if a.is_error else {})} for a in answers]  # fmt: skip
        messages.append({"role": "user", "content": results})
    else:
        said = _chat_message(reply)
        messages.append({"role": "assistant", "content": said.get("content"),
                         "tool_calls": copy.deepcopy(said.get("tool_calls"))})  # fmt: skip
        messages += [{"role": "tool", "tool_call_id": a.call_id, "content": a.content}
                     for a in answers]  # fmt: skip
    out["messages"] = messages
    return out


def merged(wire: Wire, earlier: Sequence[Mapping[str, Any]], last: Mapping[str, Any]) -> dict:
    """Return ``last`` with the content of the ``earlier`` rounds' replies (the ones that only
    called ``recall``) put before its own, recall calls still in: ``without_recall`` takes them
    out. Messages: the rounds' content blocks in order (thinking blocks included); Chat: the
    rounds' text joined, as a stream's deltas join. Usage is the rounds' summed (``summed``:
    the client is told every token the call cost); ids are the last round's."""
    out = copy.deepcopy(dict(last))
    if not earlier:
        return out
    usages = [u for r in (*earlier, last) if isinstance(u := r.get("usage"), Mapping)]
    if usages:
        out["usage"] = summed(usages)
    if wire is Wire.MESSAGES:
        blocks = [copy.deepcopy(c) for r in earlier for c in _content(r)]
        out["content"] = [*blocks, *_content(out)]
        return out
    if wire is Wire.RESPONSES:  # each round's reasoning for its recall calls only goes too
        items = [copy.deepcopy(c) for r in earlier for c in without_orphans(_output(r))]
        out["output"] = [*items, *without_orphans(_output(out))]
        return out
    choice = (out.get("choices") or [{}])[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return out
    texts = [m.get("content") for m in (*map(_chat_message, earlier), message)]
    if any(isinstance(t, str) and t for t in texts):
        message["content"] = "".join(t for t in texts if isinstance(t, str))
    return out


def summed(usages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return usage objects added up: numbers summed field by field (nested objects too, such as
    ``cache_creation`` or ``prompt_tokens_details``), anything else (a service tier) the last's;
    a null says nothing and never replaces what earlier rounds said."""
    out: dict[str, Any] = {}
    for usage in usages:
        for key, value in usage.items():
            had = out.get(key)
            if value is None and had is not None:
                continue  # a round that did not say (a null) leaves the sum as it was
            if isinstance(value, Mapping):
                out[key] = summed([had, value] if isinstance(had, Mapping) else [value])
            elif _number(value) and (had is None or _number(had)):
                out[key] = (had or 0) + value
            else:
                out[key] = copy.deepcopy(value)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def without_recall(wire: Wire, reply: Mapping[str, Any]) -> dict[str, Any]:
    """Return the reply with its recall calls taken out (see the module invariants)."""
    out = copy.deepcopy(dict(reply))
    if wire is Wire.MESSAGES:
        content = [c for c in _content(out) if not _is_recall_use(c)]
        # An empty text block is refused when the agent sends this turn back: say what happened.
        out["content"] = content or [{"type": "text", "text": NO_ANSWER}]
        if (
            not any(c.get("type") == "tool_use" for c in content)
            and out.get("stop_reason") == "tool_use"
        ):
            out["stop_reason"] = "end_turn"
        return out
    if wire is Wire.RESPONSES:
        given = _output(out)
        output = [c for c in without_orphans(given) if not is_recall_item(c)]
        if len(output) != len(given):  # a reply with no recall call (a failed one) stays as it is
            out["output"] = output or [copy.deepcopy(NO_ANSWER_ITEM)]
        return out
    choice = (out.get("choices") or [{}])[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return out
    kept = [c for c in message.get("tool_calls") or () if not _is_recall_call(c)]
    if kept:
        message["tool_calls"] = kept
        return out
    message.pop("tool_calls", None)
    message["content"] = message.get("content") or NO_ANSWER
    if choice.get("finish_reason") == "tool_calls":
        choice["finish_reason"] = "stop"
    return out


NO_ANSWER = (
    "[llm386 proxy: the model kept asking to recall paged-out blocks and gave no answer; "
    "send the request again, or run the proxy without --page]"
)


NO_ANSWER_ITEM = {"type": "message", "id": "msg_llm386_no_answer", "status": "completed",
                  "role": "assistant",
                  "content": [{"type": "output_text", "text": NO_ANSWER, "annotations": []}]}  # fmt: skip


def _output(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    output = reply.get("output")
    return [c for c in output if isinstance(c, dict)] if isinstance(output, list) else []


# Responses output items the client runs and answers (built-in tools' calls run at OpenAI's).
CLIENT_CALL_ITEMS = ("function_call", "custom_tool_call", "computer_call", "local_shell_call",
                     "shell_call", "apply_patch_call", "mcp_approval_request")  # fmt: skip


def without_orphans(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one round's output items without the reasoning items that led only to recall
    calls: OpenAI refuses an input whose reasoning item lacks the item it produced, and the
    client sends back what it got, recall calls taken out. A reasoning item leads to the items
    after it up to the next reasoning item."""
    out = []
    for n, item in enumerate(items):
        if item.get("type") == "reasoning":
            led = []
            for after in items[n + 1 :]:
                if after.get("type") == "reasoning":
                    break
                led.append(after)
            if led and all(is_recall_item(c) for c in led):
                continue
        out.append(item)
    return out


def is_recall_item(item: Mapping[str, Any]) -> bool:
    """Whether a Responses output item is a call of ``recall``."""
    return item.get("type") == "function_call" and item.get("name") == RECALL_TOOL_NAME


def _content(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    content = reply.get("content")
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []


def _chat_message(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = reply.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    message = first.get("message") if isinstance(first, dict) else None
    return message if isinstance(message, dict) else {}


def _is_recall_use(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "tool_use" and item.get("name") == RECALL_TOOL_NAME


def _is_recall_call(call: Any) -> bool:
    fn = call.get("function") if isinstance(call, dict) else None
    return isinstance(fn, dict) and fn.get("name") == RECALL_TOOL_NAME


def encode(data: Mapping[str, Any]) -> bytes:
    """Return JSON bytes for a request or reply the proxy wrote itself: compact, UTF-8, in the
    key order the client (or the upstream) used. Raise ValueError for what JSON cannot carry
    (a non-finite number from ``1e999``, a lone surrogate from ``"\\ud800"``)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"a string the request holds is not valid Unicode: {exc.reason}") from None
