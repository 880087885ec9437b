"""Anthropic's server-side context editing, simulated: the ``clear_tool_uses_20250919`` strategy.

A baseline for the paging benchmark, built from the documented behaviour (Anthropic docs,
"Context editing", build-with-claude/context-editing, read 2025-10):

- ``trigger``: the strategy activates once the prompt passes this many input tokens
  (default 100,000).
- ``keep``: the most recent tool uses whose results are kept (default 3).
- ``clear_at_least``: an activation must clear at least this many tokens, else nothing is
  cleared (default: no minimum). Anthropic advises it so a cache break is worth it.
- ``exclude_tools``: tools whose results are never cleared.
- Cleared tool results are replaced by a placeholder; the tool_use blocks stay (clearing inputs
  too is off by default and not simulated).

How activations compound is not documented; the simulation keeps what earlier requests cleared
(the server sees the same history each time, so it clears the same results again) and measures
the trigger on the prompt as it would be sent with those clearings. An activation clears every
result older than the last ``keep`` tool uses, oldest first, all at once.

Invariants: pure and deterministic; the plan of a request only adds to the previous one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime.blocks import Entry, ToolResult
from runtime.errors import ConfigError
from runtime.paging.eviction import Counter, Eviction, EvictionPlan, EvictionReason, request_tokens
from runtime.paging.history import History, parse_result

PLACEHOLDER = "[Tool result cleared]"


@dataclass(frozen=True)
class ClearToolUses:
    """The strategy's settings; the defaults are the documented ones."""

    trigger: int = 100_000
    keep: int = 3
    clear_at_least: int = 0
    exclude_tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.trigger < 1 or self.keep < 0 or self.clear_at_least < 0:
            raise ConfigError(
                "clear_tool_uses needs trigger >= 1, keep >= 0, clear_at_least >= 0; got "
                f"{self.trigger}, {self.keep}, {self.clear_at_least}"
            )

    def to_json(self) -> dict[str, object]:
        return {
            "type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": self.trigger},
            "keep": {"type": "tool_uses", "value": self.keep},
            "clear_at_least": {"type": "input_tokens", "value": self.clear_at_least},
            "exclude_tools": list(self.exclude_tools),
        }  # fmt: skip


def _cleared(entry: Entry, result: ToolResult, count: Counter) -> Eviction:
    body = ToolResult(result.call_id, PLACEHOLDER, result.is_error).body()
    size = len(result.content.encode("utf-8"))
    return Eviction(
        entry.seq, entry.id, entry.kind, EvictionReason.CLEARED, PLACEHOLDER, body, size,
        count(result.content),
    )  # fmt: skip


def clear_tool_uses(
    entries: Sequence[Entry],
    settings: ClearToolUses,
    count: Counter,
    previous: EvictionPlan | None = None,
) -> EvictionPlan:
    """Return the request's plan: ``previous``'s clearings, plus one activation if due."""
    s = History.of(entries)
    here = {e.seq: e for e in s.entries}
    kept = [
        ev for ev in (previous.evictions if previous else ())
        if (e := here.get(ev.seq)) is not None and e.id == ev.block_id
    ]  # fmt: skip
    plan = EvictionPlan(tuple(kept))
    if request_tokens(s.entries, plan, count) <= settings.trigger:
        return plan
    results = [
        (e, r, s.call_for(e.seq)) for e in s.entries if (r := parse_result(e)) is not None
    ]  # fmt: skip
    recent = results[len(results) - settings.keep :] if settings.keep else []
    done, spare = {ev.seq for ev in kept}, {e.seq for e, _, _ in recent}
    batch = [
        _cleared(e, r, count)
        for e, r, call in results
        if e.seq not in done and e.seq not in spare
        and not (call is not None and call.name in settings.exclude_tools)
        and r.content != PLACEHOLDER
    ]  # fmt: skip
    freed = sum(count(here[ev.seq].body) - count(ev.body) for ev in batch)
    if not batch or freed < max(1, settings.clear_at_least):
        return plan
    return EvictionPlan(tuple(sorted([*kept, *batch], key=lambda ev: ev.seq)))
