"""A session's timeline: its turns in order, each with status, latency, tokens and sections.

Owns: ``TurnSummary`` (what one model call looks like in a list of calls), ``SessionTimeline``
(one page of a session's turns, replays grouped under the turn they replayed),
``session_timeline``, which builds it from the trace store, and ``timeline_version``, which
says cheaply whether it changed (an open session page polls it to show new turns).

Invariants:
- Turns are listed by turn number; a turn's first record that is not a replay is the turn, and
  the records replaying it are counted with it, so paging by turn never splits a turn.
- Token figures keep their provenance: ``input_tokens`` is the provider's count when the
  response reported usage, else the local estimate, and ``input_estimated`` says which.
- Section figures are the plan's own (what the pager counted when it packed), in canonical
  section order; a plan without section totals is summed from its selected blocks.
- A row's preview (the first line the model wrote, the tools it called) and its list-price
  input cost come from the same head record the row is made of: no further read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidInput
from runtime.inspect.chat import PartKind, read_response
from runtime.inspect.diff import SECTION_ORDER
from runtime.inspect.pagination import Pagination, by_offset
from runtime.providers import Usage, get_provider
from runtime.providers.pricing import Price, output_cost
from runtime.replay.resend import REPAGE_KEY, derived_kind
from runtime.tracing.records import TraceError, TraceOrigin, TraceRecord, TraceStatus, TraceStore


@dataclass(frozen=True)
class SectionTokens:
    section: str
    allocated: int | None
    used: int


@dataclass(frozen=True)
class TurnSummary:
    """One model call as a row of a timeline (or the head of a turn page)."""

    call_id: str
    session: str
    turn: int
    origin: TraceOrigin
    status: TraceStatus
    started_at: int
    latency_ms: float | None
    model: str
    prompt_hash: str
    replay_complete: bool
    input_tokens: int
    input_estimated: bool
    output_tokens: int
    output_estimated: bool
    cache_read_tokens: int
    cache_creation_tokens: int
    estimated_input_tokens: int | None
    flagged: bool
    flag_note: str
    error: TraceError | None
    stop_reason: str | None
    sections: tuple[SectionTokens, ...]
    kind: str  # live | import | replay | repage (recorded, not sent): replay.derived_kind
    attempts: int = 0  # HTTP attempts made (0: nothing reached the HTTP layer)
    replays: int = 0  # records that replayed this turn (sent again; re-pages not counted)
    repages: int = 0  # records re-paging this turn for another model, recorded but not sent
    replay_errors: int = 0  # replays of this turn that failed (listed under it, not in its row)
    provider: str = ""
    preview: str = ""  # the first line of text the model answered with, cut to PREVIEW_CHARS
    tool_calls: tuple[str, ...] = ()  # the tools it called, in order

    @property
    def input_cost_usd(self) -> float | None:
        """The list-price input cost (None: not answered, or no price for the model)."""
        priced = priced_input(self)
        return None if priced is None else priced[0]

    @property
    def cost_usd(self) -> float | None:
        """The list-price cost of the call: input, cache reads and writes, and output (None: not
        answered, or the model or its output has no price)."""
        priced = priced_input(self)
        if priced is None:
            return None
        output = output_cost(Usage(0, self.output_tokens), priced[1])
        return None if output is None else round(priced[0] + output, 8)

    @property
    def failing(self) -> bool:
        return self.flagged

    @property
    def errored(self) -> bool:
        return self.status is TraceStatus.ERROR

    @property
    def sent(self) -> bool:
        """Whether the request reached the HTTP layer: a re-page never does, nor a call that
        failed before its first attempt (no API key, say)."""
        return self.kind != REPAGE_KEY and not (self.errored and self.attempts == 0)

    @property
    def not_sent_reason(self) -> str:
        """Why nothing was sent ("" when something was)."""
        if self.kind == REPAGE_KEY:
            return f"re-paged for {self.model}: recorded so it can be replayed, never sent"
        if not self.sent and self.error is not None:
            return f"failed before sending: {self.error.message}"
        return ""


PREVIEW_CHARS = 160


def priced_input(row: TurnSummary) -> tuple[float, Price] | None:
    """Price a call's input tokens, cache reads and writes at its model's list price.

    None for a call that was not answered (a re-page, never sent; a failed call, which
    reported no usage): pricing its local estimate would show a cost nobody paid.
    """
    if row.errored or row.kind == REPAGE_KEY or not row.provider:
        return None
    provider = get_provider(row.provider)
    price = provider.price_of(row.model)
    read, written = row.cache_read_tokens, row.cache_creation_tokens
    usd = provider.price(Usage(row.input_tokens - read - written, 0, read, written), row.model)
    return None if price is None or usd is None else (usd, price)


def output_preview(response: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    """Return the first non-blank line of a response's text and the names of the tools it called."""
    message = read_response(response)
    if message is None:
        return "", ()
    lines = (line.strip() for p in message.parts if p.kind is PartKind.TEXT
             for line in p.text.splitlines())  # fmt: skip
    first = next((line for line in lines if line), "")
    cut = first if len(first) <= PREVIEW_CHARS else first[: PREVIEW_CHARS - 1] + "…"
    return cut, tuple(p.name for p in message.parts if p.kind is PartKind.TOOL_USE)


def section_tokens(plan: Mapping[str, Any]) -> tuple[SectionTokens, ...]:
    """Return the plan's per-section budget and use, in canonical section order."""
    found: dict[str, SectionTokens] = {}
    raw = plan.get("sections")
    for row in raw if isinstance(raw, list) else ():
        if isinstance(row, Mapping) and row.get("section"):
            name = str(row["section"])
            allocated = row.get("allocated")
            found[name] = SectionTokens(
                name, allocated if isinstance(allocated, int) else None, _int(row.get("used"))
            )
    if not found:
        for item in plan.get("selected") or ():
            if isinstance(item, Mapping):
                name = str(item.get("section") or "")
                old = found.get(name, SectionTokens(name, None, 0))
                found[name] = SectionTokens(name, None, old.used + _int(item.get("tokens")))
    return tuple(sorted(found.values(), key=lambda s: section_rank(s.section)))


def section_rank(name: str) -> tuple[int, str]:
    """Sort key putting sections in canonical order, unknown names after, by name."""
    if name in SECTION_ORDER:
        return (SECTION_ORDER.index(name), name)
    return (len(SECTION_ORDER), name)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summarize_record(
    rec: TraceRecord, replays: int = 0, repages: int = 0, replay_errors: int = 0
) -> TurnSummary:
    """Return the timeline row of one record."""
    usage = rec.usage
    preview, tools = output_preview(rec.response)
    return TurnSummary(
        call_id=rec.call_id, session=rec.session, turn=rec.turn, origin=rec.origin,
        status=rec.status, started_at=rec.started_at, latency_ms=rec.latency_ms, model=rec.model,
        prompt_hash=rec.prompt_hash, replay_complete=rec.replay_complete,
        input_tokens=usage.total_input_tokens if usage else rec.estimated_input_tokens or 0,
        input_estimated=usage is None,
        output_tokens=usage.output_tokens if usage else rec.estimated_output_tokens or 0,
        output_estimated=usage is None,
        cache_read_tokens=usage.cache_read_input_tokens if usage else 0,
        cache_creation_tokens=usage.cache_creation_input_tokens if usage else 0,
        estimated_input_tokens=rec.estimated_input_tokens, flagged=rec.flag is not None,
        flag_note=rec.flag.note if rec.flag else "", error=rec.error, stop_reason=rec.stop_reason,
        sections=section_tokens(rec.plan), kind=derived_kind(rec), attempts=len(rec.attempts),
        replays=replays, repages=repages, replay_errors=replay_errors,
        provider=rec.provider.value, preview=preview, tool_calls=tools,
    )  # fmt: skip


@dataclass(frozen=True)
class SessionTimeline:
    session: str
    rows: tuple[TurnSummary, ...]
    turns: int  # distinct turn numbers in the session (all pages)
    offset: int
    limit: int
    sections: tuple[str, ...]  # every section named on this page, canonical order

    @property
    def max_input(self) -> int:
        return max((row.input_tokens for row in self.rows), default=0)

    @property
    def pagination(self) -> Pagination:
        return by_offset(self.offset, self.limit, self.turns, noun="turns ")


def group_turns(pairs: Sequence[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """Group (turn, call id) pairs by turn number, in turn order, call ids in id order."""
    groups: dict[int, list[str]] = {}
    for turn, call_id in pairs:
        groups.setdefault(turn, []).append(call_id)
    return [(turn, sorted(groups[turn])) for turn in sorted(groups)]


def session_timeline(
    traces: TraceStore, session: str, *, offset: int = 0, limit: int = 50
) -> SessionTimeline:
    """Return turns ``offset`` to ``offset + limit`` of ``session`` (by turn number).

    Reads the session's aggregates, one page of its turn table and the page's head records:
    never the rest of the session."""
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be 0 or more and limit 1 or more")
    total = traces.session_stats([session])[0].turn_numbers
    groups = [g for _, g in traces.turn_groups(session, offset=offset, limit=limit)]
    heads = traces.get_many([g.head for g in groups])
    rows = tuple(summarize_record(rec, g.replays, g.repages, g.replay_errors)
                 for rec, g in zip(heads, groups, strict=True))  # fmt: skip
    names = {s.section for row in rows for s in row.sections}
    sections = tuple(sorted(names, key=section_rank))
    return SessionTimeline(session, rows, total, offset, limit, sections)


def timeline_version(traces: TraceStore, session: str) -> str:
    """Return a token that changes whenever a session's timeline would: a record added (a turn,
    a replay, a re-page), an error, a flag. One read of the session's stored aggregates, so a
    page can poll it every few seconds for nothing."""
    stats = traces.session_stats([session])[0]
    return f"{stats.calls}.{stats.errors}.{stats.flagged}.{stats.repages}"
