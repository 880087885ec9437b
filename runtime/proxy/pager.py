"""Demand paging of proxied calls: a client's request paged down, and its recall calls answered.

Owns: ``PageSettings`` (the preset, its ``EvictionConfig``, an optional token budget),
``ProxyPager`` (per-conversation paging state, ``prepare`` and ``finish``) and ``PagedCall`` (one
call's entries, paged turn and upstream request, kept until its answer is in).

Invariants:
- The policy is ``paging.turn.page_turn`` run with the preset's config, unchanged: the proxy
  only reads requests into entries and writes the plan back (``runtime.proxy.rewrite``).
- A conversation's state (its faults, hence its pins; its turn count; its previous paged turn)
  follows it by prefix keys over the client's own messages (the same chain the recorder uses
  for sessions), or by the ``x-llm386-session`` header when one is given (read by
  ``turns.session_id``, as the recorder reads it: whitespace around it is not part of it, and a
  header that is not a session id is ignored); a header's state is
  read from the session's stored meta (``faults.load_state``) when memory does not hold it,
  and the recorder writes it back with the turn (``save_state``).
- ``prepare`` says why it does not page a call (another wire format, a body that is not a
  JSON object, a client tool named ``recall``), and the server forwards such a call
  unchanged; it never raises for what a client sends.
- Deterministic: the upstream bytes depend on the request, the preset, the budget and the
  conversation's fault history only.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.blocks import Entry, ToolCall
from runtime.errors import InvalidInput, Llm386Error, NotCanonicalJson
from runtime.paging.accounting import TokenCounter
from runtime.paging.eviction import EvictionConfig
from runtime.paging.faults import PagingState, load_state, recall_content
from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.paging.presets import DEFAULT_PRESET, preset
from runtime.paging.turn import PagedTurn, TurnOverBudget, finish_turn, page_turn
from runtime.proxy.apis import Wire
from runtime.proxy.conversation import conversation_of, prefix_keys
from runtime.proxy.recall import Answer, encode, tool_calls
from runtime.proxy.rewrite import (
    PAGED_WIRES,
    Site,
    entries_of,
    paged_request,
    read_sites,
    tool_names,
)
from runtime.proxy.turns import session_id
from runtime.storage.interface import BlockStore
from runtime.tokenizers import get_tokenizer

DEFAULT_TOKENIZER = "o200k_base"  # for a model llm386 has no profile for
MAX_RECALL_ROUNDS = 4  # continuations one client call may take before its reply goes back
_SERVER_STATE = ("previous_response_id", "conversation")  # Responses history kept by OpenAI

# Why a request is not paged when its JSON has values paging cannot write canonically; with
# --fail-closed the call is refused with it (a 502 that quotes it), else sent unpaged.
_UNREADABLE = (
    "the request cannot be paged: it holds a value with no canonical JSON (NaN, Infinity, a "
    "number too large for a float, a lone surrogate) or is nested too deeply"
)


@dataclass(frozen=True)
class PageSettings:
    """What ``--page`` asks for: a named policy and, optionally, a token budget per request."""

    preset: str = DEFAULT_PRESET
    budget: int | None = None
    config: EvictionConfig = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", preset(self.preset))


@dataclass(frozen=True)
class _Memory:
    """What a conversation's next call needs: its fault history, turn count and last paged turn."""

    state: PagingState = PagingState()
    turn: int = 0
    previous: PagedTurn | None = None


@dataclass
class PagedCall:
    """One paged call, from its paged request to its answer."""

    wire: Wire
    key: bytes | str | None  # where its conversation's memory goes once it is answered
    memory: _Memory
    entries: list[Entry]
    sites: list[Site]
    paged: PagedTurn
    upstream: dict[str, Any]  # the request as it goes upstream (grows with each recall round)
    budget_note: str = ""
    recalls: list[dict[str, Any]] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)  # every tool call the model made
    usage: list[dict[str, Any]] = field(default_factory=list)  # each round's, as the upstream said

    @property
    def body(self) -> bytes:
        return encode(self.upstream)

    @property
    def stream(self) -> bool:
        return self.upstream.get("stream") is True

    def add_round(self, reply: dict[str, Any]) -> None:
        """Note one round's reply: its tool calls and its usage (an empty one when it has none)."""
        self.calls += tool_calls(self.wire, reply)
        usage = reply.get("usage")
        self.usage.append(dict(usage) if isinstance(usage, dict) else {})

    def answer(self, calls: Sequence[ToolCall], round_no: int) -> list[Answer]:
        """Return the answers to the model's recall calls (an error answer for a bad id)."""
        answers = []
        for call in calls:
            target = call.input.get("block_id") if isinstance(call.input, dict) else None
            # As the record can hold it: a model's lone surrogate ("\\ud800") shown escaped.
            block_id = str(target).encode("utf-8", "backslashreplace").decode()
            try:
                text = recall_content(self.entries, self.paged.plan, block_id)
                answers.append(Answer(call.call_id, text))
                found = True
            except Llm386Error as exc:
                answers.append(Answer(call.call_id, str(exc), is_error=True))
                found = False
            self.recalls.append({"round": round_no, "call_id": call.call_id,
                                 "block_id": block_id, "found": found})  # fmt: skip
        return answers


class ProxyPager:
    """Pages proxied calls under one policy; thread-safe (the event loop and worker threads)."""

    def __init__(
        self, settings: PageSettings, store: BlockStore | None = None, capacity: int = 10_000
    ) -> None:
        self.settings, self.store, self.capacity = settings, store, capacity
        self._memory: OrderedDict[bytes | str, _Memory] = OrderedDict()
        self._counters: dict[str, TokenCounter] = {}
        self._lock = threading.Lock()

    def prepare(self, wire: Wire, body: bytes, session: str | None) -> PagedCall | str:
        """Return the paged call for a client's request, or why it is forwarded unpaged."""
        if wire not in PAGED_WIRES:
            return f"{wire.value} requests are not paged"
        try:
            data = json.loads(body)
        except RecursionError:
            raise InvalidInput(_UNREADABLE) from None
        except (ValueError, UnicodeDecodeError):
            return "the request body is not JSON"
        if not isinstance(data, dict):
            return "the request body is not a JSON object"
        if RECALL_TOOL_NAME in tool_names(data):
            return f"the client has a tool named {RECALL_TOOL_NAME!r} of its own"
        held = [name for name in _SERVER_STATE if data.get(name)]
        if wire is Wire.RESPONSES and held:
            return (f"the request continues a history OpenAI keeps ({held[0]}): the proxy sees "
                    "only the new items, so there is nothing it could page out")  # fmt: skip
        n = data.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and n > 1:
            return f"n={n} asks for several answers; only one can have its recall calls answered"
        try:
            call = self._page(wire, data, session)
        except (NotCanonicalJson, RecursionError):
            # The client's values, not a bug here: paging reads every message as canonical JSON.
            raise InvalidInput(_UNREADABLE) from None
        try:
            call.body  # noqa: B018 - the paged request must be writable as JSON, else unpaged
        except ValueError as exc:
            return f"the paged request cannot be written back as JSON ({exc})"
        return call

    def _page(self, wire: Wire, data: dict[str, Any], header: str | None) -> PagedCall:
        session = session_id(header)  # as the recorder reads it: " a " is session "a"
        keys = prefix_keys(*conversation_of(wire, data))
        key: bytes | str | None = f"session:{session}" if session else (keys[-1] if keys else None)
        memory = self._recall_memory(keys, session)
        sites = read_sites(wire, data)
        entries = entries_of(sites)
        count = self._counter(str(data.get("model") or ""))
        turn, note = memory.turn + 1, ""
        config = self.settings.config
        try:
            paged = page_turn(entries, config, memory.state, count, turn=turn,
                              budget=self.settings.budget, previous=memory.previous)  # fmt: skip
        except TurnOverBudget as exc:  # sent anyway, as small as it gets, and flagged
            note = f"over budget even with everything evictable paged out: {exc}"
            paged = exc.paged
        upstream = paged_request(wire, data, sites, paged.plan)
        return PagedCall(wire, key, memory, entries, sites, paged, upstream, note)

    def finish(self, call: PagedCall) -> tuple[PagedTurn, PagingState]:
        """Record the faults in the model's calls and remember the conversation's new state."""
        paged, state = finish_turn(call.paged, call.calls, call.memory.state)
        if call.key is not None:
            with self._lock:
                # The next turn's accounting reads only the counted items: keep no bodies.
                self._memory[call.key] = _Memory(state, paged.turn, replace(paged, items=()))
                self._memory.move_to_end(call.key)
                while len(self._memory) > self.capacity:
                    self._memory.popitem(last=False)
        return paged, state

    def _recall_memory(self, keys: Sequence[bytes], session: str | None) -> _Memory:
        with self._lock:
            if session:
                found = self._memory.get(f"session:{session}")
            else:
                found = next((self._memory[k] for k in reversed(keys) if k in self._memory), None)
        if found is not None:
            return found
        if session and self.store is not None:
            try:
                return _Memory(load_state(self.store, session))
            except Llm386Error:
                return _Memory()  # a new session, or a state this runtime cannot read
        return _Memory()

    def _counter(self, model: str) -> TokenCounter:
        name = _tokenizer_name(model)
        with self._lock:
            counter = self._counters.get(name)
            if counter is None or len(counter._counts) > 200_000:  # bound the memo
                counter = self._counters[name] = TokenCounter(get_tokenizer(name))
        return counter


def _tokenizer_name(model: str) -> str:
    from runtime.profiles.catalog import get_profile

    try:
        return get_profile(model).tokenizer
    except Llm386Error:
        return DEFAULT_TOKENIZER


def paging_record(
    call: PagedCall, paged: PagedTurn, client: bytes, preset_name: str
) -> dict[str, Any]:
    """Return the trace record's ``paging`` slot for a paged call."""
    slot: dict[str, Any] = dict(paged.to_json())
    slot["proxy"] = {
        "preset": preset_name,
        "client_request": {"sha256": hashlib.sha256(client).hexdigest(), "bytes": len(client)},
        "recalls": call.recalls,
        "rounds": 1 + len({r["round"] for r in call.recalls}),
        "usage": call.usage,
        "note": call.budget_note,
    }
    return slot


def skipped_record(reason: str, preset_name: str) -> dict[str, Any]:
    """Return the ``paging`` slot of a call the proxy forwarded unpaged, and why."""
    return {"proxy": {"preset": preset_name, "skipped": reason}}
