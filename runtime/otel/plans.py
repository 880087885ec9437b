"""The plan of a turn rebuilt from a span, and its record's bytes, made once per listed block.

Owns: ``Plans`` (one session's turns within one export request: each turn's plan, and the
canonical JSON of its record) and ``splice`` (canonical JSON of an object one of whose values
was encoded already).

A turn's plan lists every block of its input, so a session of N turns lists O(N^2) blocks; each
listed block (its id, seq, kind and token count) is the same dict in every turn that lists it,
encoded once; and a turn whose input begins with the last turn's input takes its entries.

Invariants:
- ``Plans.encode(record)`` is ``record.encode()`` byte for byte: canonical JSON composes (an
  object's is its keys, sorted, each with its value's canonical JSON), so the record is encoded
  around its plan and the plan around its ``selected`` list, spliced from each entry's bytes.
  An entry not made here (or a plan not shaped as here) is encoded as it is.
- The entries are shared between the plans of a session's turns and never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import BlockKind, canonical_json
from runtime.pager.sections import Section, section_of
from runtime.tracing.records import TraceRecord

NOTE = "rebuilt from a span: these are the messages the span says the model was given"


def splice(obj: Mapping[str, Any], key: str, raw: bytes) -> bytes:
    """Return ``canonical_json(obj)`` given ``raw``, the canonical JSON of ``obj[key]``."""
    before = {k: v for k, v in obj.items() if k < key}
    after = {k: v for k, v in obj.items() if k > key}
    head = canonical_json(before)[:-1] + (b"," if before else b"")
    tail = (b"," + canonical_json(after)[1:]) if after else b"}"
    return head + canonical_json(key) + b":" + raw + tail


@dataclass(frozen=True)
class _Last:
    """The last plan made: its input's rows (ids, kinds, seqs, tokens), entries and sums."""

    n: int
    rows: tuple[list[Any], ...]  # ids, kinds, seqs, tokens
    selected: tuple[dict[str, Any], ...]
    used: dict[Section, int]


class Plans:
    """One session's turn plans in one export request; see the module invariants."""

    def __init__(self, session: str) -> None:
        self.session = session
        self._entries: dict[tuple[str, int, str, int], tuple[dict[str, Any], Section]] = {}
        self._bytes: dict[int, tuple[dict[str, Any], bytes]] = {}  # id -> (entry, its JSON)
        self._last: _Last | None = None

    def plan(
        self, ids: Sequence[str], kinds: Sequence[str], seqs: Sequence[int],
        tokens: Sequence[int], n_input: int,
    ) -> dict[str, Any]:  # fmt: skip
        """Return the plan of a turn whose input is the first ``n_input`` blocks."""
        rows: tuple[list[Any], ...] = (list(ids[:n_input]), list(kinds[:n_input]),
                                       list(seqs[:n_input]), list(tokens[:n_input]))  # fmt: skip
        last, start = self._last, 0
        if (
            last is not None
            and n_input >= last.n
            and all(row[: last.n] == held for row, held in zip(rows, last.rows, strict=True))
        ):  # the last turn's input, then more: its entries, then the new ones
            selected, used, start = list(last.selected), dict(last.used), last.n
        else:
            selected, used = [], dict.fromkeys((Section.SYSTEM, Section.TOOLS, Section.RECENT), 0)
        for i in range(start, n_input):
            entry, section = self._entry(ids[i], kinds[i], seqs[i], tokens[i])
            used[section] = used.get(section, 0) + tokens[i]
            selected.append(entry)
        self._last = _Last(n_input, rows, tuple(selected), dict(used))
        sections = [{"section": s.value, "allocated": None, "used": used[s]}
                    for s in sorted(used, key=lambda s: s.rank)]  # fmt: skip
        return {"version": 1, "session": self.session, "task": "", "selected": selected,
                "omitted": [], "sections": sections, "tokens": sum(used.values()), "note": NOTE,
                "upto": (seqs[n_input - 1] + 1) if n_input else 0}  # fmt: skip

    def _entry(
        self, block_id: str, kind: str, seq: int, tokens: int
    ) -> tuple[dict[str, Any], Section]:
        key = (block_id, seq, kind, tokens)
        found = self._entries.get(key)
        if found is None:
            parsed = BlockKind.parse(kind)
            section = section_of(parsed)
            entry = {"block_id": block_id, "seq": seq, "kind": parsed.value,
                     "section": section.value, "reason": "required", "score": 1.0,
                     "scores": {}, "tokens": tokens}  # fmt: skip
            found = self._entries[key] = (entry, section)
            self._bytes[id(entry)] = (entry, canonical_json(entry))
        return found

    def encode(self, record: TraceRecord) -> bytes:
        """Return ``record.encode()``, splicing in the encoded entries of its plan."""
        data = record.stored_json()
        plan = data.get("plan")
        if not isinstance(plan, dict) or not isinstance(plan.get("selected"), list):
            return canonical_json(data)
        selected = b"[" + b",".join(self._encoded(e) for e in plan["selected"]) + b"]"
        return splice(data, "plan", splice(plan, "selected", selected))

    def _encoded(self, entry: Any) -> bytes:
        hit = self._bytes.get(id(entry))
        return hit[1] if hit is not None and hit[0] is entry else canonical_json(entry)
