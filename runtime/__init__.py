"""llm386 runtime: a durable context store, pager, packer, tracer and replay for LLM agents.

The supported API is ``__all__`` below (one sorted list, checked by tests/runtime/test_api.py);
every other module is internal and may move. docs/api.md describes each name.

Importing ``runtime`` stays cheap: the store, blocks, config and errors load now; the pager,
packer, trace store, replay, agent and model clients (numpy, the anthropic SDK) load on first
use of their name, through ``__getattr__`` and ``_LAZY``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

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
from runtime.errors import (
    AmbiguousPrefix,
    BlockNotFound,
    BlockTooLarge,
    BudgetTooSmall,
    ConfigError,
    InvalidBlock,
    InvalidEdge,
    InvalidInput,
    InvalidSession,
    Llm386Error,
    MalformedFile,
    ModelCallFailed,
    ModelRetired,
    NotCanonicalJson,
    NotFound,
    ReducerError,
    ReplayMismatch,
    SessionNotFound,
    StoreCorrupted,
    StoreError,
    StoreFull,
    StoreNotAStore,
    StoreOutdated,
    StoreReadOnly,
    StoreUnavailable,
    StoreWriteFailed,
    TokenizerError,
    TraceNotFound,
    UnknownModel,
)
from runtime.profiles.catalog import ModelProfile, get_profile, list_profiles
from runtime.storage import open_store
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.interface import BlockStore
from runtime.storage.lmdb.store import LmdbStore
from runtime.tokenizers import get_tokenizer

if TYPE_CHECKING:  # what type checkers see for the names loaded on first use
    from runtime.agent.core import Agent, AgentReply
    from runtime.limits import InputRejected
    from runtime.packer.core import PackedRequest, pack
    from runtime.pager.core import PageOptions, PageRequest, page
    from runtime.pager.plan import PagePlan
    from runtime.pager.retrievers import Weighted
    from runtime.providers import (
        AnthropicAdapter,
        ModelResponse,
        OfflineModel,
        get_model_client,
        get_provider,
    )
    from runtime.providers.base import Provider
    from runtime.providers.usage import Usage
    from runtime.replay.repage import RepageResult, repage
    from runtime.replay.resend import NotReplayable, ReplayResult, replay, replays_of
    from runtime.storage.lmdb.traces import LmdbTraceStore
    from runtime.storage.tracestore import KvTraceStore
    from runtime.tracing.records import TraceRecord, TraceStore

__version__ = "0.1.0"

# Name -> the module that defines it. These modules pull in numpy or the anthropic SDK (a
# tenth of a second to a second), so `llm386 --help` and the store commands never pay for them.
_LAZY: dict[str, str] = {
    "Agent": "runtime.agent.core",
    "AgentReply": "runtime.agent.core",
    "AnthropicAdapter": "runtime.providers",
    "InputRejected": "runtime.limits",
    "KvTraceStore": "runtime.storage.tracestore",
    "LmdbTraceStore": "runtime.storage.lmdb.traces",
    "Provider": "runtime.providers.base",
    "Usage": "runtime.providers.usage",
    "get_provider": "runtime.providers",
    "ModelResponse": "runtime.providers",
    "NotReplayable": "runtime.replay.resend",
    "OfflineModel": "runtime.providers",
    "PackedRequest": "runtime.packer.core",
    "PageOptions": "runtime.pager.core",
    "PagePlan": "runtime.pager.plan",
    "PageRequest": "runtime.pager.core",
    "RepageResult": "runtime.replay.repage",
    "ReplayResult": "runtime.replay.resend",
    "TraceRecord": "runtime.tracing.records",
    "TraceStore": "runtime.tracing.records",
    "Weighted": "runtime.pager.retrievers",
    "get_model_client": "runtime.providers",
    "pack": "runtime.packer.core",
    "page": "runtime.pager.core",
    "repage": "runtime.replay.repage",
    "replay": "runtime.replay.resend",
    "replays_of": "runtime.replay.resend",
}


def __getattr__(name: str) -> Any:
    """Load a name of ``_LAZY`` from its module on first use, then keep it here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Runtime(types.ModuleType):
    """The ``runtime`` module, which keeps the API's ``replay`` over the ``runtime.replay`` package.

    Loading a subpackage makes the import system set it as an attribute of its parent, so the
    first import of anything under ``runtime/replay/`` would bind ``runtime.replay`` to the
    package and ``from runtime import replay`` would then give a module, not the function. The
    package stays reachable the usual way (``from runtime.replay.resend import ...`` reads
    ``sys.modules``); only the attribute is refused.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Runtime


__all__ = [
    "Agent",
    "AgentReply",
    "AmbiguousPrefix",
    "AnthropicAdapter",
    "Block",
    "BlockKind",
    "BlockNotFound",
    "BlockStore",
    "BlockTooLarge",
    "BudgetTooSmall",
    "Config",
    "ConfigError",
    "Edge",
    "EdgeKind",
    "Entry",
    "EntryRef",
    "InputRejected",
    "InvalidBlock",
    "InvalidEdge",
    "InvalidInput",
    "InvalidSession",
    "KvBlockStore",
    "KvTraceStore",
    "Llm386Error",
    "LmdbStore",
    "LmdbTraceStore",
    "MalformedFile",
    "ModelCallFailed",
    "ModelProfile",
    "ModelResponse",
    "ModelRetired",
    "NewBlock",
    "NotCanonicalJson",
    "NotFound",
    "NotReplayable",
    "OfflineModel",
    "PackedRequest",
    "PageOptions",
    "PagePlan",
    "PageRequest",
    "Provenance",
    "Provider",
    "ReducerError",
    "RepageResult",
    "ReplayMismatch",
    "ReplayResult",
    "SessionInfo",
    "SessionNotFound",
    "StoreCorrupted",
    "StoreError",
    "StoreFull",
    "StoreNotAStore",
    "StoreOutdated",
    "StoreReadOnly",
    "StoreUnavailable",
    "StoreWriteFailed",
    "TokenizerError",
    "ToolCall",
    "ToolResult",
    "TraceNotFound",
    "TraceRecord",
    "TraceStore",
    "UnknownModel",
    "Usage",
    "Weighted",
    "__version__",
    "canonical_json",
    "content_hash",
    "get_model_client",
    "get_profile",
    "get_provider",
    "get_tokenizer",
    "list_profiles",
    "load_config",
    "open_store",
    "pack",
    "page",
    "repage",
    "replay",
    "replays_of",
]
