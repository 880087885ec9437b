"""Naming what an experiment changes: a unit path, or a block of the turn's plan.

Owns: ``resolve_target``. A target is either a unit path of the request (``messages[2].content[0]``;
``runtime.replay.edits.parse_path``) or the id (or a 6+ character prefix) of a block the turn's
plan selected, found in the request by what the packer made of it: a tool call by its
``tool_use`` id, a tool result by its ``tool_use_id``, a tool schema by its name, a message
by its text. A block packed inside a section with others (the system text) has no unit of its
own, and is refused with the unit to name instead.

Invariants: resolving reads the store, never writes it; ties are broken by cache order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runtime.blocks import Block, BlockKind, parse_tool_call, parse_tool_result
from runtime.errors import InvalidInput, NotFound
from runtime.inspect.request import cache_units
from runtime.replay.edits import parse_path
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceRecord

_MIN_PREFIX = 6


def resolve_target(
    store: BlockStore, record: TraceRecord, data: Mapping[str, Any], target: str
) -> str:
    """Return ``target`` as a unit path of ``data`` (a path is returned as given)."""
    text = target.strip()
    if text.split("[", 1)[0].split(".", 1)[0] in ("tools", "system", "messages"):
        parse_path(text)
        return text
    block = _plan_block(store, record, text)
    for unit in cache_units(data):
        if _packs(block, unit.value):
            return unit.path
    raise InvalidInput(
        f"block {block.id[:12]} ({block.kind.value}) is packed together with other blocks, so it "
        "has no unit of its own in the request; name the unit instead (e.g. --edit system[0]=FILE)"
    )


def _plan_block(store: BlockStore, record: TraceRecord, prefix: str) -> Block:
    if len(prefix) < _MIN_PREFIX:
        raise InvalidInput(
            f"{prefix!r} is neither a unit path (messages[N].content[M], system[N], tools[N]) "
            f"nor a block id of {_MIN_PREFIX}+ characters"
        )
    ids = [str(s.get("block_id")) for s in record.plan.get("selected") or ()]
    found = sorted(i for i in ids if i.startswith(prefix.lower()))
    if not found:
        raise InvalidInput(
            f"trace {record.call_id}'s plan selected no block {prefix!r}; the turn page lists "
            "the blocks it packed"
        )
    try:
        return store.get(found[0])
    except NotFound:
        raise InvalidInput(
            f"block {found[0][:12]} is no longer in the store; name the unit of the request "
            "instead (messages[N].content[M])"
        ) from None


def _packs(block: Block, value: Any) -> bool:
    """Whether the unit ``value`` (a cache unit's value) is what the packer made of ``block``."""
    part = value[1] if isinstance(value, tuple) else value
    if not isinstance(part, Mapping):
        return False
    kind = part.get("type")
    if block.kind is BlockKind.TOOL_CALL:
        return kind == "tool_use" and part.get("id") == parse_tool_call(block.body).call_id
    if block.kind is BlockKind.TOOL_RESULT:
        call = parse_tool_result(block.body).call_id
        return kind == "tool_result" and part.get("tool_use_id") == call
    if block.kind is BlockKind.TOOL_SCHEMA:
        try:
            name = json.loads(block.body).get("name")
        except (ValueError, AttributeError):
            return False
        return "input_schema" in part and part.get("name") == name
    return kind == "text" and part.get("text") == block.body
