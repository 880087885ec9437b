"""Model profiles: each model's context window, output reserve, safety margin, tokenizer, abilities.

Owns: the ``ModelProfile`` value, the built-in table, and name resolution (exact name, a
``provider/`` prefix, a dated snapshot such as ``claude-haiku-4-5-20251001``).

Invariants:
- ``input_budget = max(0, max_context_tokens - reserved_output_tokens - safety_margin_tokens)``;
  the pager never plans past it.
- Claude has no public tokenizer, so Claude counts are ``cl100k_base`` estimates:
  ``tokens_estimated`` is True and every place that shows such a count labels it an estimate.
  Their safety margin (4,096) is the headroom for that estimate's error.
- The built-in table is data in this module (Claude names from
  ``typing.get_args(anthropic.types.Model)``: those of anthropic 2.16.0, the pinned version,
  plus the ones earlier versions named, which keep a profile so old traces resolve); the SDK is
  not imported here. Whether a model may still be called is ``runtime.profiles.lifecycle``'s table.
- Lookups and listings are deterministic: listings sort by name; config overrides replace a
  built-in of the same name and never mutate the table.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from runtime.errors import UnknownModel

ANTHROPIC = "anthropic"
OPENAI = "openai"

# A dated snapshot: "claude-haiku-4-5-20251001" or "gpt-4o-2024-08-06".
_SNAPSHOT_RE = re.compile(r"^(?P<family>.+?)-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class ModelProfile:
    """What the pager and packer need to know about one model.

    ``tokens_estimated`` is True when ``tokenizer`` is not the model's own tokenizer (Claude), so
    counts are estimates. ``supports_prompt_caching`` means the provider reuses a repeated prompt
    prefix (Anthropic: explicit ``cache_control`` breakpoints; OpenAI: automatic).
    """

    name: str
    provider: str
    max_context_tokens: int
    reserved_output_tokens: int
    safety_margin_tokens: int
    tokenizer: str
    tokens_estimated: bool
    supports_system_role: bool = True
    supports_tools: bool = True
    supports_prompt_caching: bool = False
    supports_vision: bool = False

    @property
    def input_budget(self) -> int:
        """Return the tokens left for the prompt after the output reserve and safety margin."""
        spare = self.max_context_tokens - self.reserved_output_tokens - self.safety_margin_tokens
        return max(0, spare)

    def to_json(self) -> dict[str, object]:
        """Return a JSON-ready dict of every field plus ``input_budget``, keys sorted."""
        fields = {
            "name": self.name,
            "provider": self.provider,
            "max_context_tokens": self.max_context_tokens,
            "reserved_output_tokens": self.reserved_output_tokens,
            "safety_margin_tokens": self.safety_margin_tokens,
            "input_budget": self.input_budget,
            "tokenizer": self.tokenizer,
            "tokens_estimated": self.tokens_estimated,
            "supports_system_role": self.supports_system_role,
            "supports_tools": self.supports_tools,
            "supports_prompt_caching": self.supports_prompt_caching,
            "supports_vision": self.supports_vision,
        }
        return dict(sorted(fields.items()))


class HasModelOverrides(Protocol):
    """Anything carrying profiles that add to or replace built-ins (``config.Config`` does)."""

    @property
    def models(self) -> tuple[ModelProfile, ...]: ...


# From typing.get_args(anthropic.types.Model) in anthropic 2.16.0, dated snapshots left out
# (they resolve to their family), plus claude-sonnet-4-5, which 2.12.0 named and 2.16.0 dropped
# (retired: see runtime.profiles.lifecycle). No public Claude context figures differ, so all use 200k.
CLAUDE_MODELS: tuple[str, ...] = (
    "claude-fable-5",
    "claude-fable-5-1",
    "claude-fable-5-2",
    "claude-haiku-4-5",
    "claude-haiku-5-5",
    "claude-mythos-5",
    "claude-mythos-5-1",
    "claude-mythos-5-2",
    "claude-mythos-preview",
    "claude-opus-4-5",
    "claude-opus-4-6",
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-opus-5-5",
    "claude-sonnet-4-5",
    "claude-sonnet-4-6",
    "claude-sonnet-5",
    "claude-sonnet-5-5",
)


def _claude(name: str) -> ModelProfile:
    return ModelProfile(
        name=name,
        provider=ANTHROPIC,
        max_context_tokens=200_000,
        reserved_output_tokens=8_192,
        safety_margin_tokens=4_096,
        tokenizer="cl100k_base",
        tokens_estimated=True,
        supports_prompt_caching=True,
        supports_vision=True,
    )


def _openai(name: str, context: int, reserve: int, *, system_role: bool = True) -> ModelProfile:
    return ModelProfile(
        name=name,
        provider=OPENAI,
        max_context_tokens=context,
        reserved_output_tokens=reserve,
        safety_margin_tokens=256,
        tokenizer="o200k_base",
        tokens_estimated=False,
        supports_system_role=system_role,
        supports_prompt_caching=True,
        supports_vision=True,
    )


_OPENAI_MODELS: tuple[ModelProfile, ...] = (
    _openai("gpt-4o", 128_000, 16_384),
    _openai("gpt-4o-mini", 128_000, 16_384),
    _openai("gpt-4.1", 1_047_576, 32_768),
    _openai("o3", 200_000, 100_000),
    _openai("o1", 200_000, 100_000, system_role=False),
)

BUILTIN_PROFILES: Mapping[str, ModelProfile] = {
    profile.name: profile
    for profile in sorted(
        [*(_claude(name) for name in CLAUDE_MODELS), *_OPENAI_MODELS], key=lambda p: p.name
    )
}


def profile_table(config: HasModelOverrides | None = None) -> dict[str, ModelProfile]:
    """Return every known profile by name: built-ins, then config entries replacing or adding."""
    table = dict(BUILTIN_PROFILES)
    if config is not None:
        table.update((profile.name, profile) for profile in config.models)
    return dict(sorted(table.items()))


def list_profiles(config: HasModelOverrides | None = None) -> list[ModelProfile]:
    """Return every known profile sorted by name."""
    return list(profile_table(config).values())


def get_profile(name: str, config: HasModelOverrides | None = None) -> ModelProfile:
    """Return the profile for ``name`` (config first, then built-ins) or raise UnknownModel."""
    return resolve_profile(name, profile_table(config))


def resolve_profile(name: str, table: Mapping[str, ModelProfile]) -> ModelProfile:
    """Resolve ``name`` in ``table``: exact, ``provider/name``, or a dated snapshot of a family."""
    wanted = name.strip()
    found = lookup_profile(wanted, table)
    if found is None and "/" in wanted:
        provider, _, bare = wanted.partition("/")
        prefixed = lookup_profile(bare, table)
        found = prefixed if prefixed is not None and prefixed.provider == provider else None
    if found is None:
        raise UnknownModel(_unknown_message(name, table))
    return found


def lookup_profile(name: str, table: Mapping[str, ModelProfile]) -> ModelProfile | None:
    """Return ``table[name]``, or its family's profile renamed if ``name`` is a dated snapshot."""
    if name in table:
        return table[name]
    family = snapshot_family(name)
    if family is not None and family in table:
        # A snapshot keeps its own name so requests and traces say exactly which model ran.
        return replace(table[family], name=name)
    return None


def snapshot_family(name: str) -> str | None:
    """Return the family of a dated snapshot (``claude-haiku-4-5-20251001``), else None."""
    snapshot = _SNAPSHOT_RE.match(name)
    return snapshot["family"] if snapshot else None


def _unknown_message(name: str, table: Mapping[str, ModelProfile]) -> str:
    bare = name.strip().partition("/")[2] or name.strip()
    close = difflib.get_close_matches(bare, list(table), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown model {name!r}.{hint} Run `llm386 models` to list known models, or add one to "
        f'llm386.toml as [models."{bare}"] with provider, max_context_tokens, '
        "reserved_output_tokens and tokenizer."
    )
