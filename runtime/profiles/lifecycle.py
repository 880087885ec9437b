"""Model lifecycle: whether a model is current, deprecated or retired, and what replaces it.

Owns: ``ModelStatus``, ``Lifecycle``, the built-in lifecycle table (``LIFECYCLES``, data), the
lookup by model name, and ``check_callable``: the check every entry point that would send a
request, or make one to be sent, runs before anything else.

Invariants:
- The table is data, kept true against the *pinned* anthropic SDK by tests/runtime/
  test_profiles.py: every built-in Claude profile the SDK's ``anthropic.types.Model`` no longer
  names is RETIRED, and every model in the SDK's deprecation table is DEPRECATED or RETIRED with
  the SDK's end-of-life date. A model not in the table is CURRENT.
- Status is data, never the clock: a deprecated model whose end-of-life date has passed stays
  deprecated until the table says otherwise, so the same inputs behave the same every day.
- Names resolve like profiles: a ``provider/`` prefix and a dated snapshot
  (``claude-sonnet-4-5-20250929``) have their family's lifecycle. A model defined in
  llm386.toml is current; overriding a built-in's figures there does not change its lifecycle.
- Retired models keep their profile, so old traces still resolve and display; nothing sends or
  records a request for one: ``ModelRetired`` is raised before any byte leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from runtime.errors import ModelRetired
from runtime.profiles.catalog import snapshot_family


class ModelStatus(StrEnum):
    CURRENT = "current"
    DEPRECATED = "deprecated"  # still served; end of life scheduled
    RETIRED = "retired"  # no longer served: requests naming it fail


@dataclass(frozen=True)
class Lifecycle:
    """A model's status; ``end_of_life`` (ISO date) is scheduled when deprecated, past when retired.

    ``source`` says where the status and date come from, and what is our own choice.
    """

    status: ModelStatus = ModelStatus.CURRENT
    end_of_life: str | None = None
    replacement: str | None = None
    source: str = ""

    def to_json(self) -> dict[str, object]:
        """Return the lifecycle as JSON-ready fields, keys sorted."""
        return {
            "end_of_life": self.end_of_life,
            "replacement": self.replacement,
            "status": self.status.value,
            "status_source": self.source or None,
        }

    def summary(self) -> str:
        """Return a short status for tables: ``retired 2026-11-30 -> claude-sonnet-4-6``."""
        parts = [self.status.value]
        if self.end_of_life:
            parts.append(("end of life " if self.status is ModelStatus.DEPRECATED else "")
                         + self.end_of_life)  # fmt: skip
        if self.replacement:
            parts.append(f"-> {self.replacement}")
        return " ".join(parts)


CURRENT = Lifecycle()

# Only models that are not current are listed. Dates are the ones a source gives; where the
# source is only "the SDK stopped naming it", ``source`` says so. A replacement that no source
# names is our choice (the next model of the same line) and ``source`` says that too.
LIFECYCLES: Mapping[str, Lifecycle] = {
    "claude-mythos-preview": Lifecycle(
        ModelStatus.DEPRECATED,
        "2026-06-30",
        "claude-mythos-5",
        "anthropic 2.16.0 lists it as deprecated (_data.DEPRECATED_MODELS: end of life June "
        "30th, 2026) and still names it in anthropic.types.Model, so it is not marked retired "
        "although that date has passed; replacement: the released model of its line (our choice)",
    ),
    "claude-opus-4-5": Lifecycle(
        ModelStatus.DEPRECATED,
        "2027-01-22",
        "claude-opus-4-6",
        "anthropic 2.16.0 lists it as deprecated (_data.DEPRECATED_MODELS: end of life January "
        "22nd, 2027); replacement: the next model of its line (our choice)",
    ),
    "claude-sonnet-4-5": Lifecycle(
        ModelStatus.RETIRED,
        "2026-11-30",
        "claude-sonnet-4-6",
        "anthropic 2.16.0 no longer names it in anthropic.types.Model (2.12.0 did); end of "
        "life 2026-11-30 as reported in llm386 issue 9",
    ),
}


def lifecycle_of(name: str) -> Lifecycle:
    """Return the lifecycle of model ``name`` (``provider/`` prefix and dated snapshots ok)."""
    bare = name.strip()
    if "/" in bare:
        bare = bare.partition("/")[2]
    if bare in LIFECYCLES:
        return LIFECYCLES[bare]
    family = snapshot_family(bare)
    return LIFECYCLES.get(family, CURRENT) if family else CURRENT


def check_callable(name: str, *, action: str, instead: str = "") -> str | None:
    """Raise ModelRetired if ``name`` is retired; return a warning if it is deprecated.

    ``action`` says what was refused ("call", "replay trace 0a1b…"); ``instead`` is the command
    to run for the replacement (``{replacement}`` in it is filled in), else one is suggested.
    """
    lifecycle = lifecycle_of(name)
    if lifecycle.status is ModelStatus.RETIRED:
        raise ModelRetired(_refusal(name, lifecycle, action, instead), name, lifecycle.replacement)
    if lifecycle.status is ModelStatus.DEPRECATED:
        return deprecation_warning(name, lifecycle)
    return None


def deprecation_warning(name: str, lifecycle: Lifecycle) -> str:
    """Return the one-line warning shown when a deprecated model is used."""
    when = f" (end of life {lifecycle.end_of_life})" if lifecycle.end_of_life else ""
    move = f"; move to {lifecycle.replacement}" if lifecycle.replacement else ""
    return f"model {name} is deprecated{when}{move}: `llm386 models {name}` says more"


def _refusal(name: str, lifecycle: Lifecycle, action: str, instead: str) -> str:
    when = f" on {lifecycle.end_of_life}" if lifecycle.end_of_life else ""
    replacement = lifecycle.replacement
    if replacement is None:
        todo = "pick a current model from `llm386 models`"
    else:
        command = instead or (
            "`llm386 chat --model {replacement}`, or re-page a recorded turn for it with "
            "`llm386 repage ID --model {replacement} --record` and replay that"
        )
        todo = f"use its replacement {replacement}: {command.format(replacement=replacement)}"
    return (
        f"cannot {action}: model {name} was retired{when} and the API no longer serves it, "
        f"so nothing was sent; {todo}"
    )
