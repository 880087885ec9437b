"""Input limits and the one JSON parser for data from outside (files, servers, uploads).

Owns: ``Limits`` (size, nesting depth, integer digits, string length, items per container),
``DEFAULT_LIMITS``, ``loads`` (safe JSON), ``check_toml_text`` and ``check_value`` (for parsers
that are not ours), ``check_fields`` (typed records built from outside data), and
``InputRejected``.

Invariants:
- Outside data is checked here before anything else touches it, so no later step meets a value
  Python or ``canonical_json`` cannot handle: NaN and Infinity (also numbers that overflow to
  them), integers longer than ``max_int_digits`` (Python refuses more than 4,300 anyway), lone
  surrogates (they cannot be encoded as UTF-8), invalid UTF-8, nesting past ``max_depth``.
- Depth is measured by an iterative scan of brackets before ``json.loads`` runs, so a hostile
  document can never exhaust the interpreter's stack; nothing here recurses over the data.
- Every refusal names the place (source, line and column, or a JSON path) and what to do.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidInput, MalformedFile

# A JSON string, a bracket, or a bare word the standard parser accepts but JSON does not.
# Possessive quantifiers: a string is one match with no backtracking state, however long.
_JSON_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]|NaN|-?Infinity', re.DOTALL)
_JSON_NUMBER = re.compile(
    r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?', re.DOTALL
)
# TOML strings (all four kinds) and comments hide brackets; what is left is structure.
_TOML_TOKEN = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]|[0-9][0-9_]*+',
    re.DOTALL,
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_OPENERS = frozenset("[{")


@dataclass(frozen=True)
class Limits:
    """The most any outside document may hold; a document over one is refused, never cut."""

    max_bytes: int = 1024 * 1024 * 1024  # a whole file or body
    max_depth: int = 64  # of nested arrays and objects
    max_int_digits: int = 1000
    max_string_chars: int = 256 * 1024 * 1024
    max_items: int = 10_000_000  # in one array or object

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, not {value!r}")


DEFAULT_LIMITS = Limits()
RESPONSE_LIMITS = Limits(max_bytes=64 * 1024 * 1024)
CONFIG_LIMITS = Limits(max_bytes=1024 * 1024, max_depth=16, max_int_digits=30)


class InputRejected(MalformedFile):
    """Outside data over a limit or not representable; ``where`` names the place.

    ``column`` is set when the place is a line and column (``where`` then ends with them).
    """

    def __init__(self, where: str, reason: str, advice: str, column: int | None = None) -> None:
        super().__init__(f"{where}: {reason}; {advice}")
        self.where = where
        self.reason = reason
        self.advice = advice
        self.column = column


class _Refused(Exception):
    """Raised inside json.loads hooks; turned into InputRejected with the place."""

    def __init__(self, reason: str, literal: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.literal = literal


def _position(text: str, offset: int, line_offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line + line_offset} column {column}"


def decode(data: bytes | str, source: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``data`` as text after checking its size and UTF-8 (a BOM is dropped)."""
    if len(data) > limits.max_bytes:
        raise InputRejected(
            source,
            f"{len(data):,} bytes is over the limit of {limits.max_bytes:,}",
            "split the input into smaller files",
        )
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputRejected(
            f"{source} line {line} column {col}",
            f"invalid UTF-8 (byte {exc.start})",
            "save the file as UTF-8",
        ) from None


def _scan(
    text: str, tokens: re.Pattern[str], source: str, limits: Limits, line_offset: int
) -> None:
    """Check nesting depth (and bare literals) in one pass over ``tokens``, without recursion."""
    depth = 0
    for match in tokens.finditer(text):
        char = match.group()
        if char in _OPENERS:
            depth += 1
            if depth > limits.max_depth:
                raise InputRejected(
                    f"{source} {_position(text, match.start(), line_offset)}",
                    f"nested deeper than {limits.max_depth} levels",
                    "flatten the data; nothing this deep is expected here",
                )
        elif char[0].isdigit():
            if len(char.replace("_", "")) > limits.max_int_digits:
                raise InputRejected(
                    f"{source} {_position(text, match.start(), line_offset)}",
                    f"a number of {len(char):,} digits",
                    f"numbers may have at most {limits.max_int_digits} digits",
                )
        elif char in "]}":
            depth = max(depth - 1, 0)
        elif char in ("NaN", "Infinity", "-Infinity"):
            raise _not_a_number(source, text, match.start(), char, line_offset)


def _not_a_number(
    source: str, text: str, offset: int, literal: str, line_offset: int
) -> InputRejected:
    return InputRejected(
        f"{source} {_position(text, offset, line_offset)}",
        f"{literal[:40]} is not a JSON number (NaN and Infinity are not allowed)",
        "write a finite number, or null",
    )


def _parse_int(limits: Limits) -> Any:
    def parse(literal: str) -> int:
        if len(literal.lstrip("-")) > limits.max_int_digits:
            raise _Refused(f"an integer of {len(literal.lstrip('-')):,} digits", literal)
        return int(literal)

    return parse


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(f"{literal[:40]} is too large for a number", literal)
    return value


def _parse_constant(literal: str) -> Any:
    raise _Refused(f"{literal} is not a JSON number", literal)


def loads(
    data: bytes | str,
    source: str = "input",
    limits: Limits = DEFAULT_LIMITS,
    *,
    line_offset: int = 0,
) -> Any:
    """Return the JSON value of ``data`` from outside, or raise InputRejected naming the place.

    ``line_offset`` is added to reported lines (for one line of a JSON Lines file).
    """
    text = decode(data, source, limits)
    _scan(text, _JSON_TOKEN, source, limits, line_offset)
    try:
        value = json.loads(
            text,
            parse_int=_parse_int(limits),
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise InputRejected(
            f"{source} line {exc.lineno + line_offset} column {exc.colno}",
            f"invalid JSON ({exc.msg})",
            "fix the file there and retry",
            exc.colno,
        ) from None
    except _Refused as exc:
        raise _locate(text, source, exc, limits, line_offset) from None
    check_value(value, source, limits)
    return value


def _locate(
    text: str, source: str, refused: _Refused, limits: Limits, line_offset: int
) -> InputRejected:
    """Find where the literal a hook refused stands (only on this error path)."""
    offset = 0
    for match in _JSON_NUMBER.finditer(text):
        if match.group() == refused.literal:
            offset = match.start()
            break
    if refused.literal.lstrip("-").isdigit():
        advice = f"integers may have at most {limits.max_int_digits} digits; write it as a string"
    else:
        advice = "write a finite number, or null"
    return InputRejected(f"{source} {_position(text, offset, line_offset)}", refused.reason, advice)


def check_value(
    value: Any, source: str = "input", limits: Limits = DEFAULT_LIMITS, *, finite: bool = True
) -> None:
    """Check parsed outside data (strings, numbers, sizes, depth) without recursing over it.

    ``finite=False`` lets NaN and infinities through, for a caller that reports them itself.
    """
    if _within(value, limits, finite):
        return  # the walk below names where a refused value is; only a refusal needs it
    for path, item in _walk(value, source, limits):
        if isinstance(item, str):
            _check_string(item, source, path, limits)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if item.bit_length() > limits.max_int_digits * 3.33:  # log2(10) bits per digit
                raise InputRejected(
                    f"{source} at {path}",
                    f"an integer of about {int(item.bit_length() / 3.32):,} digits",
                    f"integers may have at most {limits.max_int_digits} digits",
                )
        elif isinstance(item, float) and finite and not math.isfinite(item):
            raise InputRejected(
                f"{source} at {path}", f"{item} is not a finite number", "write a finite number"
            )
        elif isinstance(item, dict | list) and len(item) > limits.max_items:
            raise InputRejected(
                f"{source} at {path}",
                f"{len(item):,} items is over the limit of {limits.max_items:,}",
                "split the data",
            )


def _within(value: Any, limits: Limits, finite: bool) -> bool:
    """Whether ``check_value`` would pass ``value``: its checks without JSON paths, strings
    searched for surrogates in one pass. False for anything unusual (a subclass, a key that is
    not a string), which the full walk then judges."""
    strings: list[str] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    max_bits = limits.max_int_digits * 3.33
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if depth > limits.max_depth:
            return False
        if kind is str:
            strings.append(item)
        elif kind is dict:
            if len(item) > limits.max_items or not all(type(k) is str for k in item):
                return False
            strings.extend(item)
            stack.extend((child, depth + 1) for child in item.values())
        elif kind is list:
            if len(item) > limits.max_items:
                return False
            stack.extend((child, depth + 1) for child in item)
        elif kind is int:
            if item.bit_length() > max_bits:
                return False
        elif kind is float:
            if finite and not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    longest = max(map(len, strings), default=0)
    return longest <= limits.max_string_chars and not _SURROGATE.search("".join(strings))


def _check_string(text: str, source: str, path: str, limits: Limits) -> None:
    if len(text) > limits.max_string_chars:
        raise InputRejected(
            f"{source} at {path}",
            f"a string of {len(text):,} characters is over the limit of {limits.max_string_chars:,}",
            "split the text",
        )
    found = _SURROGATE.search(text)
    if found:
        raise InputRejected(
            f"{source} at {path}",
            f"a lone surrogate U+{ord(found.group()):04X} at character {found.start()} "
            "(it is not Unicode text and cannot be stored as UTF-8)",
            "remove it, or re-export the file from its source",
        )


def _walk(value: Any, source: str, limits: Limits) -> Iterator[tuple[str, Any]]:
    """Yield (JSON path, value) for every value and key, depth first, with an explicit stack."""
    stack: list[tuple[str, Any, int]] = [("$", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if depth > limits.max_depth:
            raise InputRejected(
                f"{source} at {path}",
                f"nested deeper than {limits.max_depth} levels",
                "flatten the data",
            )
        yield path, item
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                yield f"{path} (a key)", key
                stack.append((_child(path, key), child, depth + 1))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((f"{path}[{index}]", item[index], depth + 1))


def _child(path: str, key: Any) -> str:
    key = str(key)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key[:40])}]"


def check_toml_text(text: str, source: str, limits: Limits = CONFIG_LIMITS) -> None:
    """Check a TOML document's size and nesting before ``tomllib`` (which recurses) reads it."""
    decode(text, source, limits)
    _scan(text, _TOML_TOKEN, source, limits, 0)


# -- typed records from outside --------------------------------------------------------------

INT_RANGE = (-(2**63), 2**63 - 1)  # what the stores' fixed-width keys and codecs hold


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved annotations (resolving them on every record cost ingest 10%)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def check_fields(obj: Any, what: str) -> None:
    """Raise InvalidInput unless every field of dataclass ``obj`` has its annotated type.

    For records built from outside JSON with ``cls(**data)``: Python checks no annotation, and a
    wrong type (a list for a count, a string for a time) would only fail later, deep in a store.
    Integers must also fit in 64 bits.
    """
    cls = type(obj)
    checks = _CHECKS.get(cls)
    if checks is None:
        checks = _CHECKS[cls] = _field_checks(cls)
    for name, check, hint in checks:
        value = getattr(obj, name)
        if not check(value):
            raise InvalidInput(f"{what}: {name} is {_kind(value)}, expected {_hint_name(hint)}")


_CHECKS: dict[type, tuple[tuple[str, Callable[[Any], bool], Any], ...]] = {}


def _field_checks(cls: Any) -> tuple[tuple[str, Callable[[Any], bool], Any], ...]:
    """Each field of a dataclass with the check of its hint (built once per class)."""
    hints = _type_hints(cls)
    return tuple((name, _checker(hints[name]), hints[name]) for name in cls.__dataclass_fields__)


@functools.cache
def _shape(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """A hint's origin and arguments (asked of ``typing`` once per hint, not once per value)."""
    return typing.get_origin(hint), typing.get_args(hint)


def _has_type(value: Any, hint: Any) -> bool:
    return _checker(hint)(value)


@functools.cache
def _checker(hint: Any) -> Callable[[Any], bool]:
    """Return whether a value has type ``hint``: the hint is taken apart once, not per value."""
    origin, args = _shape(hint)
    if origin in (types.UnionType, typing.Union):
        return _any_of(tuple(_checker(arg) for arg in args), type(None) in args)
    if hint is type(None):
        return lambda value: value is None
    if hint is Any:
        return lambda value: True
    if hint is bool:
        return lambda value: isinstance(value, bool)
    if hint is int:
        return _is_int
    if hint is float:
        return lambda value: _is_int(value) or (isinstance(value, float) and math.isfinite(value))
    if origin is tuple:
        item = _checker(args[0])
        return lambda value: isinstance(value, tuple) and all(map(item, value))
    if origin is not None:
        return lambda value: isinstance(value, origin)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return functools.partial(_is_record, hint)
    return lambda value: isinstance(value, hint)


def _any_of(checks: tuple[Callable[[Any], bool], ...], none: bool) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if value is None and none:
            return True  # the commonest union, ``X | None``, holding None
        return any(c(value) for c in checks)

    return check


def _is_record(cls: type, value: Any) -> bool:
    if not isinstance(value, cls):
        return False
    check_fields(value, cls.__name__)
    return True


def _is_int(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and INT_RANGE[0] <= value <= INT_RANGE[1]
    )


def _kind(value: Any) -> str:
    if _is_int(value) or isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 24 else f"a {len(text)}-character number"
    return type(value).__name__


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("collections.abc.", "")
