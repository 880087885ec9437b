"""How faithfully a record can be replayed: the one answer behind the badge and the replay.

Owns: ``Fidelity``, ``ReplayCapability`` and ``replay_capability``. The turn page's badge and
its title, whether the Replay and the Re-page forms are offered, what the CLI and the page say
a replay promises, and whether ``runtime.replay.resend`` sends or refuses all come from
``replay_capability``, so a badge can never promise what replay then refuses to do.

What replay promises for each fidelity (``ReplayCapability.promise``):
- ``replay-complete`` (our own agent's calls): the stored bytes hash to the prompt hash and
  their provider's client re-sends them (``Provider.sends_stored_requests``); replay sends
  exactly the bytes the model saw, and checks their hash again at the HTTP layer.
- ``captured`` (recorded by ``llm386 proxy``): the stored bytes are exactly what the agent sent;
  replay re-sends them unchanged to the same provider (Anthropic, or OpenAI and the
  OpenAI-compatible servers) and checks the hash again.
- ``rebuilt`` (imported OpenAI-format transcripts, e.g. the tau-bench GPT-4o demo sessions):
  the bytes are the canonical JSON of a Chat Completions request rebuilt from the transcript.
  They show exactly what the transcript says the model was given, but nobody recorded what
  the agent really sent (its key order, parameters the transcript dropped), so a replay to
  OpenAI sends these rebuilt bytes unchanged, hash checked, and promises no more than that.
  A re-page rebuilds the turn from its session's blocks under the pager's budget: for an OpenAI
  model as a Chat Completions request, for a Claude model as a Messages request.
- ``from-spans`` ("from spans: rebuilt"): the request was rebuilt from the messages an
  OpenTelemetry span reported (``runtime.otel``), as the canonical JSON of an OpenAI chat
  request. It was never sent by anyone, so it claims no byte identity and replay refuses it;
  a re-page packs the same session blocks into an Anthropic request that can be sent.
- ``model-retired``: the bytes are intact and sendable, but they name a retired model
  (``runtime.profiles.lifecycle``), which replay refuses before sending; a re-page for its
  replacement makes a request that can be replayed.
- ``not-replayable``: the stored bytes are missing or no longer hash to the prompt hash.

Invariants:
- A record is only replayed through a client whose provider takes its request format
  (``Provider.request_format``): an OpenAI request never goes to Anthropic, nor the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.profiles.lifecycle import ModelStatus, lifecycle_of
from runtime.providers import get_provider
from runtime.tracing.records import TraceOrigin, TraceRecord, from_spans


class Fidelity(StrEnum):
    REPLAY_COMPLETE = "replay-complete"
    CAPTURED = "captured"
    REBUILT = "rebuilt"
    FROM_SPANS = "from-spans"
    MODEL_RETIRED = "model-retired"
    NOT_REPLAYABLE = "not-replayable"


_TITLES = {
    Fidelity.REPLAY_COMPLETE: (
        "The stored request bytes hash to the recorded prompt hash: replay re-sends them byte "
        "for byte to {provider} and checks the hash again."
    ),
    Fidelity.CAPTURED: (
        "Captured by llm386 proxy: the stored bytes are exactly what the agent sent, and hash "
        "to the prompt hash. Replay re-sends them unchanged to the same provider ({provider}) "
        "and checks the hash again."
    ),
    Fidelity.REBUILT: (
        "The stored request was rebuilt from an imported OpenAI-format transcript. Its bytes "
        "hash to the prompt hash, so they show exactly what the transcript says the model was "
        "given, but they are not the bytes the agent sent, which were never recorded. Replay "
        "sends these rebuilt bytes unchanged to {provider} and checks their hash; it cannot "
        "promise the original call's bytes. Re-page it to rebuild it from the session's "
        "blocks under the pager's budget, for an OpenAI model or an Anthropic one."
    ),
    Fidelity.FROM_SPANS: (
        "Rebuilt from an OpenTelemetry span: the request holds the messages, tools and settings "
        "the span reported, written as an OpenAI chat request. It is not the bytes the agent "
        "sent (a span carries messages, not bytes), so replay refuses it. Re-page it for an "
        "Anthropic model to pack the same messages into a request that can be sent, then "
        "replay the new record."
    ),
    Fidelity.MODEL_RETIRED: (
        "The stored request bytes hash to the recorded prompt hash, but they name a model "
        "that is retired: the API no longer serves it, so replay refuses to send them. "
        "Re-page the turn for its replacement, then replay the new record."
    ),
    Fidelity.NOT_REPLAYABLE: (
        "The stored request bytes are missing or do not hash to the prompt hash: replay "
        "refuses to send them. Run `llm386 verify` on the store."
    ),
}
_UNSENDABLE = (
    "The stored bytes hash to the prompt hash, so they show exactly what the model was given, "
    "but llm386 has no client that sends {provider} requests, so replay refuses them; re-page "
    "the turn for an Anthropic model to replay it."
)
_PROMISES = {
    Fidelity.REPLAY_COMPLETE: "the bytes sent are the recorded request, byte for byte",
    Fidelity.CAPTURED: "the bytes sent are exactly what the agent sent through the proxy",
    Fidelity.REBUILT: (
        "the bytes sent are the request rebuilt from the imported transcript (hash checked), "
        "not proven to be what the agent sent"
    ),
    Fidelity.FROM_SPANS: "nothing is sent: a span carries messages, not the bytes sent",
    Fidelity.MODEL_RETIRED: "nothing is sent: the model is retired",
    Fidelity.NOT_REPLAYABLE: "nothing is sent: the stored bytes are missing or damaged",
}


@dataclass(frozen=True)
class ReplayCapability:
    """What replay can do for one record, and how its badge says so."""

    fidelity: Fidelity
    sendable: bool  # its provider's client re-sends its bytes
    retired: bool = False  # it names a retired model (replay refuses; a re-page is offered)
    provider_label: str = "its provider"
    packed_format: bool = True  # in the packer's format (else the page offers a re-page)

    @property
    def label(self) -> str:
        if self.fidelity is Fidelity.FROM_SPANS:
            return "from spans: rebuilt"
        return self.fidelity.value.replace("-", " ").replace("replay complete", "replay-complete")

    @property
    def title(self) -> str:
        """The badge's title: what replay can and cannot do for this record."""
        sends = self.fidelity in _SENDING
        text = _TITLES[self.fidelity] if self.sendable or not sends else _UNSENDABLE
        return text.format(provider=self.provider_label)

    @property
    def promise(self) -> str:
        """What a replay of this record promises about the bytes it sends, in a clause."""
        if self.fidelity in _SENDING and not self.sendable:
            return f"nothing is sent: llm386 cannot send {self.provider_label} requests"
        return _PROMISES[self.fidelity]

    @property
    def can_replay(self) -> bool:
        return self.sendable and self.fidelity in _SENDING

    @property
    def can_repage(self) -> bool:
        """Whether the page offers a re-page (for an Anthropic model, or the replacement)."""
        return self.retired or not self.packed_format or self.fidelity is Fidelity.FROM_SPANS


_SENDING = (Fidelity.REPLAY_COMPLETE, Fidelity.CAPTURED, Fidelity.REBUILT)


def replay_capability(record: TraceRecord) -> ReplayCapability:
    """Return what replay can do for ``record`` (as read from a store: its replay check set)."""
    provider = get_provider(record.provider)
    # A turn rebuilt from a span is never sendable as it stands, whatever its provider says.
    sendable = provider.sends_stored_requests and not from_spans(record)
    retired = lifecycle_of(record.model).status is ModelStatus.RETIRED
    if not record.replay_complete:
        fidelity = Fidelity.NOT_REPLAYABLE
    elif from_spans(record):
        fidelity = Fidelity.FROM_SPANS
    elif retired and sendable:
        fidelity = Fidelity.MODEL_RETIRED
    elif record.origin is TraceOrigin.CAPTURE:
        fidelity = Fidelity.CAPTURED
    elif record.origin is TraceOrigin.IMPORT or not sendable:
        fidelity = Fidelity.REBUILT
    else:
        fidelity = Fidelity.REPLAY_COMPLETE
    return ReplayCapability(
        fidelity, sendable, retired, provider.label, provider.takes_packed_requests
    )
