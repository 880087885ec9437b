"""The only place the web app makes model clients: the Anthropic API or the offline model.

The API key is read by the adapter from the server's ANTHROPIC_API_KEY environment variable; it
is never taken from a request, put in a context, or shown on a page. The base URL and timeout
come from settings.LLM386 (ANTHROPIC_BASE_URL, ANTHROPIC_TIMEOUT_S per attempt,
ANTHROPIC_CONNECT_TIMEOUT_S, REPLAY_TIMEOUT_S for all attempts of a call together).
"""

from __future__ import annotations

from enum import StrEnum

from runtime.models import AnthropicAdapter, ModelClient, OfflineModel, api_key_available

from .conf import web_config


class Target(StrEnum):
    ANTHROPIC = "anthropic"
    OFFLINE = "offline"


def anthropic_available() -> bool:
    """Whether the server has an API key to call Anthropic with."""
    return api_key_available()


def model_client(target: Target) -> ModelClient:
    """Return a client for ``target``; the caller closes it."""
    if target is Target.OFFLINE:
        return OfflineModel()
    config = web_config()
    return AnthropicAdapter(
        base_url=config.ANTHROPIC_BASE_URL,
        timeout=config.ANTHROPIC_TIMEOUT_S,
        connect_timeout=config.ANTHROPIC_CONNECT_TIMEOUT_S,
        total_timeout=config.REPLAY_TIMEOUT_S,
    )
