"""The packer: the string render, the Anthropic request, its canonical bytes and their hash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from runtime import NewBlock
from runtime.blocks import BlockKind, canonical_json
from runtime.errors import BlockNotFound, InvalidInput
from runtime.packer.core import pack
from runtime.packer.rendering import OMITTED_OPENING
from runtime.pager.core import PageRequest, page
from runtime.pager.sections import Section
from runtime.tokenizers import get_tokenizer
from tests.runtime.pager_support import (
    Session,
    assert_valid_anthropic_conversation,
    chat_cost_of_request,
    profile,
)


def agent(store, name="s", turns=6):
    session = Session(store, name)
    session.system("You are a careful airline agent.")
    session.tool_schema()
    store.put(name, NewBlock("state", "booking: HAT136 on 2024-05-20"))
    store.put(name, NewBlock("fact", "Mia is a gold member"))
    for i in range(turns):
        session.user(f"Please look up user u{i}.")
        session.tool_turn("get_user", {"user_id": f"u{i}"}, json.dumps({"tier": "gold", "n": i}),
                          said=f"Looking up u{i}.")  # fmt: skip
        session.assistant(f"User u{i} is gold.")
    return session


def packed(store, task="what tier is u3?", budget=20_000, name="s", **kw):
    plan = page(store, PageRequest(name, task, profile(budget), **kw))
    return plan, pack(store, plan)


def test_the_body_is_the_canonical_json_of_the_request_and_hashes_to_the_prompt_hash(store):
    agent(store)
    _, out = packed(store)
    assert out.body == canonical_json(out.request)
    assert out.prompt_hash == hashlib.sha256(out.body).hexdigest()
    assert out.text_hash == hashlib.sha256(out.text.encode()).hexdigest()


def test_the_request_has_tools_system_alternating_messages_and_max_tokens(store):
    agent(store)
    plan, out = packed(store)
    request = out.request
    assert request["model"] == "test-model" and request["max_tokens"] == 1000
    assert [t["name"] for t in request["tools"]] == ["get_user"]
    assert request["system"][0]["text"] == "You are a careful airline agent."
    assert [b["text"].split("\n")[0] for b in request["system"][1:]] == ["## State", "## Retrieved"]
    assert_valid_anthropic_conversation(request)
    assert request["messages"][-1]["content"][-1] == {"text": "what tier is u3?", "type": "text"}


def test_cache_control_ends_the_stable_prefix_at_the_last_system_block(store):
    agent(store)
    _, out = packed(store)
    marked = [b for b in out.request["system"] if "cache_control" in b]
    assert marked == [out.request["system"][0]]
    assert marked[0]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in out.request["tools"])


def test_without_a_system_prompt_the_last_tool_definition_carries_the_breakpoint(store):
    session = Session(store, "s")
    session.tool_schema()
    session.user("hi")
    _, out = packed(store, task="hello")
    assert out.request["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "system" not in out.request


def test_tool_use_is_answered_by_its_tool_result_in_the_next_message(store):
    agent(store)
    _, out = packed(store)
    messages = out.request["messages"]
    uses = [(n, b) for n, m in enumerate(messages) for b in m["content"] if b["type"] == "tool_use"]
    assert uses
    for n, use in uses:
        first = messages[n + 1]["content"][0]
        assert first["type"] == "tool_result" and first["tool_use_id"] == use["id"]


def test_an_error_result_is_sent_with_is_error(store):
    session = Session(store, "s")
    session.user("look up nobody")
    session.tool_turn("get_user", {"user_id": "nobody"}, "no such user", error=True)
    _, out = packed(store, task="what happened?")
    results = [
        b for m in out.request["messages"] for b in m["content"] if b["type"] == "tool_result"
    ]
    assert results == [
        {"content": "no such user", "is_error": True, "tool_use_id": results[0]["tool_use_id"],
         "type": "tool_result"}
    ]  # fmt: skip


def test_a_conversation_kept_from_an_assistant_turn_opens_with_a_user_note(store):
    store.put("s", NewBlock("assistant-message", "Welcome back!"))
    _, out = packed(store, task="hi")
    first = out.request["messages"][0]
    assert first == {"content": [{"text": OMITTED_OPENING, "type": "text"}], "role": "user"}
    assert_valid_anthropic_conversation(out.request)


def test_tool_blocks_that_are_not_json_are_sent_as_text(store):
    store.put_many("s", [NewBlock("tool-call", "lookup(u1)"), NewBlock("tool-result", "u1: gold")])
    _, out = packed(store, task="tier?")
    texts = [b["text"] for m in out.request["messages"] for b in m["content"]]
    assert texts[:3] == [OMITTED_OPENING, "lookup(u1)", "u1: gold"]
    assert_valid_anthropic_conversation(out.request)


def test_block_ids_scores_and_hashes_never_reach_the_model(store):
    agent(store)
    plan, out = packed(store, budget=4000)
    leaks = set()
    for decision in (*plan.selected, *plan.omitted):
        c = decision.candidate
        leaks |= {c.block_id, c.block_id[:12], repr(c.score)}
    leaks.add(plan.to_json()["tokenizer"]["version"])
    for leak in leaks:
        assert leak not in out.text and leak.encode() not in out.body


def test_the_string_render_count_is_exact_and_within_budget(store):
    agent(store, turns=12)
    plan, out = packed(store, budget=1200)
    assert get_tokenizer("cl100k_base").count(out.text) == out.text_tokens <= plan.tokens <= 1200


def test_the_chat_count_bounds_the_request_from_above_and_fits_the_budget(store):
    agent(store, turns=12)
    plan, out = packed(store, budget=1200)
    assert (
        chat_cost_of_request(out.request, "cl100k_base") <= out.chat_tokens <= plan.tokens <= 1200
    )


def test_section_spans_slice_each_section_out_of_the_text_and_the_bytes(store):
    agent(store)
    _, out = packed(store)
    data = out.text.encode()
    for span in out.text_spans:
        piece = data[span.start : span.end].decode()
        if span.section is not Section.TASK:
            assert piece.startswith(f"## {span.section.label}\n\n")
        lines = out.text.split("\n")[span.first_line - 1 : span.last_line]
        assert "\n".join(lines) + "\n" == piece
    recent = next(s for s in out.body_spans if s.section is Section.RECENT)
    assert out.body[recent.start : recent.start + 1] == b"{"
    task = next(s for s in out.body_spans if s.section is Section.TASK)
    assert json.loads(out.body[task.start : task.end]) == {
        "text": "what tier is u3?",
        "type": "text",
    }


def test_an_empty_task_with_no_conversation_is_refused(store):
    store.put("s", NewBlock("fact", "a fact"))
    with pytest.raises(InvalidInput, match="give the page a task"):
        packed(store, task="")


def test_the_same_store_and_request_give_the_same_bytes_in_fresh_processes(store, tmp_path):
    agent(store, turns=10)
    _, here = packed(store, budget=3000)
    store.close()
    script = textwrap.dedent(
        f"""
        from runtime import open_store
        from runtime.packer.core import pack
        from runtime.pager.core import PageRequest, page
        from tests.runtime.pager_support import profile
        store = open_store({store.location!r})
        plan = page(store, PageRequest("s", "what tier is u3?", profile(3000)))
        out = pack(store, plan)
        print(out.prompt_hash, out.text_hash)
        """
    )
    hashes = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True, cwd=os.getcwd())  # fmt: skip
        hashes.add(run.stdout.strip())
    assert hashes == {f"{here.prompt_hash} {here.text_hash}"}


def test_tool_schemas_are_sent_as_parsed_definitions(store):
    session = Session(store, "s")
    session.tool_schema()
    store.put("s", NewBlock(BlockKind.TOOL_SCHEMA, '{"description": "x"}'))
    session.user("hi")
    with pytest.raises(Exception, match="tool definition with a name"):
        packed(store, task="hello")


def test_a_block_deleted_after_paging_is_never_rendered_from_memory(store):
    agent(store)
    plan, first = packed(store)
    gone = next(s.candidate.block_id for s in plan.selected if s.candidate.kind is BlockKind.FACT)
    store.delete_block(gone)
    with pytest.raises(BlockNotFound, match="no longer stored"):
        pack(store, plan)
