"""Structural-waste accounting: tokens by category per turn, savings, faults and estimated cost.

Owns: ``TokenCategory``, the request item model used for counting and prompt-cache prefixes,
``TurnAccounting`` / ``SessionAccounting`` (what the tracer stores in its paging slot and the
web shows), with the session's cost with and without prompt caching priced by
``runtime.providers.pricing`` (the one price table).

Invariants:
- A request's tokens are the sum of its items' tokens: each packed block body (a placeholder or
  stub when evicted) and the recall tool definition when offered, counted with one tokenizer.
  Message framing and the provider's tool encoding are not included, so the totals are
  estimates of input tokens, labelled as such wherever shown.
- Categories partition the items: for both the full-history request and the packed one, the
  per-category sums add up to the totals exactly. A block's category says what it is (stale,
  duplicate, unused schema ... under the waste rules), not whether this policy evicted it.
- The cost model assumes one cache breakpoint at the end of every request and no expiry between
  turns: a turn reads from cache the item prefix it shares with the previous turn's request
  (tools, then system, then messages) and writes the rest. Prices are per profile, dated, and
  labelled with their source; they are estimates of list prices, not a bill.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runtime.blocks import BlockKind, Entry
from runtime.errors import InvalidInput
from runtime.paging.eviction import Counter, EvictionPlan, EvictionReason
from runtime.paging.history import History, schema_name
from runtime.paging.placeholders import recall_tool_json
from runtime.providers.pricing import CostEstimate, Price, estimate_cost
from runtime.tokenizers import Tokenizer

_RETRIEVED_KINDS = (
    BlockKind.FACT, BlockKind.DOCUMENT_CHUNK, BlockKind.SUMMARY, BlockKind.PLAN, BlockKind.STATE,
    BlockKind.EVENT,
)  # fmt: skip


class TokenCategory(StrEnum):
    SYSTEM = "system"
    TOOL_SCHEMAS = "tool-schemas"  # tools called so far in the session
    UNUSED_TOOL_SCHEMAS = "unused-tool-schemas"  # tools not called so far
    STALE_TOOL_RESULTS = "stale-tool-results"
    DUPLICATES = "duplicates"
    CONVERSATION = "conversation"  # user and assistant messages, tool calls, live results
    RETRIEVED = "retrieved"  # facts, document chunks, summaries ... the pager retrieved
    PAGING = "paging"  # the recall tool definition


class TokenCounter:
    """Counts tokens with one tokenizer, remembering the count of each distinct text."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self._counts: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        n = self._counts.get(text)
        if n is None:
            n = self._counts[text] = self.tokenizer.count(text)
        return n


@dataclass(frozen=True)
class RequestItem:
    """One counted piece of a request, in prompt-cache order."""

    seq: int  # the entry's seq; -1 for the recall tool
    key: str  # SHA-256 of the packed body: same key at same position = same cached prefix
    tokens: int
    category: TokenCategory
    evicted: bool = False


def categorize(entries: Sequence[Entry], waste: EvictionPlan) -> dict[int, TokenCategory]:
    """Return each entry's category; ``waste`` is the plan of the waste rules (no budget)."""
    used = History.of(entries).used_tools
    cats: dict[int, TokenCategory] = {}
    for e in entries:
        ev = waste.get(e.seq)
        if e.kind is BlockKind.SYSTEM:
            cats[e.seq] = TokenCategory.SYSTEM
        elif e.kind is BlockKind.TOOL_SCHEMA:
            unused = schema_name(e) not in used
            cats[e.seq] = (
                TokenCategory.UNUSED_TOOL_SCHEMAS if unused else TokenCategory.TOOL_SCHEMAS
            )
        elif ev is not None and ev.reason is EvictionReason.STALE:
            cats[e.seq] = TokenCategory.STALE_TOOL_RESULTS
        elif ev is not None and ev.reason is EvictionReason.DUPLICATE:
            cats[e.seq] = TokenCategory.DUPLICATES
        elif e.kind in _RETRIEVED_KINDS:
            cats[e.seq] = TokenCategory.RETRIEVED
        else:
            cats[e.seq] = TokenCategory.CONVERSATION
    return cats


def _key(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def request_items(
    entries: Sequence[Entry],
    plan: EvictionPlan,
    categories: Mapping[int, TokenCategory],
    count: Counter,
) -> tuple[RequestItem, ...]:
    """Return the items of a packed request in cache order: tools, recall, system, messages."""
    items: dict[str, list[RequestItem]] = {"tools": [], "system": [], "rest": []}
    for e in sorted(entries, key=lambda e: e.seq):
        ev = plan.get(e.seq)
        body = e.body if ev is None else ev.body
        item = RequestItem(e.seq, _key(body), count(body), categories[e.seq], ev is not None)
        group = {BlockKind.TOOL_SCHEMA: "tools", BlockKind.SYSTEM: "system"}.get(e.kind, "rest")
        items[group].append(item)
    if plan.offers_recall:
        body = recall_tool_json().decode()
        items["tools"].append(RequestItem(-1, _key(body), count(body), TokenCategory.PAGING))
    return (*items["tools"], *items["system"], *items["rest"])


def common_prefix_tokens(previous: Sequence[RequestItem], current: Sequence[RequestItem]) -> int:
    """Return the tokens of the item prefix two requests share (what a cache could serve)."""
    total = 0
    for a, b in zip(previous, current, strict=False):
        if a.key != b.key:
            break
        total += b.tokens
    return total


@dataclass(frozen=True)
class CategoryTokens:
    category: TokenCategory
    full: int  # in the full-history request
    packed: int  # in the packed request (placeholders and stubs for what was evicted)

    @property
    def saved(self) -> int:
        return self.full - self.packed

    def to_json(self) -> dict[str, object]:
        return {"category": self.category.value, "full": self.full, "packed": self.packed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CategoryTokens:
        return cls(TokenCategory(data["category"]), int(data["full"]), int(data["packed"]))


def _sum_categories(
    full: Sequence[RequestItem], packed: Sequence[RequestItem]
) -> tuple[CategoryTokens, ...]:
    sums = {c: [0, 0] for c in TokenCategory}
    for item in full:
        sums[item.category][0] += item.tokens
    for item in packed:
        sums[item.category][1] += item.tokens
    return tuple(CategoryTokens(c, f, p) for c, (f, p) in sums.items())


class _CategorySums:
    """Full and packed input tokens summed over ``categories`` (a turn's, or a session's)."""

    categories: tuple[CategoryTokens, ...]

    @property
    def full_tokens(self) -> int:
        return sum(c.full for c in self.categories)

    @property
    def packed_tokens(self) -> int:
        return sum(c.packed for c in self.categories)


@dataclass(frozen=True)
class TurnAccounting(_CategorySums):
    """One model call: tokens by category, full history against packed, cache reuse, faults."""

    turn: int
    categories: tuple[CategoryTokens, ...]
    evictions: int
    faults: int = 0
    refaults: int = 0
    cached_full: int = 0  # prefix tokens shared with the previous full-history request
    cached_packed: int = 0  # prefix tokens shared with the previous packed request

    @property
    def saved_tokens(self) -> int:
        return self.full_tokens - self.packed_tokens

    def to_json(self) -> dict[str, object]:
        return {
            "turn": self.turn,
            "categories": [c.to_json() for c in self.categories],
            "full_tokens": self.full_tokens,
            "packed_tokens": self.packed_tokens,
            "saved_tokens": self.saved_tokens,
            "evictions": self.evictions,
            "faults": self.faults,
            "refaults": self.refaults,
            "cached_full": self.cached_full,
            "cached_packed": self.cached_packed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TurnAccounting:
        """Read ``to_json`` data back (as a trace's paging slot holds it)."""
        try:
            return cls(
                int(data["turn"]),
                tuple(CategoryTokens.from_json(c) for c in data["categories"]),
                int(data["evictions"]), int(data.get("faults", 0)), int(data.get("refaults", 0)),
                int(data.get("cached_full", 0)), int(data.get("cached_packed", 0)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"turn accounting data is not valid ({exc})") from None


def account_turn(
    turn: int,
    full: Sequence[RequestItem],
    packed: Sequence[RequestItem],
    *,
    previous_full: Sequence[RequestItem] = (),
    previous_packed: Sequence[RequestItem] = (),
    faults: int = 0,
    refaults: int = 0,
) -> TurnAccounting:
    """Return one turn's accounting from the full and packed requests (and the turn before)."""
    return TurnAccounting(
        turn,
        _sum_categories(full, packed),
        sum(1 for item in packed if item.evicted),
        faults,
        refaults,
        common_prefix_tokens(previous_full, full),
        common_prefix_tokens(previous_packed, packed),
    )


@dataclass(frozen=True)
class SessionAccounting(_CategorySums):
    """A session's totals: cumulative tokens against full history, peaks, faults, cost."""

    session: str
    turns: int
    categories: tuple[CategoryTokens, ...]  # cumulative over turns
    peak_full: int
    peak_packed: int
    evictions: int
    faults: int
    refaults: int
    full_cost: CostEstimate
    packed_cost: CostEstimate
    price: Price

    @property
    def reduction(self) -> float:
        """Return the share of cumulative input tokens saved against full history (0..1)."""
        return 1 - self.packed_tokens / self.full_tokens if self.full_tokens else 0.0

    @classmethod
    def of(cls, session: str, turns: Sequence[TurnAccounting], price: Price) -> SessionAccounting:
        sums = {c: [0, 0] for c in TokenCategory}
        for t in turns:
            for c in t.categories:
                sums[c.category][0] += c.full
                sums[c.category][1] += c.packed
        return cls(
            session, len(turns), tuple(CategoryTokens(c, f, p) for c, (f, p) in sums.items()),
            max((t.full_tokens for t in turns), default=0),
            max((t.packed_tokens for t in turns), default=0),
            sum(t.evictions for t in turns), sum(t.faults for t in turns),
            sum(t.refaults for t in turns),
            estimate_cost([(t.full_tokens, t.cached_full) for t in turns], price),
            estimate_cost([(t.packed_tokens, t.cached_packed) for t in turns], price),
            price,
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "session": self.session,
            "turns": self.turns,
            "categories": [c.to_json() for c in self.categories],
            "full_tokens": self.full_tokens,
            "packed_tokens": self.packed_tokens,
            "reduction": round(self.reduction, 6),
            "peak_full": self.peak_full,
            "peak_packed": self.peak_packed,
            "evictions": self.evictions,
            "faults": self.faults,
            "refaults": self.refaults,
            "full_cost": self.full_cost.to_json(),
            "packed_cost": self.packed_cost.to_json(),
            "price": self.price.to_json(),
        }
