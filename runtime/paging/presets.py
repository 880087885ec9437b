"""Named eviction policies: what ``llm386 proxy --page NAME`` (and ``[proxy] page``) selects.

Owns: ``PRESETS`` (name -> ``EvictionConfig``), ``preset`` (a name looked up, with an error
that lists the known names) and ``AGENT_PAGING`` (the sample agent's policy).

Invariants:
- A preset is a plain ``EvictionConfig``: the proxy, the agent and the benchmark run it through
  ``paging.turn.page_turn`` unchanged, so a name means the same policy everywhere.
- Names are listed sorted, so an error message (and ``--help``) reads the same in every run.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.errors import ConfigError
from runtime.paging.eviction import PAPER_CONFIG, EvictionConfig, EvictionMode, StubScope
from runtime.paging.history import AgeFrom
from runtime.paging.placeholders import StubStyle


def cache_aware_config(budget: int | None = None, *, high_water: float = 1.0) -> EvictionConfig:
    """Return the cache-aware policy's config (prices: Anthropic's 5-minute cache, read 0.1x and
    write 1.25x input). The budget goes to ``page_turn``; one given here is only checked."""
    if budget is not None and budget < 1:
        raise ConfigError(f"the budget must be a positive token count, not {budget}")
    return EvictionConfig(
        mode=EvictionMode.CACHE_AWARE, stub_schemas=StubScope.ALL, high_water=high_water,
        evict_stale=False, recall=True, age_from=AgeFrom.LAST_USE,
    )  # fmt: skip


DEFAULT_PRESET = "default"
# Stubs keep each tool's JSON input schema (without descriptions), so a client that fills inputs
# from the schema (the offline model) can still call a stubbed tool.
AGENT_PAGING = EvictionConfig(stub_style=StubStyle.SIGNATURE)

PRESETS: Mapping[str, EvictionConfig] = {
    DEFAULT_PRESET: EvictionConfig(),  # what DemandPaging uses when given no config
    "agent": AGENT_PAGING,  # the sample agent's policy (runtime.agent.core)
    "paper": PAPER_CONFIG,  # age-based eviction of stale tool results only (Pichay)
    # A byte-stable prefix, evictions in batches chosen by break-even against the cache rewrite
    # (runtime.paging.cacheaware): for agents that run with prompt caching on.
    "cache-aware": cache_aware_config(),
}


def preset_names() -> tuple[str, ...]:
    """Return the known preset names, sorted."""
    return tuple(sorted(PRESETS))


def preset(name: str) -> EvictionConfig:
    """Return the eviction policy called ``name``, or raise ConfigError naming the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(preset_names())
        raise ConfigError(f"paging preset {name!r} is not one of: {known}") from None
