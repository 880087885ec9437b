"""Token usage: the one type every provider's counts are read into, stored and priced from.

Owns: ``Usage``.

Invariants:
- The counts ADD UP: ``input_tokens`` excludes cached tokens, so the whole prompt is
  ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``
  (``Usage.total_input_tokens``). Anthropic reports them that way; a provider whose prompt
  count includes its cached tokens (OpenAI's ``prompt_tokens``) splits them when it reads them.
- The field names are the Messages API's, and they are how a trace record stores usage: a
  rename would need a store migration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Token counts a provider reported; see the module docstring for how they add up."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        """Every prompt token: uncached input plus cache reads plus cache writes."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
