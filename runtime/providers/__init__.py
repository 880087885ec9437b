"""Providers: each model provider behind one interface, looked up by name.

Owns: the registry (``get_provider``, ``find_provider``, ``provider_names``,
``sending_providers``) and
``get_model_client``, which picks the client for a model profile. The interface is
``runtime.providers.base`` (``Provider``, ``ModelClient``); the providers are ``anthropic/``
(the Messages API through the official SDK, the only package that imports it), ``openai/``
(Chat Completions through the official ``openai`` SDK, any OpenAI-compatible server by base
URL) and ``offline/`` (a deterministic local
model for the demo and tests). What a call returns is ``response``; the one usage type is
``usage``; the one price table is ``pricing``.

Invariants:
- Every client takes the exact request bytes plus the hash they were recorded under, refuses to
  send bytes that do not hash to it (ReplayMismatch), and returns a ``ModelResponse`` whose
  ``sent_sha256`` is the hash of what the model was actually sent.
- No client holds an API key anywhere it could be printed.
- Importing this package imports neither SDK (about a second each): a client's module loads
  when a client is first made.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InvalidInput, UnknownModel
from runtime.profiles.catalog import ModelProfile, get_profile
from runtime.profiles.lifecycle import check_callable
from runtime.providers.anthropic.provider import API_KEY_ENV, AnthropicProvider, api_key_available
from runtime.providers.base import ModelClient, Provider
from runtime.providers.offline.model import OFFLINE_MODEL_NAME, OfflineModel, OfflineProvider
from runtime.providers.openai.provider import OpenAIProvider
from runtime.providers.response import (
    Attempt,
    ContentBlock,
    ModelResponse,
    RawResponse,
    ToolUse,
)
from runtime.providers.usage import Usage


def __getattr__(name: str) -> Any:
    if name == "AnthropicAdapter":
        from runtime.providers.anthropic.adapter import AnthropicAdapter

        return AnthropicAdapter
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
    "Provider",
    "RawResponse",
    "ToolUse",
    "Usage",
    "api_key_available",
    "get_model_client",
    "find_provider",
    "get_provider",
    "provider_names",
    "sending_providers",
]

# In the order a page offers them: the real API first.
_PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (AnthropicProvider(), OpenAIProvider(), OfflineProvider())
}


def get_provider(name: str) -> Provider:
    """Return the provider called ``name`` (a trace record's or a profile's provider)."""
    try:
        return _PROVIDERS[str(name)]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise InvalidInput(f"no provider called {name!r}; llm386 knows {known}") from None


def find_provider(name: str) -> Provider | None:
    """Return the provider called ``name``, or None (a custom profile's provider may be any)."""
    return _PROVIDERS.get(str(name))


def provider_names() -> tuple[str, ...]:
    """Return every provider's name, in the order pages offer them."""
    return tuple(_PROVIDERS)


def sending_providers(request_format: str | None = None) -> tuple[Provider, ...]:
    """Return the providers whose clients re-send stored requests: where a replay can go
    (of ``request_format`` only, when given: where a record of that format can go)."""
    return tuple(p for p in _PROVIDERS.values() if p.sends_stored_requests
                 and request_format in (None, p.request_format))  # fmt: skip


def get_model_client(
    profile_or_name: ModelProfile | str, *, offline: bool = False, **settings: Any
) -> ModelClient:
    """Return the client for a model: the offline model, or its provider's client(**settings).

    ``settings`` are the client's keyword arguments (for Anthropic: api_key, base_url, timeout,
    max_retries, backoff_seconds, max_backoff_seconds); the offline model ignores them.
    Raises UnknownModel for a model no provider here can call, ModelRetired for a retired one
    (see runtime.profiles.lifecycle).
    """
    name = profile_or_name if isinstance(profile_or_name, str) else profile_or_name.name
    if offline or name == OFFLINE_MODEL_NAME:
        return OfflineProvider().client()
    profile = get_profile(name) if isinstance(profile_or_name, str) else profile_or_name
    provider = find_provider(profile.provider)
    if provider is None or not provider.takes_packed_requests:
        raise UnknownModel(
            f"no model adapter for {profile.name} (provider {profile.provider}): llm386 calls "
            f"Anthropic models only; pick a claude-* profile or use {OFFLINE_MODEL_NAME}"
        )
    check_callable(profile.name, action=f"make a model client for {profile.name}")
    return provider.client(**settings)
