"""The cache verdict checked against what the provider reported: did B read A's cached prefix?

Owns: ``CacheReadCheck`` and ``check_cache_read``. The compare page predicts from the bytes
(``diff.compare_cache``) whether turn B could read the prefix turn A cached; where both records
carry the provider's usage, this says how many tokens B actually read from the cache and
whether that agrees.

Invariants:
- Anthropic's usage splits input at the last breakpoint: the tokens before it are
  ``cache_read_input_tokens + cache_creation_input_tokens``, so that sum for A is the size in
  tokens of the prefix A cached. Only provider counts are compared, never local estimates.
- A hit is predicted for "identical" and "prefix-kept": B should read at least A's prefix. A
  "prefix-changed" B reads less than A's prefix (an earlier breakpoint may still hit). With no
  breakpoint in A, A cached nothing for B. OpenAI's automatic cache has no markers to predict
  from: its reported reads are shown, not judged.
- A disagreement is stated, not explained away; the likeliest cause (the cache entry expired:
  Anthropic keeps it five minutes by default) is named as a possibility.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.inspect.diff import CacheComparison, CacheVerdict
from runtime.tracing.records import TraceRecord

CACHE_TTL_MS = 5 * 60 * 1000  # Anthropic's default ephemeral cache lifetime


@dataclass(frozen=True)
class CacheReadCheck:
    """The verdict's prediction beside B's reported cache reads (None: not reported)."""

    prefix_tokens_a: int | None  # tokens A cached (read + written before its last breakpoint)
    reported_read_b: int | None  # B's cache_read_input_tokens as the provider reported them
    agrees: bool | None  # None: nothing to compare (no usage, or no prediction to test)
    note: str  # one sentence saying what was predicted and what was reported


def check_cache_read(cache: CacheComparison, a: TraceRecord, b: TraceRecord) -> CacheReadCheck:
    """Compare the cache verdict for (a, b) with the cache reads B's provider reported."""
    if b.usage is None:
        return CacheReadCheck(
            None, None, None, "Turn B's record has no provider usage to check this against."
        )
    read = b.usage.cache_read_input_tokens
    prefix = None if a.usage is None else (
        a.usage.cache_read_input_tokens + a.usage.cache_creation_input_tokens
    )  # fmt: skip
    agrees, predicted = _judge(cache.verdict, read, prefix)
    note = f"{predicted} The provider reported {read:,} cache-read tokens for turn B."
    if agrees is False and b.started_at - a.started_at > CACHE_TTL_MS:
        note += " B started more than five minutes after A, so A's cache entry may have expired."
    return CacheReadCheck(prefix, read, agrees, note)


def _judge(verdict: CacheVerdict, read: int, prefix: int | None) -> tuple[bool | None, str]:
    if verdict is CacheVerdict.AUTOMATIC_PREFIX:
        return None, "OpenAI caches prefixes automatically; there is no breakpoint to predict from."
    if verdict is CacheVerdict.NO_BREAKPOINT:
        return read == 0, "Predicted: A marks no breakpoint, so B reads nothing A cached."
    if prefix == 0:
        return read == 0, (
            "A's provider reported no cached tokens (a prefix under the model's minimum "
            "cacheable length is not cached), so B reads nothing A cached."
        )
    hit = verdict in (CacheVerdict.IDENTICAL, CacheVerdict.PREFIX_KEPT)
    if prefix is None:
        if hit:
            return read > 0, "Predicted: B reads A's cached prefix."
        return None, "Predicted: B misses A's cached prefix from the first difference on."
    if hit:
        return read >= prefix, f"Predicted: B reads A's cached prefix of {prefix:,} tokens."
    return read < prefix, f"Predicted: B reads less than A's cached prefix of {prefix:,} tokens."
