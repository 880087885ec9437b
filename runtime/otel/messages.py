"""Message content of GenAI spans, in the three generations of the conventions, as chat messages.

Owns: ``Reader`` (one span's reading: its JSON attributes through the request's
``AttributeJson``, and the parts it could not keep), ``SpanRefused``, ``forms`` (every
convention a span carries its messages in, each read into OpenAI chat messages) and ``tools``
(its tool definitions as ``ToolDefinition``).

Conventions read (``genai`` says which wins and refuses two that disagree):
- current (v1.37 on): ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
  ``gen_ai.system_instructions`` / ``gen_ai.tool.definitions`` as JSON (or structured values)
  of role + parts;
- indexed attributes (v1.36 and earlier, OpenLLMetry's default): ``gen_ai.prompt.N.role`` /
  ``.content`` / ``.tool_calls.M.*`` / ``.tool_call_id``, ``gen_ai.completion.N.*``, tools in
  ``llm.request.functions.N.*``;
- content events (v1.26 to v1.36): span events ``gen_ai.content.prompt`` (``gen_ai.prompt``)
  and ``gen_ai.content.completion`` (``gen_ai.completion``) holding message lists as JSON.

Invariants:
- Parsed attribute values are shared between the spans of a request (``AttributeJson``):
  nothing here mutates them; every message returned is a new dict.
- Message parts that are not text, tool calls or tool results (reasoning, images, files) are
  not kept; ``Reader.dropped`` counts them so a page can say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput
from runtime.otel.attrjson import AttributeJson, Converted
from runtime.otel.spans import SpanData
from runtime.transfer.transcripts import ToolDefinition

CURRENT, INDEXED, EVENTS = "current", "indexed-attributes", "content-events"


class SpanRefused(InvalidInput):
    """One span that cannot become a turn; the message names the span and the attribute."""


class Reader:
    """Reads message content for one span; counts the parts it cannot keep."""

    def __init__(self, where: str, parsed: AttributeJson) -> None:
        self.where = where
        self.parsed = parsed
        self.dropped = 0

    def fail(self, what: str) -> SpanRefused:
        return SpanRefused(f"{self.where}: {what}")

    def json(self, value: Any, name: str) -> Any:
        """Return a structured attribute, parsing it first when it was sent as JSON text."""
        if not isinstance(value, str):
            return value
        try:
            return self.parsed.load(value, name)
        except ValueError as exc:
            raise self.fail(f"{name} is not JSON ({exc})") from None

    def text(self, value: Any) -> str:
        return value if isinstance(value, str) else canonical_json(value).decode()


Messages = tuple[list[dict[str, Any]], dict[str, Any]]


def forms(span: SpanData, r: Reader) -> list[tuple[str, Messages]]:
    found: list[tuple[str, Messages]] = []
    a = span.attributes
    if "gen_ai.input.messages" in a:
        found.append((CURRENT, _current(a, r)))
    if "gen_ai.prompt.0.role" in a or "gen_ai.prompt.0.content" in a:
        found.append((INDEXED, _indexed(a, r)))
    prompt = next((e for e in span.events if e.name == "gen_ai.content.prompt"), None)
    if prompt is not None:
        done = next((e for e in span.events if e.name == "gen_ai.content.completion"), None)
        found.append((EVENTS, _events(prompt.attributes, done.attributes if done else {}, r)))
    return found


def _list(value: Any, name: str, r: Reader) -> list[Any]:
    value = r.json(value, name)
    if not isinstance(value, list):
        raise r.fail(f"{name} is {type(value).__name__}, expected a list")
    return value


def _current(a: Mapping[str, Any], r: Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    if "gen_ai.system_instructions" in a:
        parts = _list(a["gen_ai.system_instructions"], "gen_ai.system_instructions", r)
        messages.extend(_remembered_system(parts, r))
    messages.extend(_inputs(_list(a["gen_ai.input.messages"], "gen_ai.input.messages", r), r))
    outputs = _list(a.get("gen_ai.output.messages", "[]"), "gen_ai.output.messages", r)
    return messages, _output([_from_parts(m, "gen_ai.output.messages[0]", r) for m in outputs[:1]],
                             outputs[0] if outputs else {}, r)  # fmt: skip


def _inputs(items: list[Any], r: Reader) -> list[dict[str, Any]]:
    """The chat messages of parsed input messages (``_remembered_parts`` of each), taken from
    the last list converted for the leading elements it shares (the very objects: the history
    so far, which the next span sends again with more)."""
    shared, last = 0, r.parsed.last_inputs
    out: list[dict[str, Any]] = []
    ends: list[int] = []
    dropped: list[int] = []
    if last is not None:
        for old, new in zip(last.items, items, strict=False):
            if old is not new:
                break
            shared += 1
        if shared:
            out = list(last.messages[: last.ends[shared - 1]])
            ends, dropped = last.ends[:shared], last.dropped[:shared]
            r.dropped += dropped[-1]
    for i in range(shared, len(items)):
        before = r.dropped
        out.extend(_remembered_parts(items[i], f"gen_ai.input.messages[{i}]", r))
        ends.append(len(out))
        dropped.append((dropped[-1] if dropped else 0) + r.dropped - before)
    r.parsed.last_inputs = Converted(items, tuple(out), ends, dropped)
    return out


def _output(converted: list[list[dict[str, Any]]], raw: Any, r: Reader) -> dict[str, Any]:
    if not converted or not converted[0]:
        return {}  # a failed call has none; ``model_call`` refuses a successful one without
    message = converted[0][0]
    if message["role"] != "assistant":
        raise r.fail(f"its output message has role {message['role']!r}, not assistant")
    reason = raw.get("finish_reason") if isinstance(raw, dict) else None
    return message | ({"finish_reason": str(reason)} if reason else {})


def _parts_text(parts: Sequence[Any], r: Reader) -> str:
    texts = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(r.text(part.get("content", "")))
        else:
            r.dropped += 1
    return "\n".join(texts)


def _remembered_parts(m: Any, name: str, r: Reader) -> list[dict[str, Any]]:
    """``_from_parts`` once per parsed message a request repeats (its spans share the value)."""
    return _remembered("parts", m, r, lambda: _from_parts(m, name, r))


def _remembered_system(parts: list[Any], r: Reader) -> list[dict[str, Any]]:
    """The system message of parsed instructions, once per value a request repeats."""

    def convert() -> list[dict[str, Any]]:
        text = _parts_text(parts, r)
        return [{"role": "system", "content": text}] if text else []

    return _remembered("system", parts, r, convert)


def _remembered(
    kind: str, value: Any, r: Reader, convert: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``convert()`` once per parsed value: every span that repeats it gets the same message
    objects (``runtime.otel.rebuild`` reuses a turn's blocks for messages shared by identity)
    and counts the parts its conversion dropped."""
    hit = r.parsed.memo(kind, value)
    if hit is not None:
        out, dropped = hit
        r.dropped += dropped
        return list(out)
    before = r.dropped
    converted = convert()
    r.parsed.remember(kind, value, (tuple(converted), r.dropped - before))
    return converted


def _from_parts(m: Any, name: str, r: Reader) -> list[dict[str, Any]]:
    """Return one convention message (role + parts) as OpenAI chat messages."""
    if not isinstance(m, dict) or not isinstance(m.get("parts"), list):
        raise r.fail(f"{name} has no list of parts")
    role = m.get("role")
    text_parts = [p for p in m["parts"] if isinstance(p, dict) and p.get("type") == "text"]
    calls = [p for p in m["parts"] if isinstance(p, dict) and p.get("type") == "tool_call"]
    results = [p for p in m["parts"] if isinstance(p, dict) and p.get("type") == "tool_call_response"]  # fmt: skip
    r.dropped += len(m["parts"]) - len(text_parts) - len(calls) - len(results)
    text = "\n".join(r.text(p.get("content", "")) for p in text_parts)
    out = [_tool_result(p.get("id"), p.get("response", ""), name, r) for p in results]
    if role == "assistant":
        tool_calls = [_tool_call(p.get("id"), p.get("name"), p.get("arguments"), name, r)
                      for p in calls]  # fmt: skip
        return [_assistant(text, tool_calls, name, r)]
    if role not in ("system", "user", "tool"):
        raise r.fail(f"{name} has role {role!r}; expected system, user, assistant or tool")
    if text and role != "tool":
        out.append({"role": role, "content": text})
    return out


def _assistant(text: str, calls: list[dict[str, Any]], name: str, r: Reader) -> dict[str, Any]:
    if not text and not calls:
        raise r.fail(f"{name} (assistant) has neither text nor tool calls")
    return {"role": "assistant", "content": text or None} | ({"tool_calls": calls} if calls else {})


def _tool_call(call_id: Any, fn: Any, arguments: Any, name: str, r: Reader) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id or not isinstance(fn, str) or not fn:
        raise r.fail(f"{name} has a tool call without an id and a name")
    args = arguments if isinstance(arguments, str) else canonical_json(arguments or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": fn, "arguments": args}}


def _tool_result(call_id: Any, response: Any, name: str, r: Reader) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id:
        raise r.fail(f"{name} has a tool result without the id of its call")
    return {"role": "tool", "tool_call_id": call_id, "content": r.text(response)}


# -- the older forms -------------------------------------------------------------------------

_INDEX = re.compile(r"^gen_ai\.(prompt|completion)\.([0-9]+)\.(.+)$", re.ASCII)
_CALL_INDEX = re.compile(r"^tool_calls\.([0-9]+)\.(id|name|arguments)$", re.ASCII)
_MAX_INDEX_DIGITS = 9


def _index(digits: str, key: str, r: Reader) -> int:
    """An index of an indexed attribute (``int`` refuses past 4,300 digits: refused sooner)."""
    if len(digits) > _MAX_INDEX_DIGITS:
        raise r.fail(f"the attribute {key[:40]}... has an index of {len(digits):,} digits; "
                     "indexed messages and tool calls count from 0")  # fmt: skip
    return int(digits)


def _indexed_items(a: Mapping[str, Any], which: str, r: Reader) -> list[dict[str, Any]]:
    items: dict[int, dict[str, Any]] = {}
    for key, value in a.items():
        match = _INDEX.match(key)
        if match and match.group(1) == which:
            items.setdefault(_index(match.group(2), key, r), {})[match.group(3)] = value
    return [items[i] for i in sorted(items)]


def _indexed(a: Mapping[str, Any], r: Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(_indexed_items(a, "prompt", r)):
        messages.extend(_flat_message(item, f"gen_ai.prompt.{i}", r))
    raw = _indexed_items(a, "completion", r)[:1]
    done = [_flat_message(item, f"gen_ai.completion.{i}", r) for i, item in enumerate(raw)]
    return messages, _output(done, raw[0] if raw else {}, r)


def _flat_message(item: Mapping[str, Any], name: str, r: Reader) -> list[dict[str, Any]]:
    """Return one ``gen_ai.prompt.N.*`` message as OpenAI chat messages."""
    calls = _indexed_calls(item, name, r)
    message: dict[str, Any] = {"role": item.get("role", "user"), "content": item.get("content")}
    if calls:
        message["tool_calls"] = calls
    if item.get("tool_call_id"):
        message["tool_call_id"] = item["tool_call_id"]
    return _openai_message(message, name, r)


def _indexed_calls(item: Mapping[str, Any], name: str, r: Reader) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for key, value in item.items():
        match = _CALL_INDEX.match(key)
        if match:
            calls.setdefault(_index(match.group(1), f"{name}.{key}", r), {})[match.group(2)] = value
    return [_tool_call(c.get("id"), c.get("name"), _arguments(c.get("arguments", "{}"), name, r),
                       name, r)
            for _, c in sorted(calls.items())]  # fmt: skip


def _arguments(value: Any, name: str, r: Reader) -> Any:
    """Indexed tool-call arguments: their JSON, or the text as the model wrote it when it is
    not JSON (arguments cut off by max_tokens are still the call that was made)."""
    try:
        return r.json(value, name)
    except SpanRefused:
        return value


def _events(prompt: Mapping[str, Any], done: Mapping[str, Any], r: Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(_list(prompt.get("gen_ai.prompt", "[]"), "gen_ai.prompt", r)):
        messages.extend(_openai_message(m, f"gen_ai.prompt[{i}]", r))
    outputs = _list(done.get("gen_ai.completion", "[]"), "gen_ai.completion", r)
    converted = [_openai_message(m, "gen_ai.completion[0]", r) for m in outputs[:1]]
    return messages, _output(converted, outputs[0] if outputs else {}, r)


def _openai_message(m: Any, name: str, r: Reader) -> list[dict[str, Any]]:
    """Return an OpenAI-style message (content text, or a list of content blocks) as messages."""
    if not isinstance(m, dict):
        raise r.fail(f"{name} is not a message object")
    role, content = m.get("role", "user"), m.get("content")
    if role not in ("system", "user", "assistant", "tool"):
        raise r.fail(f"{name} has role {role!r}; expected system, user, assistant or tool")
    blocks = _blocks_json(content, name, r)
    if isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks):
        return _from_blocks(role, blocks, m, name, r)
    calls = [_tool_call(c.get("id"), fn.get("name"), fn.get("arguments"), name, r)
             for c, fn in _openai_calls(m.get("tool_calls"), name, r)]  # fmt: skip
    text = "" if content is None else r.text(content)
    if role == "assistant":
        return [_assistant(text, calls, name, r)]
    if role == "tool":
        return [_tool_result(m.get("tool_call_id"), text, name, r)]
    return [{"role": role, "content": text}] if text else []


def _blocks_json(content: Any, name: str, r: Reader) -> Any:
    """The JSON of content text that may be a list of content blocks, else None: text that
    only begins with "[" (or is not valid JSON) is the message's text, not refused."""
    if not isinstance(content, str) or content[:1] != "[":
        return None
    try:
        return r.parsed.load(content, name)
    except ValueError:
        return None


def _openai_calls(value: Any, name: str, r: Reader) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return an OpenAI message's tool calls and their functions, each an object (or refuse)."""
    if not value:
        return []
    if not isinstance(value, list):
        raise r.fail(f"{name} has tool_calls that are {type(value).__name__}, not a list")
    out = []
    for i, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(fn, dict | None):
            raise r.fail(f"{name} has tool_calls[{i}] that is not an object with a function "
                         "object (id, function: {name, arguments})")  # fmt: skip
        out.append((call, fn or {}))
    return out


def _from_blocks(
    role: str, blocks: list[dict[str, Any]], m: Mapping[str, Any], name: str, r: Reader
) -> list[dict[str, Any]]:
    """Return Messages-API content blocks (what Anthropic instrumentations log) as messages."""
    texts = [r.text(b.get("text", "")) for b in blocks if b["type"] == "text"]
    uses = [_tool_call(b.get("id"), b.get("name"), b.get("input"), name, r)
            for b in blocks if b["type"] == "tool_use"]  # fmt: skip
    results = [_tool_result(b.get("tool_use_id"), _block_text(b.get("content"), r), name, r)
               for b in blocks if b["type"] == "tool_result"]  # fmt: skip
    r.dropped += len(blocks) - len(texts) - len(uses) - len(results)
    text = "\n".join(texts)
    if role == "assistant":
        return [_assistant(text, uses, name, r)]
    if role == "tool" and not results and m.get("tool_call_id"):
        results = [_tool_result(m.get("tool_call_id"), text, name, r)]
        text = ""
    return results + ([{"role": role, "content": text}] if text else [])


def _block_text(content: Any, r: Reader) -> str:
    if isinstance(content, list):
        return "\n".join(r.text(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else r.text(content)


# -- tools -----------------------------------------------------------------------------------


def tools(a: Mapping[str, Any], r: Reader) -> tuple[ToolDefinition, ...]:
    if "gen_ai.tool.definitions" not in a:
        items = [_indexed_function(a, i, r) for i in range(_function_count(a))]
        return tuple(_tool(item, i, r) for i, item in enumerate(items))
    items = _list(a["gen_ai.tool.definitions"], "gen_ai.tool.definitions", r)
    found = r.parsed.memo("tools", items)
    if found is None:
        found = tuple(_tool(item, i, r) for i, item in enumerate(items))
        r.parsed.remember("tools", items, found)
    return found  # the same tuple for every span of the request that repeats the definitions


def _function_count(a: Mapping[str, Any]) -> int:
    count = 0
    while f"llm.request.functions.{count}.name" in a:
        count += 1
    return count


def _indexed_function(a: Mapping[str, Any], i: int, r: Reader) -> dict[str, Any]:
    prefix = f"llm.request.functions.{i}."
    params = r.json(a.get(prefix + "parameters", "{}"), prefix + "parameters")
    return {"name": a[prefix + "name"], "description": a.get(prefix + "description", ""),
            "parameters": params}  # fmt: skip


def _tool(item: Any, i: int, r: Reader) -> ToolDefinition:
    fn = item.get("function", item) if isinstance(item, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise r.fail(f"tool definition {i} has no name")
    params = fn.get("parameters") or fn.get("input_schema") or {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise r.fail(f"tool {fn['name']!r} has parameters that are not an object")
    description = r.text(fn.get("description") or "")
    openai = {"type": "function", "function": {"name": fn["name"], "description": description,
                                               "parameters": params}}  # fmt: skip
    return ToolDefinition(openai, fn["name"], description, params)
