"""Recording: the one way a model call becomes a trace record (the agent and replay use it).

Owns: ``send_traced`` (send, then record), its two halves ``send_call`` (send, and build the
record unwritten, so the agent can write it in one transaction with the reply's blocks) and
``record_sent``, and ``CallBasis`` / ``CallOutcome`` / ``SentCall``.

Invariants:
- Every send is recorded, whatever happens: a response, or the error (type, HTTP status, a
  message saying what to do, every attempt). Only a client refusing the bytes before sending
  (ReplayMismatch) leaves nothing recorded.
- The record's provider is the client's, and its model is what that provider reads from the
  request (``Provider.model_of``); nothing here knows a provider by name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

from runtime.errors import InvalidInput, ModelCallFailed
from runtime.providers import ModelClient, ModelResponse, get_provider
from runtime.tracing.records import (
    Provider,
    TokenizerInfo,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStore,
    new_record,
    now_ms,
    prompt_hash,
)


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
        """Return the basis of ``record`` (for a replay of it) with ``config`` instead of its.

        The paging goes without its ``proxy`` slot: that says how the proxy made the original
        call (the client's own bytes, kept under its call id; its recall rounds), not this one."""
        paging = {k: v for k, v in record.paging.items() if k != "proxy"}
        return cls(
            record.session, record.turn, record.profile, config, record.task, record.upto_seq,
            record.plan, record.tokenizer, record.estimated_input_tokens, paging,
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


class Lineage(TypedDict, total=False):
    """Where a call comes from: its origin (live unless said) and the call it replays, if any."""

    origin: TraceOrigin
    parent: str | None


def send_traced(
    traces: TraceStore,
    client: ModelClient,
    request: bytes,
    basis: CallBasis,
    **lineage: Unpack[Lineage],
) -> CallOutcome:
    """Send ``request`` through ``client`` and record the call, whether it worked or not.

    Raises ReplayMismatch (nothing sent, nothing recorded) only when the client refuses the
    bytes before sending; every ModelCallFailed is recorded and returned, not raised.
    """
    return record_sent(traces, send_call(client, request, basis, **lineage))


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
    return new_record(
        request, session=basis.session, turn=basis.turn, started_at=started,
        provider=provider_of(client), model=model_of(client, request), origin=origin,
        parent_call_id=parent, latency_ms=latency,
        tokenizer=basis.tokenizer, profile=basis.profile, config=basis.config, task=basis.task,
        upto_seq=basis.upto_seq, plan=basis.plan, paging=basis.paging,
        estimated_input_tokens=basis.estimated_input_tokens,
        response=dict(response.data) if response else None,
        response_hash=response.body_sha256 if response else None,
        usage=response.usage if response else None,
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
    """Return the model a call went to, as the client's provider reads it from the request."""
    return get_provider(provider_of(client)).model_of(request)
