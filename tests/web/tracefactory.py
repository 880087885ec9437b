"""Build real sessions with traced turns in a real store: blocks, plans, request bytes, responses.

A "turn" here is what a paging agent records: an Anthropic Messages request whose messages are
the session's blocks so far, a plan listing them by section (with an omitted candidate when
asked), the provider's usage, and the response body. Everything goes through the stores' public
API, so pages read exactly what a live run would leave.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime import (
    BlockKind,
    BlockStore,
    NewBlock,
    TraceRecord,
    TraceStore,
    Usage,
    canonical_json,
)
from runtime.tracing.records import (
    Provider,
    StoredTrace,
    TokenizerInfo,
    TraceError,
    TraceOrigin,
    new_call_id,
    new_record,
    prompt_hash,
)

MODEL = "claude-sonnet-4-6"
T0 = 1_760_000_000_000


@dataclass
class Session:
    """What was written: block ids in seq order and call ids in turn order."""

    name: str
    block_ids: list[str] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)


def anthropic_request(system: str, bodies: Sequence[str], *, cache: bool = True) -> bytes:
    """Return canonical request bytes: alternating user/assistant text, a breakpoint at the end."""
    messages: list[dict[str, Any]] = []
    for i, body in enumerate(bodies):
        messages.append(
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": [{"type": "text", "text": body}],
            }
        )
    if cache and messages:
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return canonical_json(
        {"max_tokens": 1024, "messages": messages, "model": MODEL, "system": system}
    )


def _plan(ids: Sequence[str], seqs: Sequence[int], bodies: Sequence[str], omit: str | None) -> dict:
    selected = [
        {"block_id": bid, "seq": seq, "kind": "user-message" if i % 2 == 0 else "assistant-message",
         "section": "recent", "reason": "recent-window", "score": 0.5 + i / 1000,
         "scores": {"bm25": 0.25, "recency": 1.0}, "tokens": len(body.split())}
        for i, (bid, seq, body) in enumerate(zip(ids, seqs, bodies, strict=True))
    ]  # fmt: skip
    system = {"block_id": ids[0], "seq": seqs[0], "kind": "system", "section": "system",
              "reason": "required", "score": 1.0, "scores": {}, "tokens": 7}  # fmt: skip
    omitted = []
    if omit is not None:
        omitted.append({"block_id": omit, "seq": 0, "kind": "fact", "section": "retrieved",
                        "reason": "over-budget", "score": 0.1, "scores": {"bm25": 0.1}, "tokens": 50})  # fmt: skip
    used = sum(item["tokens"] for item in selected)
    return {
        "selected": [system, *selected[1:]],
        "omitted": omitted,
        "sections": [
            {"section": "system", "allocated": None, "used": 7},
            {"section": "recent", "allocated": 4000, "used": used},
        ],
        "tokens": used + 7,
    }


def write_session(
    store: BlockStore,
    traces: TraceStore,
    name: str,
    bodies: Sequence[str],
    *,
    turns: int | None = None,
    errors: Sequence[int] = (),
    flagged: Sequence[int] = (),
    omit_fact: str | None = None,
    meta: dict[str, Any] | None = None,
    started: int = T0,
) -> Session:
    """Write ``bodies`` (a system prompt first) and one traced turn per assistant reply.

    Turn n's request holds bodies[1 : 2n] (user, assistant, ... user) and its response is
    bodies[2n]. ``errors`` and ``flagged`` are 1-based turn numbers.
    """
    kinds = [BlockKind.SYSTEM] + [
        BlockKind.USER_MESSAGE if i % 2 == 0 else BlockKind.ASSISTANT_MESSAGE
        for i in range(len(bodies) - 1)
    ]
    blocks = [
        NewBlock(k, b, created_at=started + i)
        for i, (k, b) in enumerate(zip(kinds, bodies, strict=True))
    ]
    entries = store.put_many(name, blocks)
    out = Session(name, [e.id for e in entries])
    fact_id = None
    if omit_fact is not None:
        fact_id = store.put(name, NewBlock(BlockKind.FACT, omit_fact)).id
    store.set_session_meta(name, model=MODEL, **(meta or {}))
    count = turns if turns is not None else (len(bodies) - 1) // 2
    items = []
    for n in range(1, count + 1):
        upto = 2 * n  # blocks 0 .. 2n-1: system + user/assistant pairs + this user message
        request = anthropic_request(bodies[0], bodies[1:upto])
        reply = bodies[upto] if upto < len(bodies) else f"reply {n}"
        items.append(_stored(out, n, request, reply, upto, fact_id, bodies, started,
                             error=n in errors, flagged=n in flagged))  # fmt: skip
    traces.record_many(items)
    out.call_ids = [item.record.call_id for item in items]
    return out


def _stored(
    s: Session, n: int, request: bytes, reply: str, upto: int, fact_id: str | None,
    bodies: Sequence[str], started: int, *, error: bool, flagged: bool,
) -> StoredTrace:  # fmt: skip
    from runtime.tracing.records import Flag

    response = {"content": [{"type": "text", "text": reply}], "role": "assistant",
                "stop_reason": "end_turn", "type": "message",
                "usage": {"input_tokens": 100 * n, "output_tokens": 10 + n,
                          "cache_read_input_tokens": 80 * (n - 1), "cache_creation_input_tokens": 20}}  # fmt: skip
    raw_response = canonical_json(response)
    record = new_record(
        request, session=s.name, turn=n, started_at=started + 1000 * n,
        provider=Provider.ANTHROPIC, model=MODEL,
        origin=TraceOrigin.LIVE, latency_ms=250.0 + n, tokenizer=TokenizerInfo("cl100k_base", "test"),
        upto_seq=upto, plan=_plan(s.block_ids[:upto], list(range(upto)), list(bodies[:upto]), fact_id),
        estimated_input_tokens=90 * n, estimated_output_tokens=9 + n,
        response=None if error else response, response_hash=None if error else prompt_hash(raw_response),
        usage=None if error else Usage(100 * n, 10 + n, 80 * (n - 1), 20),
        stop_reason=None if error else "end_turn",
        error=TraceError("overloaded_error", "Overloaded", 529) if error else None,
    )  # fmt: skip
    flag = Flag("wrong answer", started) if flagged else None
    return StoredTrace(record, request, None if error else raw_response, flag)


def conversation(n_turns: int, prefix: str = "message") -> list[str]:
    """Return a system prompt and 2 * n_turns + 1 alternating user/assistant bodies."""
    return ["You are a careful assistant."] + [
        f"{prefix} {i}: {'question about refunds' if i % 2 == 0 else 'an answer'}"
        for i in range(2 * n_turns + 1)
    ]


def record_repage(traces: TraceStore, call_id: str, estimated_input_tokens: int = 7659) -> str:
    """Record a re-page of ``call_id`` as ``llm386 repage --record`` does: not sent, no answer."""
    from runtime.replay.resend import REPAGE_KEY

    stored = traces.stored_trace(call_id)
    data = stored.record.to_json() | {
        "call_id": new_call_id(), "origin": TraceOrigin.REPLAY.value, "parent_call_id": call_id,
        "config": {REPAGE_KEY: {"of": call_id, "profile": "claude-sonnet-4-6", "sent": False}},
        "estimated_input_tokens": estimated_input_tokens, "response": None, "response_hash": None,
        "usage": None, "stop_reason": None, "latency_ms": None,
    }  # fmt: skip
    record = TraceRecord.from_json(data)
    traces.record(record, stored.request)
    return record.call_id


def session_links(html: bytes | str) -> list[str]:
    """Return the session ids the sessions list links to, in order."""
    text = html.decode() if isinstance(html, bytes) else html
    return re.findall(r'<td class="id"><a href="/sessions/([^/]+)/">', text)
