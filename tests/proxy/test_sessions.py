"""Sessions of captured calls: the header wins, else prefix continuity, else a new session;
continuity survives a proxy restart; concurrent conversations never mix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2

from runtime.proxy.apis import Wire
from runtime.proxy.conversation import read_conversation
from tests.fakes.anthropic_server import StreamReply, error_reply
from tests.fakes.openai_server import chat_stream
from tests.proxy.conftest import Stack, start_stack

MODEL = "claude-sonnet-4-6"


def _converse(client, opening: str, turns: int = 3, **extra: object) -> list[dict]:  # type: ignore[no-untyped-def]
    messages: list[dict] = [{"role": "user", "content": opening}]
    for n in range(turns):
        reply = client.messages.create(model=MODEL, max_tokens=16, system="Be brief.",
                                       messages=messages, **extra)  # fmt: skip
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
                     {"role": "user", "content": f"{opening} follow-up {n}"}]  # fmt: skip
    return messages


def test_a_growing_conversation_is_one_session_of_numbered_turns(stack: Stack) -> None:
    _converse(stack.anthropic(max_retries=0), "plan a trip")
    _converse(stack.anthropic(max_retries=0), "write a poem")
    records = stack.records()
    sessions = sorted({r.session for r in records})
    assert len(sessions) == 2
    for session in sessions:
        mine = [r for r in records if r.session == session]
        assert [r.turn for r in mine] == [1, 2, 3]
        assert all(
            r.config["proxy"]["session_from"] == ("new" if r.turn == 1 else "prefix") for r in mine
        )
        kinds = [e.kind.value for e in stack.store.entries(session)]
        # system, then each user message and each assistant reply once, in order
        assert kinds == ["system", "user-message", "assistant-message", "user-message",
                         "assistant-message", "user-message"]  # fmt: skip


def test_the_session_header_wins_and_is_not_forwarded(stack: Stack) -> None:
    client = stack.anthropic(max_retries=0, default_headers={"x-llm386-session": "my-agent-run"})
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "a"}])
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "b"}])
    records = stack.records()
    assert [(r.session, r.turn) for r in records] == [("my-agent-run", 1), ("my-agent-run", 2)]
    assert all(req.header("x-llm386-session") is None for req in stack.anthropic_up.requests)


def test_running_an_agent_again_starts_a_new_session_but_a_retry_joins(stack: Stack) -> None:
    client = stack.anthropic(max_retries=0)
    first = [{"role": "user", "content": "same start"}]
    client.messages.create(model=MODEL, max_tokens=8, messages=first)
    client.messages.create(model=MODEL, max_tokens=8, messages=first)  # the agent run again
    stack.anthropic_up.enqueue(error_reply(529))
    retried = [{"role": "user", "content": "flaky"}]
    try:
        client.messages.create(model=MODEL, max_tokens=8, messages=retried)
    except Exception:
        client.messages.create(model=MODEL, max_tokens=8, messages=retried)  # the retry
    a, b, failed, retry = stack.records()
    assert a.session != b.session
    assert failed.session == retry.session and (failed.turn, retry.turn) == (1, 2)


def test_continuity_survives_a_proxy_restart(tmp_path: Path) -> None:
    path = tmp_path / "store"
    for stack in start_stack(path):
        client = stack.anthropic(max_retries=0)
        reply = client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        [first] = stack.records()
    for stack in start_stack(path):  # a new proxy process: empty memory, same store
        messages = [{"role": "user", "content": "hi"},
                    {"role": "assistant", "content": reply.content[0].text},
                    {"role": "user", "content": "more"}]  # fmt: skip
        stack.anthropic(max_retries=0).messages.create(model=MODEL, max_tokens=8, messages=messages)
        records = stack.records()
    assert [(r.session, r.turn) for r in records] == [(first.session, 1), (first.session, 2)]


def test_fifty_concurrent_streams_never_mix_their_sessions(stack: Stack) -> None:
    async def conversation(n: int) -> None:
        async with stack.async_anthropic(max_retries=0) as client:
            messages: list[dict] = [{"role": "user", "content": f"conversation {n:02d} opening"}]
            for turn in range(2):
                async with client.messages.stream(
                    model=MODEL, max_tokens=16, messages=messages
                ) as s:
                    final = await s.get_final_message()
                messages += [{"role": "assistant", "content": final.content[0].text},
                             {"role": "user", "content": f"conversation {n:02d} turn {turn}"}]  # fmt: skip

    async def main() -> None:
        await asyncio.gather(*(conversation(n) for n in range(50)))

    asyncio.run(main())
    records = stack.records()
    assert len(records) == 100 and all(r.error is None for r in records)
    by_session: dict[str, list] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r)
    assert len(by_session) == 50
    for session, mine in by_session.items():
        assert sorted(r.turn for r in mine) == [1, 2]
        tags = {body[body.index(b"conversation ") :][:15] for r in mine
                for body in [stack.traces.request_bytes(r.prompt_hash) or b""]}  # fmt: skip
        assert len(tags) == 1, session
        bodies = [e.body for e in stack.store.entries(session) if e.kind.value == "user-message"]
        assert len({b[:15] for b in bodies}) == 1


def test_records_waits_for_a_stream_the_client_stopped_reading_at_its_last_event(
    stack: Stack,
) -> None:
    # The upstream pauses after [DONE] before ending the body: the SDK has returned by then.
    done = chat_stream("hi")
    stack.openai_up.enqueue(StreamReply((*done.events, b": bye\n\n"), pause=0.3))
    chunks = stack.openai(max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi"
    [record] = stack.records()
    assert stack.traces.response_bytes(record.call_id).endswith(b": bye\n\n")


def test_a_moved_cache_breakpoint_keeps_the_session_and_unmarked_keys_are_the_same() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "hello"}]  # fmt: skip
    marked = [{"role": "user", "content": [{"type": "text", "text": "hi",
                                            "cache_control": {"type": "ephemeral"}}]},
              messages[1]]  # fmt: skip
    plain = read_conversation(Wire.MESSAGES, {"messages": messages}, 1 << 20)
    fast = read_conversation(Wire.MESSAGES, {"messages": messages}, 1 << 20, cache_marks=False)
    moved = read_conversation(Wire.MESSAGES, {"messages": marked}, 1 << 20)
    assert plain.prefix_keys == fast.prefix_keys == moved.prefix_keys
    assert len(set(plain.prefix_keys)) == 2
    responses = read_conversation(Wire.RESPONSES, {"input": messages}, 1 << 20)
    assert responses.prefix_keys[0] != plain.prefix_keys[0]  # formats never join each other


def test_a_cache_breakpoint_spelled_with_an_escape_is_still_ignored(stack: Stack) -> None:
    first = (b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user",'
             b'"content":[{"type":"text","text":"hi"}]}]}')  # fmt: skip
    second = (b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user",'
              b'"content":[{"type":"text","text":"hi","cache\\u005fcontrol":{"type":"ephemeral"}}]},'
              b'{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}')  # fmt: skip
    for body in (first, second):
        assert httpx2.post(stack.url + "/v1/messages", content=body).status_code == 200
    one, two = stack.records()
    assert two.session == one.session and two.config["proxy"]["session_from"] == "prefix"
