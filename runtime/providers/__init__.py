"""Model clients: send packed Messages API request bytes to a model and get its reply back.

Owns: the ``ModelClient`` interface and ``get_model_client``, which picks the Anthropic adapter
or the offline model. The pieces live in submodules: ``response`` (what a call returns),
``anthropic_adapter`` (the real API through the official SDK), ``offline`` (a deterministic
local model for the demo and tests).

Invariants:
- Every client takes the exact request bytes plus the hash they were recorded under, refuses to
  send bytes that do not hash to it (ReplayMismatch), and returns a ``ModelResponse`` whose
  ``sent_sha256`` is the hash of what the model was actually sent.
- No client holds an API key anywhere it could be printed.
"""

from __future__ import annotations

from typing import Any, Protocol

from runtime.errors import UnknownModel
from runtime.profiles.catalog import ANTHROPIC, ModelProfile, get_profile
from runtime.profiles.lifecycle import check_callable
from runtime.providers.offline.model import OFFLINE_MODEL_NAME, OfflineModel
from runtime.providers.response import Attempt, ContentBlock, ModelResponse, ToolUse, Usage

# The Anthropic adapter imports the SDK (about a second); it loads on first use so commands
# that never call a model start fast.
_ADAPTER_NAMES = {"API_KEY_ENV", "AnthropicAdapter", "api_key_available"}


def __getattr__(name: str) -> Any:
    if name in _ADAPTER_NAMES:
        from runtime.providers.anthropic import adapter as anthropic_adapter

        return getattr(anthropic_adapter, name)
    raise AttributeError(f"module 'runtime.providers' has no attribute {name!r}")


__all__ = [
    "API_KEY_ENV",
    "OFFLINE_MODEL_NAME",
    "AnthropicAdapter",
    "Attempt",
    "ContentBlock",
    "ModelClient",
    "ModelResponse",
    "OfflineModel",
    "ToolUse",
    "Usage",
    "api_key_available",
    "get_model_client",
]


class ModelClient(Protocol):
    """What the tracer and replay call: send request bytes, get a ModelResponse."""

    provider: str

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse: ...

    def close(self) -> None: ...


def get_model_client(
    profile_or_name: ModelProfile | str, *, offline: bool = False, **settings: Any
) -> ModelClient:
    """Return the client for a model: the offline model, or an AnthropicAdapter(**settings).

    ``settings`` are AnthropicAdapter's keyword arguments (api_key, base_url, timeout,
    max_retries, backoff_seconds, max_backoff_seconds); the offline model ignores them.
    Raises ModelRetired for a retired model (see runtime.profiles.lifecycle).
    """
    name = profile_or_name if isinstance(profile_or_name, str) else profile_or_name.name
    if offline or name == OFFLINE_MODEL_NAME:
        return OfflineModel()
    profile = get_profile(name) if isinstance(profile_or_name, str) else profile_or_name
    if profile.provider != ANTHROPIC:
        raise UnknownModel(
            f"no model adapter for {profile.name} (provider {profile.provider}): llm386 calls "
            f"Anthropic models only; pick a claude-* profile or use {OFFLINE_MODEL_NAME}"
        )
    check_callable(profile.name, action=f"make a model client for {profile.name}")
    from runtime.providers.anthropic.adapter import AnthropicAdapter

    return AnthropicAdapter(**settings)
