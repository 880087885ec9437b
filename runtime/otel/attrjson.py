"""JSON-valued span attributes, parsed once per request: ``AttributeJson``.

GenAI spans carry messages as JSON text, and the spans of one conversation repeat them: each
call's ``gen_ai.input.messages`` is the history so far, and every call repeats the same
``gen_ai.tool.definitions`` and ``gen_ai.system_instructions``. Checking each parsed value
against ``runtime.limits`` walks it in Python, which cost more than everything else ingest
did, so values are checked once per distinct text.

Invariants:
- An attribute text seen before in the same request gives the value parsed the first time;
  a JSON array is read element by element (C's ``raw_decode``), and an element whose text was
  seen before (in this or another attribute) is that same, already checked value. So the
  limits are checked once per distinct message, and the result is what ``limits.loads``
  would give.
- An array that begins with the elements of the last array parsed for the same attribute (the
  history so far, sent again with one more message) is read from where that one's elements
  end: the same element texts, so the same values.
- Checked elements are also kept for the process (``_Shared``, bounded), by their text: the
  tool definitions and instructions every request of an agent repeats are checked once.
- Parsed values are shared between spans (and requests) and must never be mutated; readers
  build new ones, and may ``remember`` what they made of a value (its messages, its tools) so
  that the next span repeating it costs a lookup.
- Nothing is trusted: NaN, Infinity and over-long integers are refused as ``limits`` refuses
  them, nesting past ``LIMITS.max_depth`` (checked by ``check_value``) or past what the C
  parser can recurse is refused, and any error raises ``ValueError`` saying why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from runtime import limits

LIMITS = limits.Limits(max_bytes=64 * 1024 * 1024, max_depth=32)
_SPACE = re.compile(r"[ \t\n\r]*")
_AFTER = frozenset(", \t\n\r]")  # what may follow an element (a number would go on otherwise)


def _refuse_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not a JSON number (NaN and Infinity are not allowed)")


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > LIMITS.max_int_digits:
        raise ValueError(f"an integer of {len(literal.lstrip('-')):,} digits")
    return int(literal)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_int)


class _Shared:
    """Checked array elements by their text, for the process; emptied past ``MAX_CHARS``."""

    MAX_CHARS = 4 * 1024 * 1024

    def __init__(self) -> None:
        self.elements: dict[str, Any] = {}
        self.chars = 0

    def add(self, text: str, value: Any) -> None:
        if self.chars + len(text) > self.MAX_CHARS:
            self.elements, self.chars = {}, 0  # a new dict: a reader holding the old one is safe
        self.elements[text] = value
        self.chars += len(text)


_SHARED = _Shared()


@dataclass(frozen=True)
class Converted:
    """What a reader made of the last list of input messages: the list (kept alive, so its
    elements are compared by identity), the messages made, and after each element how many
    messages and dropped parts there were."""

    items: list[Any]
    messages: tuple[Any, ...]
    ends: list[int]
    dropped: list[int]


class AttributeJson:
    """Parses attribute texts for one request, each distinct text (and array element) once."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._elements: dict[str, Any] = {}
        self._last_end = 0
        self._memo: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._arrays: dict[str, tuple[str, list[Any]]] = {}  # name -> last array: text, elements
        self.last_inputs: Converted | None = None  # ``runtime.otel.messages`` keeps it here

    def memo(self, kind: str, value: Any) -> Any | None:
        """Return what was remembered of parsed ``value`` as ``kind``, else None."""
        hit = self._memo.get((kind, id(value)))
        return hit[1] if hit is not None and hit[0] is value else None

    def remember(self, kind: str, value: Any, result: Any) -> None:
        """Remember ``result`` for parsed ``value`` (kept alive here, so its id stays its own)."""
        self._memo[(kind, id(value))] = (value, result)

    def load(self, text: str, name: str) -> Any:
        """Return the JSON value of ``text``; raise ValueError saying why it is not one."""
        if text in self._values:
            return self._values[text]
        try:
            value = self._parse(text, name)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except limits.InputRejected as exc:
            raise ValueError(exc.reason) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg} at character {exc.pos})") from None
        self._values[text] = value
        return value

    def _parse(self, text: str, name: str) -> Any:
        start = _SPACE.match(text).end()  # type: ignore[union-attr]
        if not text.startswith("[", start):
            value, end = _DECODER.raw_decode(text, start)
            self._end(text, end)
            limits.check_value(value, name, LIMITS)
            return value
        out = self._known_prefix(text, name)
        if out:
            at = self._last_end
        else:
            at = _SPACE.match(text, start + 1).end()  # type: ignore[union-attr]
            if text.startswith("]", at):
                self._end(text, at + 1)
                return out
            out.append(self._element(text, at, name))
        while True:
            at = _SPACE.match(text, self._last_end).end()  # type: ignore[union-attr]
            if text.startswith("]", at):
                self._end(text, at + 1)
                self._arrays[name] = (text[: self._last_end], out)
                return out
            if not text.startswith(",", at):
                raise json.JSONDecodeError("expected ',' or ']'", text, at)
            at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
            out.append(self._element(text, at, name))

    def _known_prefix(self, text: str, name: str) -> list[Any]:
        """The elements ``text`` begins with, those of the last array of ``name`` (when it
        begins with that array's text up to where its last element ends), else none."""
        last = self._arrays.get(name)
        if (
            last is None
            or not text.startswith(last[0])
            or text[len(last[0]) : len(last[0]) + 1] not in _AFTER
        ):
            return []
        self._last_end = len(last[0])
        return list(last[1])

    def _element(self, text: str, at: int, name: str) -> Any:
        value, end = _DECODER.raw_decode(text, at)
        self._last_end = end
        key = text[at:end]
        if key in self._elements:
            return self._elements[key]
        shared = _SHARED.elements.get(key)
        if shared is None:
            limits.check_value([value], name, LIMITS)  # as an element: one level deeper
            _SHARED.add(key, value)
        else:
            value = shared
        self._elements[key] = value
        return value

    @staticmethod
    def _end(text: str, at: int) -> None:
        if _SPACE.match(text, at).end() != len(text):  # type: ignore[union-attr]
            raise json.JSONDecodeError("extra data after the value", text, at)
