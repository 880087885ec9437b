"""Eviction: which blocks of a request become one-line placeholders, and the text they become.

Owns: ``EvictionConfig``, the ``EvictionPlan`` value, the staleness rules (age from creation or
from last use, size, errors, duplicates, unused tool schemas), fault-driven pin and backoff
handling, and squeezing a request under a token budget. Placeholder text is in
``placeholders``; what the entries say (calls, ages, last uses) is in ``history``.

Invariants:
- Pure and deterministic: the same entries, config, pins and token counter give the same plan,
  byte for byte. Entries are walked in seq order; every tie breaks on seq.
- Never evicted: system blocks, tool calls (so every tool_use keeps its id and its result),
  error results, the latest user message and the results of the last model call. Pinned blocks
  are evicted only under budget pressure, and only when the request cannot fit with everything
  unpinned paged out and every placeholder tightened (``fit_budget``).
- An evicted tool result stays a tool-result body with the same ``tool_use_id``; only its content
  becomes the placeholder, so tool_use / tool_result pairing holds in every packed request.
- A placeholder depends only on the block (and the call it answers), never on the turn: once
  evicted, a block reads the same in every later request, which keeps the prompt prefix stable.
- A block is only replaced when the replacement costs fewer tokens than the original.
- Content is sent once: a later identical tool output is a duplicate placeholder, and so is a
  ``recall`` result while the block it recalled (pinned by that fault) is sent in full.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property

from runtime.blocks import SHORT_ID_LEN, BlockKind, Entry, ToolResult, check_block_id
from runtime.errors import BudgetTooSmall, ConfigError, InvalidInput
from runtime.paging.history import AgeFrom, AgeUnit, History, call_key, parse_result, schema_name
from runtime.paging.placeholders import (
    RECALL_TOOL_NAME,
    StubStyle,
    duplicate_placeholder,
    message_placeholder,
    recall_tool_json,
    result_placeholder,
    schema_stub,
    size_text,
    tight_duplicate_placeholder,
    tight_placeholder,
)

Counter = Callable[[str], int]
_CONVERSATION = (BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE)


class StubScope(StrEnum):
    """Which tool schemas are replaced by stubs."""

    NONE = "none"
    UNUSED = "unused"  # tools not called so far; a schema returns in full once its tool is used
    # Every tool, for the whole session: the tools array heads the prompt-cache prefix, so
    # un-stubbing a schema on first use rewrites the whole cache. A stub keeps the tool callable;
    # its full schema comes back only when recalled.
    ALL = "all"


class EvictionMode(StrEnum):
    """How a plan is made each turn."""

    PER_TURN = "per-turn"  # recomputed from the rules every turn
    # Cache-aware (``runtime.paging.cacheaware``): a byte-stable prefix, evictions carried over
    # from the previous request, new ones only in batches when pressure crosses high_water.
    CACHE_AWARE = "cache-aware"


class EvictionReason(StrEnum):
    STALE = "stale"  # a tool result older than the age threshold and larger than the size one
    DUPLICATE = "duplicate"  # the same tool output as an earlier block that stays
    UNUSED_SCHEMA = "unused-schema"  # a tool schema stubbed (see StubScope)
    PRESSURE = "pressure"  # paged out only to fit the token budget
    CLEARED = "cleared"  # cleared by a context-editing strategy (``runtime.paging.contextedit``)


@dataclass(frozen=True)
class EvictionConfig:
    """The staleness policy: thresholds, what may be evicted, and how faults back it off."""

    max_age: int = 4  # evict tool results at least this many user turns old ...
    min_bytes: int = 500  # ... whose content is larger than this
    age_unit: AgeUnit = AgeUnit.USER_MESSAGES
    age_from: AgeFrom = AgeFrom.LAST_USE
    evict_stale: bool = True
    dedup: bool = True
    stub_schemas: StubScope = StubScope.ALL
    stub_style: StubStyle = StubStyle.COMPACT
    recall: bool = True  # offer the recall tool; placeholders say how to use it
    pin_user_turns: int | None = None  # a fault pins for this many user turns; None: for good
    pin_forever_after: int = 2  # a block faulted this many times stays pinned for good
    backoff: bool = True  # each fault doubles the block's age threshold
    mode: EvictionMode = EvictionMode.PER_TURN
    high_water: float = 1.0  # CACHE_AWARE: batch-evict when a request passes this share of budget
    cache_read: float = 0.1  # CACHE_AWARE: price of a cached token, as a multiple of input
    cache_write: float = 1.25  # CACHE_AWARE: price of a token written to the cache

    def __post_init__(self) -> None:
        # Enum fields arrive as strings from JSON and TOML; coerce so `is` comparisons hold.
        enums = (
            ("age_unit", AgeUnit), ("age_from", AgeFrom), ("stub_schemas", StubScope),
            ("stub_style", StubStyle), ("mode", EvictionMode),
        )  # fmt: skip
        for name, enum in enums:
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                known = ", ".join(m.value for m in enum)
                raise ConfigError(
                    f"{name} {getattr(self, name)!r} is not one of: {known}"
                ) from None
        if self.max_age < 1 or self.min_bytes < 0 or self.pin_forever_after < 1:
            raise ConfigError(
                f"eviction config needs max_age >= 1, min_bytes >= 0, pin_forever_after >= 1; "
                f"got {self.max_age}, {self.min_bytes}, {self.pin_forever_after}"
            )
        if not (0 < self.high_water <= 1) or not (0 <= self.cache_read < self.cache_write):
            raise ConfigError(
                "eviction config needs 0 < high_water <= 1 and 0 <= cache_read < cache_write; "
                f"got {self.high_water}, {self.cache_read}, {self.cache_write}"
            )
        if self.pin_user_turns is not None and self.pin_user_turns < 1:
            raise ConfigError(f"pin_user_turns must be None or >= 1, not {self.pin_user_turns}")

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EvictionConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eviction config is not valid ({exc}); check its fields") from None


# The age-based policy of the Pichay paper: stale tool results only, re-run to recover.
PAPER_CONFIG = EvictionConfig(
    age_from=AgeFrom.CREATED, dedup=False, stub_schemas=StubScope.NONE, recall=False
)


@dataclass(frozen=True)
class Pins:
    """What fault history protects: pinned block ids and each block's fault count."""

    pinned: frozenset[str] = frozenset()
    faults: Mapping[str, int] = field(default_factory=dict, hash=False)

    def fault_count(self, block_id: str) -> int:
        return self.faults.get(block_id, 0)


@dataclass(frozen=True)
class Eviction:
    """One block replaced in the packed request: why, by what, and what it was."""

    seq: int
    block_id: str
    kind: BlockKind
    reason: EvictionReason
    placeholder: str  # the one line the model sees in place of the content
    body: str  # the block body as packed (for a tool result: its JSON with the placeholder)
    bytes: int  # size of the content that was replaced
    tokens: int  # tokens of that content
    tool_name: str = ""
    call_key: str = ""  # canonical JSON [name, input] of the call a tool result answers
    original_id: str = ""  # for a duplicate: the block that keeps the content

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name != "body"
        }
        data["kind"] = self.kind.value
        data["reason"] = self.reason.value
        return data


@dataclass(frozen=True)
class EvictionPlan:
    """Every eviction of one request, in seq order."""

    evictions: tuple[Eviction, ...] = ()
    recall: bool = False  # whether the request offers the recall tool
    stubs_show_input: bool = True  # a stubbed tool can be called without paging its schema in

    @cached_property
    def _by_seq(self) -> dict[int, Eviction]:
        return {e.seq: e for e in self.evictions}

    def get(self, seq: int) -> Eviction | None:
        return self._by_seq.get(seq)

    def by_reason(self, reason: EvictionReason) -> tuple[Eviction, ...]:
        return tuple(e for e in self.evictions if e.reason is reason)

    @property
    def offers_recall(self) -> bool:
        return self.recall and bool(self.evictions)

    def to_json(self) -> dict[str, object]:
        return {
            "recall": self.offers_recall,
            "stubs_show_input": self.stubs_show_input,
            "evictions": [e.to_json() for e in self.evictions],
        }


@dataclass(frozen=True)
class PagedItem:
    """One entry as it goes into the request: its original entry and the body to send."""

    entry: Entry
    body: str
    eviction: Eviction | None = None


def paged_view(entries: Sequence[Entry], plan: EvictionPlan) -> tuple[PagedItem, ...]:
    """Return the entries with evicted bodies replaced, in the order given."""
    items = []
    for entry in entries:
        ev = plan.get(entry.seq)
        items.append(PagedItem(entry, entry.body if ev is None else ev.body, ev))
    return tuple(items)


def request_tokens(entries: Sequence[Entry], plan: EvictionPlan, count: Counter) -> int:
    """Return the tokens of a request: every packed body, plus the recall tool when offered."""
    total = sum(count(item.body) for item in paged_view(entries, plan))
    return total + (count(recall_tool_json().decode()) if plan.offers_recall else 0)


# -- the policy ----------------------------------------------------------------------------------


def _threshold(block_id: str, config: EvictionConfig, pins: Pins) -> int:
    faults = pins.fault_count(block_id) if config.backoff else 0
    return config.max_age * (2**faults)


def _content_bytes(result: ToolResult) -> int:
    return len(result.content.encode("utf-8"))


def _smaller(ev: Eviction, entry: Entry, count: Counter) -> Eviction | None:
    """Return ``ev`` when its body costs fewer tokens than the entry's, else None."""
    return ev if count(ev.body) < count(entry.body) else None


def _described_result(
    s: History, entry: Entry, result: ToolResult, reason: EvictionReason,
    config: EvictionConfig, count: Counter, original: str = "",
) -> Eviction:  # fmt: skip
    call = s.call_for(entry.seq)
    size = size_text(_content_bytes(result), count(result.content))
    short = entry.block.short_id
    if reason is EvictionReason.DUPLICATE:
        text = duplicate_placeholder(short, original[:SHORT_ID_LEN], call, size)
    else:
        text = result_placeholder(short, call, size, config.recall)
    body = ToolResult(result.call_id, text, result.is_error).body()
    return Eviction(
        entry.seq, entry.id, entry.kind, reason, text, body, _content_bytes(result),
        count(result.content), call.name if call else "", call_key(call) if call else "", original,
    )  # fmt: skip


def _result_eviction(
    s: History, entry: Entry, result: ToolResult, reason: EvictionReason,
    config: EvictionConfig, count: Counter, original: str = "",
) -> Eviction | None:  # fmt: skip
    ev = _described_result(s, entry, result, reason, config, count, original)
    return _smaller(ev, entry, count)


def _groups(s: History, config: EvictionConfig) -> list[list[tuple[Entry, ToolResult]]]:
    """Return tool results in duplicate groups (singletons without dedup), first seq first."""
    groups: dict[tuple[str, str], list[tuple[Entry, ToolResult]]] = {}
    singles: list[list[tuple[Entry, ToolResult]]] = []
    for entry in s.entries:
        result = parse_result(entry)
        if result is None or result.is_error:
            continue
        call = s.call_for(entry.seq)
        big = _content_bytes(result) > config.min_bytes
        if config.dedup and big and call is not None:
            groups.setdefault((call.name, result.content), []).append((entry, result))
        else:
            singles.append([(entry, result)])
    return sorted([*groups.values(), *singles], key=lambda g: g[0][0].seq)


def _result_evictions(
    s: History, config: EvictionConfig, pins: Pins, count: Counter
) -> Iterator[Eviction]:
    ages = s.result_ages(config.age_unit, config.age_from)
    for group in _groups(s, config):
        keeper, result = group[0]
        group_age = min(ages[entry.seq] for entry, _ in group)  # a repeat fetch refreshes it
        stale = (
            config.evict_stale
            and _content_bytes(result) > config.min_bytes
            and group_age >= _threshold(keeper.id, config, pins)
            and keeper.id not in pins.pinned
        )
        if stale:
            ev = _result_eviction(s, keeper, result, EvictionReason.STALE, config, count)
            if ev is not None:
                yield ev
        for entry, dup in group[1:]:
            if entry.id not in pins.pinned:
                ev = _result_eviction(
                    s, entry, dup, EvictionReason.DUPLICATE, config, count, keeper.id
                )
                if ev is not None:
                    yield ev


def _recalled(s: History, entry: Entry, result: ToolResult) -> Entry | None:
    """Return the entry a ``recall`` result copied, when it is in ``s`` with that content."""
    call = s.call_for(entry.seq)
    if call is None or call.name != RECALL_TOOL_NAME or not isinstance(call.input, dict):
        return None
    target = call.input.get("block_id")
    if not isinstance(target, str):
        return None
    try:
        prefix = check_block_id(target)
    except InvalidInput:
        return None
    found = [e for e in s.entries if e.seq < entry.seq and e.id.startswith(prefix)]
    if not found or len({e.id for e in found}) != 1:
        return None
    original = parse_result(found[-1])
    content = found[-1].body if original is None else original.content
    return found[-1] if content == result.content else None


def _recall_evictions(
    s: History, done: Sequence[Eviction], config: EvictionConfig, pins: Pins, count: Counter
) -> Iterator[Eviction]:
    """Replace each recall result by a pointer while the block it recalled is sent in full.

    A recall pins its block, so from the request that serves it the block goes in full at its
    own place; the recall result is then a second copy of the same content in every later
    request. The copy, not the pinned original, becomes the placeholder: the original is what
    pins protect, and it keeps its place (and the prompt prefix up to it) in every request.
    """
    evicted = {e.seq for e in done}
    for entry in s.entries:
        result = parse_result(entry)
        if result is None or result.is_error or entry.seq in evicted or entry.id in pins.pinned:
            continue
        original = _recalled(s, entry, result)
        if original is None or original.seq in evicted:
            continue
        ev = _result_eviction(
            s, entry, result, EvictionReason.DUPLICATE, config, count, original.id
        )
        if ev is not None:
            yield ev


def _schema_evictions(
    s: History, config: EvictionConfig, pins: Pins, count: Counter
) -> Iterator[Eviction]:
    if config.stub_schemas is StubScope.NONE:
        return
    for entry in s.entries:
        if entry.kind is not BlockKind.TOOL_SCHEMA or entry.id in pins.pinned:
            continue
        name = schema_name(entry)
        unused = config.stub_schemas is StubScope.ALL or name not in s.used_tools
        stub = schema_stub(entry, config.stub_style) if name and unused else None
        if stub is None or count(stub[1]) >= count(entry.body):
            continue
        size = len(entry.body.encode("utf-8"))
        yield Eviction(
            entry.seq, entry.id, entry.kind, EvictionReason.UNUSED_SCHEMA, stub[0], stub[1],
            size, count(entry.body), name,
        )  # fmt: skip


def _plan(evictions: Sequence[Eviction], config: EvictionConfig) -> EvictionPlan:
    ordered = tuple(sorted(evictions, key=lambda e: e.seq))
    return EvictionPlan(ordered, config.recall, config.stub_style is not StubStyle.MINIMAL)


def plan_eviction(
    entries: Sequence[Entry],
    config: EvictionConfig,
    count: Counter,
    pins: Pins | None = None,
    budget: int | None = None,
) -> EvictionPlan:
    """Return which entries to replace by placeholders; with ``budget``, fit under it."""
    s = History.of(entries)
    pins = pins or Pins()
    found = [*_schema_evictions(s, config, pins, count), *_result_evictions(s, config, pins, count)]
    found += _recall_evictions(s, found, config, pins, count)
    plan = _plan(found, config)
    return plan if budget is None else fit_budget(s, plan, config, count, pins, budget)


# -- budget pressure ---------------------------------------------------------------------------


class PlanOverBudget(BudgetTooSmall):
    """The request is over its budget even with everything evictable paged out; ``plan`` is the
    smallest plan found, what to send (flagged over budget) when the request must go anyway."""

    def __init__(self, message: str, plan: EvictionPlan) -> None:
        super().__init__(message)
        self.plan = plan


def _pressure_candidates(
    s: History, config: EvictionConfig, pins: Pins, done: Collection[int]
) -> tuple[list[Entry], list[Entry]]:
    """Return what may go under pressure, each in eviction order: (unpinned: results least
    recently used first, then messages; pinned: fewest faults first)."""

    def movable(e: Entry) -> bool:
        if e.seq in done or e.seq == s.latest_user_seq or e.seq >= s.protected_from:
            return False
        if e.kind is BlockKind.TOOL_RESULT:
            result = parse_result(e)
            return result is not None and not result.is_error
        return e.kind in _CONVERSATION

    free = [e for e in s.entries if movable(e) and e.id not in pins.pinned]
    pinned = [e for e in s.entries if movable(e) and e.id in pins.pinned]
    used = s.last_use() if config.age_from is AgeFrom.LAST_USE else {}
    results = [e for e in free if e.kind is BlockKind.TOOL_RESULT]
    results.sort(key=lambda e: (used.get(e.seq, e.seq), e.seq))  # least recently used first
    messages = [e for e in free if e.kind is not BlockKind.TOOL_RESULT]
    pinned.sort(key=lambda e: (pins.fault_count(e.id), e.seq))
    return [*results, *messages], pinned


def _pressure_eviction(
    s: History, entry: Entry, config: EvictionConfig, count: Counter, *, tight: bool = False
) -> Eviction | None:
    """Return the pressure placeholder of ``entry`` (its ``tightened`` line with ``tight``), or
    None when it would not cost fewer tokens than the entry."""
    result = parse_result(entry)
    if result is not None:
        ev = _described_result(s, entry, result, EvictionReason.PRESSURE, config, count)
    else:
        size = size_text(entry.block.size, count(entry.body))
        text = message_placeholder(entry, size, config.recall)
        ev = Eviction(
            entry.seq, entry.id, entry.kind, EvictionReason.PRESSURE, text, text,
            entry.block.size, count(entry.body),
        )  # fmt: skip
    return _smaller(tightened(entry, ev, config, count) if tight else ev, entry, count)


def tightened(entry: Entry, ev: Eviction, config: EvictionConfig, count: Counter) -> Eviction:
    """Return ``ev`` (of ``entry``) with its ``tight_placeholder``; the same eviction when it is
    a schema stub, already tight, or the tight line would not be shorter."""
    if ev.kind is BlockKind.TOOL_SCHEMA:
        return ev
    short = entry.block.short_id
    if ev.reason is EvictionReason.DUPLICATE:
        # The content is in the block above: point there, do not invite a recall of this copy.
        text = tight_duplicate_placeholder(short, ev.original_id[:SHORT_ID_LEN])
    else:
        what = {BlockKind.TOOL_RESULT: "tool result", BlockKind.USER_MESSAGE: "user message"}
        text = tight_placeholder(short, what.get(ev.kind, "assistant message"), config.recall)
    result = parse_result(entry)
    body = text if result is None else ToolResult(result.call_id, text, result.is_error).body()
    if text == ev.placeholder or count(body) >= count(ev.body):
        return ev
    return replace(ev, placeholder=text, body=body)


def pressure_placeholder(
    s: History, entry: Entry, config: EvictionConfig, count: Counter
) -> Eviction | None:
    """Return the placeholder an entry gets under budget pressure, or None when it may not have
    one (not a user/assistant message or a non-error tool result) or it would not be smaller."""
    if entry.kind is BlockKind.TOOL_RESULT:
        result = parse_result(entry)
        if result is None or result.is_error:
            return None
    elif entry.kind not in _CONVERSATION:
        return None
    return _pressure_eviction(s, entry, config, count)


def fit_budget(
    s: History, plan: EvictionPlan, config: EvictionConfig, count: Counter, pins: Pins,
    budget: int,
) -> EvictionPlan:  # fmt: skip
    """Return ``plan`` with pressure placeholders added until the request fits ``budget``.

    Three steps, each only when the one before cannot fit:
    1. unpinned blocks become placeholders, least recently used first, one at a time;
    2. every placeholder is tightened at once (one cache rewrite, and room for the turns after,
       rather than one rewrite a turn), and the blocks whose described placeholder would not be
       shorter than them (short messages and results) get their tight line;
    3. pinned blocks (the model just recalled them) are paged out too, fewest faults first, each
       as its tight line.
    Raise ``PlanOverBudget`` holding the plan of step 3 when even that is over the budget."""
    total = request_tokens(s.entries, plan, count)
    if total <= budget:
        return plan
    evictions = list(plan.evictions)
    recall_cost = count(recall_tool_json().decode()) if config.recall else 0
    free, pinned = _pressure_candidates(s, config, pins, frozenset(e.seq for e in evictions))
    skipped = []
    for entry in free:
        ev = _pressure_eviction(s, entry, config, count)
        if ev is None:
            skipped.append(entry)
            continue
        total -= count(entry.body) - count(ev.body) - (0 if evictions else recall_cost)
        evictions.append(ev)
        if total <= budget:
            return _plan(evictions, config)
    by_seq = {e.seq: e for e in s.entries}
    tight = [tightened(by_seq[ev.seq], ev, config, count) for ev in evictions]
    tight += [ev for e in skipped if (ev := _pressure_eviction(s, e, config, count, tight=True))]
    best = _plan(tight, config)
    total = request_tokens(s.entries, best, count)
    for entry in pinned:
        if total <= budget:
            return best
        ev = _pressure_eviction(s, entry, config, count, tight=True)
        if ev is not None:
            best = _plan([*best.evictions, ev], config)
            total = request_tokens(s.entries, best, count)
    if total <= budget:
        return best
    raise PlanOverBudget(
        f"the request needs {total:,} tokens with everything evictable paged out, over the "
        f"budget of {budget:,}; raise the budget or shorten the system prompt and tool list",
        best,
    )
