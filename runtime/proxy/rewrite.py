"""A client's request as entries for the pager, and the request the pager's plan makes of it.

Owns: ``Site`` (one entry of a request and where it sits in the request's JSON), ``read_sites``
(Messages, Chat Completions or Responses JSON -> sites, in request order), ``entries_of``
(sites -> the ``Entry`` list ``paging.turn.page_turn`` reads) and ``paged_request`` (the JSON the upstream
gets: paged-out tool results and messages replaced by their placeholder, stubbed tools by their
stub, and the ``recall`` tool added when the plan offers it).

Invariants:
- Bodies follow ``runtime.proxy.conversation`` exactly (the same text and tool-schema rules), so
  an entry's id is the id of the block the recorder stores for that part, and a placeholder's
  block id opens that block's page.
- An entry's seq is its site's index: an eviction names the one place it rewrites.
- Only a part's content changes: a tool result keeps its ``tool_use_id`` / ``tool_call_id`` /
  ``call_id`` and ``is_error``, a Responses message keeps its ``id``, ``role`` and part type,
  any part keeps its ``cache_control``, every other field and the order of
  messages, parts and tools stay as the client sent them. The client's JSON is never mutated.
- A tool the proxy cannot stub (a server tool, which has no ``input_schema``) is read as a
  fixed part of the request, like the system prompt: the policy never pages it out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runtime.blocks import Block, BlockKind, Entry, Provenance, ToolCall, ToolResult, content_hash
from runtime.paging.eviction import EvictionPlan
from runtime.paging.placeholders import RECALL_TOOL, RECALL_TOOL_NAME
from runtime.proxy.apis import Wire
from runtime.proxy.conversation import (
    ROLE_KINDS,
    call_arguments,
    function_of,
    text_of,
    tool_schema_body,
    uncached,
)

Path = tuple[str | int, ...]
PAGED_WIRES = (Wire.MESSAGES, Wire.CHAT, Wire.RESPONSES)
_SOURCE = Provenance("proxy:page")


class Slot(StrEnum):
    """What a site's placeholder replaces."""

    FIXED = "fixed"  # never rewritten: system prompt, tool calls, server tools
    TOOL = "tool"  # tools[i]: replaced by its stub
    CONTENT = "content"  # the ``content`` of the object at the path
    PART = "part"  # the content part at the path: becomes a text part
    PARTS = "parts"  # a Responses message's content list: becomes one part of the same type
    OUTPUT = "output"  # the ``output`` of a Responses function_call_output item


@dataclass(frozen=True)
class Site:
    """One entry of a request: its kind and body, and where its content sits."""

    kind: BlockKind
    body: str
    path: Path
    slot: Slot


def read_sites(wire: Wire, data: Mapping[str, Any]) -> list[Site]:
    """Return a Messages, Chat Completions or Responses request's sites, in request order."""
    if wire not in PAGED_WIRES:
        raise ValueError(f"paging reads {', '.join(PAGED_WIRES)} requests, not {wire}")
    sites: list[Site] = []
    if wire is Wire.MESSAGES:
        _messages_system(sites, data.get("system"))
    if wire is Wire.RESPONSES:
        _messages_system(sites, data.get("instructions"))
        sites += _tool_sites(data.get("tools"))
        _responses_input(sites, data.get("input"))
        return [s for s in sites if s.body]
    sites += _tool_sites(data.get("tools"))
    messages = data.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(message, dict):
            reader = _messages_message if wire is Wire.MESSAGES else _chat_message
            reader(sites, ("messages", i), message)
    return [s for s in sites if s.body]


def entries_of(sites: Sequence[Site]) -> list[Entry]:
    """Return the sites as entries of one in-memory session, seq = site index."""
    return [
        Entry("proxy", seq, Block(s.kind, s.body, content_hash(s.kind, s.body)), 0.5, 0, _SOURCE)
        for seq, s in enumerate(sites)
    ]


def _add(sites: list[Site], kind: BlockKind, body: str, path: Path, slot: Slot) -> None:
    sites.append(Site(kind, body, path, slot))


def _messages_system(sites: list[Site], system: Any) -> None:
    parts = system if isinstance(system, list) else [system]
    for i, part in enumerate(parts):
        body = text_of([part]) if isinstance(part, dict) else text_of(part)
        _add(sites, BlockKind.SYSTEM, body, ("system", i), Slot.FIXED)


def _tool_sites(tools: Any) -> list[Site]:
    sites: list[Site] = []
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict):
            continue
        body = tool_schema_body(tool)
        stubbable = ("input_schema" in tool or isinstance(tool.get("function"), dict)
                     or (tool.get("type") == "function" and "name" in tool))  # fmt: skip
        kind = BlockKind.TOOL_SCHEMA if stubbable else BlockKind.SYSTEM
        _add(sites, kind, body, ("tools", i), Slot.TOOL if stubbable else Slot.FIXED)
    return sites


def _messages_message(sites: list[Site], path: Path, message: Mapping[str, Any]) -> None:
    kind = ROLE_KINDS.get(str(message.get("role")), BlockKind.USER_MESSAGE)
    content = message.get("content")
    if not isinstance(content, list):
        _add(sites, kind, text_of(content), path, Slot.CONTENT)
        return
    for j, item in enumerate(content):
        if not isinstance(item, dict):
            continue
        at = (*path, "content", j)
        if item.get("type") == "tool_use":
            body = ToolCall(str(item.get("id")), str(item.get("name")), item.get("input")).body()
            _add(sites, BlockKind.TOOL_CALL, body, at, Slot.FIXED)
        elif item.get("type") == "tool_result":
            result = ToolResult(str(item.get("tool_use_id")), text_of(item.get("content")),
                                bool(item.get("is_error")))  # fmt: skip
            _add(sites, BlockKind.TOOL_RESULT, result.body(), at, Slot.CONTENT)
        else:
            _add(sites, kind, text_of([item]), at, Slot.PART)


def _chat_message(sites: list[Site], path: Path, message: Mapping[str, Any]) -> None:
    role = str(message.get("role"))
    if role == "tool":
        result = ToolResult(str(message.get("tool_call_id")), text_of(message.get("content")))
        _add(sites, BlockKind.TOOL_RESULT, result.body(), path, Slot.CONTENT)
        return
    kind = ROLE_KINDS.get(role, BlockKind.USER_MESSAGE)
    _add(sites, kind, text_of(message.get("content")), path, Slot.CONTENT)
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            fn = function_of(call)
            body = ToolCall(str(call.get("id")), str(fn.get("name")),
                            call_arguments(fn.get("arguments"))).body()  # fmt: skip
            _add(sites, BlockKind.TOOL_CALL, body, path, Slot.FIXED)


def _responses_input(sites: list[Site], items: Any) -> None:
    """Read a Responses ``input`` as ``conversation`` does: a string is one user message (kept
    as it is: there is no object to rewrite), each item an entry."""
    if isinstance(items, str):
        _add(sites, BlockKind.USER_MESSAGE, items, ("input",), Slot.FIXED)
        return
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        path: Path = ("input", i)
        kind = item.get("type")
        if kind == "function_call":
            call = ToolCall(str(item.get("call_id")), str(item.get("name")),
                            call_arguments(item.get("arguments")))  # fmt: skip
            _add(sites, BlockKind.TOOL_CALL, call.body(), path, Slot.FIXED)
        elif kind == "function_call_output":
            result = ToolResult(str(item.get("call_id")), text_of(item.get("output")))
            _add(sites, BlockKind.TOOL_RESULT, result.body(), path, Slot.OUTPUT)
        elif "role" in item:  # a message, with or without "type": "message"
            role_kind = ROLE_KINDS.get(str(item.get("role")), BlockKind.USER_MESSAGE)
            content = item.get("content")
            slot = Slot.CONTENT if isinstance(content, str) else Slot.PARTS
            if slot is Slot.PARTS and not _text_parts(content):
                slot = Slot.FIXED  # an image or a file: not text the proxy can stand in for
            _add(sites, role_kind, text_of(content), path, slot)
        else:  # reasoning, a built-in tool's call: the model's own, sent as it came
            _add(sites, BlockKind.ASSISTANT_MESSAGE, text_of(uncached(dict(item))), path,
                 Slot.FIXED)  # fmt: skip


def _text_parts(content: Any) -> bool:
    return (
        isinstance(content, list)
        and bool(content)
        and all(
            isinstance(p, dict) and p.get("type") in ("input_text", "output_text") for p in content
        )
    )


# -- the paged request ---------------------------------------------------------------------------


def tool_names(data: Mapping[str, Any]) -> list[str]:
    """Return the names of a request's tools (either wire format), in order."""
    names = []
    for tool in data.get("tools") or ():
        if isinstance(tool, dict):
            fn = tool.get("function")
            names.append(str((fn if isinstance(fn, dict) else tool).get("name", "")))
    return names


def paged_request(
    wire: Wire, data: Mapping[str, Any], sites: Sequence[Site], plan: EvictionPlan
) -> dict[str, Any]:
    """Return a copy of ``data`` with the plan's evictions applied and, when it offers it, the
    recall tool appended to the tools."""
    out = dict(data)
    copied: set[Path] = {()}  # membership only: the containers already copied for writing
    for ev in plan.evictions:
        site = sites[ev.seq]
        target = _writable(out, site.path, copied)
        if site.slot is Slot.TOOL:
            _stub_tool(wire, target, json.loads(ev.body))
        elif site.slot is Slot.CONTENT:
            target["content"] = ev.placeholder
        elif site.slot is Slot.OUTPUT:
            target["output"] = ev.placeholder
        elif site.slot is Slot.PARTS:
            first = target["content"][0]
            part = {"type": first["type"], "text": ev.placeholder}
            target["content"] = [part | ({"annotations": []} if "annotations" in first else {})]
        elif site.slot is Slot.PART:
            kept = {k: v for k, v in target.items() if k == "cache_control"}
            target.clear()
            target.update({"type": "text", "text": ev.placeholder, **kept})
    if plan.offers_recall:
        out["tools"] = [*(out.get("tools") or []), recall_tool(wire)]
    return out


def _writable(out: dict[str, Any], path: Path, copied: set[Path]) -> dict[str, Any]:
    """Return the object at ``path`` in ``out``, copying each container on the way once, so the
    client's JSON is never written to (and only what changes is copied)."""
    node: Any = out
    for depth, step in enumerate(path):
        at = path[: depth + 1]
        child = node[step]
        if at not in copied:
            child = dict(child) if isinstance(child, dict) else list(child)
            node[step] = child
            copied.add(at)
        node = child
    if not isinstance(node, dict):
        raise ValueError(f"request part at {path} is not an object")
    return node


def _stub_tool(wire: Wire, tool: dict[str, Any], stub: Mapping[str, Any]) -> None:
    if wire is Wire.RESPONSES:
        tool["description"], tool["parameters"] = stub["description"], stub["input_schema"]
        # Strict checking goes with the full schema, not a stub; left out, it defaults to on.
        tool["strict"] = False
        return
    if wire is Wire.CHAT:
        fn = {"name": stub["name"], "description": stub["description"],
              "parameters": stub["input_schema"]}  # fmt: skip
        tool["function"] = fn  # "strict" goes with the full schema: a stub cannot satisfy it
        return
    for key in ("description", "input_schema"):
        tool[key] = stub[key]


def recall_tool(wire: Wire) -> dict[str, Any]:
    """Return the recall tool in the wire format's tool shape."""
    if wire is Wire.RESPONSES:
        return {"type": "function", "name": RECALL_TOOL_NAME,
                "description": RECALL_TOOL["description"],
                "parameters": RECALL_TOOL["input_schema"], "strict": False}  # fmt: skip
    if wire is Wire.CHAT:
        fn = {"name": RECALL_TOOL_NAME, "description": RECALL_TOOL["description"],
              "parameters": RECALL_TOOL["input_schema"]}  # fmt: skip
        return {"type": "function", "function": fn}
    return dict(RECALL_TOOL)
