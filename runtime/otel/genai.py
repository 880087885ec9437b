"""The GenAI semantic conventions read into model calls: what one LLM span says it sent and got.

Owns: ``ModelCall`` (a span's messages in the OpenAI chat shape the importer builds turns
from, its tools, model, provider, usage and request settings), ``model_call`` (one span into
one call, or ``SpanRefused`` saying which attribute is missing or wrong) and ``is_model_call``.

Three generations of the conventions are read (``runtime.otel.messages``), and a span
carrying two that disagree is refused (never merged).

Invariants:
- Usage adds up as ``Usage`` says: the conventions count cached tokens inside
  ``gen_ai.usage.input_tokens``, so they are taken out of it (an input count smaller than the
  cached counts is read as already excluding them).
- Message parts that are not text, tool calls or tool results (reasoning, images, files) are
  not in a turn's blocks; ``ModelCall.dropped_parts`` counts them so a page can say so.
- The JSON attributes of one request are parsed once per distinct text (pass the request's
  ``AttributeJson`` to every ``model_call``): a conversation's spans repeat them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.blocks import check_session
from runtime.errors import InvalidInput
from runtime.otel.attrjson import AttributeJson
from runtime.otel.messages import CURRENT, EVENTS, INDEXED, Reader, SpanRefused, forms, tools
from runtime.otel.spans import SpanData
from runtime.providers.usage import Usage
from runtime.transfer.transcripts import ToolDefinition

__all__ = ["CURRENT", "EVENTS", "INDEXED", "MODEL_OPERATIONS", "REQUEST_PARAMS", "ModelCall", "SpanRefused",
           "is_model_call", "model_call"]  # fmt: skip

MODEL_OPERATIONS = ("chat", "generate_content", "text_completion")
REQUEST_PARAMS = {  # gen_ai.request.* -> the OpenAI chat request's field
    "max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
    "stop_sequences": "stop", "seed": "seed", "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}  # fmt: skip


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


def model_call(span: SpanData, parsed: AttributeJson | None = None) -> ModelCall:
    """Return the model call a span records, or raise SpanRefused saying what is wrong."""
    where = f"span {span.span_id} ({span.name!r}, trace {span.trace_id})"
    reader = Reader(where, parsed if parsed is not None else AttributeJson())
    found = forms(span, reader)
    if not found:
        raise SpanRefused(
            f"{where} is a model call without messages: none of gen_ai.input.messages, "
            "gen_ai.prompt.N.*, or a gen_ai.content.prompt event. Turn on content capture "
            "(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, or TRACELOOP_TRACE_CONTENT=true)"
        )
    (convention, (messages, output)), *others = found
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
        tools=tools(a, reader), model=model, provider_name=_provider(a), usage=_usage(a, where),
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
            if name in REQUEST_PARAMS and not isinstance(value, int | float | str | list):
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
