"""The byte diff of an experiment's request against its original, and the proof it is isolated.

Owns: ``ByteDiff`` and ``byte_diff``, and ``unit_span`` (where one unit of a canonical JSON
request lies in its bytes).

The proof: every unit the change touched is located in the bytes of the request it lives in
(the original for a dropped unit, the child for an inserted one, both for an edit), its span
(with the comma that separates it, for a unit that is only on one side) is cut out of each, and
what remains of the two must be equal byte for byte. So nothing outside the change differs;
``isolated`` says whether that held. Cache order (``runtime.inspect.request.cache_units``) is
checked too: every unit before the first changed one keeps its value, so a provider's prompt
cache still matches the prefix before the change (``prefix_kept``).

Invariants:
- Only canonical JSON requests are proved (the packer's and the offline model's). Bytes that do
  not round-trip through ``canonical_json`` cannot have one unit changed without rewriting them
  all, so an experiment refuses them before sending (``runtime.replay.experiment``).
- Nothing here depends on the clock, chance or set order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import canonical_json
from runtime.inspect.diff import compare_cache, first_divergence
from runtime.inspect.request import cache_units
from runtime.replay.edits import Path, lookup, parse_path, path_text

_MARK = "\x00llm386:span\x00"
_MARK_BYTES = canonical_json(_MARK)


@dataclass(frozen=True)
class ByteDiff:
    """Where a child request differs from its original, and whether only the change does."""

    original_size: int
    child_size: int
    first_divergent_byte: int | None  # None: the same bytes
    original_end: int  # the differing region is [first, end) in each request
    child_end: int
    changed_units: tuple[str, ...]  # the units the change touched, as cache units name them
    isolated: bool | None  # every byte outside those units is equal (None: not proved, a re-page)
    first_changed_unit: str | None  # in cache order
    units_kept: int  # units in cache order equal before the first difference
    breakpoint_unit: str | None  # the original's last cache breakpoint
    # Every unit before the first changed one is unchanged, in cache order (a re-page, which
    # names no units: the original's cached prefix, up to its last breakpoint, is unchanged).
    prefix_kept: bool

    @property
    def identical(self) -> bool:
        return self.first_divergent_byte is None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "changed_units": list(self.changed_units)
        }


def unit_span(data: Any, path: Path) -> tuple[int, int]:
    """Return where the unit at ``path`` lies in ``canonical_json(data)``: [start, end).

    A dictionary member's span starts at its key; the separating comma is not included."""
    marked = copy.deepcopy(data)
    parent = lookup(marked, path[:-1]) if len(path) > 1 else marked
    parent[path[-1]] = _MARK
    start = canonical_json(marked).index(_MARK_BYTES)
    end = start + len(canonical_json(lookup(data, path)))
    if isinstance(path[-1], str):
        start -= len(canonical_json(path[-1])) + 1  # "key":
    return start, end


def _with_comma(raw: bytes, span: tuple[int, int]) -> tuple[int, int]:
    """Widen a one-sided unit's span by its separating comma (after it, else before it)."""
    start, end = span
    if raw[end : end + 1] == b",":
        return start, end + 1
    if start > 0 and raw[start - 1 : start] == b",":
        return start - 1, end
    return span


def _cut(raw: bytes, spans: Sequence[tuple[int, int]]) -> bytes:
    out = raw
    for start, end in sorted(spans, reverse=True):
        out = out[:start] + out[end:]
    return out


def _spans(data: Any, raw: bytes, paths: Sequence[Path], one_sided: bool) -> list[tuple[int, int]]:
    spans = []
    for path in paths:
        try:
            span = unit_span(data, path)
        except Exception:  # noqa: BLE001 - a path not on this side has no span here
            continue
        spans.append(_with_comma(raw, span) if one_sided else span)
    return spans


def byte_diff(
    original: Mapping[str, Any],
    child: Mapping[str, Any],
    paths: Sequence[Path],
    sides: str,
) -> ByteDiff:
    """Return the byte diff of two canonical requests; prove only ``paths`` differ.

    ``sides`` says where the touched units are: "both" (edited), "original" (dropped),
    "child" (inserted), or "" (a re-page: not proved, only measured)."""
    raw_a, raw_b = canonical_json(original), canonical_json(child)
    at = first_divergence(raw_a, raw_b)
    suffix = _common_suffix(raw_a, raw_b, at or 0)
    isolated: bool | None = None
    if sides:
        one_sided = sides != "both"
        spans_a = _spans(original, raw_a, paths, one_sided) if sides != "child" else []
        spans_b = _spans(child, raw_b, paths, one_sided) if sides != "original" else []
        isolated = _cut(raw_a, spans_a) == _cut(raw_b, spans_b)
    cache = compare_cache(raw_a, raw_b, original, child)
    return ByteDiff(
        original_size=len(raw_a), child_size=len(raw_b), first_divergent_byte=at,
        original_end=len(raw_a) - suffix, child_end=len(raw_b) - suffix,
        changed_units=tuple(path_text(p) for p in paths), isolated=isolated,
        first_changed_unit=cache.first_divergent_unit, units_kept=cache.units_kept,
        breakpoint_unit=cache.breakpoint_unit,
        prefix_kept=_prefix_kept(original, child, cache.units_kept, paths) if sides
        else cache.breakpoint_index is None or cache.units_kept > cache.breakpoint_index,
    )  # fmt: skip


def edited_paths(original: Mapping[str, Any], child: Mapping[str, Any]) -> tuple[Path, ...] | None:
    """Return what a whole-request edit changed: the units, and the top-level members outside
    the unit lists, whose values differ; None when units were added, removed or moved, or a
    member was (then there is no one-to-one pairing of units to prove)."""
    if sorted(original) != sorted(child):
        return None
    units = [u.path for u in cache_units(original)]
    if units != [u.path for u in cache_units(child)]:
        return None
    paths: list[Path] = [(key,) for key in sorted(original)
                         if not (key in ("tools", "system", "messages")
                                 and isinstance(original[key], list))
                         and original[key] != child[key]]  # fmt: skip
    for unit in units:
        if "[" in unit:  # "model" and a string "system" are members, counted above
            path = parse_path(unit)
            if lookup(original, path) != lookup(child, path):
                paths.append(path)
    return tuple(paths)


def edit_diff(original: Mapping[str, Any], child: Mapping[str, Any]) -> ByteDiff:
    """Return the byte diff of a whole-request edit: proved when the bytes outside the units it
    changed are equal (``edited_paths``), else measured (``isolated`` None), never refuted: an
    edit in the playground may change anything, so only a proof is worth saying."""
    paths = edited_paths(original, child)
    if paths is not None:
        proved = byte_diff(original, child, paths, "both")
        if proved.isolated:
            return proved
    return byte_diff(original, child, (), "")


def _common_suffix(a: bytes, b: bytes, floor: int) -> int:
    n = 0
    limit = min(len(a), len(b)) - floor
    while n < limit and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return n


def _prefix_kept(
    original: Mapping[str, Any], child: Mapping[str, Any], kept: int, paths: Sequence[Path]
) -> bool:
    """Whether every cache unit before the first touched unit is kept unchanged (a parameter
    touches no unit: then every unit must be kept)."""
    names = [path_text(p) for p in paths]
    orders = [[u.path for u in cache_units(side)] for side in (original, child)]
    hits = [i for order in orders for i, u in enumerate(order)
            if any(u == n or u.startswith(n + ".") for n in names)]  # fmt: skip
    return kept >= (min(hits) if hits else len(orders[0]))
