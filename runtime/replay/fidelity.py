"""How faithfully a record can be replayed: the one answer behind the badge and the replay.

Owns: ``Fidelity``, ``ReplayCapability`` and ``replay_capability``. The turn page's badge and
its title, whether the Replay or the Re-page form is offered, and whether ``runtime.replay.resend``
sends or refuses all come from ``replay_capability``, so a badge can never promise what replay
then refuses to do.

Invariants:
- ``replay-complete`` only when the stored bytes hash to the prompt hash (re-checked on every
  read: ``TraceRecord.replay_complete``) AND the record's provider has a client that re-sends
  them (``Provider.sends_stored_requests``: the Anthropic API and the offline model do).
- ``rebuilt``: the bytes are intact, but they are the canonical JSON of an OpenAI chat
  request rebuilt from an imported transcript. They show exactly what that model was given;
  replay refuses them, and a re-page turns them into an Anthropic request that can be sent.
- ``model-retired``: the bytes are intact and sendable, but they name a retired model
  (``runtime.profiles.lifecycle``), which replay refuses before sending; a re-page for its replacement
  makes a request that can be replayed.
- ``captured``: the bytes are intact and are exactly what an agent sent through ``llm386
  proxy``. A captured Anthropic request is replayed as is (to the same provider, hash checked);
  a captured OpenAI request shows exactly what the model saw, but llm386 has no OpenAI client
  yet, so it is offered a re-page instead.
- ``not-replayable``: the stored bytes are missing or no longer hash to the prompt hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.profiles.lifecycle import ModelStatus, lifecycle_of
from runtime.providers import get_provider
from runtime.tracing.records import TraceOrigin, TraceRecord


class Fidelity(StrEnum):
    REPLAY_COMPLETE = "replay-complete"
    CAPTURED = "captured"
    REBUILT = "rebuilt"
    MODEL_RETIRED = "model-retired"
    NOT_REPLAYABLE = "not-replayable"


_TITLES = {
    Fidelity.REPLAY_COMPLETE: (
        "The stored request bytes hash to the recorded prompt hash: this call can be replayed "
        "byte for byte."
    ),
    Fidelity.CAPTURED: (
        "Captured by llm386 proxy: the stored bytes are exactly what the agent sent, and hash "
        "to the prompt hash. Replay re-sends them unchanged to the same provider and checks "
        "the hash again."
    ),
    Fidelity.REBUILT: (
        "The stored request was rebuilt from an imported OpenAI-format transcript. Its bytes "
        "hash to the prompt hash, so it shows exactly what the model was given, but replay "
        "cannot send it: it is not an Anthropic request. Re-page it for an Anthropic model, "
        "then replay the new record."
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


_CAPTURED_UNSENDABLE = (
    "Captured by llm386 proxy: the stored bytes are exactly what the agent sent to an "
    "OpenAI-compatible API, and hash to the prompt hash. llm386 cannot send OpenAI requests "
    "yet, so replay refuses them; re-page the turn for an Anthropic model to replay it."
)


@dataclass(frozen=True)
class ReplayCapability:
    """What replay can do for one record, and how its badge says so."""

    fidelity: Fidelity
    sendable: bool  # its provider's client re-sends it (else only a re-page can be sent)
    retired: bool = False  # it names a retired model (replay refuses; a re-page is offered)

    @property
    def label(self) -> str:
        return self.fidelity.value.replace("-", " ").replace("replay complete", "replay-complete")

    @property
    def title(self) -> str:
        """The badge's title: what replay can and cannot do for this record."""
        if self.fidelity is Fidelity.CAPTURED and not self.sendable:
            return _CAPTURED_UNSENDABLE
        return _TITLES[self.fidelity]

    @property
    def can_replay(self) -> bool:
        if self.fidelity is Fidelity.CAPTURED:
            return self.sendable
        return self.fidelity is Fidelity.REPLAY_COMPLETE

    @property
    def can_repage(self) -> bool:
        """Whether the page offers a re-page instead of a replay (the way to a sendable request)."""
        return not self.sendable or self.retired


def replay_capability(record: TraceRecord) -> ReplayCapability:
    """Return what replay can do for ``record`` (as read from a store: its replay check set)."""
    sendable = get_provider(record.provider).sends_stored_requests
    retired = lifecycle_of(record.model).status is ModelStatus.RETIRED
    if not record.replay_complete:
        fidelity = Fidelity.NOT_REPLAYABLE
    elif retired and sendable:
        fidelity = Fidelity.MODEL_RETIRED
    elif record.origin is TraceOrigin.CAPTURE:
        fidelity = Fidelity.CAPTURED
    elif not sendable:
        fidelity = Fidelity.REBUILT
    else:
        fidelity = Fidelity.REPLAY_COMPLETE
    return ReplayCapability(fidelity, sendable, retired)
