"""The experiment log: every experiment's row, beside the trace records, on the key-value seam.

Owns: ``ExperimentRow`` and ``ExperimentLog`` (the tables below, on any engine: LMDB or
PostgreSQL), and ``record_experiments`` (the child records and their rows in one write).

Layout (``cid`` the 25-byte call id):

    experiments         parent cid + child cid -> canonical JSON ExperimentRow
    experiment_by_time  started_at(8 BE) + child cid -> parent cid

Invariants:
- A child record and its row are written in one transaction with the record's bytes: an
  experiment is recorded whole or not at all (a batch of samples too).
- A row is immutable; the child record it names is an ordinary trace record (origin replay,
  parent the original), so it can be opened, diffed and replayed like any other.
- Listing reads one key range; search walks the time index newest first and stops after
  ``limit`` matches (experiments are few next to traces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput
from runtime.storage.codec import json_load
from runtime.storage.kv import Engine, Tables
from runtime.tracing.records import StoredTrace, TraceRecord, TraceStore, check_record

EXPERIMENTS, BY_TIME = "experiments", "experiment_by_time"


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment: the child record it made, from which parent, what changed, who, what it cost."""

    child: str
    parent: str
    root: str  # the recorded turn the tree grows from
    kind: str  # a ChangeKind value
    change: dict[str, Any] = field(hash=False)  # Change.to_json()
    description: str
    who: str
    started_at: int
    status: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    isolated: bool | None  # the byte diff proved only the change differs (None: a re-page)
    group: str = ""  # the samples of one variance run share a group (the first child's id)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return data | {"notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentRow:
        return cls(**{**data, "notes": tuple(data.get("notes") or ())})

    def matches(self, words: Sequence[str]) -> bool:
        """Whether every word occurs in what the row says (case-insensitive)."""
        text = " ".join((self.description, self.who, self.kind, self.model, self.provider,
                         self.child, self.parent, self.status, *self.notes)).lower()  # fmt: skip
        return all(w in text for w in words)


class ExperimentLog:
    """The experiments of one store, read and written through its key-value engine."""

    def __init__(self, traces: TraceStore) -> None:
        kv = getattr(traces, "kv", None)
        if not isinstance(kv, Engine):
            raise InvalidInput("experiments need a trace store on the key-value seam")
        self.traces, self.kv = traces, kv

    def children(self, parent: str) -> list[ExperimentRow]:
        """Return the experiments made directly from ``parent``, oldest first."""

        def read(t: Tables) -> list[ExperimentRow]:
            return [_row(v) for _, v in t.scan(EXPERIMENTS, parent.encode())]

        return self.kv.read(read)

    def tree(self, root: str, *, limit: int = 500) -> list[tuple[int, ExperimentRow]]:
        """Return (depth, row) of every experiment under ``root``, depth first, oldest first."""
        out: list[tuple[int, ExperimentRow]] = []
        stack = [(1, row) for row in reversed(self.children(root))]
        while stack and len(out) < limit:
            depth, row = stack.pop()
            out.append((depth, row))
            stack += [(depth + 1, r) for r in reversed(self.children(row.child))]
        return out

    def row_of(self, child: str) -> ExperimentRow | None:
        """Return the row of the experiment that made ``child``, or None if it is no experiment."""
        record = self.traces.get(child)
        if record.parent_call_id is None:
            return None
        key = record.parent_call_id.encode() + record.call_id.encode()
        raw = self.kv.read(lambda t: t.get(EXPERIMENTS, key))
        return None if raw is None else _row(raw)

    def search(self, query: str = "", *, limit: int = 50) -> list[ExperimentRow]:
        """Return the newest experiments whose row mentions every word of ``query``."""
        words = query.lower().split()

        def read(t: Tables) -> list[ExperimentRow]:
            found: list[ExperimentRow] = []
            for key, parent in t.scan(BY_TIME, reverse=True):
                raw = t.get(EXPERIMENTS, parent + key[8:])
                if raw is not None and (row := _row(raw)).matches(words):
                    found.append(row)
                    if len(found) >= limit:
                        break
            return found

        return self.kv.read(read)

    def count(self) -> int:
        return self.kv.read(lambda t: t.count(EXPERIMENTS))


def _row(raw: bytes) -> ExperimentRow:
    return ExperimentRow.from_json(json_load(raw))


def record_experiments(
    traces: TraceStore, items: Sequence[tuple[StoredTrace, ExperimentRow]]
) -> list[TraceRecord]:
    """Write the child records, their bytes and their rows in one transaction; return them read back."""
    log = ExperimentLog(traces)
    for item, _ in items:
        check_record(item.record, item.request, item.response)

    def write(t: Tables) -> None:
        traces.record_many([item for item, _ in items])  # joins this write (same engine)
        for _, row in items:
            cid = row.child.encode()
            t.put(EXPERIMENTS, row.parent.encode() + cid, canonical_json(row.to_json()))
            t.put(BY_TIME, row.started_at.to_bytes(8, "big") + cid, row.parent.encode())

    log.kv.write(write)
    return traces.get_many([row.child for _, row in items])
