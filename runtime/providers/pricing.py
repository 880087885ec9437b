"""Prices: the one dated list-price table, and the one way token counts become dollars.

Owns: ``Price`` (a model's list input price and its prompt-cache multipliers, with its provider,
source and date), ``PRICES``, ``get_price`` / ``find_price``, ``input_cost`` and ``output_cost``
(what one call's reported usage cost), ``call_cost`` (their sum) and ``estimate_cost`` (a run of requests with and without prompt caching,
for the paging accounting and the benchmarks).

Invariants:
- Every figure in the product that says dollars comes from here; nothing else holds a price.
- Prices are list prices, dated and labelled with their source: estimates, not a bill. Pages
  show input cost (what paging changes); ``call_cost`` adds output for the cost of sending.
- A cached token costs ``cache_read`` times the input price, a token written to the cache
  ``cache_write`` times it; usage counts ADD UP (``runtime.providers.usage``), so the uncached
  input is ``input_tokens`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime.errors import UnknownModel
from runtime.providers.usage import Usage

MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """List input price of a model and its prompt-cache multipliers, with where it came from."""

    model: str
    input_usd_per_mtok: float
    cache_read: float  # multiple of the input price paid for a cached token
    cache_write: float  # multiple paid for a token written to the cache
    source: str
    as_of: str
    provider: str = ""  # the runtime.providers name whose API charges it
    output_usd_per_mtok: float | None = None  # None: the output price is not in the table

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_ANTHROPIC = "Anthropic list price, platform.claude.com/docs/en/about-claude/pricing (5m cache)"
_OPENAI = "OpenAI list price for gpt-4o; cached input 50%, no write premium"
PRICES: tuple[Price, ...] = (
    Price("claude-haiku-4-5", 1.00, 0.10, 1.25, _ANTHROPIC, "2026-03", "anthropic", 5.00),
    Price("claude-opus-4-5", 5.00, 0.10, 1.25, _ANTHROPIC, "2026-03", "anthropic", 25.00),
    Price("claude-opus-4-6", 5.00, 0.10, 1.25, _ANTHROPIC, "2026-03", "anthropic", 25.00),
    Price("claude-sonnet-4-5", 3.00, 0.10, 1.25, _ANTHROPIC, "2026-03", "anthropic", 15.00),
    Price("claude-sonnet-4-6", 3.00, 0.10, 1.25, _ANTHROPIC, "2026-03", "anthropic", 15.00),
    Price("gpt-4o", 2.50, 0.50, 1.00, _OPENAI, "2024-08", "openai", 10.00),
)


def find_price(model: str, provider: str | None = None) -> Price | None:
    """Return the price of ``model`` (charged by ``provider``, if given), or None if unpriced."""
    for price in PRICES:
        if price.model == model and provider in (None, price.provider):
            return price
    return None


def get_price(model: str) -> Price:
    """Return the price of ``model`` from the table, or raise UnknownModel."""
    price = find_price(model)
    if price is None:
        known = ", ".join(p.model for p in PRICES)
        raise UnknownModel(f"no price for {model!r}; priced models: {known} (or pass a Price)")
    return price


def input_cost(usage: Usage | None, price: Price | None) -> float | None:
    """Return the list-price input cost in USD of reported usage (output is not priced)."""
    if usage is None or price is None:
        return None
    weighted = (
        usage.input_tokens
        + usage.cache_read_input_tokens * price.cache_read
        + usage.cache_creation_input_tokens * price.cache_write
    )
    return round(weighted * price.input_usd_per_mtok / MTOK, 8)


def output_cost(usage: Usage | None, price: Price | None) -> float | None:
    """Return the list-price output cost in USD of reported usage, or None when the model, or
    its output, is not priced."""
    if usage is None or price is None or price.output_usd_per_mtok is None:
        return None
    return round(usage.output_tokens * price.output_usd_per_mtok / MTOK, 8)


def call_cost(usage: Usage | None, price: Price | None) -> float | None:
    """Return the list-price cost in USD of a call's input and output, or None when the model,
    or its output, is not priced."""
    cost, output = input_cost(usage, price), output_cost(usage, price)
    if cost is None or output is None:
        return None
    return round(cost + output, 8)


@dataclass(frozen=True)
class CostEstimate:
    """Estimated input cost in USD without and with prompt caching."""

    uncached_usd: float
    cached_usd: float

    def to_json(self) -> dict[str, object]:
        return {
            "uncached_usd": round(self.uncached_usd, 6),
            "cached_usd": round(self.cached_usd, 6),
        }


def estimate_cost(turns: Sequence[tuple[int, int]], price: Price) -> CostEstimate:
    """Return the cost of requests given as (tokens, tokens read from cache) pairs, in order."""
    per_token = price.input_usd_per_mtok / MTOK
    uncached = sum(tokens for tokens, _ in turns) * per_token
    cached = sum(
        (read * price.cache_read + (tokens - read) * price.cache_write) for tokens, read in turns
    )
    return CostEstimate(uncached, cached * per_token)
