"""Replay: re-send a recorded request byte for byte, record what came back, and compare outputs.

Owns: ``replay`` and ``ReplayResult``, ``replays_of`` (a record's replays and re-pages, for the
history) and the output diff of two responses. Sending and recording is
``runtime.tracing.record.send_traced``, the one way a model call becomes a trace record.

Invariants:
- Nothing is sent unless the stored request bytes hash to the recorded prompt hash; a damaged
  or missing request raises ReplayMismatch before any byte leaves and before anything is
  recorded. The client checks the same hash again at the HTTP layer, and the bytes it reports
  sending (``ModelResponse.sent_sha256``) are compared with the recorded hash.
- Every send is recorded, whatever happens: a response, or the error (type, HTTP status, a
  message saying what to do, every attempt) on a NEW record whose parent is the original, in
  the original's session and turn. The original record is never changed.
- A request is only sent through a client of a provider with the record's request format
  (``Provider.request_format``): an OpenAI request to the OpenAI API (or a compatible server),
  a Messages request to Anthropic or the offline model. Anything else, and a request whose
  provider has no client that re-sends it (``Provider.sends_stored_requests``), is refused with
  ``NotReplayable`` before anything is sent or recorded; the message names the way out.
- A record whose model is retired (runtime.profiles.lifecycle) is refused with ``ModelRetired``, to any
  client, before anything is sent or recorded; the message names the re-page for the
  replacement. A deprecated model's warning is on ``ReplayResult.warnings``.
- Output diffs compare what the model said (text, and tool calls by name and input; tool-use
  ids differ from call to call and are left out), line by line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, ReplayMismatch, StoreCorrupted
from runtime.inspect.textdiff import DiffLine, LineOp, char_spans, line_opcodes
from runtime.profiles.lifecycle import check_callable
from runtime.providers import ModelClient, Usage, get_provider
from runtime.providers.pricing import Price
from runtime.replay.fidelity import Fidelity, replay_capability
from runtime.tracing.record import CallBasis, CallOutcome, provider_of, send_traced
from runtime.tracing.records import (
    REPAGE_KEY,
    Delivery,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    TraceStore,
    delivery,
    prompt_hash,
)

REPLAY_KEY = "replay"  # record.config key describing a replay


class NotReplayable(InvalidInput):
    """A record whose request cannot be re-sent as it is (e.g. an OpenAI-format import)."""


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
    def usage(self) -> Usage | None:
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
    check_client_takes(original, client)
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
    capability = replay_capability(record)
    if capability.fidelity is Fidelity.FROM_SPANS:
        raise NotReplayable(
            f"trace {record.call_id} was rebuilt from an OpenTelemetry span: it holds the "
            "messages the span reported, not the bytes that were sent, so there is nothing to "
            "send byte for byte. Re-page it for an Anthropic model with `llm386 repage "
            f"{record.call_id} --model claude-sonnet-4-6 --record`, then replay the new record"
        )
    if not capability.sendable:
        raise NotReplayable(
            f"trace {record.call_id} is a request for {capability.provider_label} "
            f"({record.model}), which llm386 has no client to send. Re-page it for an Anthropic "
            f"model with `llm386 repage {record.call_id} --model claude-sonnet-4-6 --record`, "
            "then replay the new record"
        )


def check_client_takes(record: TraceRecord, client: ModelClient) -> None:
    """Raise NotReplayable unless ``client`` speaks the request format of ``record``."""
    wanted, given = get_provider(record.provider), get_provider(provider_of(client))
    if wanted.request_format != given.request_format:
        raise NotReplayable(
            f"trace {record.call_id} is a request for {wanted.label} ({record.model}); "
            f"{given.label} takes other requests, so nothing was sent. Replay it with "
            f"{wanted.label}: `llm386 replay {record.call_id} --{wanted.name}`"
            + ("" if wanted.takes_packed_requests else
               f"; or re-page it for an Anthropic model with `llm386 repage {record.call_id} "
               "--model claude-sonnet-4-6 --record`, then replay the new record")
        )  # fmt: skip


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
    old_text, new_text = output_text(compared), output_text(record)
    provider = get_provider(record.provider)
    price = provider.price_of(record.model)
    return ReplayResult(
        original=original, record=record, compared_with=compared, bytes_matched=_bytes_matched(outcome, original),
        sent_sha256=sent, original_text=old_text, new_text=new_text,
        output_diff=diff_outputs(old_text, new_text),
        response_identical=record.response_hash is not None
        and record.response_hash == compared.response_hash,
        input_cost_usd=provider.price(record.usage, record.model), price=price,
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


def output_text(record: TraceRecord) -> str:
    """Return what a record's response said: its text, and each tool call as
    ``[tool_use NAME] INPUT`` (read by the record's provider, whatever its format)."""
    if not isinstance(record.response, Mapping):
        return ""
    parts: list[str] = []
    for block in get_provider(record.provider).content(record.response):
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            tool_input = canonical_json(block.get("input", {})).decode()
            parts.append(f"[tool_use {block.get('name')}] {tool_input}")
    return "\n".join(parts)


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
