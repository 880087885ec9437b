"""Blocks, edges and session entries: the typed values every other module passes around.

Invariants:
- A block's id is the SHA-256 (hex) of a canonical encoding of its kind and body, computed here
  and never taken from a caller. ``verify`` re-derives it with :func:`content_hash`.
- Identical (kind, body) is one block. What differs between two puts of the same content
  (priority, time, provenance) lives on the session ``Entry``, so nothing is silently dropped.
- Bodies are non-empty valid UTF-8 ``str``; priorities are finite and in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Self

from runtime.errors import InvalidBlock, InvalidEdge, InvalidSession, NotCanonicalJson

HASH_HEX_LEN = 64
SHORT_ID_LEN = 12
_SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$")
_HEX_RE = re.compile(r"^[0-9a-f]{4,64}$")


class _Kind(StrEnum):
    """A kind named in kebab-case; ``parse`` is how user input becomes one."""

    @classmethod
    def parse(cls, value: str | Self) -> Self:
        """Return the member named ``value``, or raise InvalidBlock / InvalidEdge listing them."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            error, noun = _UNKNOWN[cls]
            known = ", ".join(k.value for k in cls)
            raise error(f"unknown {noun} {value!r}; use one of: {known}") from None


class BlockKind(_Kind):
    SYSTEM = "system"
    USER_MESSAGE = "user-message"
    ASSISTANT_MESSAGE = "assistant-message"
    TOOL_CALL = "tool-call"
    TOOL_RESULT = "tool-result"
    TOOL_SCHEMA = "tool-schema"
    FACT = "fact"
    DOCUMENT_CHUNK = "document-chunk"
    SUMMARY = "summary"
    PLAN = "plan"
    STATE = "state"
    EVENT = "event"


class EdgeKind(_Kind):
    PARENT = "parent"
    DERIVED_FROM = "derived-from"
    SUPPORTS = "supports"
    CONTRADICTS = "contradicts"
    TOOL_INVOCATION = "tool-invocation"


# What ``parse`` raises for an unknown name of each kind, and what it calls the kind.
_UNKNOWN: dict[type[_Kind], tuple[type[Exception], str]] = {
    BlockKind: (InvalidBlock, "block kind"),
    EdgeKind: (InvalidEdge, "edge kind"),
}


@dataclass(frozen=True)
class Provenance:
    """Where a block came from: a free-form source, parent block ids and labels."""

    source: str = ""
    parents: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "parents": list(self.parents), "labels": list(self.labels)}

    @classmethod
    def from_json(cls, data: object) -> Provenance:
        """Read a provenance object; raise InvalidBlock unless its fields have their types."""
        if not isinstance(data, dict):
            raise InvalidBlock("provenance must be an object with source, parents and labels")
        parents, labels = data.get("parents") or [], data.get("labels") or []
        source = data.get("source") or ""
        lists = (parents, labels)
        if not isinstance(source, str) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists
        ):
            raise InvalidBlock(
                "provenance needs a text source and lists of text parents and labels"
            )
        return cls(source, tuple(parents), tuple(labels))


def content_hash(kind: BlockKind, body: str) -> str:
    """Return the SHA-256 hex of the canonical encoding of (kind, body)."""
    # Length-prefixed so no (kind, body) pair can collide with another by concatenation.
    kind_b = kind.value.encode("ascii")
    body_b = body.encode("utf-8")
    h = hashlib.sha256()
    h.update(b"llm386-block-v1\x00")
    h.update(len(kind_b).to_bytes(4, "big") + kind_b)
    h.update(len(body_b).to_bytes(8, "big") + body_b)
    return h.hexdigest()


def check_body(body: str | bytes, *, max_bytes: int) -> str:
    """Return ``body`` as str after checking it is non-empty UTF-8 under ``max_bytes``."""
    from runtime.errors import BlockTooLarge

    if isinstance(body, bytes | bytearray | memoryview):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidBlock(
                f"block body is not valid UTF-8 (byte {exc.start}); decode or re-encode it as UTF-8"
            ) from None
    if not isinstance(body, str):
        raise InvalidBlock(f"block body must be text, not {type(body).__name__}")
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBlock("block body holds lone surrogates, which are not valid UTF-8") from None
    if size == 0:
        raise InvalidBlock("block body is empty; put something or leave the block out")
    if size > max_bytes:
        raise BlockTooLarge(
            f"block body is {size} bytes, over the limit of {max_bytes}; split it into "
            "document chunks or raise max_block_bytes"
        )
    return body


def check_priority(priority: float) -> float:
    """Return ``priority`` as float after checking it is finite and in [0, 1]."""
    p = float(priority)
    if not math.isfinite(p) or p < 0.0 or p > 1.0:
        raise InvalidBlock(f"priority {priority!r} is outside [0, 1]")
    return p


def check_session(session: str) -> str:
    """Return ``session`` after checking it is a usable session id."""
    if not isinstance(session, str) or not _SESSION_RE.match(session):
        raise InvalidSession(
            f"session id {session!r} is not valid: use 1-200 characters from letters, digits "
            "and . _ : @ + = -, starting with a letter or digit"
        )
    return session


def check_block_id(block_id: str) -> str:
    """Return a lower-case hex block id (full or a prefix of 4+), or raise InvalidBlock."""
    bid = block_id.strip().lower() if isinstance(block_id, str) else ""
    if not _HEX_RE.match(bid):
        raise InvalidBlock(f"{block_id!r} is not a block id: expected 4-64 hex characters")
    return bid


@dataclass(frozen=True)
class Block:
    """Stored content: kind and body, identified by their hash, with first-put metadata."""

    kind: BlockKind
    body: str
    id: str
    priority: float = 0.5
    created_at: int = 0  # ms since the Unix epoch, when the content was first stored
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID_LEN]

    @property
    def size(self) -> int:
        return len(self.body.encode("utf-8"))

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "body": self.body,
            "priority": self.priority,
            "created_at": self.created_at,
            "provenance": self.provenance.to_json(),
        }


@dataclass(frozen=True)
class NewBlock:
    """What a caller puts: the store checks it and computes the id."""

    kind: BlockKind | str
    body: str | bytes
    priority: float = 0.5
    provenance: Provenance = field(default_factory=Provenance)
    created_at: int | None = None  # ms; None means "now" (the clock never reaches a prompt)


@dataclass(frozen=True)
class Entry:
    """One block's membership of one session: its place in order and per-session metadata."""

    session: str
    seq: int
    block: Block
    priority: float
    created_at: int
    provenance: Provenance

    @property
    def id(self) -> str:
        return self.block.id

    @property
    def kind(self) -> BlockKind:
        return self.block.kind

    @property
    def body(self) -> str:
        return self.block.body

    def to_json(self) -> dict[str, object]:
        data = self.block.to_json()
        data.update(
            session=self.session,
            seq=self.seq,
            priority=self.priority,
            created_at=self.created_at,
            provenance=self.provenance.to_json(),
        )
        return data


@dataclass(frozen=True)
class EntryRef:
    """An entry without its body: what listing a long session costs when bodies are not needed."""

    session: str
    seq: int
    id: str
    kind: BlockKind
    priority: float
    created_at: int
    provenance: Provenance
    size: int  # body bytes


@dataclass(frozen=True, order=True)
class Edge:
    """A typed directed edge: ``src`` refers to ``dst`` (child to parent, call to result)."""

    src: str
    kind: EdgeKind
    dst: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.src, "kind": self.kind.value, "to": self.dst}


@dataclass(frozen=True)
class SessionInfo:
    """Summary of a session kept in the sessions index."""

    session: str
    count: int
    created_at: int
    updated_at: int
    meta: dict[str, object] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# What json.dumps(value, sort_keys=True, ...) builds on every call, built once: the same bytes,
# without constructing an encoder per value (the capture proxy hashes every message it sees).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: object) -> bytes:
    """Return the canonical JSON bytes of ``value``: sorted keys, no spaces, UTF-8.

    Raises NotCanonicalJson (a ValueError too) for what has no canonical JSON: NaN or Infinity,
    integers Python will not write (over 4,300 digits), lone surrogates, nesting too deep to
    encode. Outside data never gets here with those (``runtime.limits`` refuses it at the
    door), so this names a bug in the caller rather than crashing with a bare traceback.
    """
    try:
        return _CANONICAL.encode(value).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise NotCanonicalJson(
            f"this value has no canonical JSON ({reason}); report it as a bug, with the "
            "command that led here"
        ) from None


def without_key(value: object, key: str) -> object:
    """Return JSON ``value`` without ``key`` in any of its objects, at any depth (never mutated)."""
    if isinstance(value, dict):
        return {k: without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [without_key(v, key) for v in value]
    return value


# -- tool calls and results -------------------------------------------------------------------
# A model turn that calls tools is stored as an optional assistant-message block (its text) and
# one tool-call block per tool_use; each tool call has a tool-invocation edge to its tool-result.
# Both bodies are canonical JSON, so the call id keeps two identical results for different calls
# distinct blocks, and the packer can rebuild the exact tool_use / tool_result content blocks.


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    input: object  # the JSON arguments exactly as the model gave them

    def body(self) -> str:
        return canonical_json({"id": self.call_id, "input": self.input, "name": self.name}).decode()


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False

    def body(self) -> str:
        data = {"content": self.content, "is_error": self.is_error, "tool_use_id": self.call_id}
        return canonical_json(data).decode()


def _json_object(body: str, what: str, keys: tuple[str, ...]) -> dict[str, object]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidBlock(f"{what} body is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise InvalidBlock(f"{what} body must be a JSON object with keys {', '.join(keys)}")
    return data


def parse_tool_call(body: str) -> ToolCall:
    """Return the ToolCall a tool-call block's body encodes."""
    data = _json_object(body, "tool-call", ("id", "name", "input"))
    return ToolCall(str(data["id"]), str(data["name"]), data["input"])


def parse_tool_result(body: str) -> ToolResult:
    """Return the ToolResult a tool-result block's body encodes."""
    data = _json_object(body, "tool-result", ("tool_use_id", "content"))
    return ToolResult(str(data["tool_use_id"]), str(data["content"]), bool(data.get("is_error")))
