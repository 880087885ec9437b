"""llm386 runtime: a durable context store, pager, packer, tracer and replay for LLM agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .blocks import (
    Block,
    BlockKind,
    Edge,
    EdgeKind,
    Entry,
    EntryRef,
    NewBlock,
    Provenance,
    SessionInfo,
    ToolCall,
    ToolResult,
    canonical_json,
    content_hash,
)
from .errors import Llm386Error
from .lmdbstore import LmdbStore
from .store import BlockStore

__version__ = "0.1.0"


def open_store(path: str | Path, **options: Any) -> LmdbStore:
    """Open (creating if needed) the LMDB block store at ``path``."""
    return LmdbStore(path, **options)


__all__ = [
    "Block",
    "BlockKind",
    "BlockStore",
    "Edge",
    "EdgeKind",
    "Entry",
    "EntryRef",
    "Llm386Error",
    "LmdbStore",
    "NewBlock",
    "Provenance",
    "SessionInfo",
    "ToolCall",
    "ToolResult",
    "__version__",
    "canonical_json",
    "content_hash",
    "open_store",
]
