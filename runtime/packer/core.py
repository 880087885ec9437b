"""The packer: renders a page plan as a plain prompt and as an Anthropic Messages request.

Owns: ``pack`` and ``PackedRequest``: the string render with section headers, the request dict,
its canonical JSON bytes and their SHA-256 (the prompt hash), token counts per section, and
where each section lies in both renders (for diffs aligned by section).

Invariants:
- Bytes: ``body == blocks.canonical_json(request)`` (sorted keys, no spaces, UTF-8), built
  piece by piece so section spans are exact; ``prompt_hash == sha256(body)``. Nothing here
  depends on the clock, the process or the hash seed: the same store and plan give the same
  bytes in any process on any machine.
- The string render is the plan's sections in canonical order, each ``## Label`` then one
  unit per block in session order (``runtime.packer.rendering``); its token count is exact.
- The request: ``tools`` from tool-schema blocks; ``system`` = the System blocks' text, then
  one text block per non-empty State, Plan, Retrieved and Background section; ``cache_control``
  (ephemeral) on the last System block, or on the last tool when there is none, which ends the
  prefix that stays the same from turn to turn; ``messages`` = the conversation in session
  order, roles alternating, each tool_use answered by its tool_result at the start of the next
  user message, opened by a user message when the first turn kept is the assistant's, and
  closed by a user message carrying the task; ``max_tokens`` = the profile's output reserve.
- Block ids, scores and hashes never reach the model: only bodies, labels and headers do.
  (Demand paging is the one exception, on purpose: a placeholder names the short id of the block
  it stands for, so the model can page it back in with ``recall``.)
- A selection with a ``stand_in`` (``runtime.paging.demand``) is rendered from the stand-in's body in
  both renders and costed from it; an evicted tool result stays a tool_result for its call. When
  the plan offers recall, ``placeholders.RECALL_TOOL`` is the last tool (and a ``## Tools`` unit).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from runtime.blocks import Block, BlockKind, canonical_json, parse_tool_call, parse_tool_result
from runtime.errors import BlockNotFound, InvalidBlock, InvalidInput
from runtime.packer.rendering import (
    OMITTED_OPENING,
    SYSTEM_SIDE,
    RenderMode,
    block_costs,
    display_text,
    frame_costs,
    header_costs,
    header_text,
    string_unit,
    task_text,
)
from runtime.pager.collector import collector_paused
from runtime.pager.graph import cost_cache
from runtime.pager.plan import PagePlan
from runtime.pager.sections import Section
from runtime.paging.placeholders import recall_tool_json
from runtime.storage.codec import decode_block
from runtime.storage.interface import BlockStore, one_snapshot
from runtime.tokenizers import get_tokenizer

EPHEMERAL = {"type": "ephemeral"}


@dataclass(frozen=True)
class Span:
    """Where one section lies: a byte range of the UTF-8 text and its lines (1-based)."""

    section: Section
    start: int
    end: int
    first_line: int
    last_line: int


@dataclass(frozen=True)
class SectionTokens:
    section: Section
    string: int
    chat: int


@dataclass(frozen=True)
class PackedRequest:
    """Both renders of one plan, the exact request bytes and their hash."""

    text: str  # the string render
    request: Mapping[str, Any]  # the Anthropic Messages request
    body: bytes  # canonical JSON of ``request``: what is sent and hashed
    prompt_hash: str  # sha256 hex of ``body``
    text_hash: str  # sha256 hex of ``text`` as UTF-8
    text_tokens: int  # exact count of ``text``
    chat_tokens: int  # upper-bound count of the request (see runtime.packer.rendering)
    tokens_estimated: bool  # True when the tokenizer is not the model's own
    tokenizer: str
    sections: tuple[SectionTokens, ...]
    text_spans: tuple[Span, ...]
    system_owners: tuple[Section, ...] = field(default=(), repr=False, compare=False)

    @cached_property
    def body_spans(self) -> tuple[Span, ...]:
        """Return where each section lies in ``body`` (worked out on first use)."""
        body, spans = _serialise(self.request, self.system_owners, self.has_task)
        if body != self.body:  # the piecewise bytes must be canonical_json's, else spans lie
            raise AssertionError("section spans were computed over different bytes")
        return spans

    @property
    def has_task(self) -> bool:
        return bool(self._task)

    _task: str = field(default="", repr=False, compare=False)

    @property
    def input_tokens(self) -> int:
        """Return the request's token count (the chat figure: what is sent)."""
        return self.chat_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_hash": self.prompt_hash,
            "text_hash": self.text_hash,
            "text_tokens": self.text_tokens,
            "chat_tokens": self.chat_tokens,
            "input_tokens": self.input_tokens,
            "tokens_estimated": self.tokens_estimated,
            "tokenizer": self.tokenizer,
            "sections": [
                {"section": s.section.value, "string": s.string, "chat": s.chat}
                for s in self.sections
            ],
            "text_spans": [_span_json(s) for s in self.text_spans],
            "body_spans": [_span_json(s) for s in self.body_spans],
        }


@dataclass(frozen=True)
class _Placed:
    """A selected block as sent (its body, or its stand-in's), in render order."""

    block: Block
    section: Section
    string: int
    chat: int


@collector_paused()
@one_snapshot
def pack(store: BlockStore, plan: PagePlan) -> PackedRequest:
    """Render ``plan`` from ``store`` both ways and hash the request bytes."""
    placed = _by_section(_placed(store, plan))
    tokenizer = get_tokenizer(plan.profile.tokenizer)
    text, text_spans = _render_text(plan.task, placed)
    request, owners = _render_request(plan, placed)
    body = canonical_json(request)
    sections = _section_tokens(plan, placed)
    frame_string, frame_chat = frame_costs(tokenizer, plan.task)
    return PackedRequest(
        text=text,
        request=request,
        body=body,
        prompt_hash=hashlib.sha256(body).hexdigest(),
        text_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text_tokens=frame_string + sum(s.string for s in sections if s.section is not Section.TASK),
        chat_tokens=frame_chat + sum(s.chat for s in sections if s.section is not Section.TASK),
        tokens_estimated=plan.profile.tokens_estimated,
        tokenizer=plan.profile.tokenizer,
        sections=sections,
        text_spans=text_spans,
        system_owners=owners,
        _task=plan.task,
    )


def _placed(store: BlockStore, plan: PagePlan) -> list[_Placed]:
    ids = [s.candidate.block_id for s in plan.selected]
    blocks = _bodies.get_many(store, ids)
    tokenizer = get_tokenizer(plan.profile.tokenizer)
    body_of = {b.id: b.body for b in blocks}
    costs = cost_cache(store.kv).costs(
        tokenizer, ids, [b.kind for b in blocks], lambda want: [body_of[i] for i in want]
    )
    out = []
    for block, s, c in zip(blocks, plan.selected, costs, strict=True):
        string, chat = c.string, c.chat
        if s.stand_in is not None:
            # Only what is sent changes: the block keeps its id for the plan, never the prompt.
            block = replace(block, body=s.stand_in.body)
            string, chat = block_costs(tokenizer, block.kind, block.body)
        out.append(_Placed(block, s.candidate.section, string, chat))
    if plan.recall:
        out.append(_recall_placed(tokenizer))
    return out


class BodyCache:
    """Blocks by id in process memory: a block's body never changes for its id (its content
    hash), so decoding it once is enough. Each read still checks the store holds the block, so a
    deleted block is never rendered from memory."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.lock = threading.Lock()
        self.capacity = capacity
        self.blocks: dict[str, Block] = {}

    def get_many(self, store: BlockStore, ids: Sequence[str]) -> list[Block]:
        keys = [bytes.fromhex(i) for i in ids]
        raws = store.kv.read(lambda t: t.get_many("blocks", keys))
        out = []
        with self.lock:
            if len(self.blocks) > self.capacity:
                self.blocks.clear()
            for block_id, raw in zip(ids, raws, strict=True):
                if raw is None:
                    raise BlockNotFound(
                        f"block {block_id[:12]} of the plan is no longer stored; page again"
                    )
                block = self.blocks.get(block_id)
                if block is None:
                    block = self.blocks[block_id] = decode_block(block_id, raw)
                out.append(block)
        return out


_bodies = BodyCache()


def _recall_placed(tokenizer: Any) -> _Placed:
    body = recall_tool_json().decode()
    block = Block(BlockKind.TOOL_SCHEMA, body, "recall")
    return _Placed(block, Section.TOOLS, *block_costs(tokenizer, BlockKind.TOOL_SCHEMA, body))


def _by_section(placed: Sequence[_Placed]) -> dict[Section, list[_Placed]]:
    """Return the placed blocks of each section (every section, maybe empty), in render order."""
    out: dict[Section, list[_Placed]] = {s: [] for s in Section}
    for p in placed:
        out[p.section].append(p)
    return out


def _section_tokens(
    plan: PagePlan, placed: Mapping[Section, Sequence[_Placed]]
) -> tuple[SectionTokens, ...]:
    tokenizer = get_tokenizer(plan.profile.tokenizer)
    out = []
    for section in Section:
        members = placed[section]
        if section is Section.TASK:
            out.append(SectionTokens(section, *frame_costs(tokenizer, plan.task)))
        elif members:
            head_string, head_chat = header_costs(tokenizer, section)
            string = head_string + sum(p.string for p in members)
            out.append(SectionTokens(section, string, head_chat + sum(p.chat for p in members)))
    return tuple(out)


# -- the string render ---------------------------------------------------------------------
def _render_text(
    task: str, placed: Mapping[Section, Sequence[_Placed]]
) -> tuple[str, tuple[Span, ...]]:
    parts: list[str] = []
    spans: list[Span] = []
    offset, line = 0, 1
    for section in Section:
        if section is Section.TASK:
            units = [task_text(task)] if task else []
        elif section is Section.SLACK:
            units = []
        else:
            members = [p.block for p in placed[section]]
            units = [header_text(section)] + [string_unit(b.kind, b.body) for b in members]
            units = units if members else []
        if not units:
            continue
        chunk = "".join(units)
        size, lines = len(chunk.encode("utf-8")), chunk.count("\n")
        spans.append(Span(section, offset, offset + size, line, line + lines - 1))
        parts.append(chunk)
        offset, line = offset + size, line + lines
    return "".join(parts), tuple(spans)


# -- the chat render -----------------------------------------------------------------------
def _render_request(
    plan: PagePlan, placed: Mapping[Section, Sequence[_Placed]]
) -> tuple[dict[str, Any], tuple[Section, ...]]:
    by_section = {s: [p.block for p in placed[s]] for s in Section}
    caching = plan.profile.supports_prompt_caching
    tools = [_tool_definition(b) for b in by_section[Section.TOOLS]]
    system: list[dict[str, Any]] = [_text(b.body) for b in by_section[Section.SYSTEM]]
    if caching and system:
        system[-1]["cache_control"] = dict(EPHEMERAL)
    elif caching and tools:
        tools[-1] = {**tools[-1], "cache_control": dict(EPHEMERAL)}
    owners = [Section.SYSTEM] * len(system)
    for section in SYSTEM_SIDE:
        if by_section[section]:
            units = [string_unit(b.kind, b.body) for b in by_section[section]]
            system.append({"text": header_text(section) + "".join(units), "type": "text"})
            owners.append(section)
    messages = Conversation(by_section[Section.RECENT]).messages(plan.task)
    if not messages:
        raise InvalidInput(
            "nothing to send: the task is empty and no conversation was selected; "
            "give the page a task"
        )
    request: dict[str, Any] = {
        "max_tokens": plan.profile.reserved_output_tokens,
        "messages": messages,
        "model": plan.profile.name,
    }
    if system:
        request["system"] = system
    if tools:
        request["tools"] = tools
    return request, tuple(owners)


def _tool_definition(block: Block) -> dict[str, Any]:
    try:
        data = json.loads(block.body)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "name" not in data:
        raise InvalidBlock(
            f"tool-schema block {block.short_id} is not a JSON tool definition with a name; "
            "store tool schemas as {name, description, input_schema}"
        )
    return data


class Conversation:
    """Groups conversation blocks into alternating Anthropic messages (see module docs)."""

    def __init__(self, blocks: Sequence[Block]) -> None:
        self.blocks = blocks
        self.out: list[dict[str, Any]] = []
        self.pending: dict[str, dict[str, Any]] = {}  # sent call id -> its tool_result block
        self.results_in_last = 0  # tool_result blocks (all leading) in the last message
        self.pairs = ToolPairs.of(blocks)

    def messages(self, task: str) -> list[dict[str, Any]]:
        for index, block in enumerate(self.blocks):
            self._place(index, block)
        self._flush()
        if self.out and self.out[0]["role"] == "assistant":
            self.out.insert(0, _message("user", [_text(OMITTED_OPENING)]))
        if task:
            self._add("user", _text(task))
        return self.out

    def _place(self, index: int, block: Block) -> None:
        call = self.pairs.parsed.get(index)  # parsed once, by ToolPairs.of
        if call is not None:
            if self.pending and not self._in_assistant_turn():
                self._flush()
            sent = call["id"] = self.pairs.sent_ids[index]
            self._add("assistant", call)
            answer = self.pairs.result_of.get(index)
            if answer is not None:
                self.pending[sent] = {**self.pairs.results[answer], "tool_use_id": sent}
            return
        caller = self.pairs.call_of.get(index)
        if caller is not None:
            sent = self.pairs.sent_ids[caller]
            if sent in self.pending:  # else it was already sent right after its call
                self._add("user", self.pending.pop(sent))
            return
        # Plain text, or a tool block the API cannot take as such (not JSON, or a result with
        # no call before it): sent as the text the string render shows.
        self._flush()
        assistant = block.kind in (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL)
        self._add("assistant" if assistant else "user", _text(display_text(block.kind, block.body)))

    def _in_assistant_turn(self) -> bool:
        return bool(self.out) and self.out[-1]["role"] == "assistant"

    def _flush(self) -> None:
        for ident in list(self.pending):
            self._add("user", self.pending.pop(ident))

    def _add(self, role: str, content: dict[str, Any]) -> None:
        if not self.out or self.out[-1]["role"] != role:
            self.out.append(_message(role, []))
            self.results_in_last = 0
        blocks = self.out[-1]["content"]
        if content["type"] == "tool_result":
            # The API wants tool results first in a user message. Counted as they go in, since
            # rescanning a long merged user message per result is quadratic.
            blocks.insert(self.results_in_last, content)
            self.results_in_last += 1
        else:
            blocks.append(content)


@dataclass(frozen=True)
class ToolPairs:
    """Which call each tool result answers, by position, and the id each call is sent with.

    A result answers the latest earlier call with its id that is still unanswered (models reuse
    ids: GPT-4o did in 36 of 120 tau-bench sessions). The API rejects two tool_use blocks with
    one id, so the n-th call sent with an id is renamed ``<id>~n`` in both its tool_use and its
    tool_result (the first suffix no other call uses): deterministic, and only in the request.
    """

    sent_ids: Mapping[int, str]  # call position -> id sent
    result_of: Mapping[int, int]  # call position -> position of its result
    call_of: Mapping[int, int]  # result position -> position of its call
    results: Mapping[int, dict[str, Any]]  # result position -> its tool_result block
    # call position -> its tool_use block as parsed (its "id" the stored one until sent)
    parsed: Mapping[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, blocks: Sequence[Block]) -> ToolPairs:
        calls: dict[int, str] = {}
        parsed: dict[int, dict[str, Any]] = {}
        results: dict[int, dict[str, Any]] = {}
        result_of: dict[int, int] = {}
        open_calls: dict[str, list[int]] = {}
        for index, block in enumerate(blocks):
            call = _parsed_call(block)
            if call is not None:
                parsed[index] = call
                calls[index] = call["id"]
                open_calls.setdefault(call["id"], []).append(index)
                continue
            result = _parsed_result(block) if block.kind is BlockKind.TOOL_RESULT else None
            waiting = open_calls.get(result["tool_use_id"], []) if result is not None else []
            if result is not None and waiting:
                result_of[waiting.pop()] = index
                results[index] = result
        call_of = {r: c for c, r in result_of.items()}
        return cls(_unique_ids(calls), result_of, call_of, results, parsed)


def _unique_ids(calls: Mapping[int, str]) -> dict[int, str]:
    taken = set(calls.values())
    seen: dict[str, int] = {}
    out: dict[int, str] = {}
    for index in sorted(calls):
        ident = calls[index]
        n = seen[ident] = seen.get(ident, 0) + 1
        if n > 1:
            while f"{ident}~{n}" in taken:
                n += 1
            seen[ident] = n
            taken.add(f"{ident}~{n}")
            ident = f"{ident}~{n}"
        out[index] = ident
    return out


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": content, "role": role}


def _text(text: str) -> dict[str, Any]:
    return {"text": text, "type": "text"}


def _parsed_call(block: Block) -> dict[str, Any] | None:
    if block.kind is not BlockKind.TOOL_CALL:
        return None
    try:
        call = parse_tool_call(block.body)
    except InvalidBlock:
        return None
    return {"id": call.call_id, "input": call.input, "name": call.name, "type": "tool_use"}


def _parsed_result(block: Block) -> dict[str, Any] | None:
    try:
        result = parse_tool_result(block.body)
    except InvalidBlock:
        return None
    out: dict[str, Any] = {
        "content": result.content,
        "tool_use_id": result.call_id,
        "type": "tool_result",
    }
    if result.is_error:
        out["is_error"] = True
    return out


# -- canonical bytes with section spans ----------------------------------------------------
def _serialise(
    request: Mapping[str, Any], system_owners: Sequence[Section], has_task: bool
) -> tuple[bytes, tuple[Span, ...]]:
    out = bytearray()
    ranges: dict[Section, list[int]] = {}

    def mark(section: Section, start: int) -> None:
        held = ranges.setdefault(section, [start, len(out)])
        held[0], held[1] = min(held[0], start), max(held[1], len(out))

    out += b"{"
    for n, key in enumerate(sorted(request)):
        out += (b"," if n else b"") + canonical_json(key) + b":"
        value = request[key]
        if key == "messages":
            _messages_bytes(out, value, has_task, mark)
        elif key in ("system", "tools"):
            owners = system_owners if key == "system" else [Section.TOOLS] * len(value)
            _list_bytes(out, value, owners, mark)
        else:
            out += canonical_json(value)
    out += b"}"
    body = bytes(out)
    spans = [Span(s, ranges[s][0], ranges[s][1], 1, 1) for s in Section if s in ranges]
    return body, tuple(spans)


def _list_bytes(out: bytearray, items: Sequence[Any], owners: Sequence[Section], mark: Any) -> None:
    out += b"["
    for n, (item, owner) in enumerate(zip(items, owners, strict=True)):
        out += b"," if n else b""
        start = len(out)
        out += canonical_json(item)
        mark(owner, start)
    out += b"]"


def _messages_bytes(
    out: bytearray, messages: Sequence[Mapping[str, Any]], has_task: bool, mark: Any
) -> None:
    out += b"["
    for n, message in enumerate(messages):
        out += (b"," if n else b"") + b'{"content":['
        content = message["content"]
        for i, block in enumerate(content):
            out += b"," if i else b""
            start = len(out)
            out += canonical_json(block)
            last = n == len(messages) - 1 and i == len(content) - 1
            mark(Section.TASK if has_task and last else Section.RECENT, start)
        out += b'],"role":' + canonical_json(message["role"]) + b"}"
    out += b"]"


def _span_json(span: Span) -> dict[str, Any]:
    return {
        "section": span.section.value,
        "start": span.start,
        "end": span.end,
        "first_line": span.first_line,
        "last_line": span.last_line,
    }


def render_mode_tokens(packed: PackedRequest, mode: RenderMode) -> int:
    """Return the packed token count that ``mode`` is planned against."""
    return mode.pick(packed.text_tokens, packed.chat_tokens)
