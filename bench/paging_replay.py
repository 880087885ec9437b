"""Replay material for the paging benchmark: sessions as entries, request rendering, references.

- Sessions are converted exactly as the importer converts them (``runtime.transfer.importer.prepare``):
  tool-schema blocks first, then every message; each assistant message is one turn whose input is
  every block before it.
- ``render_request`` builds the Anthropic Messages request a packed turn would send (tools,
  system, alternating messages; tool_result blocks keep their tool_use_id) as canonical JSON, so
  its SHA-256 identifies the prompt byte for byte. It stands in for ``runtime.packer.core`` until the
  benchmark is switched to it.
- References follow the issue's definition: identifier-like tokens of each assistant message
  and tool call that already appeared in an earlier message of the session other than the latest
  user message (tool definitions are not messages).
- The strict metric (issue 15) counts a reference as a hit only when a tool-result occurrence
  of the identifier is resident in full, whenever one exists in the history; an id echoed in a
  message or a tool call no longer counts when the result that held its details is gone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runtime.blocks import (
    Block,
    BlockKind,
    Entry,
    Provenance,
    ToolCall,
    canonical_json,
    content_hash,
    parse_tool_call,
)
from runtime.paging.eviction import PagedItem
from runtime.paging.history import parse_result
from runtime.paging.placeholders import RECALL_TOOL
from runtime.storage.interface import DEFAULT_MAX_BLOCK_BYTES
from runtime.transfer.importer import ImportOptions, PreparedSession, Turn, prepare
from runtime.transfer.transcripts import read_tools, read_transcripts

# Words joined by - . : / stay one token: "2024-05-20", "15:00:00", "234.50", "mia_li_3668".
_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+(?:[-.:/][A-Za-z0-9_]+)*")
_DIGIT = re.compile(r"\d")
_LETTER_OR_UNDERSCORE = re.compile(r"[A-Za-z_]")


@dataclass(frozen=True)
class Replay:
    """One recorded session: its entries in seq order and its turns (model calls)."""

    session: str
    model: str
    entries: tuple[Entry, ...]
    turns: tuple[Turn, ...]
    prepared: PreparedSession  # what the importer would write, for store-backed policies


def load_replays(sessions: Path, tools: Path) -> list[Replay]:
    """Return every session of a transcript file, converted as the importer converts it."""
    transcripts = read_transcripts(sessions.read_bytes(), sessions.name)
    defs = read_tools(tools.read_bytes(), tools.name)
    opts = ImportOptions(source="bench", prefix="bench")
    replays = []
    for t in transcripts:
        p = prepare(t, defs, opts, DEFAULT_MAX_BLOCK_BYTES)
        entries = tuple(_entry(p.session, seq, nb.kind, nb.body) for seq, nb in enumerate(p.blocks))
        replays.append(Replay(p.session, str(p.meta.get("model", "")), entries, p.turns, p))
    return replays


def _entry(session: str, seq: int, kind: object, body: object) -> Entry:
    k = BlockKind.parse(kind)  # type: ignore[arg-type]
    text = body if isinstance(body, str) else bytes(body).decode()  # type: ignore[arg-type]
    block = Block(k, text, content_hash(k, text))
    return Entry(session, seq, block, 0.5, 0, Provenance())


# -- rendering -------------------------------------------------------------------------------


def _content(item: PagedItem) -> tuple[str, dict[str, object]]:
    kind = item.entry.kind
    if kind is BlockKind.TOOL_CALL:
        call = parse_tool_call(item.body)
        return "assistant", {
            "type": "tool_use", "id": call.call_id, "name": call.name, "input": call.input,
        }  # fmt: skip
    if kind is BlockKind.TOOL_RESULT:
        result = parse_result(item.entry)
        packed = json.loads(item.body)
        block = {"type": "tool_result", "tool_use_id": packed["tool_use_id"]}
        block["content"] = packed["content"]
        if result is not None and result.is_error:
            block["is_error"] = True
        return "user", block
    role = "assistant" if kind is BlockKind.ASSISTANT_MESSAGE else "user"
    return role, {"type": "text", "text": item.body}


def render_request(model: str, items: Sequence[PagedItem], recall: bool) -> bytes:
    """Return the canonical JSON of the Anthropic Messages request holding ``items``."""
    tools: list[object] = [
        json.loads(i.body) for i in items if i.entry.kind is BlockKind.TOOL_SCHEMA
    ]
    if recall:
        tools.append(RECALL_TOOL)
    system = "\n\n".join(i.body for i in items if i.entry.kind is BlockKind.SYSTEM)
    messages: list[dict[str, object]] = []
    for item in items:
        if item.entry.kind in (BlockKind.TOOL_SCHEMA, BlockKind.SYSTEM):
            continue
        role, block = _content(item)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].append(block)  # type: ignore[attr-defined]
        else:
            messages.append({"role": role, "content": [block]})
    request = {"model": model, "max_tokens": 4096, "system": system, "messages": messages}
    if tools:
        request["tools"] = tools
    return canonical_json(request)


# -- references -----------------------------------------------------------------------------


class IdentRule(StrEnum):
    """Which tokens count as identifiers."""

    ISSUE = "issue"  # 4+ chars with a digit and a letter or underscore (the issue's definition)
    NUMERIC = "numeric"  # 4+ chars with a digit: also pure dates and amounts ("2024-05-20")


def is_identifier(token: str, rule: IdentRule) -> bool:
    """Return whether ``token`` is identifier-like under ``rule``."""
    if len(token) < 4 or not _DIGIT.search(token):
        return False
    return rule is IdentRule.NUMERIC or bool(_LETTER_OR_UNDERSCORE.search(token))


def message_text(entry: Entry) -> str | None:
    """Return the text of a message block that references are read from (None: not a message)."""
    if entry.kind is BlockKind.TOOL_SCHEMA:
        return None
    if entry.kind is BlockKind.TOOL_CALL:
        return canonical_json(parse_tool_call(entry.body).input).decode()
    result = parse_result(entry)
    return result.content if result is not None else entry.body


def identifiers(text: str, rule: IdentRule) -> tuple[str, ...]:
    """Return the distinct identifier-like tokens of ``text``, in first-seen order."""
    seen: dict[str, None] = {}
    for token in _TOKEN_RE.findall(text):
        if is_identifier(token, rule):
            seen.setdefault(token, None)
    return tuple(seen)


class RefIndex:
    """Where each identifier occurs among a session's message blocks so far (seq order)."""

    def __init__(self, rule: IdentRule):
        self.rule = rule
        self.where: dict[str, list[int]] = {}
        self.size = 0

    def extend(self, entries: Sequence[Entry]) -> None:
        for entry in entries[self.size :]:
            text = message_text(entry)
            for token in identifiers(text, self.rule) if text is not None else ():
                self.where.setdefault(token, []).append(entry.seq)
        self.size = max(self.size, len(entries))

    def references(
        self, output: Sequence[Entry], latest_user: int
    ) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Return each referenced token of a turn's output with its earlier occurrences."""
        tokens: dict[str, None] = {}
        for entry in output:
            text = message_text(entry)
            for token in identifiers(text, self.rule) if text is not None else ():
                tokens.setdefault(token, None)
        refs = []
        for token in tokens:
            seqs = tuple(s for s in self.where.get(token, ()) if s != latest_user)
            if seqs:
                refs.append((token, seqs))
        return tuple(refs)


class Residency(StrEnum):
    FULL = "full"
    PLACEHOLDER = "placeholder"
    ABSENT = "absent"


@dataclass
class MissTally:
    references: int = 0
    soft: int = 0
    hard: int = 0

    def add(self, occurrences: Sequence[Residency]) -> Residency:
        """Count one reference; return FULL (hit), PLACEHOLDER (soft miss) or ABSENT (hard)."""
        self.references += 1
        if Residency.FULL in occurrences:
            return Residency.FULL
        if Residency.PLACEHOLDER in occurrences:
            self.soft += 1
            return Residency.PLACEHOLDER
        self.hard += 1
        return Residency.ABSENT

    def to_json(self) -> dict[str, object]:
        refs = self.references or 1
        return {
            "references": self.references,
            "soft_misses": self.soft,
            "hard_misses": self.hard,
            "miss_rate": round((self.soft + self.hard) / refs, 6),
            "soft_miss_rate": round(self.soft / refs, 6),
            "hard_miss_rate": round(self.hard / refs, 6),
            "miss_rate_95ci": wilson(self.soft + self.hard, self.references),
            "hard_miss_rate_95ci": wilson(self.hard, self.references),
        }


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """Return the Wilson score interval [low, high] of the proportion k/n (95% by default)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return [
        round(max(0.0, (centre - half) / denom), 6),
        round(min(1.0, (centre + half) / denom), 6),
    ]


def strict_occurrences(seqs: Sequence[int], entries: Sequence[Entry]) -> tuple[int, ...]:
    """Return the occurrences the strict metric asks for: the tool-result ones when there are
    any (the result that held the details), else every occurrence. ``entries`` is by seq."""
    results = tuple(q for q in seqs if entries[q].kind is BlockKind.TOOL_RESULT)
    return results or tuple(seqs)


def residency(items: Sequence[PagedItem]) -> Mapping[int, Residency]:
    """Return how each packed entry is present: in full or as a placeholder."""
    return {
        i.entry.seq: Residency.FULL if i.eviction is None else Residency.PLACEHOLDER for i in items
    }


def output_calls(output: Sequence[Entry]) -> tuple[ToolCall, ...]:
    """Return the tool calls a turn's output made, in order."""
    return tuple(parse_tool_call(e.body) for e in output if e.kind is BlockKind.TOOL_CALL)
