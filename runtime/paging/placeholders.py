"""Placeholder and stub text: the one line that stands for a paged-out block, and tool stubs.

Owns: the ``recall`` tool definition, placeholder lines for tool results, duplicates and
messages, and tool-schema stubs in three styles.

Invariants:
- Every text here is a function of the block (and the call it answers) only, never of the turn,
  so a paged-out block reads the same in every later request (a stable prompt prefix). The one
  exception is deliberate and one-way: a placeholder becomes its ``tight_placeholder`` once, when
  the request cannot fit its budget otherwise, and stays tight.
- Every placeholder is one line and carries the block's short id; a stub keeps the tool's name,
  so the tools array stays valid and the tool stays callable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum

from runtime.blocks import BlockKind, Entry, ToolCall, canonical_json, without_key

RECALL_TOOL_NAME = "recall"
RECALL_TOOL: Mapping[str, object] = {
    "name": RECALL_TOOL_NAME,
    "description": "Page a paged-out block back in: pass the block id its placeholder shows.",
    "input_schema": {
        "type": "object",
        "properties": {"block_id": {"type": "string", "description": "Id from a placeholder."}},
        "required": ["block_id"],
    },
}
_ABBREV_CHARS = 100
_EXCERPT_CHARS = 60


class StubStyle(StrEnum):
    COMPACT = "compact"  # name, first sentence and a one-line input signature
    SIGNATURE = "signature"  # name, first sentence, input schema without descriptions
    MINIMAL = "minimal"  # name and first sentence only (Pichay's stub)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_call(call: ToolCall | None) -> str:
    """Return ``name(arg=value, ...)`` abbreviated to one short line."""
    if call is None:
        return "an unknown tool call"
    if isinstance(call.input, dict):
        args = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
            for k, v in call.input.items()
        )
    else:
        args = json.dumps(call.input, ensure_ascii=False)
    return _one_line(f"{call.name}({args})", _ABBREV_CHARS)


def size_text(n_bytes: int, tokens: int) -> str:
    """Return "1,234 bytes, 410 tokens"."""
    return f"{n_bytes:,} bytes, {tokens:,} tokens"


def _hint(recall: bool, short_id: str, *, rerun: bool) -> str:
    if recall:
        return f'Call recall(block_id="{short_id}") if you need it.'
    return "Re-run the tool call if you need its output." if rerun else "It is no longer shown."


def result_placeholder(short_id: str, call: ToolCall | None, size: str, recall: bool) -> str:
    """Return the placeholder line of an evicted tool result."""
    hint = _hint(recall, short_id, rerun=True)
    return f"[Paged out: block {short_id}, result of {describe_call(call)} ({size}). {hint}]"


def duplicate_placeholder(short_id: str, original: str, call: ToolCall | None, size: str) -> str:
    """Return the placeholder line of a tool result whose content an earlier block holds."""
    return (
        f"[Duplicate: block {short_id}, result of {describe_call(call)} ({size}), "
        f"is identical to block {original} above.]"
    )


def message_placeholder(entry: Entry, size: str, recall: bool) -> str:
    """Return the placeholder line of a user or assistant message paged out under pressure."""
    who = "user message" if entry.kind is BlockKind.USER_MESSAGE else "assistant message"
    excerpt = _one_line(entry.body, _EXCERPT_CHARS)
    hint = _hint(recall, entry.block.short_id, rerun=False)
    return f'[Paged out: block {entry.block.short_id}, {who} ({size}): "{excerpt}". {hint}]'


def tight_placeholder(short_id: str, what: str, recall: bool) -> str:
    """Return the shortest placeholder line of a paged-out block: its id, what it was and the
    recall hint, no description or size (a tool result's call is named by the call beside it).
    Used only when a request with every block paged out is still over its budget."""
    hint = f'recall(block_id="{short_id}")' if recall else "no longer shown"
    return f"[Paged out: block {short_id}, {what}; {hint}]"


def tight_duplicate_placeholder(short_id: str, original: str) -> str:
    """Return the shortest line of a duplicate: its id and the block above that holds the same
    content (no recall hint: recalling the copy would only send that content again)."""
    return f"[Duplicate: block {short_id}, same as block {original} above]"


def _first_sentence(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    cut = line.find(". ")
    return _one_line(line if cut < 0 else line[: cut + 1], 120)


def signature(schema: object) -> str:
    """Return a JSON schema as a one-line signature: {a: string, b?: [{c: integer}], d: "x"|"y"}."""
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    props = schema.get("properties")
    if isinstance(props, dict):
        required = schema.get("required") or []
        fields = (f"{k}{'' if k in required else '?'}: {signature(v)}" for k, v in props.items())
        return "{" + ", ".join(fields) + "}"
    if schema.get("type") == "array":
        return f"[{signature(schema.get('items'))}]"
    return str(schema.get("type", "any"))


def schema_stub(entry: Entry, style: StubStyle) -> tuple[str, str] | None:
    """Return (note, stub body) for a tool schema, or None when its body is not a definition."""
    try:
        data = json.loads(entry.body)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "name" not in data:
        return None
    short = entry.block.short_id
    first = _first_sentence(str(data.get("description", "")))
    full_schema = data.get("input_schema", {})
    schema: object = {"type": "object"}
    if style is StubStyle.COMPACT:
        desc = f"{first} Input: {signature(full_schema)} [stub of block {short}]"
    elif style is StubStyle.SIGNATURE:
        desc, schema = f"{first} [stub of block {short}]", without_key(full_schema, "description")
    else:
        desc = f'{first} [stub of block {short}; recall(block_id="{short}") for its input]'
    stub = {"description": desc.strip(), "input_schema": schema, "name": data["name"]}
    return f"[stub of block {short}]", canonical_json(stub).decode()


def recall_tool_json() -> bytes:
    """Return the canonical JSON of the recall tool definition (what is counted and sent)."""
    return canonical_json(RECALL_TOOL)
