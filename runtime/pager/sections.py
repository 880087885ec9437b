"""Prompt sections: their canonical order, the default section of each block kind, and budgets.

Owns: the ``Section`` enum, ``DEFAULT_SECTION`` (block kind -> section), and turning budget
fractions (``config.BudgetFractions``) into token allocations.

Invariants:
- Declaration order of ``Section`` is the canonical render order: System, Task, State, Plan,
  Retrieved, Tools, Recent, Background, Slack. Every sort of sections uses ``Section.rank``.
- Task holds the request's task text and Slack is headroom: no block kind maps to either, and
  Slack is never filled.
- Allocations are whole tokens, ``floor(variable * fraction)``, computed in integer arithmetic
  on fractions scaled to parts per million so no platform float quirk can change a plan; when
  the fractions sum to more than 1 they are scaled down to sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from runtime.blocks import BlockKind
from runtime.config import BudgetFractions

_PPM = 1_000_000


class Section(StrEnum):
    SYSTEM = "system"
    TASK = "task"
    STATE = "state"
    PLAN = "plan"
    RETRIEVED = "retrieved"
    TOOLS = "tools"
    RECENT = "recent"
    BACKGROUND = "background"
    SLACK = "slack"

    @property
    def rank(self) -> int:
        """Return this section's place in the canonical order (System is 0)."""
        return _RANK[self]

    @property
    def label(self) -> str:
        """Return the header text of this section in a rendered prompt."""
        return self.value.capitalize()

    @classmethod
    def parse(cls, value: str | Section) -> Section:
        """Return the section named ``value``, or raise InvalidInput listing the names."""
        from runtime.errors import InvalidInput

        try:
            return cls(value)
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise InvalidInput(f"unknown section {value!r}; use one of: {known}") from None


_RANK: Mapping[Section, int] = MappingProxyType({s: i for i, s in enumerate(Section)})

# Sections whose size is a fraction of the variable budget (System and Task are fixed costs).
VARIABLE_SECTIONS: tuple[Section, ...] = (
    Section.STATE,
    Section.PLAN,
    Section.RETRIEVED,
    Section.TOOLS,
    Section.RECENT,
    Section.BACKGROUND,
    Section.SLACK,
)

# Tool calls and results are conversation: the Anthropic API only accepts them as tool_use /
# tool_result blocks inside the message list, so they live in Recent even when they were
# retrieved for relevance long after they happened (they are then packed in session order).
DEFAULT_SECTION: Mapping[BlockKind, Section] = MappingProxyType(
    {
        BlockKind.SYSTEM: Section.SYSTEM,
        BlockKind.USER_MESSAGE: Section.RECENT,
        BlockKind.ASSISTANT_MESSAGE: Section.RECENT,
        BlockKind.TOOL_CALL: Section.RECENT,
        BlockKind.TOOL_RESULT: Section.RECENT,
        BlockKind.TOOL_SCHEMA: Section.TOOLS,
        BlockKind.FACT: Section.RETRIEVED,
        BlockKind.SUMMARY: Section.RETRIEVED,
        BlockKind.DOCUMENT_CHUNK: Section.BACKGROUND,
        BlockKind.EVENT: Section.BACKGROUND,
        BlockKind.PLAN: Section.PLAN,
        BlockKind.STATE: Section.STATE,
    }
)


def section_of(kind: BlockKind) -> Section:
    """Return the section a block of ``kind`` is packed into."""
    return DEFAULT_SECTION[kind]


@dataclass(frozen=True)
class Allocation:
    """Tokens allocated to each variable section, from one variable budget."""

    variable: int
    tokens: tuple[tuple[Section, int], ...]

    def of(self, section: Section) -> int:
        """Return the tokens allocated to ``section`` (0 for System and Task)."""
        for name, value in self.tokens:
            if name is section:
                return value
        return 0

    @property
    def slack(self) -> int:
        return self.of(Section.SLACK)


def fractions_ppm(fractions: BudgetFractions) -> tuple[tuple[Section, int], ...]:
    """Return each variable section's fraction in parts per million, scaled to sum <= 1."""
    raw = [(Section(name), round(value * _PPM)) for name, value in fractions.items()]
    total = sum(ppm for _, ppm in raw)
    if total <= _PPM:
        return tuple(raw)
    return tuple((section, ppm * _PPM // total) for section, ppm in raw)


def allocate(fractions: BudgetFractions, variable: int) -> Allocation:
    """Return floor(variable * fraction) tokens for each variable section."""
    variable = max(0, variable)
    tokens = tuple((s, variable * ppm // _PPM) for s, ppm in fractions_ppm(fractions))
    return Allocation(variable, tokens)
