"""A page plan: every candidate block the pager considered, what it decided, and why.

Owns: ``SelectionReason`` and ``OmissionReason``, ``Candidate``, ``Selection``, ``Omission``,
``SectionUsage`` and ``PagePlan`` with its JSON form (read by the tracer, the web app and
``from_json``).

Invariants:
- Every candidate appears exactly once, either in ``selected`` or in ``omitted``.
- ``selected`` is in render order (section rank, then seq, then block id; blocks from outside
  the session after the session's own); ``omitted`` is by section rank, then score descending,
  then seq descending, then block id. Both orders are total, so equal plans are equal JSON.
- ``to_json`` then ``from_json`` gives an equal plan.

Reasons a block is selected:
    required            the request named it
    pinned              labelled "pinned" or pinned by the request
    standing            session-wide content taken whatever the task: system prompts, tool
                        schemas, the newest state and the newest plan
    relevance           chosen by score, mostly from relevance retrievers (BM25, lexical,
                        embedding, neighbours, custom)
    recency             chosen by score, mostly from the recency retriever
    dependency          pulled in by a parent or supports edge of a selected block
    tool-pair           the tool call or result that must travel with a selected partner
    summary-substitute  a summary packed in place of blocks it was derived from
    global-fact         a block from outside the session, found by a retriever
    room-freed          demand paging: packed in full in room that placeholders freed
    placeholder         demand paging: it did not fit in full, so a one-line placeholder
                        stands for it (``stand_in``) rather than dropping it
A selected block may carry a ``stand_in`` (demand paging, ``runtime.paging.demand``): the body packed
instead of its own (a placeholder, a duplicate note, a tool-schema stub), why, and what the
block costs in full; the candidate's ``tokens`` are then the stand-in's.
Reasons a block is omitted:
    section-budget      its section was full (and unused budget could not flow to it)
    global-budget       the prompt was full (every section's unused budget included)
    below-threshold     its score was under the request's threshold
    duplicate           the same text is already selected
    replaced-by-summary a summary derived from it was packed instead
    evicted             removed by a later policy (demand paging); the pager itself never
                        evicts
    unpaired            a tool call without its result, or the reverse, in this session
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.blocks import BlockKind
from runtime.packer.rendering import RenderMode
from runtime.pager.sections import Section
from runtime.profiles.catalog import ModelProfile

PLAN_VERSION = 1


class SelectionReason(StrEnum):
    REQUIRED = "required"
    PINNED = "pinned"
    STANDING = "standing"
    RELEVANCE = "relevance"
    RECENCY = "recency"
    DEPENDENCY = "dependency"
    TOOL_PAIR = "tool-pair"
    SUMMARY_SUBSTITUTE = "summary-substitute"
    GLOBAL_FACT = "global-fact"
    ROOM_FREED = "room-freed"
    PLACEHOLDER = "placeholder"


class OmissionReason(StrEnum):
    SECTION_BUDGET = "section-budget"
    GLOBAL_BUDGET = "global-budget"
    BELOW_THRESHOLD = "below-threshold"
    DUPLICATE = "duplicate"
    REPLACED_BY_SUMMARY = "replaced-by-summary"
    EVICTED = "evicted"
    UNPAIRED = "unpaired"


@dataclass(frozen=True)
class Candidate:
    """A block the pager considered, with its cost and scores (``seq`` None: not in session)."""

    block_id: str
    seq: int | None
    kind: BlockKind
    section: Section
    tokens: int
    priority: float
    score: float
    scores: tuple[tuple[str, float], ...]  # (retriever, normalised score), by retriever name

    def to_json(self) -> dict[str, Any]:
        return {
            "block_id": self.block_id,
            "seq": self.seq,
            "kind": self.kind.value,
            "section": self.section.value,
            "tokens": self.tokens,
            "priority": self.priority,
            "score": self.score,
            "scores": dict(self.scores),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(
            block_id=str(data["block_id"]),
            seq=None if data.get("seq") is None else int(data["seq"]),
            kind=BlockKind.parse(data["kind"]),
            section=Section.parse(data["section"]),
            tokens=int(data["tokens"]),
            priority=float(data["priority"]),
            score=float(data["score"]),
            scores=tuple(sorted((str(k), float(v)) for k, v in data["scores"].items())),
        )


@dataclass(frozen=True)
class StandIn:
    """What is packed instead of a block's body, and why (an ``eviction.EvictionReason``)."""

    reason: str  # stale | duplicate | unused-schema | pressure
    body: str  # the body sent: a tool result keeps its tool_use_id, a stub is a tool definition
    text: str  # the one line the model reads (the placeholder or the stub's note)
    full_tokens: int  # what the block costs in full, under the plan's render mode

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason, "body": self.body, "text": self.text,
            "full_tokens": self.full_tokens,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StandIn:
        return cls(str(data["reason"]), str(data["body"]), str(data["text"]),
                   int(data["full_tokens"]))  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """A candidate that is packed; ``via`` names the block that brought it in, if any."""

    candidate: Candidate
    reason: SelectionReason
    via: str | None = None
    stand_in: StandIn | None = None  # packed as a placeholder or stub (demand paging)

    def to_json(self) -> dict[str, Any]:
        data = {**self.candidate.to_json(), "reason": self.reason.value, "via": self.via}
        if self.stand_in is not None:  # absent otherwise, so plans without paging keep their JSON
            data["stand_in"] = self.stand_in.to_json()
        return data


@dataclass(frozen=True)
class Omission:
    """A candidate left out; ``via`` names the summary or duplicate that made it redundant."""

    candidate: Candidate
    reason: OmissionReason
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.candidate.to_json(), "reason": self.reason.value, "via": self.via}


@dataclass(frozen=True)
class SectionUsage:
    """Tokens a section was allocated (None for the fixed System and Task) and used."""

    section: Section
    allocated: int | None
    used: int

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section.value, "allocated": self.allocated, "used": self.used}


def selection_key(s: Selection) -> tuple[int, int, int, str]:
    c = s.candidate
    return (c.section.rank, c.seq is None, -1 if c.seq is None else c.seq, c.block_id)


def omission_key(o: Omission) -> tuple[int, float, int, str]:
    c = o.candidate
    return (c.section.rank, -c.score, -(-1 if c.seq is None else c.seq), c.block_id)


@dataclass(frozen=True)
class PagePlan:
    """What one page decided: the request it answered, every decision, and the token budget."""

    session: str
    task: str
    upto: int
    profile: ModelProfile
    tokenizer_version: str
    render: RenderMode
    selected: tuple[Selection, ...]
    omitted: tuple[Omission, ...]
    sections: tuple[SectionUsage, ...]
    budget: int  # the profile's input budget
    tokens: int  # planned prompt tokens under ``render``: framing, headers and blocks
    settings: Mapping[str, Any]  # the retriever stack, budgets and options (JSON-ready)
    recall: bool = False  # demand paging: the request offers the recall tool
    # Blocks of the session scored but past the selection horizon: all omitted, counted here
    # and listed on demand (``every_omission``), so a plan's size does not grow with the session.
    unlisted: int = 0
    beyond: Any = field(default=None, compare=False, repr=False)

    def every_omission(self) -> tuple[Omission, ...]:
        """Return ``omitted`` and the unlisted omissions, in ``omitted``'s order (the latter are
        made from the page's arrays now; a plan read back from JSON has only the count)."""
        if self.beyond is None:
            return self.omitted
        return tuple(sorted((*self.omitted, *self.beyond.omissions()), key=omission_key))

    @property
    def stand_ins(self) -> tuple[Selection, ...]:
        """Return the selections packed as placeholders or stubs."""
        return tuple(s for s in self.selected if s.stand_in is not None)

    @property
    def selected_ids(self) -> tuple[str, ...]:
        return tuple(s.candidate.block_id for s in self.selected)

    def usage(self, section: Section) -> SectionUsage:
        """Return the usage line of ``section``."""
        for line in self.sections:
            if line.section is section:
                return line
        return SectionUsage(section, None, 0)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (the shape the tracer stores)."""
        data = {
            "version": PLAN_VERSION,
            "session": self.session,
            "task": self.task,
            "upto": self.upto,
            "profile": self.profile.to_json(),
            "tokenizer": {"name": self.profile.tokenizer, "version": self.tokenizer_version},
            "tokens_estimated": self.profile.tokens_estimated,
            "render": self.render.value,
            "selected": [s.to_json() for s in self.selected],
            "omitted": [o.to_json() for o in self.omitted],
            "sections": [u.to_json() for u in self.sections],
            "budget": self.budget,
            "tokens": self.tokens,
            "settings": dict(self.settings),
        }
        if self.recall:  # absent otherwise, so plans without paging keep their JSON
            data["recall"] = True
        if self.unlisted:  # absent otherwise, so plans of small sessions keep their JSON
            data["unlisted"] = self.unlisted
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PagePlan:
        """Rebuild a plan from ``to_json`` output."""
        return cls(
            session=str(data["session"]),
            task=str(data["task"]),
            upto=int(data["upto"]),
            profile=profile_from_json(data["profile"]),
            tokenizer_version=str(data["tokenizer"]["version"]),
            render=RenderMode(data["render"]),
            selected=tuple(_selection(d) for d in data["selected"]),
            omitted=tuple(_omission(d) for d in data["omitted"]),
            sections=tuple(_usage(d) for d in data["sections"]),
            budget=int(data["budget"]),
            tokens=int(data["tokens"]),
            settings=dict(data["settings"]),
            recall=bool(data.get("recall", False)),
            unlisted=int(data.get("unlisted", 0)),
        )


def profile_from_json(data: Mapping[str, Any]) -> ModelProfile:
    """Rebuild a ``ModelProfile`` from its ``to_json`` form."""
    fields = {k: v for k, v in data.items() if k != "input_budget"}
    return ModelProfile(**fields)


def _selection(data: Mapping[str, Any]) -> Selection:
    via, stand_in = data.get("via"), data.get("stand_in")
    found = None if stand_in is None else StandIn.from_json(stand_in)
    return Selection(Candidate.from_json(data), SelectionReason(data["reason"]), via, found)


def _omission(data: Mapping[str, Any]) -> Omission:
    via = data.get("via")
    return Omission(Candidate.from_json(data), OmissionReason(data["reason"]), via)


def _usage(data: Mapping[str, Any]) -> SectionUsage:
    allocated = data.get("allocated")
    section = Section.parse(data["section"])
    return SectionUsage(section, None if allocated is None else int(allocated), int(data["used"]))
