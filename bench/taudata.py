"""Benchmark input for the pager benchmarks: recorded tau-bench sessions as blocks and edges.

The tau-bench airline sessions (../shared/data/tau-bench-airline, MIT License, Copyright (c) 2024
Sierra) are benchmark input only: read from the path given on the command line, never copied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import SHARED, tau_bench_dir
from runtime.blocks import BlockKind, Edge, EdgeKind, NewBlock, ToolCall, ToolResult, content_hash

TAU_SESSIONS = tau_bench_dir() / "sessions.json"
TAU_TOOLS = tau_bench_dir() / "tools.json"
LOCOMO = SHARED / "locomo"  # not shipped: pass a folder of the same format to bench_locomo


@dataclass(frozen=True)
class SessionBlocks:
    """One recorded conversation as blocks and edges (CONVENTIONS.md)."""

    name: str
    blocks: tuple[NewBlock, ...]
    edges: tuple[Edge, ...]


def tool_schemas(path: Path = TAU_TOOLS) -> list[NewBlock]:
    """Return the tool definitions of ``path`` (OpenAI format) as Anthropic tool-schema blocks."""
    out = []
    for tool in json.loads(path.read_text()):
        fn = tool.get("function", tool)
        body = {
            "description": fn.get("description", ""),
            "input_schema": fn.get("parameters", {"type": "object"}),
            "name": fn["name"],
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        out.append(NewBlock(BlockKind.TOOL_SCHEMA, text))
    return out


def tau_sessions(path: Path = TAU_SESSIONS, tools: Path = TAU_TOOLS) -> list[SessionBlocks]:
    """Return every tau-bench session as blocks: tool schemas, then the messages in order."""
    schemas = tool_schemas(tools)
    return [
        _session(f"tau-{item['task_id']}-{item.get('trial', 0)}", item["traj"], schemas)
        for item in json.loads(path.read_text())
    ]


def _session(name: str, traj: Sequence[dict[str, Any]], schemas: list[NewBlock]) -> SessionBlocks:
    blocks, edges = list(schemas), []
    calls: dict[str, str] = {}
    for message in traj:
        role, text = message["role"], message.get("content") or ""
        if role == "system" and text:
            blocks.append(NewBlock(BlockKind.SYSTEM, text))
        elif role == "user" and text:
            blocks.append(NewBlock(BlockKind.USER_MESSAGE, text))
        elif role == "assistant":
            said = None
            if text:
                said = NewBlock(BlockKind.ASSISTANT_MESSAGE, text)
                blocks.append(said)
            for call in message.get("tool_calls") or []:
                fn = call["function"]
                body = ToolCall(call["id"], fn["name"], json.loads(fn["arguments"] or "{}")).body()
                blocks.append(NewBlock(BlockKind.TOOL_CALL, body))
                call_id = content_hash(BlockKind.TOOL_CALL, body)
                calls[call["id"]] = call_id
                if said is not None:
                    parent = content_hash(BlockKind.ASSISTANT_MESSAGE, str(said.body))
                    edges.append(Edge(call_id, EdgeKind.PARENT, parent))
        elif role == "tool":
            body = ToolResult(message["tool_call_id"], text).body()
            blocks.append(NewBlock(BlockKind.TOOL_RESULT, body))
            if message["tool_call_id"] in calls:
                result_id = content_hash(BlockKind.TOOL_RESULT, body)
                edges.append(
                    Edge(calls[message["tool_call_id"]], EdgeKind.TOOL_INVOCATION, result_id)
                )
    return SessionBlocks(name, tuple(blocks), tuple(edges))
