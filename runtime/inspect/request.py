"""A readable, sectioned view of a model request's bytes, and where its prompt cache breaks.

Owns: ``view_request`` (request bytes -> labelled units of text lines, for diffs and pages) and
``cache_units`` (the request as the provider's cache sees it: tools, then system, then each
message content block, with the ``cache_control`` breakpoints marked).

Invariants:
- The view is derived from the bytes alone and never changes them; bytes that are not a JSON
  object are shown as plain text lines in one unit, so nothing is hidden.
- Works for Anthropic Messages requests and OpenAI chat requests (string or block content,
  ``tool_use``/``tool_result`` blocks, OpenAI ``tool_calls`` and ``tool`` messages).
- Unit headers carry the role but not the message index, so a sliding window that drops old
  messages does not make every later header look changed; the label keeps the index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CACHE_CONTROL = "cache_control"


@dataclass(frozen=True)
class Unit:
    """One labelled part of a request: lines ``start`` to ``end`` (exclusive) of the view."""

    label: str  # "params", "tools[2] get_user_details", "system", "messages[5] assistant"
    section: str  # params | tools | system | messages | text
    start: int
    end: int


@dataclass(frozen=True)
class RequestView:
    lines: tuple[str, ...]
    units: tuple[Unit, ...]
    data: Any  # the parsed request (None when the bytes are not a JSON object)

    def unit_at(self, line: int) -> Unit | None:
        """Return the unit holding view line ``line`` (binary search over the units)."""
        lo, hi = 0, len(self.units)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.units[mid].end <= line:
                lo = mid + 1
            else:
                hi = mid
        return self.units[lo] if lo < len(self.units) and self.units[lo].start <= line else None


def parse_request(raw: bytes) -> Any:
    """Return the JSON object in ``raw``, or None if it is not one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # untrusted: may nest 100,000 deep
        return None
    return data if isinstance(data, dict) else None


def view_request(raw: bytes, data: Any = None) -> RequestView:
    """Return the sectioned text view of request bytes (``data``: their parse, if known)."""
    data = parse_request(raw) if data is None else data
    builder = _ViewBuilder()
    if data is not None:
        try:
            _view_object(builder, data)
        except RecursionError:  # parsed, but too deep to re-encode here: show the text instead
            builder, data = _ViewBuilder(), None
    if data is None:
        builder.unit("request", "text", raw.decode("utf-8", "replace").split("\n"))
    return RequestView(tuple(builder.lines), tuple(builder.units), data)


class _ViewBuilder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.units: list[Unit] = []

    def unit(self, label: str, section: str, lines: Sequence[str]) -> None:
        start = len(self.lines)
        self.lines.extend(lines)
        self.units.append(Unit(label, section, start, len(self.lines)))


def _view_object(builder: _ViewBuilder, data: Mapping[str, Any]) -> None:
    params = [f"{k}: {_compact(v)}" for k, v in data.items() if k not in _PARTS]
    if params:
        builder.unit("params", "params", ["### params", *params])
    for i, tool in enumerate(_list(data.get("tools"))):
        name = _tool_name(tool)
        builder.unit(f"tools[{i}] {name}", "tools", [f"### tool {name}", _compact(tool)])
    system = data.get("system")
    if isinstance(system, str):
        builder.unit("system", "system", ["### system", *system.split("\n")])
    elif isinstance(system, list):
        for i, block in enumerate(system):
            builder.unit(f"system[{i}]", "system", ["### system", *_block_lines(block)])
    for i, message in enumerate(_list(data.get("messages"))):
        role = str(message.get("role", "?")) if isinstance(message, dict) else "?"
        lines = [f"### {role}", *_message_lines(message)]
        builder.unit(f"messages[{i}] {role}", "messages", lines)


_PARTS = ("tools", "system", "messages")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return "?"
    fn = tool.get("function")
    return str(fn.get("name") if isinstance(fn, dict) else tool.get("name", "?"))


def _message_lines(message: Any) -> list[str]:
    if not isinstance(message, dict):
        return [_compact(message)]
    lines: list[str] = []
    if message.get("tool_call_id"):
        lines.append(f"[tool result for {message['tool_call_id']}]")
    content = message.get("content")
    if isinstance(content, str):
        lines.extend(content.split("\n"))
    elif isinstance(content, list):
        for block in content:
            lines.extend(_block_lines(block))
    for call in _list(message.get("tool_calls")):
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        lines.append(f"[tool call {fn.get('name')} id={call.get('id')}] {fn.get('arguments')}")
    if CACHE_CONTROL in message:
        lines.append(f"[cache_control {_compact(message[CACHE_CONTROL])}]")
    return lines


def _block_lines(block: Any) -> list[str]:
    if not isinstance(block, dict):
        return [_compact(block)]
    kind = block.get("type")
    if kind == "text":
        lines = str(block.get("text", "")).split("\n")
    elif kind == "tool_use":
        lines = [
            f"[tool_use {block.get('name')} id={block.get('id')}] {_compact(block.get('input'))}"
        ]
    elif kind == "tool_result":
        error = " error" if block.get("is_error") else ""
        lines = [f"[tool_result for {block.get('tool_use_id')}{error}]", *_result_lines(block)]
    else:
        lines = [_compact({k: v for k, v in block.items() if k != CACHE_CONTROL})]
    if CACHE_CONTROL in block:
        lines.append(f"[cache_control {_compact(block[CACHE_CONTROL])}]")
    return lines


def _result_lines(block: Mapping[str, Any]) -> list[str]:
    content = block.get("content")
    if isinstance(content, str):
        return content.split("\n")
    return [line for inner in _list(content) for line in _block_lines(inner)]


# -- what the prompt cache sees ----------------------------------------------------------------


@dataclass(frozen=True)
class CacheUnit:
    """One piece of the cached prefix, in cache order; ``value`` excludes its breakpoint marker."""

    path: str  # "tools[0]", "system[1]", "messages[4].content[0]"
    value: Any
    breakpoint: bool


def cache_units(data: Any) -> list[CacheUnit]:
    """Return the request in prompt-cache order: model, tools, system, message content blocks.

    Anthropic matches cached prefixes in exactly this order (not the JSON key order), so two
    requests share a cache entry up to their first differing unit.
    """
    if not isinstance(data, dict):
        return []
    return list(_cache_walk(data))


def _cache_walk(data: Mapping[str, Any]) -> Iterator[CacheUnit]:
    yield CacheUnit("model", data.get("model"), False)
    for i, tool in enumerate(_list(data.get("tools"))):
        yield _unit(f"tools[{i}]", tool)
    system = data.get("system")
    if isinstance(system, list):
        for i, block in enumerate(system):
            yield _unit(f"system[{i}]", block)
    elif system is not None:
        yield CacheUnit("system", system, False)
    for i, message in enumerate(_list(data.get("messages"))):
        content = message.get("content") if isinstance(message, dict) else message
        role = message.get("role") if isinstance(message, dict) else None
        if isinstance(content, list):
            for j, block in enumerate(content):
                unit = _unit(f"messages[{i}].content[{j}]", block)
                yield CacheUnit(unit.path, (role, unit.value), unit.breakpoint)
        else:
            yield _unit(f"messages[{i}]", message)


def _unit(path: str, value: Any) -> CacheUnit:
    if isinstance(value, dict) and CACHE_CONTROL in value:
        bare = {k: v for k, v in value.items() if k != CACHE_CONTROL}
        return CacheUnit(path, bare, True)
    return CacheUnit(path, value, False)


def cached_prefix_bytes(raw: bytes) -> int | None:
    """Return the length of ``raw`` up to the end of its last ``cache_control`` marker, if any."""
    key = b'"cache_control"'
    at = raw.rfind(key)
    if at < 0:
        return None
    start = raw.find(b":", at + len(key)) + 1
    window = raw[start : start + 1024]  # a marker is a tiny object: {"type":"ephemeral"}
    stripped = window.lstrip()
    try:
        _, end = json.JSONDecoder().raw_decode(stripped.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return None
    # The marker is ASCII JSON, so characters and bytes agree up to its end.
    return start + (len(window) - len(stripped)) + end
