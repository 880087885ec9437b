"""Which session a captured call belongs to, and which of its messages are new to that session.

Owns: ``SessionBook``. A call's session is, in order: the ``x-llm386-session`` header; else
the session of the response it continues (the Responses API's ``previous_response_id``, by
``response_key``); else the session of the latest earlier call whose message list this call's
list extends (prefix continuity, by the prefix keys of ``runtime.proxy.conversation``); else a
new session. An equal
list joins only a call that failed (a retry): an agent run again from the start begins anew.

Invariants:
- The book lives in the recorder's one writer thread. What it learns inside a write is held
  apart (``begin``/``commit``/``abort``) and reaches its memory only when the write commits,
  since an engine may run a write again.
- Durable: each call's key is written to the ``proxy-prefixes`` table in the same write as its
  record, so a restarted proxy continues the sessions it was recording. Memory keeps the
  newest ``capacity`` keys; older ones are read back from the table.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass

from runtime.storage.kv import Tables
from runtime.tracing.records import new_call_id, short_call_id

TABLE = "proxy-prefixes"
SESSION_PREFIX = "captured-"


def response_key(response_id: str) -> bytes:
    """Return the key under which a response's id leads to its session."""
    return hashlib.sha256(b"openai-response-id\0" + response_id.encode("utf-8", "replace")).digest()


@dataclass(frozen=True)
class Mark:
    """What a prefix key leads to: the session, how many messages it holds, whether it ended ok."""

    session: str
    count: int
    ok: bool

    def encode(self) -> bytes:
        return json.dumps([self.session, self.count, self.ok]).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Mark:
        session, count, ok = json.loads(raw)
        return cls(str(session), int(count), bool(ok))


@dataclass(frozen=True)
class Placement:
    """Where a call goes: its session, how many of its messages the session holds, and why."""

    session: str
    known: int  # messages[:known] are already in the session
    source: str  # header | prefix | new


class SessionBook:
    """Prefix keys -> sessions, newest first in memory, all of them in the store."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._memory: OrderedDict[bytes, Mark] = OrderedDict()
        self._pending: dict[bytes, Mark] = {}

    def begin(self) -> None:
        self._pending = {}

    def commit(self) -> None:
        for key, mark in self._pending.items():
            self._memory[key] = mark
            self._memory.move_to_end(key)
        while len(self._memory) > self.capacity:
            self._memory.popitem(last=False)
        self._pending = {}

    def abort(self) -> None:
        self._pending = {}

    def place(
        self, t: Tables, keys: tuple[bytes, ...], header: str | None, follows: bytes | None = None
    ) -> Placement:
        """Return where a call with these prefix keys goes (see the module docstring).

        ``follows`` is the key of a response this call continues (the Responses API's
        ``previous_response_id``): when no header names a session, the call joins that
        response's session."""
        source, wanted = ("header", header) if header is not None else ("prefix", None)
        if wanted is None and follows is not None:
            known = self._lookup(t, (follows,))[0]
            if known is not None:
                source, wanted = "previous-response", known.session
        marks = self._lookup(t, keys)
        for i in range(len(keys) - 1, -1, -1):
            mark = marks[i]
            if mark is None or (wanted is not None and mark.session != wanted):
                continue
            if i + 1 < len(keys) or not mark.ok:  # an extension, or a retry of a failed call
                return Placement(mark.session, min(mark.count, i + 1), source)
        if wanted is not None:
            return Placement(wanted, 0, source)
        return Placement(SESSION_PREFIX + short_call_id(new_call_id()), 0, "new")

    def remember(self, t: Tables, keys: tuple[bytes, ...], session: str, ok: bool) -> None:
        """Record that ``session`` now holds this call's messages (in the caller's write)."""
        if not keys:
            return
        mark = Mark(session, len(keys), ok)
        self._pending[keys[-1]] = mark
        t.put(TABLE, keys[-1], mark.encode())

    def _lookup(self, t: Tables, keys: tuple[bytes, ...]) -> list[Mark | None]:
        found = [self._pending.get(k) or self._memory.get(k) for k in keys]
        if any(found) or not keys:
            return found
        return [None if raw is None else Mark.decode(raw) for raw in t.get_many(TABLE, list(keys))]
