"""llm386 runtime: a durable context store, pager, packer, tracer and replay for LLM agents."""

from __future__ import annotations

from typing import Any

from runtime.blocks import (
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
from runtime.config import Config, load_config
from runtime.errors import Llm386Error
from runtime.profiles.catalog import ModelProfile, get_profile, list_profiles
from runtime.storage import open_store
from runtime.storage.interface import BlockStore
from runtime.storage.lmdb.store import LmdbStore
from runtime.tokenizers import get_tokenizer

__version__ = "0.1.0"

# The model clients pull in the anthropic SDK (about a second to import); load them on first
# use so `llm386 --help` and the store commands start fast.
_LAZY = {"AnthropicAdapter", "ModelResponse", "OfflineModel", "get_model_client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from runtime import providers as models

        return getattr(models, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


__all__ = [
    "AnthropicAdapter",
    "Block",
    "BlockKind",
    "BlockStore",
    "Config",
    "Edge",
    "EdgeKind",
    "Entry",
    "EntryRef",
    "Llm386Error",
    "LmdbStore",
    "ModelProfile",
    "ModelResponse",
    "NewBlock",
    "OfflineModel",
    "Provenance",
    "SessionInfo",
    "ToolCall",
    "ToolResult",
    "__version__",
    "canonical_json",
    "content_hash",
    "get_model_client",
    "get_profile",
    "get_tokenizer",
    "list_profiles",
    "load_config",
    "open_store",
]
