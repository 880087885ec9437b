"""One change to a recorded request: what it is, and applying it to the request's JSON.

Owns: ``ChangeKind``, ``Change`` (the one thing an experiment changes, as stored on its record),
``parse_path`` / ``resolve_target`` (a unit of the request named as the prompt cache sees it:
``tools[0]``, ``system[1]``, ``messages[4].content[0]``, ``messages[4]``, or by a block id of
the turn's plan) and ``apply_change`` (the request data with the change made).

Invariants:
- A change touches its target only: every other unit keeps its value, order and cache
  breakpoint (``runtime.replay.isolation`` proves it on the bytes). An edited unit keeps its
  ``cache_control`` marker unless the replacement is a whole unit object that says otherwise.
- Tool pairs stay whole. Dropping a ``tool_use`` (or the message holding it) drops its
  ``tool_result`` too, and the change says so; dropping a ``tool_result`` alone, an edit that
  renames a tool_use id, or an insert that adds an unanswered call is refused, with what to
  do instead. OpenAI ``tool_calls`` / ``tool`` messages are paired the same way.
- Nothing here reads the clock or iterates a set: the same change on the same bytes gives the
  same request.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.errors import InvalidInput
from runtime.inspect.request import CACHE_CONTROL, cache_units

Path = tuple[str | int, ...]
_STEP = re.compile(r"([A-Za-z_]+)|\[(\d+)\]|\.")
_TOP_LISTS = ("tools", "system", "messages")


class ChangeKind(StrEnum):
    """What one experiment changes about a recorded turn."""

    NONE = "none"  # the same bytes again (a sample for variance, or the playground unchanged)
    EDIT = "edit"  # replace one unit's content
    DROP = "drop"  # remove one unit (and its tool pair)
    INSERT = "insert"  # add one unit after another
    PARAM = "param"  # set one request parameter (temperature, top_p, max_tokens, ...)
    MODEL = "model"  # send to another model of the same provider
    PROVIDER = "provider"  # send the same bytes to another provider of the same format
    BUDGET = "budget"  # re-page with one section's budget changed
    WEIGHT = "weight"  # re-page with one retriever's weight changed
    REQUEST = "request"  # a request edited as JSON in the playground


@dataclass(frozen=True)
class Change:
    """The one thing an experiment changes: its kind, its target and its new value."""

    kind: ChangeKind
    target: str = ""  # a unit path, a parameter, a section or a retriever name
    value: Any = field(default=None, hash=False)  # JSON-ready: text, a unit, a number, a name

    def describe(self) -> str:
        """Return the change in one line, as pages and the CLI show it."""
        shown = self.value if not isinstance(self.value, str) else _clip(self.value)
        return {
            ChangeKind.NONE: "nothing: the same bytes again",
            ChangeKind.EDIT: f"edit {self.target}",
            ChangeKind.DROP: f"drop {self.target}",
            ChangeKind.INSERT: f"insert after {self.target}",
            ChangeKind.PARAM: f"set {self.target}={json.dumps(self.value)}",
            ChangeKind.MODEL: f"model -> {shown}",
            ChangeKind.PROVIDER: f"provider -> {shown}",
            ChangeKind.BUDGET: f"budget {self.target}={shown}",
            ChangeKind.WEIGHT: f"weight {self.target}={shown}",
            ChangeKind.REQUEST: "request edited in the playground",
        }[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "target": self.target, "value": self.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(ChangeKind(data["kind"]), str(data.get("target", "")), data.get("value"))


@dataclass(frozen=True)
class Applied:
    """A request with a change made: the new data, the units it touched, and what to say."""

    data: dict[str, Any]
    paths: tuple[Path, ...]  # the units changed, removed or added (in the old or new request)
    sides: str  # where those units are: both (edited), original (dropped), child (added)
    notes: tuple[str, ...] = ()


def _clip(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def parse_path(text: str) -> Path:
    """Return a unit path (``messages[4].content[0]``) as keys and indexes, or raise."""
    steps: list[str | int] = []
    pos = 0
    for m in _STEP.finditer(text.strip()):
        if m.start() != pos:
            break
        pos = m.end()
        if m.group(1):
            steps.append(m.group(1))
        elif m.group(2):
            steps.append(int(m.group(2)))
    if pos != len(text.strip()) or not steps or steps[0] not in _TOP_LISTS:
        raise InvalidInput(
            f"{text!r} names no unit of the request: give tools[N], system[N], messages[N] or "
            "messages[N].content[M] (the turn page and `llm386 trace ID --request` show them), "
            "or a block id of the turn's plan"
        )
    return tuple(steps)


def path_text(path: Path) -> str:
    """Return a path as the cache units name it."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def unit_paths(data: Any) -> list[str]:
    """Return the path of every unit of a request, in prompt-cache order (model first)."""
    return [u.path for u in cache_units(data)]


def lookup(data: Any, path: Path) -> Any:
    """Return the value at ``path``, or raise InvalidInput naming the units there are."""
    node = data
    for step in path:
        ok = (isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node)) or (
            isinstance(step, str) and isinstance(node, dict) and step in node
        )
        if not ok:
            known = ", ".join(unit_paths(data)[1:12])
            raise InvalidInput(
                f"the request has no {path_text(path)}; its units start {known} "
                "(see the turn page, or `llm386 trace ID --request`)"
            )
        node = node[step]
    return node


def apply_change(data: Mapping[str, Any], change: Change) -> Applied:
    """Return ``data`` with ``change`` made (EDIT, DROP, INSERT, PARAM, MODEL); raise if refused."""
    new = copy.deepcopy(dict(data))
    if change.kind is ChangeKind.PARAM:
        return _set_param(new, change.target, change.value)
    if change.kind is ChangeKind.MODEL:
        return _set_param(new, "model", change.value)
    path = parse_path(change.target)
    if change.kind is ChangeKind.EDIT:
        applied = _edit(new, path, change.value)
    elif change.kind is ChangeKind.DROP:
        applied = _drop(new, path)
    elif change.kind is ChangeKind.INSERT:
        applied = _insert(new, path, change.value)
    else:
        raise InvalidInput(f"a {change.kind.value} change is not made on the request JSON")
    check_tool_pairs(data, applied.data, change)
    return applied


# -- parameters --------------------------------------------------------------------------------

_NOT_PARAMS = ("messages", "system", "tools")


def parse_value(text: str) -> Any:
    """Return a command-line value as JSON (``0``, ``0.7``, ``true``), else as the string.

    A number JSON cannot carry (``NaN``, ``Infinity``, ``1e400``) or a value nested deeper than
    Python parses is refused with what to give instead."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_finite)
    except RecursionError:
        raise InvalidInput(
            f"a value nested {text.count('[') + text.count('{'):,} levels deep cannot be sent: "
            "give a number, a string or a small JSON value"
        ) from None
    except ValueError:
        return text


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"{text} is not a number JSON can carry: give a finite number")
    return value


def _set_param(new: dict[str, Any], name: str, value: Any) -> Applied:
    if name in _NOT_PARAMS or not re.fullmatch(r"[a-z_]+", name or ""):
        raise InvalidInput(
            f"{name!r} is not a sampling parameter: --set takes temperature=0, top_p=0.9, "
            "top_k=40, max_tokens=512 and the like; edit messages, system or tools with --edit"
        )
    if new.get(name) == value and name in new:
        raise InvalidInput(f"the request already has {name}={json.dumps(value)}: nothing changes")
    sides = "both" if name in new else "child"
    new[name] = value
    return Applied(new, ((name,),), sides)


# -- units ---------------------------------------------------------------------------------------


def _edit(new: dict[str, Any], path: Path, value: Any) -> Applied:
    old = lookup(new, path)
    replacement = _edited_unit(old, value, path_text(path))
    if replacement == old:
        raise InvalidInput(f"the edit leaves {path_text(path)} as it was: nothing changes")
    _parent(new, path)[path[-1]] = replacement
    return Applied(new, (path,), "both")


def _edited_unit(old: Any, value: Any, where: str) -> Any:
    """Return what ``value`` (text, or a JSON unit) makes of the unit ``old``."""
    whole = _as_unit(value)
    if whole is not None and isinstance(old, dict) and "type" in whole:
        if CACHE_CONTROL in old and CACHE_CONTROL not in whole:
            whole[CACHE_CONTROL] = old[CACHE_CONTROL]  # the breakpoint stays where it was
        return whole
    if isinstance(old, str):
        return str(value)
    if not isinstance(old, dict):
        raise InvalidInput(f"{where} is not a unit that can be edited")
    field_name = {"text": "text", "tool_result": "content", "tool_use": "input"}.get(
        str(old.get("type")), "content" if "content" in old else ""
    )
    if not field_name:
        raise InvalidInput(
            f"{where} is a {old.get('type') or 'tool'} unit: give its whole new JSON object"
        )
    if field_name == "input" and not isinstance(whole, dict):
        raise InvalidInput(f"{where} is a tool_use: give its new input as a JSON object")
    return {**old, field_name: whole if field_name == "input" else str(value)}


def _as_unit(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _parent(data: Any, path: Path) -> Any:
    return lookup(data, path[:-1]) if len(path) > 1 else data


def _drop(new: dict[str, Any], path: Path) -> Applied:
    unit = lookup(new, path)
    if not isinstance(path[-1], int):
        raise InvalidInput(f"{path_text(path)} is not one unit of a list: nothing to drop")
    if isinstance(unit, dict) and unit.get("type") == "tool_result":
        call = str(unit.get("tool_use_id"))
        raise InvalidInput(
            f"{path_text(path)} is the result of tool_use {call}: a call without its result is "
            f"refused by the API. Drop the tool_use {call} instead (its result goes with it)"
        )
    if isinstance(unit, dict) and unit.get("role") == "tool":
        raise InvalidInput(
            f"{path_text(path)} answers tool call {unit.get('tool_call_id')}: drop the "
            "assistant message that made the call instead (its answer goes with it)"
        )
    if len(path) == 4 and len(lookup(new, path[:2])["content"]) == 1:
        raise InvalidInput(
            f"dropping {path_text(path)} leaves messages[{path[1]}] with no content, which the "
            f"API refuses: drop the whole message with --drop messages[{path[1]}]"
        )
    pairs = [(_whole_if_only(new, p), why) for p, why in _paired_results(new, unit)]
    paths = (path, *(p for p, _ in pairs))
    notes = tuple(f"also dropped {path_text(p)}, the result of {why}" for p, why in pairs)
    for p in sorted(paths, key=_removal_order):
        del _parent(new, p)[p[-1]]
    return Applied(new, paths, "original", notes)


def _whole_if_only(data: Mapping[str, Any], path: Path) -> Path:
    """Return the message of a content unit that is all its message holds, else the unit."""
    if len(path) == 4 and len(lookup(data, path[:2])["content"]) == 1:
        return path[:2]
    return path


def _removal_order(path: Path) -> tuple[Any, ...]:
    # Delete later units first, so earlier indexes stay valid.
    return tuple(-s if isinstance(s, int) else 0 for s in path)


def _tool_ids(unit: Any) -> list[str]:
    """Return the tool call ids a unit makes (a tool_use, or a message holding calls)."""
    if not isinstance(unit, dict):
        return []
    if unit.get("type") == "tool_use":
        return [str(unit.get("id"))]
    ids = [str(c.get("id")) for c in unit.get("tool_calls") or () if isinstance(c, dict)]
    content = unit.get("content")
    if isinstance(content, list):
        ids += [i for block in content for i in _tool_ids(block)]
    return ids


def _result_paths(data: Mapping[str, Any]) -> dict[str, Path]:
    """Return where each tool call's result is: Messages tool_result blocks, OpenAI tool messages."""
    out: dict[str, Path] = {}
    for i, message in enumerate(data.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":
            out[str(message.get("tool_call_id"))] = ("messages", i)
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                out[str(block.get("tool_use_id"))] = ("messages", i, "content", j)
    return out


def _paired_results(data: Mapping[str, Any], unit: Any) -> list[tuple[Path, str]]:
    results = _result_paths(data)
    return [(results[i], f"tool_use {i}") for i in _tool_ids(unit) if i in results]


def _insert(new: dict[str, Any], path: Path, value: Any) -> Applied:
    lookup(new, path)
    if not isinstance(path[-1], int):
        raise InvalidInput(f"{path_text(path)} is not one unit of a list: nothing to insert after")
    unit = _as_unit(value)
    if unit is None:
        if path[0] == "messages" and len(path) == 2:
            raise InvalidInput(
                'a new message needs its JSON object ({"role": ..., "content": ...}); '
                "to add text inside a message, insert after messages[N].content[M]"
            )
        unit = {"type": "text", "text": str(value)}
    at = path[:-1] + (path[-1] + 1,)
    _parent(new, path).insert(path[-1] + 1, unit)
    return Applied(new, (at,), "child")


# -- tool pairs ----------------------------------------------------------------------------------


def tool_pairs(data: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (calls with no result, results with no call) of a request, sorted."""
    calls = [i for message in data.get("messages") or () for i in _tool_ids(message)]
    results = list(_result_paths(data))
    return (tuple(sorted(set(calls) - set(results))), tuple(sorted(set(results) - set(calls))))


def check_tool_pairs(before: Mapping[str, Any], after: Mapping[str, Any], change: Change) -> None:
    """Raise InvalidInput if ``change`` leaves a tool call or result unpaired that was paired."""
    was_calls, was_results = tool_pairs(before)
    calls, results = tool_pairs(after)
    broken = [c for c in calls if c not in was_calls] + [r for r in results if r not in was_results]
    if broken:
        raise InvalidInput(
            f"{change.describe()} would leave tool call {broken[0]} without its pair (a "
            "tool_use needs its tool_result in the next message, and the reverse), which the "
            "API refuses; nothing was sent. Change the call and its result together in the "
            "playground, or drop the tool_use (its result goes with it)"
        )
