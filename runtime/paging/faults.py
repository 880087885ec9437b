"""Page faults: finding them in a model turn, fault-driven pinning, refault backoff, and the
per-session paging state that keeps them.

Owns: ``FaultKind``, ``PageFault``, ``PagingState``, ``detect_faults``, answering a ``recall``
call, and reading and writing the state in the session's meta.

Invariants:
- Detection is pure. A fault is a tool call, in the turn that answered a request, asking for
  something that request had paged out: ``recall`` of a paged-out block id, a repeat (same name
  and input) of a call whose result was paged out, or a call of a tool whose stub hid its input.
  At most one fault per block per turn. Calling a tool whose stub shows its input (the compact
  and signature styles) is a first use, not a fault.
- Every fault record says how long it pins its block (``pinned_until``, a user turn, or None for
  the rest of the session), fixed when it is recorded. The pin set is derived from the records
  alone, so reading a state never depends on today's config.
- Refault backoff: the n-th fault of a block pins it 2**(n-1) times as long as the first, its age
  threshold doubles with every fault (see ``eviction``), and after ``pin_forever_after`` faults it
  is pinned for good.
- The state is stored under the session meta key ``paging`` as canonical JSON (faults in
  recorded order). Session meta is written in the same LMDB transaction as the session record
  and removed with it by ``purge_session``; the web reads it with ``session_info``. Recording
  faults reads and writes the state in one write transaction (``BlockStore.atomic``), so two
  processes recording faults for one session at once lose none of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from runtime.blocks import Entry, ToolCall, check_block_id
from runtime.errors import BlockNotFound, InvalidInput, StoreCorrupted
from runtime.paging.eviction import Eviction, EvictionConfig, EvictionPlan, EvictionReason, Pins
from runtime.paging.history import call_key, parse_result
from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.storage.interface import BlockStore

META_KEY = "paging"
STATE_VERSION = 1


class FaultKind(StrEnum):
    RECALL = "recall"  # the model called recall for a paged-out block
    REPEAT = "repeat"  # the model repeated a call whose result was paged out
    SCHEMA = "schema"  # the model called a tool whose stub did not show its input


@dataclass(frozen=True)
class PageFault:
    """One fault: what was asked for, when, and how long it pins the block."""

    kind: FaultKind
    block_id: str
    turn: int  # the model call that faulted (numbered from 1 in its session)
    user_turn: int  # user messages in the request that call answered
    tool_name: str = ""
    refault: bool = False  # this block had faulted before
    pinned_until: int | None = None  # last user turn it stays pinned; None: rest of session

    def to_json(self) -> dict[str, object]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PageFault:
        until = data.get("pinned_until")
        return cls(
            FaultKind(data["kind"]), str(data["block_id"]), int(data["turn"]),
            int(data["user_turn"]), str(data.get("tool_name", "")), bool(data.get("refault")),
            None if until is None else int(until),
        )  # fmt: skip


def _recall_target(call: ToolCall) -> str | None:
    arg = call.input.get("block_id") if isinstance(call.input, dict) else None
    if not isinstance(arg, str):
        return None
    try:
        return check_block_id(arg)
    except InvalidInput:
        return None


def find_evicted(plan: EvictionPlan, block_id: str) -> Eviction | None:
    """Return the latest eviction whose block id is ``block_id`` or starts with it, if unique."""
    found = [e for e in plan.evictions if e.block_id.startswith(block_id)]
    if len({e.block_id for e in found}) != 1:
        return None
    return found[-1]


def _repeated(plan: EvictionPlan, call: ToolCall) -> Eviction | None:
    key = call_key(call)
    hits = [e for e in plan.evictions if e.call_key == key and e.call_key]
    return hits[-1] if hits else None


def _stubbed(plan: EvictionPlan, name: str) -> Eviction | None:
    for e in plan.by_reason(EvictionReason.UNUSED_SCHEMA):
        if e.tool_name == name:
            return e
    return None


def _fault_of(plan: EvictionPlan, call: ToolCall) -> tuple[FaultKind, Eviction] | None:
    if call.name == RECALL_TOOL_NAME and plan.offers_recall:
        target = _recall_target(call)
        ev = find_evicted(plan, target) if target else None
        return (FaultKind.RECALL, ev) if ev else None
    if ev := _repeated(plan, call):
        return FaultKind.REPEAT, ev
    # A stub that shows the input lets the model call the tool: that is a first use, not a fault.
    if not plan.stubs_show_input and (ev := _stubbed(plan, call.name)):
        return FaultKind.SCHEMA, ev
    return None


def detect_faults(
    plan: EvictionPlan, calls: Sequence[ToolCall], *, turn: int, user_turn: int
) -> tuple[PageFault, ...]:
    """Return the faults in a model turn's tool calls against the plan of the request it saw."""
    faults: list[PageFault] = []
    seen: set[str] = set()  # membership only; faults keep the order of the calls
    for call in calls:
        hit = _fault_of(plan, call)
        if hit is None or hit[1].block_id in seen:
            continue
        seen.add(hit[1].block_id)
        faults.append(PageFault(hit[0], hit[1].block_id, turn, user_turn, call.name))
    return tuple(faults)


def recall_content(entries: Sequence[Entry], plan: EvictionPlan, block_id: str) -> str:
    """Return what a ``recall`` call gets back: the paged-out block's original content."""
    ev = find_evicted(plan, check_block_id(block_id))
    if ev is None:
        raise BlockNotFound(
            f"block {block_id!r} is not paged out in this request; use an id from a "
            "'[Paged out: block ...]' placeholder"
        )
    entry = next(e for e in entries if e.seq == ev.seq)
    result = parse_result(entry)
    return result.content if result is not None else entry.body


@dataclass(frozen=True)
class PagingState:
    """A session's fault history; pins and backoff are derived from it."""

    faults: tuple[PageFault, ...] = ()

    def fault_count(self, block_id: str) -> int:
        return sum(1 for f in self.faults if f.block_id == block_id)

    @property
    def refaults(self) -> int:
        return sum(1 for f in self.faults if f.refault)

    def pinned(self, user_turn: int) -> tuple[str, ...]:
        """Return the block ids pinned at ``user_turn``, sorted."""
        ids = {
            f.block_id for f in self.faults if f.pinned_until is None or f.pinned_until >= user_turn
        }
        return tuple(sorted(ids))

    def pins(self, user_turn: int) -> Pins:
        """Return what the eviction policy must respect at ``user_turn``."""
        counts: dict[str, int] = {}
        for f in self.faults:
            counts[f.block_id] = counts.get(f.block_id, 0) + 1
        return Pins(frozenset(self.pinned(user_turn)), counts)

    def record(self, faults: Sequence[PageFault], config: EvictionConfig) -> PagingState:
        """Return the state with ``faults`` appended, each marked refault and given its pin."""
        state = self
        for fault in faults:
            n = state.fault_count(fault.block_id) + 1
            until = _pin_until(fault.user_turn, n, config)
            state = PagingState((*state.faults, replace(fault, refault=n > 1, pinned_until=until)))
        return state

    def to_json(self) -> dict[str, object]:
        return {"version": STATE_VERSION, "faults": [f.to_json() for f in self.faults]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PagingState:
        if data.get("version") != STATE_VERSION:
            raise StoreCorrupted(
                f"paging state version {data.get('version')!r} is not {STATE_VERSION}; "
                "upgrade llm386 or clear the session's 'paging' meta"
            )
        try:
            return cls(tuple(PageFault.from_json(f) for f in data["faults"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupted(f"paging state is damaged ({exc}); clear it") from None


def _pin_until(user_turn: int, nth: int, config: EvictionConfig) -> int | None:
    if config.pin_user_turns is None or nth >= config.pin_forever_after:
        return None
    return user_turn + config.pin_user_turns * 2 ** (nth - 1)


def load_state(store: BlockStore, session: str) -> PagingState:
    """Return the session's paging state (empty when nothing has faulted yet)."""
    data = store.session_info(session).meta.get(META_KEY)
    if data is None:
        return PagingState()
    if not isinstance(data, dict):
        raise StoreCorrupted(f"session {session!r} meta {META_KEY!r} is not an object; clear it")
    return PagingState.from_json(data)


def save_state(store: BlockStore, session: str, state: PagingState) -> None:
    """Write the session's paging state into its meta."""
    store.set_session_meta(session, **{META_KEY: state.to_json()})


def record_faults(
    store: BlockStore, session: str, faults: Sequence[PageFault], config: EvictionConfig
) -> PagingState:
    """Append ``faults`` to the session's stored state and return the new state (one write)."""

    def update() -> PagingState:
        state = load_state(store, session).record(faults, config)
        if faults:
            save_state(store, session, state)
        return state

    return store.atomic(update)
