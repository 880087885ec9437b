"""Replay: re-send a recorded request byte for byte, record what came back, and compare outputs.

Owns: ``replay`` and ``ReplayResult``, ``replays_of`` (a record's replays and re-pages, for the
history), the output diff of two responses, and ``send_traced``: the one way a model call
becomes a trace record (the sample agent uses it too).

Invariants:
- Nothing is sent unless the stored request bytes hash to the recorded prompt hash; a damaged
  or missing request raises ReplayMismatch before any byte leaves and before anything is
  recorded. The client checks the same hash again at the HTTP layer, and the bytes it reports
  sending (``ModelResponse.sent_sha256``) are compared with the recorded hash.
- Every send is recorded, whatever happens: a response, or the error (type, HTTP status, a
  message saying what to do, every attempt) on a NEW record whose parent is the original, in
  the original's session and turn. The original record is never changed.
- OpenAI-format requests (imported transcripts) are never sent to Anthropic: they are refused
  with ``NotReplayable``, which names the re-page that turns them into an Anthropic request.
- A record whose model is retired (runtime.profiles.lifecycle) is refused with ``ModelRetired``, to any
  client, before anything is sent or recorded; the message names the re-page for the
  replacement. A deprecated model's warning is on ``ReplayResult.warnings``.
- Output diffs compare what the model said (text, and tool calls by name and input; tool-use
  ids differ from call to call and are left out), line by line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runtime import __version__, limits
from runtime.blocks import canonical_json
from runtime.errors import (
    InvalidInput,
    Llm386Error,
    ModelCallFailed,
    ReplayMismatch,
    StoreCorrupted,
    UnknownModel,
)
from runtime.inspect.textdiff import DiffLine, LineOp, char_spans, line_opcodes
from runtime.paging.accounting import Price, get_price
from runtime.profiles.lifecycle import check_callable
from runtime.providers import ModelClient, ModelResponse
from runtime.providers.offline.model import OFFLINE_MODEL_NAME
from runtime.replay.fidelity import replay_capability
from runtime.tracing.records import (
    REPAGE_KEY,
    Delivery,
    Provider,
    TokenizerInfo,
    TokenUsage,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    TraceStore,
    delivery,
    new_call_id,
    now_ms,
    prompt_hash,
)

REPLAY_KEY = "replay"  # record.config key describing a replay
_MTOK = 1_000_000


class NotReplayable(InvalidInput):
    """A record whose request cannot be re-sent as it is (e.g. an OpenAI-format import)."""


@dataclass(frozen=True)
class CallBasis:
    """What a record says about a request, apart from how the call went."""

    session: str
    turn: int
    profile: Mapping[str, Any]
    config: Mapping[str, Any]
    task: str
    upto_seq: int | None
    plan: Mapping[str, Any]
    tokenizer: TokenizerInfo | None
    estimated_input_tokens: int | None
    paging: Mapping[str, Any] = field(default_factory=dict)  # demand paging (runtime.paging.demand)

    @classmethod
    def of_record(cls, record: TraceRecord, config: Mapping[str, Any]) -> CallBasis:
        """Return the basis of ``record`` (for a replay of it) with ``config`` instead of its."""
        return cls(
            record.session, record.turn, record.profile, config, record.task, record.upto_seq,
            record.plan, record.tokenizer, record.estimated_input_tokens, dict(record.paging),
        )  # fmt: skip


@dataclass(frozen=True)
class CallOutcome:
    """How a traced call went: the response, or the failure, and when and how long."""

    record: TraceRecord
    response: ModelResponse | None
    failure: ModelCallFailed | None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class SentCall:
    """A call that was sent and its record, not yet written to the trace store."""

    record: TraceRecord
    request: bytes = field(repr=False)
    response: ModelResponse | None
    failure: ModelCallFailed | None

    def numbered(self, turn: int) -> SentCall:
        """Return this call as turn ``turn`` of its session (its paging says the same)."""
        rec = self.record
        paging = {**rec.paging, "turn": turn} if "turn" in rec.paging else rec.paging
        return replace(self, record=replace(rec, turn=turn, paging=paging))


def send_traced(
    traces: TraceStore,
    client: ModelClient,
    request: bytes,
    basis: CallBasis,
    *,
    origin: TraceOrigin = TraceOrigin.LIVE,
    parent: str | None = None,
) -> CallOutcome:
    """Send ``request`` through ``client`` and record the call, whether it worked or not.

    Raises ReplayMismatch (nothing sent, nothing recorded) only when the client refuses the
    bytes before sending; every ModelCallFailed is recorded and returned, not raised.
    """
    return record_sent(traces, send_call(client, request, basis, origin=origin, parent=parent))


def send_call(
    client: ModelClient,
    request: bytes,
    basis: CallBasis,
    *,
    origin: TraceOrigin = TraceOrigin.LIVE,
    parent: str | None = None,
) -> SentCall:
    """Send ``request`` and return the call's record unwritten, so the caller can write it in
    the same transaction as what the answer leads to (the agent's reply blocks)."""
    digest = prompt_hash(request)
    started, clock = now_ms(), time.perf_counter()
    response: ModelResponse | None = None
    failure: ModelCallFailed | None = None
    try:
        response = client.send(request, expected_sha256=digest)
    except ModelCallFailed as exc:
        failure = exc
    latency = response.latency_ms if response else round((time.perf_counter() - clock) * 1000, 3)
    record = _record(client, request, basis, origin, parent, started, latency, response, failure)
    return SentCall(record, request, response, failure)


def record_sent(traces: TraceStore, sent: SentCall) -> CallOutcome:
    """Write a sent call's record and bytes; return it read back with the store's replay check."""
    traces.record(sent.record, sent.request, sent.response.body if sent.response else None)
    return CallOutcome(traces.get(sent.record.call_id), sent.response, sent.failure)


def _record(
    client: ModelClient, request: bytes, basis: CallBasis, origin: TraceOrigin,
    parent: str | None, started: int, latency: float, response: ModelResponse | None,
    failure: ModelCallFailed | None,
) -> TraceRecord:  # fmt: skip
    attempts = response.attempts if response else (failure.attempts if failure else ())
    return TraceRecord(
        call_id=new_call_id(), session=basis.session, turn=basis.turn, started_at=started,
        provider=provider_of(client), model=model_of(client, request),
        prompt_hash=prompt_hash(request), request_size=len(request),
        status=TraceStatus.OK if failure is None else TraceStatus.ERROR, origin=origin,
        parent_call_id=parent, latency_ms=latency, runtime_version=__version__,
        tokenizer=basis.tokenizer, profile=basis.profile, config=basis.config, task=basis.task,
        upto_seq=basis.upto_seq, plan=basis.plan, paging=basis.paging,
        estimated_input_tokens=basis.estimated_input_tokens,
        response=dict(response.data) if response else None,
        response_hash=response.body_sha256 if response else None,
        usage=TokenUsage(**response.usage.__dict__) if response else None,
        stop_reason=response.stop_reason if response else None,
        error=None if failure is None else TraceError(failure.error_type, str(failure), failure.status),
        attempts=tuple(attempts),
    )  # fmt: skip


def provider_of(client: ModelClient) -> Provider:
    """Return the trace provider of a model client."""
    try:
        return Provider(client.provider)
    except ValueError:
        known = ", ".join(p.value for p in Provider)
        raise InvalidInput(
            f"model client {client!r} has provider {client.provider!r}; traces know {known}"
        ) from None


def model_of(client: ModelClient, request: bytes) -> str:
    """Return the model a call went to: the offline model, or the request's ``model``."""
    if provider_of(client) is Provider.OFFLINE:
        return OFFLINE_MODEL_NAME
    try:
        model = limits.loads(request, "the request").get("model")
    except (Llm386Error, AttributeError):
        model = None
    return str(model) if model else "unknown"


# -- replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputDiff:
    """A line diff of two outputs; ``lines`` hold every line of both, in order."""

    lines: tuple[DiffLine, ...]
    added: int
    removed: int

    @property
    def identical(self) -> bool:
        return not self.added and not self.removed

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical, "added": self.added, "removed": self.removed,
            "lines": [{"op": ln.op.value, "text": ln.text, "a": ln.a, "b": ln.b,
                       "spans": [list(s) for s in ln.spans]} for ln in self.lines],
        }  # fmt: skip


@dataclass(frozen=True)
class ReplayResult:
    """A replay: the original, the new record, whether the bytes matched, and the outputs."""

    original: TraceRecord
    record: TraceRecord
    compared_with: TraceRecord  # whose output the new one is diffed against
    bytes_matched: bool | None  # None: nothing reached the HTTP layer (e.g. no API key)
    sent_sha256: str | None
    original_text: str
    new_text: str
    output_diff: OutputDiff
    response_identical: bool
    input_cost_usd: float | None
    price: Price | None
    warnings: tuple[str, ...] = ()  # e.g. the model is deprecated (runtime.profiles.lifecycle)

    @property
    def ok(self) -> bool:
        return self.record.status is TraceStatus.OK

    @property
    def usage(self) -> TokenUsage | None:
        return self.record.usage

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.record.call_id, "parent_call_id": self.original.call_id,
            "status": self.record.status.value, "bytes_matched": self.bytes_matched,
            "sent_sha256": self.sent_sha256, "prompt_hash": self.original.prompt_hash,
            "provider": self.record.provider.value, "model": self.record.model,
            "error": None if self.record.error is None else self.record.error.__dict__,
            "compared_with": self.compared_with.call_id, "original_text": self.original_text, "new_text": self.new_text,
            "output_diff": self.output_diff.to_json(),
            "response_identical": self.response_identical,
            "usage": None if self.usage is None else self.usage.__dict__,
            "input_cost_usd": self.input_cost_usd,
            "price": None if self.price is None else self.price.to_json(),
            "record": self.record.to_json(), "warnings": list(self.warnings),
        }  # fmt: skip


def replay(traces: TraceStore, call_id: str, client: ModelClient) -> ReplayResult:
    """Re-send a record's stored request unchanged through ``client`` and record the outcome."""
    original = traces.get(call_id)
    check_replayable(original)
    warning = check_callable(
        original.model,
        action=f"replay trace {original.call_id}",
        instead=f"re-page the turn for it with `llm386 repage {original.call_id} --model "
        "{replacement} --record`, then replay the new record",
    )
    request = stored_request(traces, original)
    config = {k: v for k, v in original.config.items() if k not in (REPLAY_KEY, REPAGE_KEY)}
    config[REPLAY_KEY] = {"of": original.call_id, "client": provider_of(client).value}
    basis = CallBasis.of_record(original, config)
    outcome = send_traced(
        traces, client, request, basis, origin=TraceOrigin.REPLAY, parent=original.call_id
    )
    result = _result(original, _compared_with(traces, original), outcome)
    return replace(result, warnings=(warning,)) if warning else result


def _compared_with(traces: TraceStore, original: TraceRecord) -> TraceRecord:
    """Return the record whose output a replay is compared with: a re-page has no output of
    its own, so its parent's answer (the turn it was re-paged from) stands in."""
    if derived_kind(original) == REPAGE_KEY and original.parent_call_id is not None:
        return traces.get(original.parent_call_id)
    return original


def check_replayable(record: TraceRecord) -> None:
    """Raise NotReplayable unless ``record`` holds a Messages API request llm386 can send.

    The same answer as the turn page's badge (``runtime.replay.fidelity``); damaged bytes are
    refused by ``stored_request``, which re-hashes them.
    """
    if not replay_capability(record).sendable:
        raise NotReplayable(
            f"trace {record.call_id} is an OpenAI-format request ({record.model}, imported), "
            "which cannot be sent to Anthropic byte for byte. Re-page it for an Anthropic "
            f"model with `llm386 repage {record.call_id} --model claude-sonnet-4-6 --record`, "
            "then replay the new record"
        )


def stored_request(traces: TraceStore, record: TraceRecord) -> bytes:
    """Return the record's stored request bytes, or raise ReplayMismatch if they are damaged."""
    try:
        request = traces.request_bytes(record.prompt_hash)
    except StoreCorrupted as exc:
        raise ReplayMismatch(
            f"refused to replay trace {record.call_id}: {exc}. Nothing was sent or recorded"
        ) from None
    if request is None:
        raise ReplayMismatch(
            f"trace {record.call_id} has no stored request bytes, so nothing was sent; "
            "run `llm386 verify` on the store"
        )
    actual = prompt_hash(request)
    if actual != record.prompt_hash:
        raise ReplayMismatch(
            f"refused to replay trace {record.call_id}: its stored request hashes to "
            f"{actual[:16]}…, not the recorded prompt hash {record.prompt_hash[:16]}…, so it "
            "is not what the model saw. Nothing was sent or recorded; run `llm386 verify` "
            "on the store"
        )
    return request


def _result(original: TraceRecord, compared: TraceRecord, outcome: CallOutcome) -> ReplayResult:
    record, response = outcome.record, outcome.response
    sent = response.sent_sha256 if response else None
    old_text, new_text = output_text(compared.response), output_text(record.response)
    price = _price(record)
    return ReplayResult(
        original=original, record=record, compared_with=compared, bytes_matched=_bytes_matched(outcome, original),
        sent_sha256=sent, original_text=old_text, new_text=new_text,
        output_diff=diff_outputs(old_text, new_text),
        response_identical=record.response_hash is not None
        and record.response_hash == compared.response_hash,
        input_cost_usd=input_cost(record.usage, price), price=price,
    )  # fmt: skip


def _bytes_matched(outcome: CallOutcome, original: TraceRecord) -> bool | None:
    if outcome.response is not None:
        return outcome.response.sent_sha256 == original.prompt_hash
    failure = outcome.failure
    assert failure is not None
    if failure.error_type == "byte-mismatch":
        return False
    # The adapter hashes every attempt's bytes at the HTTP layer and aborts before sending
    # anything else, so an attempt that was made sent the recorded bytes.
    return True if failure.attempts else None


def _price(record: TraceRecord) -> Price | None:
    if record.provider is not Provider.ANTHROPIC:
        return None
    try:
        return get_price(record.model)
    except UnknownModel:
        return None


def input_cost(usage: TokenUsage | None, price: Price | None) -> float | None:
    """Return the list-price input cost in USD of reported usage (output is not priced)."""
    if usage is None or price is None:
        return None
    per_token = price.input_usd_per_mtok / _MTOK
    weighted = (
        usage.input_tokens
        + usage.cache_read_input_tokens * price.cache_read
        + usage.cache_creation_input_tokens * price.cache_write
    )
    return round(weighted * per_token, 8)


def output_text(response: Mapping[str, Any] | None) -> str:
    """Return what a response said: its text, and each tool call as ``[tool_use NAME] INPUT``."""
    if not isinstance(response, Mapping):
        return ""
    content = response.get("content")
    if not isinstance(content, list):  # an OpenAI assistant message (imported transcripts)
        content = _openai_message_content(response)
    parts: list[str] = []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            tool_input = canonical_json(block.get("input", {})).decode()
            parts.append(f"[tool_use {block.get('name')}] {tool_input}")
    return "\n".join(parts)


def _openai_message_content(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if message.get("content"):
        out.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        fn = call.get("function", {})
        try:
            arguments = limits.loads(fn.get("arguments", "{}"), "arguments")
        except (TypeError, Llm386Error):
            arguments = fn.get("arguments")
        out.append({"type": "tool_use", "name": fn.get("name"), "input": arguments})
    return out


def diff_outputs(a: str, b: str) -> OutputDiff:
    """Return the line diff of two outputs, with changed characters marked inside lines."""
    la, lb = a.splitlines(), b.splitlines()
    lines: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in line_opcodes(la, lb):
        if tag == "equal":
            lines += [DiffLine(LineOp.SAME, la[i], i, j1 + n) for n, i in enumerate(range(i1, i2))]
            continue
        pair = tag == "replace" and i2 - i1 == j2 - j1
        spans = [char_spans(la[i1 + n], lb[j1 + n]) for n in range(i2 - i1)] if pair else []
        lines += [DiffLine(LineOp.REMOVED, la[i], i, None, spans[i - i1][0] if pair else ())
                  for i in range(i1, i2)]  # fmt: skip
        lines += [DiffLine(LineOp.ADDED, lb[j], None, j, spans[j - j1][1] if pair else ())
                  for j in range(j1, j2)]  # fmt: skip
    added = sum(1 for line in lines if line.op is LineOp.ADDED)
    removed = sum(1 for line in lines if line.op is LineOp.REMOVED)
    return OutputDiff(tuple(lines), added, removed)


# -- history -----------------------------------------------------------------------------------


def replays_of(traces: TraceStore, call_id: str) -> list[TraceRecord]:
    """Return the records made from ``call_id`` (replays and recorded re-pages), oldest first."""
    original = traces.get(call_id)
    siblings = [cid for turn, cid in traces.turns(original.session)
                if turn == original.turn and cid != original.call_id]  # fmt: skip
    children = [r for r in traces.get_many(siblings) if r.parent_call_id == original.call_id]
    return sorted(children, key=lambda r: r.call_id)


def derived_kind(record: TraceRecord) -> str:
    """Return how a record came to be: live, import, replay, or repage (recorded, not sent)."""
    if delivery(record) is Delivery.NOT_SENT:
        return REPAGE_KEY
    return record.origin.value
