"""Re-paging: rebuild the plan and request of a recorded turn from the store as it was then.

Owns: ``repage`` and ``RepageResult``, and turning a record's stored profile and pager settings
back into a ``PageRequest`` (``page_request_for``).

Invariants:
- A re-page reads the session as of the record's ``upto_seq`` with the record's task, profile,
  retriever stack, budgets and options, so for a record this runtime made from a store that
  has not lost blocks since, the rebuilt request is byte-identical: same prompt hash.
- A re-page never sends anything. With ``record=True`` it stores the new request as a trace
  whose parent is the original (same session and turn), marked as re-paged and not yet sent,
  so it can be replayed: that is how a turn moves to another model without new prompt logic.
- The request is written for the chosen profile's provider (``Provider.repage_body``): for
  Anthropic, the packer's Messages bytes unchanged; for OpenAI, a Chat Completions request
  (``runtime.providers.openai.render``) that keeps the recorded request's settings when the turn
  was itself an OpenAI request. The prompt hash is the hash of those exact bytes.
- A plan made with demand paging records the option (policy, fault pins) in its settings; the
  re-page applies the same option, so later faults never change an earlier turn's request.
- Records whose plan carries no pager settings (imports: the original agent sent its full
  history) are re-paged with the given configuration's retrievers and budgets, or the defaults.
- Nothing is re-paged for a retired model (runtime.profiles.lifecycle): naming one, or recording a
  re-page for one, raises ModelRetired before the store is read. Re-paging a retired turn for
  its recorded profile without recording only checks that it still rebuilds, with a warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import __version__
from runtime.config import BudgetFractions, Config, RecencyMode
from runtime.errors import InvalidInput, ModelRetired, NotFound
from runtime.indexes.embeddings import HashingEmbedder
from runtime.inspect.diff import first_divergence
from runtime.packer.core import PackedRequest, pack
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import PagePlan, profile_from_json
from runtime.pager.retrievers import (
    Bm25Retriever,
    EmbeddingRetriever,
    LexicalRetriever,
    PinnedRetriever,
    RecencyRetriever,
    SourceRetriever,
    Weighted,
)
from runtime.paging.demand import page_with_paging, recorded_paging
from runtime.profiles.catalog import ModelProfile, get_profile
from runtime.profiles.lifecycle import check_callable
from runtime.providers import find_provider, get_provider
from runtime.providers.base import PackedTurn
from runtime.replay.resend import REPAGE_KEY
from runtime.storage.interface import BlockStore
from runtime.tracing.records import (
    Provider,
    TokenizerInfo,
    TraceOrigin,
    TraceRecord,
    TraceStore,
    from_spans,
    new_call_id,
    now_ms,
)


@dataclass(frozen=True)
class RepageResult:
    """A rebuilt turn: its plan and request, and how the request compares with the recorded."""

    original: TraceRecord
    profile: ModelProfile
    plan: PagePlan
    packed: PackedRequest  # the plan packed as a Messages request (the packer's render)
    body: bytes  # the request as the profile's provider takes it: what is recorded and sent
    prompt_hash: str  # sha256 hex of ``body``
    same_profile: bool
    hash_matches: bool
    first_divergent_byte: int | None
    explanation: str
    record: TraceRecord | None = None  # the re-paged request, when recorded
    warnings: tuple[str, ...] = ()  # e.g. the model is deprecated (runtime.profiles.lifecycle)

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.original.call_id, "profile": self.profile.name,
            "recorded_profile": self.original.profile.get("name"),
            "same_profile": self.same_profile, "hash_matches": self.hash_matches,
            "recorded_prompt_hash": self.original.prompt_hash,
            "prompt_hash": self.prompt_hash, "request_size": len(self.body),
            "first_divergent_byte": self.first_divergent_byte, "explanation": self.explanation,
            "selected": len(self.plan.selected), "omitted": len(self.plan.omitted),
            "tokens": self.plan.tokens, "budget": self.plan.budget,
            "recorded_call_id": None if self.record is None else self.record.call_id,
            "warnings": list(self.warnings),
        }  # fmt: skip


def repage(
    store: BlockStore,
    traces: TraceStore,
    call_id: str,
    *,
    profile: ModelProfile | str | None = None,
    config: Config | None = None,
    record: bool = False,
) -> RepageResult:
    """Rebuild a recorded turn's request (for ``profile``, else the recorded one) and compare."""
    original = traces.get(call_id)
    chosen = _profile(original, profile, config)
    warnings = _lifecycle_warnings(original, chosen, checking=profile is None and not record)
    request = page_request_for(original, chosen, config)
    try:
        paging = recorded_paging(original.plan.get("settings") or {})
        plan = page(store, request) if paging is None else page_with_paging(store, request, paging)
        packed = pack(store, plan)
    except NotFound as exc:
        raise type(exc)(
            f"cannot re-page trace {original.call_id}: the store no longer holds what that turn "
            f"saw ({exc}); blocks were deleted or the session purged since it was recorded"
        ) from None
    recorded = traces.request_bytes(original.prompt_hash) or b""
    body = _request_body(original, chosen, packed, recorded)
    digest = hashlib.sha256(body).hexdigest()
    same = chosen.to_json() == dict(original.profile)
    matches = digest == original.prompt_hash
    at = None if matches else first_divergence(recorded, body)
    why = _explain(original, chosen, same, at)
    result = RepageResult(
        original, chosen, plan, packed, body, digest, same, matches, at, why, None, warnings
    )
    if record:
        result = _recorded(traces, result)
    return result


def _request_body(
    original: TraceRecord, profile: ModelProfile, packed: PackedRequest, recorded: bytes
) -> bytes:
    """Return the re-page's request bytes in the format of ``profile``'s provider, keeping the
    recorded request's settings when the turn was a request of that same format."""
    target = find_provider(profile.provider)
    if target is None:
        return packed.body  # a custom profile's provider: the packer's own request, unsent
    own = get_provider(original.provider).request_format == target.request_format
    turn = PackedTurn(packed.request, packed.body, recorded if own else None, original.call_id)
    return target.repage_body(turn, profile)


def _lifecycle_warnings(
    original: TraceRecord, chosen: ModelProfile, *, checking: bool
) -> tuple[str, ...]:
    """Raise ModelRetired for a retired target unless the re-page only checks the recorded turn."""
    instead = f"`llm386 repage {original.call_id} --model {{replacement}} --record`"
    try:
        warning = check_callable(
            chosen.name, action=f"re-page trace {original.call_id} for it", instead=instead
        )
    except ModelRetired as exc:
        if not checking:
            raise
        move = f"; to move the turn on, run {instead.format(replacement=exc.replacement)}"
        warning = (
            f"model {chosen.name} is retired: this re-page only checks that the recorded "
            f"request still rebuilds" + (move if exc.replacement else "")
        )
    return (warning,) if warning else ()


def _profile(
    original: TraceRecord, profile: ModelProfile | str | None, config: Config | None
) -> ModelProfile:
    if isinstance(profile, ModelProfile):
        return profile
    if profile is not None:
        return get_profile(profile, config)
    if not original.profile:
        raise InvalidInput(
            f"trace {original.call_id} recorded no model profile ({original.model}); "
            "re-page it for a model: `llm386 repage ID --model claude-sonnet-4-6`"
        )
    return profile_from_json(original.profile)


def page_request_for(
    record: TraceRecord, profile: ModelProfile, config: Config | None = None
) -> PageRequest:
    """Return the page request that made ``record``'s plan, for ``profile``."""
    if record.upto_seq is None:
        raise InvalidInput(
            f"trace {record.call_id} does not say how much of the session existed (upto_seq), "
            "so the session as it was cannot be rebuilt"
        )
    settings = record.plan.get("settings")
    if not isinstance(settings, Mapping):  # an import: no pager ran; use the configuration
        return PageRequest.from_config(
            config or Config.default(), record.session, record.task, profile, upto=record.upto_seq
        )
    return PageRequest(
        session=record.session, task=record.task, profile=profile,
        required=tuple(settings.get("required", ())), pinned=tuple(settings.get("pinned", ())),
        retrievers=stack_from_settings(settings.get("retrievers", ()), record.call_id),
        budgets=BudgetFractions(**dict(settings.get("budgets", {}))),
        options=PageOptions.from_json(settings.get("options", {})), upto=record.upto_seq,
    )  # fmt: skip


def stack_from_settings(
    described: Sequence[Mapping[str, Any]], call_id: str
) -> tuple[Weighted, ...]:
    """Return the retriever stack a plan's settings describe (``Weighted.describe`` output).

    Pinned ids are not part of the description: the page request carries them.
    """
    return tuple(Weighted(_retriever(d, call_id), float(d["weight"])) for d in described)


def _retriever(d: Mapping[str, Any], call_id: str) -> Any:
    name = d.get("name")
    if name == "recency":
        return RecencyRetriever(RecencyMode(d["mode"]), float(d["half_life"]))
    if name == "bm25":
        return Bm25Retriever(float(d["k1"]), float(d["b"]))
    if name == "lexical":
        return LexicalRetriever()
    if name == "pinned":
        return PinnedRetriever()
    if name == "source":
        return SourceRetriever()
    if name == "embedding":
        return EmbeddingRetriever(_embedder(str(d["embedder"]), call_id))
    raise InvalidInput(
        f"trace {call_id} was paged with the retriever {name!r}, which is not built in; "
        "re-page it from code with a PageRequest that adds it in extra_retrievers"
    )


def _embedder(key: str, call_id: str) -> HashingEmbedder:
    embedder = HashingEmbedder(int(key.rpartition("/")[2])) if key.count("/") == 1 else None
    if embedder is None or embedder.key != key:
        raise InvalidInput(
            f"trace {call_id} was paged with the embedder {key!r}; this runtime has "
            f"{HashingEmbedder().key.split('/')[0]} only"
        )
    return embedder


def _explain(original: TraceRecord, profile: ModelProfile, same: bool, at: int | None) -> str:
    if at is None:
        return "the rebuilt request is byte-identical to the recorded one (same prompt hash)"
    recorded = original.profile.get("name", original.model)
    moved = "" if same else f"re-paged for {profile.name} instead of the recorded {recorded}; "
    if from_spans(original):
        return moved + (
            "the recorded request was rebuilt from the messages an OpenTelemetry span "
            f"reported for {original.model} (as an OpenAI chat request, never sent as such), "
            f"while llm386 packs a request for {_label(profile)} from the same session blocks "
            "under the pager's budget, so the bytes differ by design"
        )
    if original.origin in (TraceOrigin.IMPORT, TraceOrigin.CAPTURE):
        how = "was sent by another agent" if original.origin is TraceOrigin.IMPORT else (
            "was sent by the agent through llm386 proxy")  # fmt: skip
        return moved + (
            f"the recorded request is the request {original.model} {how} "
            f"({get_provider(original.provider).label}'s format, its full history), while "
            f"llm386 packs a request for {_label(profile)} from the session's blocks under "
            "the pager's budget, so the bytes differ by design"
        )
    if not same:
        return moved + "a different request is expected"
    version = original.runtime_version or "unknown"
    return (
        f"the rebuilt request differs from byte {at}: blocks before seq {original.upto_seq} "
        "were deleted or changed since (purge, delete), or the pager changed "
        f"(recorded with runtime {version}, this is {__version__})"
    )


def _label(profile: ModelProfile) -> str:
    provider = find_provider(profile.provider)
    return f"{provider.label} ({profile.name})" if provider else profile.name


def _recorded(traces: TraceStore, result: RepageResult) -> RepageResult:
    """Store the re-paged request as a not-yet-sent trace whose parent is the original."""
    profile, original = result.profile, result.original
    provider = find_provider(profile.provider)
    if provider is None or not provider.sends_stored_requests:
        raise InvalidInput(
            f"{profile.name} is a model of {profile.provider}, which llm386 has no client for, "
            "so its re-page could never be replayed; re-page for a claude-* or gpt-* model"
        )
    plan, packed = result.plan, result.packed
    config = {"pager": dict(plan.settings),
              REPAGE_KEY: {"of": original.call_id, "profile": profile.name, "sent": False}}  # fmt: skip
    rec = TraceRecord(
        call_id=new_call_id(), session=original.session, turn=original.turn,
        started_at=now_ms(), provider=Provider(provider.name), model=profile.name,
        prompt_hash=result.prompt_hash, request_size=len(result.body),
        origin=TraceOrigin.REPLAY, parent_call_id=original.call_id,
        runtime_version=__version__,
        tokenizer=TokenizerInfo(profile.tokenizer, plan.tokenizer_version),
        profile=profile.to_json(), config=config, task=plan.task, upto_seq=plan.upto,
        plan=plan.to_json(), estimated_input_tokens=packed.input_tokens,
    )  # fmt: skip
    traces.record(rec, result.body)
    return RepageResult(**{**result.__dict__, "record": traces.get(rec.call_id)})
