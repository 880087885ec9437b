"""How each piece of a prompt is written and what it costs in tokens, for both renders.

Owns: the text of every unit of the string render (section headers, the task, one unit per
block), the content of each block in the chat render, their token costs, and the cost cache
(``ix_units``: block id, tokenizer and render version -> two u32 costs).

Invariants:
- String render: every unit starts with a letter or ``#`` and ends with ``"\\n\\n"``. With
  tiktoken's cl100k_base and o200k_base split patterns no pre-token can then cross a unit
  boundary, so ``count(concatenation) == sum(count(unit))`` exactly (a hypothesis test checks
  it on adversarial bodies). The pager can therefore plan with per-unit counts and the packer
  never has to re-count a 200,000-token prompt.
- Chat render: the cost of a request is *defined* as the sum of its model-visible text pieces
  (each text block, tool name, tool input JSON, tool ids, tool result content, tool definition
  JSON), each counted alone, plus fixed per-message and per-block overheads and Anthropic's
  tool-use preamble when tools are sent. Each overhead is at least the framing tokens a provider
  adds there, so the figure is an upper bound of what the profile's tokenizer sees; the
  conversation is charged one message per block, which over-counts when roles repeat.
- Nothing here writes a block id, score or hash into a prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, cast

from runtime.blocks import BlockKind, canonical_json, parse_tool_call, parse_tool_result
from runtime.errors import InvalidBlock
from runtime.pager.sections import Section
from runtime.storage.kv import Engine, EngineRef, Tables
from runtime.tokenizers import Tokenizer

RENDER_VERSION = 1
# Framing per message: OpenAI documents 3 tokens (<|start|>role ... <|end|>); Anthropic publishes
# no figure, so the same is assumed, plus 1 per content block for the separator between blocks.
MESSAGE_OVERHEAD = 3
TEXT_BLOCK_OVERHEAD = 1
TOOL_BLOCK_OVERHEAD = 6  # type, id and name framing of a tool_use / tool_result block
TOOL_DEF_OVERHEAD = 6
# Anthropic adds a tool-use system prompt when ``tools`` is sent: 346 tokens for tool_choice
# auto/none on current Claude models (docs: "Tool use system prompt token count").
TOOLS_PREAMBLE = 346
REQUEST_OVERHEAD = 3
OMITTED_OPENING = "(earlier conversation omitted)"

LABEL: Mapping[BlockKind, str] = MappingProxyType(
    {
        BlockKind.SYSTEM: "system: ",
        BlockKind.USER_MESSAGE: "user: ",
        BlockKind.ASSISTANT_MESSAGE: "assistant: ",
        BlockKind.TOOL_CALL: "tool call: ",
        BlockKind.TOOL_RESULT: "tool result: ",
        BlockKind.TOOL_SCHEMA: "tool: ",
        BlockKind.FACT: "fact: ",
        BlockKind.SUMMARY: "summary: ",
        BlockKind.DOCUMENT_CHUNK: "document: ",
        BlockKind.PLAN: "plan: ",
        BlockKind.STATE: "state: ",
        BlockKind.EVENT: "event: ",
    }
)
CONVERSATION_KINDS = frozenset(
    {
        BlockKind.USER_MESSAGE,
        BlockKind.ASSISTANT_MESSAGE,
        BlockKind.TOOL_CALL,
        BlockKind.TOOL_RESULT,
    }
)
# Sections sent as one system text block each in the chat render (after the System blocks).
SYSTEM_SIDE = (Section.STATE, Section.PLAN, Section.RETRIEVED, Section.BACKGROUND)


class RenderMode(StrEnum):
    """Which render a plan must fit: the string, the chat request, or both (the default)."""

    STRING = "string"
    CHAT = "chat"
    BOTH = "both"

    def pick(self, string: int, chat: int) -> int:
        """Return the cost that binds in this mode."""
        if self is RenderMode.STRING:
            return string
        if self is RenderMode.CHAT:
            return chat
        return max(string, chat)


def header_text(section: Section) -> str:
    return f"## {section.label}\n\n"


def task_text(task: str) -> str:
    return f"## Task\n\n{task}\n\n"


@lru_cache(maxsize=65_536)
def display_text(kind: BlockKind, body: str) -> str:
    """Return a block's text as the string render shows it (tool JSON unwrapped; memoised: it
    is a pure function of immutable arguments, and packing re-renders the same blocks)."""
    try:
        if kind is BlockKind.TOOL_CALL:
            call = parse_tool_call(body)
            return f"{call.name} {canonical_json(call.input).decode()}"
        if kind is BlockKind.TOOL_RESULT:
            result = parse_tool_result(body)
            return f"(error) {result.content}" if result.is_error else result.content
    except InvalidBlock:
        return body  # a hand-made tool block that is not JSON is shown as stored
    return body


def string_unit(kind: BlockKind, body: str) -> str:
    """Return the unit a block contributes to the string render."""
    return f"{LABEL[kind]}{display_text(kind, body)}\n\n"


def chat_cost(tokenizer: Tokenizer, kind: BlockKind, body: str) -> int:
    """Return the chat-render cost of one block (see the module invariants)."""
    count = tokenizer.count
    if kind in (BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE):
        return count(body) + TEXT_BLOCK_OVERHEAD + MESSAGE_OVERHEAD
    if kind in (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT):
        try:
            return _tool_cost(tokenizer, kind, body)
        except InvalidBlock:  # not the JSON of CONVENTIONS.md: the packer sends it as text
            return count(display_text(kind, body)) + TEXT_BLOCK_OVERHEAD + MESSAGE_OVERHEAD
    if kind is BlockKind.SYSTEM:
        return count(body) + TEXT_BLOCK_OVERHEAD
    if kind is BlockKind.TOOL_SCHEMA:
        return count(body) + TOOL_DEF_OVERHEAD
    return count(string_unit(kind, body))  # inside a system-side section text block


def _tool_cost(tokenizer: Tokenizer, kind: BlockKind, body: str) -> int:
    count = tokenizer.count
    if kind is BlockKind.TOOL_CALL:
        call = parse_tool_call(body)
        pieces = count(call.name) + count(canonical_json(call.input).decode()) + count(call.call_id)
    else:
        result = parse_tool_result(body)
        pieces = count(result.content) + count(result.call_id)
    return pieces + TOOL_BLOCK_OVERHEAD + MESSAGE_OVERHEAD


def block_costs(tokenizer: Tokenizer, kind: BlockKind, body: str) -> tuple[int, int]:
    """Return (string cost, chat cost) of one block."""
    return tokenizer.count(string_unit(kind, body)), chat_cost(tokenizer, kind, body)


@lru_cache(maxsize=256)
def header_costs(tokenizer: Tokenizer, section: Section) -> tuple[int, int]:
    """Return (string, chat) cost of opening ``section`` (its header and framing; memoised: a
    pure function of immutable arguments, asked for every section of every page)."""
    string = tokenizer.count(header_text(section))
    if section in SYSTEM_SIDE:
        return string, string + TEXT_BLOCK_OVERHEAD
    if section is Section.TOOLS:
        return string, TOOLS_PREAMBLE
    return string, 0


@lru_cache(maxsize=1024)
def frame_costs(tokenizer: Tokenizer, task: str) -> tuple[int, int]:
    """Return (string, chat) cost of what every prompt carries: the task and fixed framing
    (memoised: page and pack both ask, and an agent pages one task several times)."""
    string = tokenizer.count(task_text(task)) if task else 0
    opening = tokenizer.count(OMITTED_OPENING) + TEXT_BLOCK_OVERHEAD + MESSAGE_OVERHEAD
    task_chat = tokenizer.count(task) + TEXT_BLOCK_OVERHEAD + MESSAGE_OVERHEAD if task else 0
    return string, REQUEST_OVERHEAD + opening + task_chat


@dataclass(frozen=True)
class Costs:
    """Token costs of one block under one tokenizer."""

    string: int
    chat: int

    def pick(self, mode: RenderMode) -> int:
        return mode.pick(self.string, self.chat)


COSTS_TABLE = "ix_units"


class CostCache:
    """Block costs per tokenizer: the store's ``ix_units`` table when writable, else computed
    (a read-only store may not have the table); either way remembered in process memory, since
    a block id names its kind and body, so its costs under one tokenizer never change."""

    def __init__(self, kv: Engine, capacity: int = 200_000) -> None:
        self._kv = EngineRef(kv, "cost cache")
        self.stored = not kv.readonly
        self.capacity = capacity
        self._lock = threading.Lock()
        self._memo: dict[bytes, dict[str, Costs]] = {}  # tokenizer suffix -> block id -> costs

    @property
    def kv(self) -> Engine:
        return self._kv()

    def costs(
        self, tokenizer: Tokenizer, ids: Sequence[str], kinds: Sequence[BlockKind], bodies: Any
    ) -> list[Costs]:
        """Return each block's costs; ``bodies(ids)`` gives the texts of blocks not cached."""
        suffix = _suffix(tokenizer)
        with self._lock:
            memo = self._memo.setdefault(suffix, {})
            found = [memo.get(i) for i in ids]
        missing = [n for n, c in enumerate(found) if c is None]
        if not missing:
            return cast(list[Costs], found)
        made = self._costs(suffix, tokenizer, [ids[n] for n in missing],
                           [kinds[n] for n in missing], bodies)  # fmt: skip
        with self._lock:
            if sum(len(m) for m in self._memo.values()) + len(made) > self.capacity:
                self._memo.clear()
            memo = self._memo.setdefault(suffix, {})
            for n, costs in zip(missing, made, strict=True):
                found[n] = memo[ids[n]] = costs
        return cast(list[Costs], found)

    def _costs(
        self,
        suffix: bytes,
        tokenizer: Tokenizer,
        ids: Sequence[str],
        kinds: Sequence[BlockKind],
        bodies: Any,
    ) -> list[Costs]:
        """Return each block's costs from the store's table, computing (and saving) the rest."""
        stored = self._load(suffix, ids)
        missing = [i for i, raw in enumerate(stored) if raw is None]
        texts = bodies([ids[i] for i in missing]) if missing else []
        made = {
            i: Costs(*block_costs(tokenizer, kinds[i], text))
            for i, text in zip(missing, texts, strict=True)
        }
        self._save(suffix, [(ids[i], c) for i, c in made.items()])
        return [made[i] if raw is None else _decode(raw) for i, raw in enumerate(stored)]

    def _load(self, suffix: bytes, ids: Sequence[str]) -> list[bytes | None]:
        if not self.stored:
            return [None] * len(ids)
        keys = [bytes.fromhex(b) + suffix for b in ids]
        return self.kv.read(lambda t: t.get_many(COSTS_TABLE, keys))

    def _save(self, suffix: bytes, pairs: Sequence[tuple[str, Costs]]) -> None:
        if not self.stored or not pairs:
            return
        items = [
            (
                bytes.fromhex(bid) + suffix,
                c.string.to_bytes(4, "little") + c.chat.to_bytes(4, "little"),
            )
            for bid, c in pairs
        ]

        def save(t: Tables) -> None:
            t.put_many(COSTS_TABLE, items)

        self.kv.write(save)


def _suffix(tokenizer: Tokenizer) -> bytes:
    # The tokenizer's version names its rank file digest, so a changed file never reuses counts.
    return f"\x00{tokenizer.version}\x00{RENDER_VERSION}".encode()


def _decode(raw: bytes) -> Costs:
    return Costs(int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:8], "little"))
