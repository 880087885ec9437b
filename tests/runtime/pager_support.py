"""Builders shared by the pager and packer tests: sessions that follow CONVENTIONS.md, small
profiles with a chosen input budget, and an independent count of a packed chat request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime import LmdbStore, blocks, open_store
from runtime.packer.rendering import (
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    TEXT_BLOCK_OVERHEAD,
    TOOL_BLOCK_OVERHEAD,
    TOOL_DEF_OVERHEAD,
    TOOLS_PREAMBLE,
)
from runtime.profiles.catalog import ModelProfile
from runtime.tokenizers import get_tokenizer

TOOL_DEF = {
    "description": "Look up a user's profile",
    "input_schema": {"properties": {"user_id": {"type": "string"}}, "type": "object"},
    "name": "get_user",
}


def profile(
    input_budget: int, *, tokenizer: str = "cl100k_base", name: str = "test-model"
) -> ModelProfile:
    """Return a profile whose input budget is exactly ``input_budget``."""
    return ModelProfile(
        name=name,
        provider="anthropic",
        max_context_tokens=input_budget + 1000,
        reserved_output_tokens=1000,
        safety_margin_tokens=0,
        tokenizer=tokenizer,
        tokens_estimated=True,
        supports_prompt_caching=True,
    )


@dataclass
class Session:
    """A conversation being written to a store, turn by turn (ids are content hashes)."""

    store: LmdbStore
    name: str
    calls: int = 0
    ids: dict[str, str] = field(default_factory=dict)

    def put(
        self,
        kind: blocks.BlockKind | str,
        body: str,
        *,
        label: str | None = None,
        labels: Sequence[str] = (),
        edges: Iterable[blocks.Edge] = (),
    ) -> str:
        entry = self.store.put_many(
            self.name,
            [blocks.NewBlock(kind, body, provenance=blocks.Provenance(labels=tuple(labels)))],
            list(edges),
        )[0]
        if label:
            self.ids[label] = entry.id
        return entry.id

    def system(self, text: str) -> str:
        return self.put(blocks.BlockKind.SYSTEM, text, label="system")

    def tool_schema(self, definition: Mapping[str, Any] = TOOL_DEF) -> str:
        return self.put(blocks.BlockKind.TOOL_SCHEMA, blocks.canonical_json(definition).decode())

    def user(self, text: str, **kw: Any) -> str:
        return self.put(blocks.BlockKind.USER_MESSAGE, text, **kw)

    def assistant(self, text: str, **kw: Any) -> str:
        return self.put(blocks.BlockKind.ASSISTANT_MESSAGE, text, **kw)

    def tool_turn(
        self,
        name: str,
        args: Mapping[str, Any],
        result: str,
        *,
        said: str | None = None,
        error: bool = False,
    ) -> tuple[str, str]:
        """Put an assistant turn calling one tool and its result, with CONVENTIONS edges."""
        self.calls += 1
        call_id = f"toolu_{self.name}_{self.calls:04d}"
        call_body = blocks.ToolCall(call_id, name, dict(args)).body()
        result_body = blocks.ToolResult(call_id, result, error).body()
        call = blocks.content_hash(blocks.BlockKind.TOOL_CALL, call_body)
        res = blocks.content_hash(blocks.BlockKind.TOOL_RESULT, result_body)
        made, edges = [], [blocks.Edge(call, blocks.EdgeKind.TOOL_INVOCATION, res)]
        if said is not None:
            made.append(blocks.NewBlock(blocks.BlockKind.ASSISTANT_MESSAGE, said))
            edges.append(
                blocks.Edge(
                    call,
                    blocks.EdgeKind.PARENT,
                    blocks.content_hash(blocks.BlockKind.ASSISTANT_MESSAGE, said),
                )
            )
        made += [
            blocks.NewBlock(blocks.BlockKind.TOOL_CALL, call_body),
            blocks.NewBlock(blocks.BlockKind.TOOL_RESULT, result_body),
        ]
        self.store.put_many(self.name, made, edges)
        return call, res


def chat_cost_of_request(request: Mapping[str, Any], tokenizer_name: str) -> int:
    """Count a request the way runtime.packer.rendering defines chat cost, from the request alone."""
    count = get_tokenizer(tokenizer_name).count
    total = REQUEST_OVERHEAD
    for tool in request.get("tools", []):
        plain = {k: v for k, v in tool.items() if k != "cache_control"}
        total += count(blocks.canonical_json(plain).decode()) + TOOL_DEF_OVERHEAD
    if request.get("tools"):
        total += TOOLS_PREAMBLE
    for block in request.get("system", []):
        total += count(block["text"]) + TEXT_BLOCK_OVERHEAD
    for message in request["messages"]:
        total += MESSAGE_OVERHEAD
        for block in message["content"]:
            if block["type"] == "text":
                total += count(block["text"]) + TEXT_BLOCK_OVERHEAD
            elif block["type"] == "tool_use":
                pieces = count(block["name"]) + count(
                    blocks.canonical_json(block["input"]).decode()
                )
                total += pieces + count(block["id"]) + TOOL_BLOCK_OVERHEAD
            else:
                total += count(block["content"]) + count(block["tool_use_id"]) + TOOL_BLOCK_OVERHEAD
    return total


def assert_valid_anthropic_conversation(request: Mapping[str, Any]) -> None:
    """Check what the Messages API enforces about roles and tool blocks."""
    messages = request["messages"]
    assert messages and messages[0]["role"] == "user" and messages[-1]["role"] == "user"
    for before, after in zip(messages, messages[1:], strict=False):
        assert before["role"] != after["role"]
    for n, message in enumerate(messages):
        uses = [b["id"] for b in message["content"] if b["type"] == "tool_use"]
        if uses:
            reply = messages[n + 1]["content"]
            answered = [b["tool_use_id"] for b in reply if b["type"] == "tool_result"]
            assert sorted(answered) == sorted(uses)
            kinds = [b["type"] for b in reply]
            assert kinds[: len(answered)] == ["tool_result"] * len(answered)
        if message["role"] == "user" and n > 0:
            prior = [b["id"] for b in messages[n - 1]["content"] if b["type"] == "tool_use"]
            results = [b["tool_use_id"] for b in message["content"] if b["type"] == "tool_result"]
            assert set(results) <= set(prior)


@contextlib.contextmanager
def example_store(tmp_path_factory, name: str) -> Iterator[LmdbStore]:
    """A fresh store with its session index for one hypothesis example (a function-scoped
    ``tmp_path`` would be shared by every example of a test), closed after it."""
    from runtime.indexes.snapshot import index_for

    store = open_store(tmp_path_factory.mktemp(name) / "store")
    index_for(store)
    try:
        yield store
    finally:
        store.close()
