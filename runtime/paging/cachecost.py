"""Prompt-cache pricing: what a run of requests costs with the provider's caching rules.

Owns: ``CacheRules`` (a provider's caching rules for one model family, dated and sourced),
``RULES`` / ``cache_rules``, ``PricedRequest`` and ``CacheLedger``, which prices each request
against the cache the earlier requests of the session left behind.

The rules modelled (sources and dates in ``RULES``):

- Anthropic: the request carries up to 4 ``cache_control`` breakpoints. At each breakpoint the
  prefix up to it is written to the cache (when at least the model family's minimum cacheable
  length); a cache entry lives 5 minutes and every read refreshes it. The read is the longest
  prefix that ends at a block boundary within 20 blocks before a breakpoint and was written
  earlier: cache-read tokens cost 0.1x input, the tokens from there up to the last breakpoint
  are written at 1.25x, the rest is plain input.
- OpenAI: no breakpoints; every request of at least 1,024 tokens is cached automatically. A
  request reads the longest prefix it shares with a cached request, counted in 1,024 tokens
  plus whole 128-token increments; cached tokens cost the cached-input price (no write premium).

Invariants:
- Pure accounting: a ledger's figures depend only on the requests fed to it, in order.
- Prefixes are compared at block granularity (one ``RequestItem`` is one content block): a prefix
  that shares part of a block is not counted as cached, so cache reads are a lower bound.
- Token counts are the items' counts (no message framing), so dollars are estimates of list
  prices, like every figure of ``runtime.providers.pricing``, whose table gives the prices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from runtime.errors import ConfigError, UnknownModel
from runtime.paging.accounting import RequestItem, TokenCategory
from runtime.providers.pricing import MTOK, Price, get_price


class CacheStyle(StrEnum):
    BREAKPOINTS = "breakpoints"  # Anthropic: explicit cache_control breakpoints
    AUTOMATIC = "automatic"  # OpenAI: automatic prefix caching


@dataclass(frozen=True)
class CacheRules:
    """One provider's prompt-cache rules for a model family, with where they came from."""

    family: str  # model-name prefix the rules apply to
    style: CacheStyle
    min_cacheable: int  # tokens a prefix needs to be cached
    ttl_seconds: float  # a cache entry lives this long after its last write or read
    max_breakpoints: int = 0  # BREAKPOINTS: cache_control markers allowed per request
    lookback_blocks: int = 0  # BREAKPOINTS: block boundaries checked before each breakpoint
    increment: int = 0  # AUTOMATIC: cached tokens come in these steps beyond min_cacheable
    source: str = ""
    as_of: str = ""

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


_ANTHROPIC_DOC = (
    "Anthropic prompt caching docs, docs.anthropic.com/en/docs/build-with-claude/prompt-caching"
)
_OPENAI_DOC = "OpenAI prompt caching guide, platform.openai.com/docs/guides/prompt-caching"
_A = {"style": CacheStyle.BREAKPOINTS, "ttl_seconds": 300.0, "max_breakpoints": 4,
      "lookback_blocks": 20, "source": _ANTHROPIC_DOC, "as_of": "2025-10"}  # fmt: skip
RULES: tuple[CacheRules, ...] = (
    CacheRules("claude-opus-4-5", min_cacheable=4096, **_A),  # type: ignore[arg-type]
    CacheRules("claude-haiku-4-5", min_cacheable=4096, **_A),  # type: ignore[arg-type]
    CacheRules("claude-haiku", min_cacheable=2048, **_A),  # type: ignore[arg-type]
    CacheRules("claude-", min_cacheable=1024, **_A),  # type: ignore[arg-type]  # Sonnet, Opus 4.x
    CacheRules(
        "gpt-",
        CacheStyle.AUTOMATIC,
        1024,
        300.0,
        increment=128,
        source=_OPENAI_DOC,
        as_of="2025-10",
    ),  # fmt: skip
)


STABLE_CATEGORIES = (
    TokenCategory.TOOL_SCHEMAS, TokenCategory.UNUSED_TOOL_SCHEMAS, TokenCategory.PAGING,
    TokenCategory.SYSTEM,
)  # fmt: skip


def cache_rules(model: str) -> CacheRules:
    """Return the caching rules of ``model`` (the first family its name starts with)."""
    for rules in RULES:
        if model.startswith(rules.family):
            return rules
    families = ", ".join(r.family for r in RULES)
    raise UnknownModel(f"no prompt-cache rules for {model!r}; known families: {families}")


def prefix_keys(items: Sequence[RequestItem]) -> tuple[str, ...]:
    """Return a key per prefix: ``keys[i]`` identifies ``items[: i + 1]`` byte for byte."""
    out, h = [], hashlib.sha256()
    for item in items:
        h.update(item.key.encode("ascii"))
        out.append(h.copy().hexdigest())
    return tuple(out)


def default_breakpoints(items: Sequence[RequestItem]) -> tuple[int, ...]:
    """Return the breakpoints a well-configured agent sets: after the tools and system prompt,
    and after the last block. A breakpoint is the number of items before the marker."""
    stable = sum(1 for i in items if i.category in STABLE_CATEGORIES)
    return tuple(sorted({b for b in (stable, len(items)) if b > 0}))


@dataclass(frozen=True)
class PricedRequest:
    """One request's input tokens split the way the provider bills them."""

    tokens: int
    cache_read: int
    cache_write: int

    @property
    def plain(self) -> int:
        return self.tokens - self.cache_read - self.cache_write

    def usd(self, price: Price) -> float:
        weighted = (
            self.plain + self.cache_read * price.cache_read + self.cache_write * price.cache_write
        )
        return weighted * price.input_usd_per_mtok / MTOK


@dataclass
class CacheLedger:
    """The cache one session's requests build up, and what each request costs against it."""

    model: str
    rules: CacheRules = field(init=False)
    price: Price = field(init=False)
    _entries: dict[str, tuple[int, float]] = field(default_factory=dict)  # key: (tokens, expiry)
    _requests: list[tuple[tuple[str, ...], float]] = field(default_factory=list)  # (keys, last use)
    priced: list[PricedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules, self.price = cache_rules(self.model), get_price(self.model)

    def add(
        self, items: Sequence[RequestItem], at: float, breakpoints: Sequence[int] | None = None
    ) -> PricedRequest:
        """Price a request sent at time ``at`` (seconds) and record what it caches."""
        sizes = [i.tokens for i in items]
        ends = [0] * len(items)
        total = 0
        for n, size in enumerate(sizes):
            total += size
            ends[n] = total
        keys = prefix_keys(items)
        if self.rules.style is CacheStyle.AUTOMATIC:
            out = self._automatic(keys, ends, total, at)
        else:
            bps = default_breakpoints(items) if breakpoints is None else tuple(breakpoints)
            out = self._breakpoints(keys, ends, total, at, bps)
        self.priced.append(out)
        return out

    def _breakpoints(
        self, keys: Sequence[str], ends: Sequence[int], total: int, at: float,
        bps: Sequence[int],
    ) -> PricedRequest:  # fmt: skip
        r = self.rules
        if len(bps) > r.max_breakpoints or any(b < 1 or b > len(keys) for b in bps):
            raise ConfigError(
                f"a request may carry 1 to {r.max_breakpoints} breakpoints within its "
                f"{len(keys)} blocks; got {list(bps)}"
            )
        read_blocks = 0
        for bp in bps:  # the longest cached prefix each breakpoint's lookback window finds
            for n in range(bp, max(0, bp - r.lookback_blocks), -1):
                hit = self._entries.get(keys[n - 1])
                if hit is not None and hit[1] >= at:
                    read_blocks = max(read_blocks, n)
                    break
        read = ends[read_blocks - 1] if read_blocks else 0
        if read_blocks:
            self._entries[keys[read_blocks - 1]] = (read, at + r.ttl_seconds)
        last = max(bps, default=0)
        written = 0
        for bp in bps:
            if ends[bp - 1] >= r.min_cacheable:
                self._entries[keys[bp - 1]] = (ends[bp - 1], at + r.ttl_seconds)
                written = max(written, ends[bp - 1])
        write = max(0, written - read) if last else 0
        return PricedRequest(total, read, write)

    def _automatic(
        self, keys: Sequence[str], ends: Sequence[int], total: int, at: float
    ) -> PricedRequest:
        r = self.rules
        live = [(k, t) for k, t in self._requests if t + r.ttl_seconds >= at]
        best, shared = -1, 0
        for index, (old, _) in enumerate(live):
            n = 0
            while n < min(len(old), len(keys)) and old[n] == keys[n]:
                n += 1
            if n and ends[n - 1] > shared:
                best, shared = index, ends[n - 1]
        read = 0
        if shared >= r.min_cacheable:
            read = r.min_cacheable + (shared - r.min_cacheable) // r.increment * r.increment
            live[best] = (live[best][0], at)  # a hit refreshes the entry it read
        if total >= r.min_cacheable:
            live.append((tuple(keys), at))
        self._requests = live
        return PricedRequest(total, read, 0)

    def totals(self) -> dict[str, object]:
        """Return the session's tokens by billing class and its dollars with caching."""
        return summarize_priced(self.priced, self.price)


def summarize_priced(priced: Sequence[PricedRequest], price: Price) -> dict[str, object]:
    """Return tokens by billing class and dollars with caching for ``priced`` requests."""
    tokens = sum(p.tokens for p in priced)
    read = sum(p.cache_read for p in priced)
    write = sum(p.cache_write for p in priced)
    usd = sum(p.usd(price) for p in priced)
    return {
        "requests": len(priced),
        "input_tokens": tokens,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "plain_input_tokens": tokens - read - write,
        "tokens_not_read_from_cache": tokens - read,
        "cost_with_caching_usd": round(usd, 6),
        "cost_without_caching_usd": round(tokens * price.input_usd_per_mtok / MTOK, 6),
    }


def weighted_by_category(
    items: Sequence[RequestItem], priced: PricedRequest, price: Price
) -> dict[str, float]:
    """Return the request's input dollars by token category: its first ``cache_read`` tokens
    at the read price, the next ``cache_write`` at the write price, the rest at the input one."""
    out: dict[str, float] = {}
    at = 0
    for item in items:
        if at < priced.cache_read:
            rate = price.cache_read
        elif at < priced.cache_read + priced.cache_write:
            rate = price.cache_write
        else:
            rate = 1.0
        key = item.category.value
        out[key] = out.get(key, 0.0) + item.tokens * rate * price.input_usd_per_mtok / MTOK
        at += item.tokens
    return out
