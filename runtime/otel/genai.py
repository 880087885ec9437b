"""The GenAI semantic conventions read into model calls: what one LLM span says it sent and got.

Owns: ``ModelCall`` (a span's messages in the OpenAI chat shape the importer builds turns
from, its tools, model, provider, usage and request settings), ``model_call`` (one span into
one call, or ``SpanRefused`` saying which attribute is missing or wrong) and ``is_model_call``.

Three generations of the conventions are read, and a span carrying two that disagree is
refused (never merged):
- current (v1.37 on): ``gen_ai.input.messages`` / ``gen_ai.output.messages`` /
  ``gen_ai.system_instructions`` / ``gen_ai.tool.definitions`` as JSON (or structured values)
  of role + parts;
- indexed attributes (v1.36 and earlier, OpenLLMetry's default): ``gen_ai.prompt.N.role`` /
  ``.content`` / ``.tool_calls.M.*`` / ``.tool_call_id``, ``gen_ai.completion.N.*``, tools in
  ``llm.request.functions.N.*``;
- content events (v1.26 to v1.36): span events ``gen_ai.content.prompt`` (``gen_ai.prompt``)
  and ``gen_ai.content.completion`` (``gen_ai.completion``) holding message lists as JSON.

Invariants:
- Usage adds up as ``Usage`` says: the conventions count cached tokens inside
  ``gen_ai.usage.input_tokens``, so they are taken out of it (an input count smaller than the
  cached counts is read as already excluding them).
- Message parts that are not text, tool calls or tool results (reasoning, images, files) are
  not in a turn's blocks; ``ModelCall.dropped_parts`` counts them so a page can say so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime import limits
from runtime.blocks import canonical_json, check_session
from runtime.errors import InvalidInput
from runtime.otel.spans import SpanData
from runtime.providers.usage import Usage
from runtime.transfer.transcripts import ToolDefinition

MODEL_OPERATIONS = ("chat", "generate_content", "text_completion")
CURRENT, INDEXED, EVENTS = "current", "indexed-attributes", "content-events"
_REQUEST_PARAMS = {  # gen_ai.request.* -> the OpenAI chat request's field
    "max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
    "stop_sequences": "stop", "seed": "seed", "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}  # fmt: skip
_ATTR_LIMITS = limits.Limits(max_bytes=64 * 1024 * 1024, max_depth=32)


class SpanRefused(InvalidInput):
    """One span that cannot become a turn; the message names the span and the attribute."""


@dataclass(frozen=True)
class ModelCall:
    """One LLM span read as a model call (messages in the OpenAI chat shape)."""

    span: SpanData
    session: str
    messages: tuple[Mapping[str, Any], ...] = field(hash=False)  # the input, in order
    output: Mapping[str, Any] = field(hash=False)  # the assistant message
    tools: tuple[ToolDefinition, ...]
    model: str
    provider_name: str
    usage: Usage | None
    finish_reason: str | None
    params: Mapping[str, Any] = field(hash=False)  # gen_ai.request.* but the model
    convention: str
    dropped_parts: int = 0


def is_model_call(span: SpanData) -> bool:
    """Whether a span is a model call (by its operation, or by carrying prompt content)."""
    op = span.operation
    if op:
        return op in MODEL_OPERATIONS
    a = span.attributes
    return (
        "gen_ai.input.messages" in a
        or "gen_ai.prompt.0.role" in a
        or "gen_ai.prompt.0.content" in a
        or any(e.name == "gen_ai.content.prompt" for e in span.events)
    )


def model_call(span: SpanData) -> ModelCall:
    """Return the model call a span records, or raise SpanRefused saying what is wrong."""
    where = f"span {span.span_id} ({span.name!r}, trace {span.trace_id})"
    reader = _Reader(where)
    forms = _forms(span, reader)
    if not forms:
        raise SpanRefused(
            f"{where} is a model call without messages: none of gen_ai.input.messages, "
            "gen_ai.prompt.N.*, or a gen_ai.content.prompt event. Turn on content capture "
            "(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, or TRACELOOP_TRACE_CONTENT=true)"
        )
    (convention, (messages, output)), *others = forms
    for other, content in others:
        if content != (messages, output):
            raise SpanRefused(f"{where}: its {convention} and {other} messages disagree; "
                              "send one form (the instrumentation's current conventions)")  # fmt: skip
    if not output and span.status != "error":
        raise SpanRefused(
            f"{where} has no output message (gen_ai.output.messages, gen_ai.completion.0.*, "
            "or a gen_ai.content.completion event) and its status is not error"
        )
    a = span.attributes
    model = a.get("gen_ai.response.model") or a.get("gen_ai.request.model")
    if not isinstance(model, str) or not model:
        raise SpanRefused(f"{where} has no gen_ai.request.model or gen_ai.response.model")
    return ModelCall(
        span=span, session=_session(span, where), messages=tuple(messages), output=output,
        tools=_tools(a, reader), model=model, provider_name=_provider(a), usage=_usage(a, where),
        finish_reason=_finish(a, output), params=_params(a, where), convention=convention,
        dropped_parts=reader.dropped,
    )  # fmt: skip


def _session(span: SpanData, where: str) -> str:
    conversation = span.attributes.get("gen_ai.conversation.id")
    if conversation is None:
        return span.trace_id
    try:
        return check_session(str(conversation))
    except InvalidInput as exc:
        raise SpanRefused(f"{where}: gen_ai.conversation.id is not a session id ({exc})") from None


def _provider(a: Mapping[str, Any]) -> str:
    name = a.get("gen_ai.provider.name") or a.get("gen_ai.system") or "unknown"
    return str(name).lower()


def _finish(a: Mapping[str, Any], output: Mapping[str, Any]) -> str | None:
    reasons = a.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons:
        return str(reasons[0])
    found = output.get("finish_reason")
    return str(found) if found else None


def _params(a: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(a.items()):
        if key.startswith("gen_ai.request.") and key != "gen_ai.request.model":
            name = key.removeprefix("gen_ai.request.")
            if name in _REQUEST_PARAMS and not isinstance(value, int | float | str | list):
                raise SpanRefused(f"{where}: {key} is {type(value).__name__}, not a value")
            out[name] = value
    return out


def _count(a: Mapping[str, Any], where: str, *names: str) -> int | None:
    """Return the one count the attributes ``names`` give (refuse two that differ)."""
    values = {n: a[n] for n in names if a.get(n) is not None}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpanRefused(f"{where}: {name} is {value!r}, not a token count")
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{n}={v}" for n, v in values.items())
        raise SpanRefused(f"{where}: conflicting token counts ({listed})")
    return next(iter(values.values()), None)


def _usage(a: Mapping[str, Any], where: str) -> Usage | None:
    given = _count(a, where, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
    output = _count(a, where, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
    read = _count(a, where, "gen_ai.usage.cache_read.input_tokens",
                  "gen_ai.usage.cache_read_input_tokens") or 0  # fmt: skip
    made = _count(a, where, "gen_ai.usage.cache_creation.input_tokens",
                  "gen_ai.usage.cache_creation_input_tokens") or 0  # fmt: skip
    if given is None and output is None:
        return None
    given = given or 0
    uncached = given - read - made if given >= read + made else given
    return Usage(uncached, output or 0, read, made)


# -- messages ------------------------------------------------------------------------------


class _Reader:
    """Reads message content for one span; counts the parts it cannot keep."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.dropped = 0

    def fail(self, what: str) -> SpanRefused:
        return SpanRefused(f"{self.where}: {what}")

    def json(self, value: Any, name: str) -> Any:
        """Return a structured attribute, parsing it first when it was sent as JSON text."""
        if not isinstance(value, str):
            return value
        try:
            return limits.loads(value, name, _ATTR_LIMITS)
        except limits.InputRejected as exc:
            raise self.fail(f"{name} is not JSON ({exc.reason})") from None

    def text(self, value: Any) -> str:
        return value if isinstance(value, str) else canonical_json(value).decode()


Messages = tuple[list[dict[str, Any]], dict[str, Any]]


def _forms(span: SpanData, r: _Reader) -> list[tuple[str, Messages]]:
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


def _list(value: Any, name: str, r: _Reader) -> list[Any]:
    value = r.json(value, name)
    if not isinstance(value, list):
        raise r.fail(f"{name} is {type(value).__name__}, expected a list")
    return value


def _current(a: Mapping[str, Any], r: _Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    if "gen_ai.system_instructions" in a:
        parts = _list(a["gen_ai.system_instructions"], "gen_ai.system_instructions", r)
        text = _parts_text(parts, r)
        if text:
            messages.append({"role": "system", "content": text})
    for i, m in enumerate(_list(a["gen_ai.input.messages"], "gen_ai.input.messages", r)):
        messages.extend(_from_parts(m, f"gen_ai.input.messages[{i}]", r))
    outputs = _list(a.get("gen_ai.output.messages", "[]"), "gen_ai.output.messages", r)
    return messages, _output([_from_parts(m, "gen_ai.output.messages[0]", r) for m in outputs[:1]],
                             outputs[0] if outputs else {}, r)  # fmt: skip


def _output(converted: list[list[dict[str, Any]]], raw: Any, r: _Reader) -> dict[str, Any]:
    if not converted or not converted[0]:
        return {}  # a failed call has none; ``model_call`` refuses a successful one without
    message = converted[0][0]
    if message["role"] != "assistant":
        raise r.fail(f"its output message has role {message['role']!r}, not assistant")
    reason = raw.get("finish_reason") if isinstance(raw, dict) else None
    return message | ({"finish_reason": str(reason)} if reason else {})


def _parts_text(parts: Sequence[Any], r: _Reader) -> str:
    texts = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(r.text(part.get("content", "")))
        else:
            r.dropped += 1
    return "\n".join(texts)


def _from_parts(m: Any, name: str, r: _Reader) -> list[dict[str, Any]]:
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


def _assistant(text: str, calls: list[dict[str, Any]], name: str, r: _Reader) -> dict[str, Any]:
    if not text and not calls:
        raise r.fail(f"{name} (assistant) has neither text nor tool calls")
    return {"role": "assistant", "content": text or None} | ({"tool_calls": calls} if calls else {})


def _tool_call(call_id: Any, fn: Any, arguments: Any, name: str, r: _Reader) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id or not isinstance(fn, str) or not fn:
        raise r.fail(f"{name} has a tool call without an id and a name")
    args = arguments if isinstance(arguments, str) else canonical_json(arguments or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": fn, "arguments": args}}


def _tool_result(call_id: Any, response: Any, name: str, r: _Reader) -> dict[str, Any]:
    if not isinstance(call_id, str) or not call_id:
        raise r.fail(f"{name} has a tool result without the id of its call")
    return {"role": "tool", "tool_call_id": call_id, "content": r.text(response)}


# -- the older forms -------------------------------------------------------------------------

_INDEX = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(.+)$")


def _indexed_items(a: Mapping[str, Any], which: str) -> list[dict[str, Any]]:
    items: dict[int, dict[str, Any]] = {}
    for key, value in a.items():
        match = _INDEX.match(key)
        if match and match.group(1) == which:
            items.setdefault(int(match.group(2)), {})[match.group(3)] = value
    return [items[i] for i in sorted(items)]


def _indexed(a: Mapping[str, Any], r: _Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(_indexed_items(a, "prompt")):
        messages.extend(_flat_message(item, f"gen_ai.prompt.{i}", r))
    done = [_flat_message(item, f"gen_ai.completion.{i}", r)
            for i, item in enumerate(_indexed_items(a, "completion")[:1])]  # fmt: skip
    raw = _indexed_items(a, "completion")[:1]
    return messages, _output(done, raw[0] if raw else {}, r)


def _flat_message(item: Mapping[str, Any], name: str, r: _Reader) -> list[dict[str, Any]]:
    """Return one ``gen_ai.prompt.N.*`` message as OpenAI chat messages."""
    calls = _indexed_calls(item, name, r)
    message: dict[str, Any] = {"role": item.get("role", "user"), "content": item.get("content")}
    if calls:
        message["tool_calls"] = calls
    if item.get("tool_call_id"):
        message["tool_call_id"] = item["tool_call_id"]
    return _openai_message(message, name, r)


def _indexed_calls(item: Mapping[str, Any], name: str, r: _Reader) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for key, value in item.items():
        match = re.match(r"^tool_calls\.(\d+)\.(id|name|arguments)$", key)
        if match:
            calls.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [_tool_call(c.get("id"), c.get("name"), r.json(c.get("arguments", "{}"), name), name, r)
            for _, c in sorted(calls.items())]  # fmt: skip


def _events(prompt: Mapping[str, Any], done: Mapping[str, Any], r: _Reader) -> Messages:
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(_list(prompt.get("gen_ai.prompt", "[]"), "gen_ai.prompt", r)):
        messages.extend(_openai_message(m, f"gen_ai.prompt[{i}]", r))
    outputs = _list(done.get("gen_ai.completion", "[]"), "gen_ai.completion", r)
    converted = [_openai_message(m, "gen_ai.completion[0]", r) for m in outputs[:1]]
    return messages, _output(converted, outputs[0] if outputs else {}, r)


def _openai_message(m: Any, name: str, r: _Reader) -> list[dict[str, Any]]:
    """Return an OpenAI-style message (content text, or a list of content blocks) as messages."""
    if not isinstance(m, dict):
        raise r.fail(f"{name} is not a message object")
    role, content = m.get("role", "user"), m.get("content")
    if role not in ("system", "user", "assistant", "tool"):
        raise r.fail(f"{name} has role {role!r}; expected system, user, assistant or tool")
    blocks = r.json(content, name) if isinstance(content, str) and content[:1] == "[" else None
    if isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks):
        return _from_blocks(role, blocks, m, name, r)
    calls = [_tool_call(c.get("id"), (c.get("function") or {}).get("name"),
                        (c.get("function") or {}).get("arguments"), name, r)
             for c in m.get("tool_calls") or () if isinstance(c, dict)]  # fmt: skip
    text = "" if content is None else r.text(content)
    if role == "assistant":
        return [_assistant(text, calls, name, r)]
    if role == "tool":
        return [_tool_result(m.get("tool_call_id"), text, name, r)]
    return [{"role": role, "content": text}] if text else []


def _from_blocks(
    role: str, blocks: list[dict[str, Any]], m: Mapping[str, Any], name: str, r: _Reader
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


def _block_text(content: Any, r: _Reader) -> str:
    if isinstance(content, list):
        return "\n".join(r.text(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else r.text(content)


# -- tools -----------------------------------------------------------------------------------


def _tools(a: Mapping[str, Any], r: _Reader) -> tuple[ToolDefinition, ...]:
    if "gen_ai.tool.definitions" in a:
        items = _list(a["gen_ai.tool.definitions"], "gen_ai.tool.definitions", r)
    else:
        items = [_indexed_function(a, i, r) for i in range(_function_count(a))]
    return tuple(_tool(item, i, r) for i, item in enumerate(items))


def _function_count(a: Mapping[str, Any]) -> int:
    count = 0
    while f"llm.request.functions.{count}.name" in a:
        count += 1
    return count


def _indexed_function(a: Mapping[str, Any], i: int, r: _Reader) -> dict[str, Any]:
    prefix = f"llm.request.functions.{i}."
    params = r.json(a.get(prefix + "parameters", "{}"), prefix + "parameters")
    return {"name": a[prefix + "name"], "description": a.get(prefix + "description", ""),
            "parameters": params}  # fmt: skip


def _tool(item: Any, i: int, r: _Reader) -> ToolDefinition:
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
