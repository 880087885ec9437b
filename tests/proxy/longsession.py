"""A long agent session in the Anthropic Messages shape: stale tool results worth paging out.

Shared by the proxy's paging tests and the web test of a paged turn's page.
"""

from __future__ import annotations

from typing import Any

MODEL = "claude-sonnet-4-6"
TURNS = 8


def tool_output(n: int) -> str:
    """A tool output of a few KB, different for every ``n``."""
    return "\n".join(f"row {n}-{i}: value {(n * 7919 + i * 104729) % 100003}" for i in range(90))


def tools() -> list[dict[str, Any]]:
    props = {f"field_{i}": {"type": "string", "description": f"The {i}th filter, matched exactly "
                            "against the stored column of the same name."} for i in range(12)}  # fmt: skip
    return [{"name": name, "description": f"Look up {name} records. Returns rows.",
             "input_schema": {"type": "object", "properties": props}}
            for name in ("lookup_orders", "lookup_users")]  # fmt: skip


def anthropic_history(turns: int = TURNS) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for n in range(turns):
        messages.append({"role": "user", "content": f"Question {n}: what does the data say?"})
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{n:02d}", "name": "lookup_orders",
             "input": {"field_0": f"q{n}"}}]})  # fmt: skip
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{n:02d}", "content": tool_output(n)}]})  # fmt: skip
        messages.append({"role": "assistant", "content": f"Answer {n}: see the rows."})
    messages.append({"role": "user", "content": "Now summarise everything."})
    return messages
