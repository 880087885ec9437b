"""The Anthropic provider: Messages API requests, sent through the official SDK.

Owns: ``AnthropicProvider``, the description of the Anthropic Messages API the rest of the
runtime asks (``runtime.providers.get_provider("anthropic")``). Importing it does not import
the SDK: ``client`` loads ``runtime.providers.anthropic.adapter`` (about a second) on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runtime.providers.base import MessagesProvider

if TYPE_CHECKING:
    from runtime.config import Config
    from runtime.providers.anthropic.adapter import AnthropicAdapter

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"


def api_key_available(api_key: str | None = None) -> bool:
    """Whether a call could authenticate: ``api_key`` given or ``ANTHROPIC_API_KEY`` set."""
    return bool(api_key or key_from_env())


def key_from_env() -> str | None:
    """Return ``ANTHROPIC_API_KEY`` (None when unset or empty); never log or show it."""
    return os.environ.get(API_KEY_ENV) or None


def base_url_from_env() -> str | None:
    """Return ``ANTHROPIC_BASE_URL``, which the SDK also reads (None when unset or empty)."""
    return os.environ.get(BASE_URL_ENV) or None


class AnthropicProvider(MessagesProvider):
    """The Anthropic Messages API (``POST /v1/messages``)."""

    name = "anthropic"
    label = "the Anthropic API"
    settings_prefix = "ANTHROPIC"
    credentials_env = API_KEY_ENV
    credentials_name = "Anthropic API key"

    def client(self, **settings: Any) -> AnthropicAdapter:
        """Return an AnthropicAdapter(**settings); see its docstring for the settings."""
        from runtime.providers.anthropic.adapter import AnthropicAdapter

        return AnthropicAdapter(**settings)

    def load_client(self) -> None:
        import runtime.providers.anthropic.adapter  # noqa: F401 - the import is the point

    def client_options(self, config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
        from runtime.config import anthropic_client_options

        return anthropic_client_options(config, environ)

    def available(self) -> bool:
        return api_key_available()
