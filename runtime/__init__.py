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
from .config import Config, load_config
from .errors import Llm386Error
from .lmdbstore import LmdbStore
from .models import AnthropicAdapter, ModelResponse, OfflineModel, get_model_client
from .profiles import ModelProfile, get_profile, list_profiles
from .store import BlockStore
from .tokenizers import get_tokenizer

__version__ = "0.1.0"


def open_store(path: str | Path, **options: Any) -> LmdbStore:
    """Open (creating if needed) the LMDB block store at ``path``."""
    return LmdbStore(path, **options)


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
