"""Reducers: turn a model's output back into blocks and edges, as pure functions of (state, output).

Owns: ``Reduction`` and the three reducers: append-output (the reply becomes an
assistant-message block), tool-use (Anthropic response content becomes an assistant-message and
one tool-call block per tool_use; tool results supplied later become tool-result blocks linked by
tool-invocation edges) and JSON events (a JSON envelope parsed into blocks and edges).

Invariants:
- Pure: the same (state, output) gives the same Reduction. No clock (``created_at`` is left for
  the store to stamp), no randomness; block ids are content hashes, so edges can name blocks of
  the same reduction before they are stored.
- Nothing is guessed: output a reducer cannot read raises ``ReducerError`` saying where (the
  JSON line, column and character, or the event index) and what was wrong.
- Tool calls and results follow CONVENTIONS.md: bodies are ``ToolCall.body()`` and
  ``ToolResult.body()``; a tool-call has a parent edge to the assistant-message of its turn when
  that turn had text; each tool-call has a tool-invocation edge to its result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runtime import limits
from runtime.blocks import (
    BlockKind,
    Edge,
    EdgeKind,
    NewBlock,
    Provenance,
    ToolCall,
    ToolResult,
    content_hash,
)
from runtime.errors import InvalidEdge, ReducerError

MODEL_OUTPUT = "model-output"
EVENT_KINDS = (
    BlockKind.FACT, BlockKind.PLAN, BlockKind.SUMMARY, BlockKind.DOCUMENT_CHUNK, BlockKind.EVENT,
    BlockKind.ASSISTANT_MESSAGE,
)  # fmt: skip


@dataclass(frozen=True)
class Reduction:
    """What a reducer made: new blocks, edges between them (or to stored blocks), next state."""

    blocks: tuple[NewBlock, ...] = ()
    edges: tuple[Edge, ...] = ()
    next_state: NewBlock | None = None  # a state block replacing the previous state

    @property
    def all_blocks(self) -> tuple[NewBlock, ...]:
        """Return the blocks to put, the next state last."""
        return self.blocks + ((self.next_state,) if self.next_state is not None else ())

    @property
    def empty(self) -> bool:
        return not self.blocks and not self.edges and self.next_state is None


class Reducer(Protocol):
    @property
    def name(self) -> str: ...

    def reduce(self, state: str | None, output: Any) -> Reduction: ...


def block_id(block: NewBlock) -> str:
    """Return the id the store will give ``block`` (its content hash)."""
    body = block.body.decode("utf-8") if isinstance(block.body, bytes) else block.body
    return content_hash(BlockKind.parse(block.kind), body)


def state_id(state: str | None) -> str | None:
    """Return the id of the state block holding ``state`` text, if there is a state."""
    return content_hash(BlockKind.STATE, state) if state else None


def _provenance(state: str | None) -> Provenance:
    sid = state_id(state)
    return Provenance(MODEL_OUTPUT, (sid,) if sid else ())


@dataclass(frozen=True)
class AppendOutputReducer:
    """The reply text becomes one assistant-message block (nothing for an empty reply)."""

    link_to_state: bool = True
    name: str = "append-output"

    def reduce(self, state: str | None, output: Any) -> Reduction:
        if not isinstance(output, str):
            raise ReducerError(f"{self.name}: output must be text, not {type(output).__name__}")
        if not output.strip():
            return Reduction()
        prov = _provenance(state) if self.link_to_state else Provenance(MODEL_OUTPUT)
        block = NewBlock(BlockKind.ASSISTANT_MESSAGE, output, provenance=prov)
        sid = state_id(state) if self.link_to_state else None
        edges = (Edge(block_id(block), EdgeKind.PARENT, sid),) if sid else ()
        return Reduction((block,), edges)


@dataclass(frozen=True)
class ToolUseReducer:
    """Anthropic response content -> assistant-message + tool-call blocks; results later."""

    name: str = "tool-use"

    def reduce(self, state: str | None, output: Any) -> Reduction:
        content = _content_blocks(self.name, output)
        prov = _provenance(state)
        texts = [str(b.get("text", "")) for b in content if b.get("type") == "text"]
        text = "\n\n".join(t for t in texts if t.strip())
        blocks: list[NewBlock] = []
        if text:
            blocks.append(NewBlock(BlockKind.ASSISTANT_MESSAGE, text, provenance=prov))
        for call in self.calls(output):
            blocks.append(NewBlock(BlockKind.TOOL_CALL, call.body(), provenance=prov))
        text_id = block_id(blocks[0]) if text else None
        edges = tuple(Edge(block_id(b), EdgeKind.PARENT, text_id)
                      for b in blocks[1 if text else 0:] if text_id)  # fmt: skip
        return Reduction(tuple(blocks), edges)

    def calls(self, output: Any) -> list[ToolCall]:
        """Return the tool calls in the output, in order, each checked."""
        calls = []
        for i, block in enumerate(_content_blocks(self.name, output)):
            if block.get("type") != "tool_use":
                continue
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise ReducerError(f"{self.name}: content[{i}] is a tool_use without id or name")
            calls.append(ToolCall(block["id"], block["name"], block.get("input", {})))
        return calls

    def results(self, calls: Sequence[ToolCall], results: Sequence[ToolResult]) -> Reduction:
        """Return tool-result blocks for ``results``, each linked from the call it answers."""
        by_id = {call.call_id: call for call in calls}
        blocks, edges = [], []
        for result in results:
            call = by_id.get(result.call_id)
            if call is None:
                known = ", ".join(sorted(by_id)) or "none"
                raise ReducerError(
                    f"{self.name}: result for tool call {result.call_id!r}, which this turn did "
                    f"not make (its calls: {known})"
                )
            block = NewBlock(
                BlockKind.TOOL_RESULT, result.body(), provenance=Provenance(MODEL_OUTPUT)
            )
            call_id = content_hash(BlockKind.TOOL_CALL, call.body())
            blocks.append(block)
            edges.append(Edge(call_id, EdgeKind.TOOL_INVOCATION, block_id(block)))
        return Reduction(tuple(blocks), tuple(edges))


def _content_blocks(name: str, output: Any) -> list[Mapping[str, Any]]:
    """Accept a message object, its content list, or their raw JSON bytes/text."""
    if isinstance(output, bytes | str):
        output = _parse_json(
            name, output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        )
    if isinstance(output, Mapping):
        output = output.get("content")
    if not isinstance(output, list):
        raise ReducerError(f"{name}: output must be a message or its content list of blocks")
    for i, block in enumerate(output):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise ReducerError(f"{name}: content[{i}] is not a block object with a type")
    return output


def _parse_json(name: str, text: str) -> Any:
    try:
        json.JSONDecoder().raw_decode(text.strip())  # syntax first, for the message below
        return limits.loads(text, f"{name}: output")  # then depth, NaN, huge numbers
    except limits.InputRejected as exc:
        raise ReducerError(f"{exc}; nothing was stored") from None
    except json.JSONDecodeError as exc:
        raise ReducerError(
            f"{name}: output is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno} (character {exc.pos}); nothing was stored"
        ) from None


@dataclass(frozen=True)
class JsonEventsReducer:
    """Parse ``{"state"?: str, "events": [{"kind", "body"}], "edges"?: [...]}`` into blocks.

    An edge is ``{"from": REF, "kind": EDGE_KIND, "to": REF}`` where REF is an event index, the
    string "state" (the new state block), or the 64-hex id of a stored block.
    """

    name: str = "json-events"

    def reduce(self, state: str | None, output: Any) -> Reduction:
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        if not isinstance(text, str):
            raise ReducerError(f"{self.name}: output must be JSON text")
        envelope = _parse_json(self.name, text.strip())
        if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
            raise ReducerError(f'{self.name}: output must be an object with an "events" list')
        prov = _provenance(state)
        blocks = tuple(self._event(i, e, prov) for i, e in enumerate(envelope["events"]))
        next_state = self._state(envelope.get("state"), prov)
        edges = self._edges(envelope.get("edges", []), blocks, next_state)
        return Reduction(blocks, edges, next_state)

    def _event(self, i: int, event: Any, prov: Provenance) -> NewBlock:
        if not isinstance(event, dict):
            raise ReducerError(f"{self.name}: events[{i}] is not an object")
        kinds = ", ".join(k.value for k in EVENT_KINDS)
        kind = event.get("kind")
        if kind not in {k.value for k in EVENT_KINDS}:
            raise ReducerError(f"{self.name}: events[{i}].kind is {kind!r}; use one of: {kinds}")
        body = event.get("body")
        if not isinstance(body, str) or not body.strip():
            raise ReducerError(f"{self.name}: events[{i}].body must be non-empty text")
        return NewBlock(BlockKind(kind), body, provenance=prov)

    def _state(self, value: Any, prov: Provenance) -> NewBlock | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ReducerError(f'{self.name}: "state" must be non-empty text when present')
        return NewBlock(BlockKind.STATE, value, provenance=prov)

    def _edges(
        self, raw: Any, blocks: tuple[NewBlock, ...], next_state: NewBlock | None
    ) -> tuple[Edge, ...]:
        if not isinstance(raw, list):
            raise ReducerError(f'{self.name}: "edges" must be a list')
        edges = []
        for i, edge in enumerate(raw):
            if not isinstance(edge, dict):
                raise ReducerError(f"{self.name}: edges[{i}] is not an object")
            try:
                kind = EdgeKind.parse(edge.get("kind", ""))
            except InvalidEdge as exc:
                raise ReducerError(f"{self.name}: edges[{i}]: {exc}") from None
            src = self._ref(i, "from", edge.get("from"), blocks, next_state)
            dst = self._ref(i, "to", edge.get("to"), blocks, next_state)
            if src == dst:
                raise ReducerError(f"{self.name}: edges[{i}] goes from a block to itself")
            edges.append(Edge(src, kind, dst))
        return tuple(edges)

    def _ref(
        self, i: int, end: str, ref: Any, blocks: tuple[NewBlock, ...], next_state: NewBlock | None
    ) -> str:
        if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(blocks):
            return block_id(blocks[ref])
        if ref == "state" and next_state is not None:
            return block_id(next_state)
        if isinstance(ref, str) and len(ref) == 64 and all(c in "0123456789abcdef" for c in ref):
            return ref
        raise ReducerError(
            f"{self.name}: edges[{i}].{end} is {ref!r}; use an event index (0-{len(blocks) - 1}), "
            '"state" when the output sets one, or a 64-hex block id'
        )


REDUCERS: Mapping[str, Reducer] = {
    r.name: r for r in (AppendOutputReducer(), ToolUseReducer(), JsonEventsReducer())
}
