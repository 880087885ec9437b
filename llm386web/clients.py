"""The only place the web app makes model clients: the Anthropic API or the offline model.

The API key is read by the adapter from the server's ANTHROPIC_API_KEY environment variable; it
is never taken from a request, put in a context, or shown on a page. The base URL, timeout and
retries come from llm386.toml's ``[anthropic]`` table exactly as for the CLI
(``runtime.config.anthropic_client_options``: ANTHROPIC_BASE_URL in the environment wins), and
settings.LLM386's ANTHROPIC_BASE_URL / ANTHROPIC_TIMEOUT_S, when set, win over both.
ANTHROPIC_CONNECT_TIMEOUT_S and REPLAY_TIMEOUT_S (all attempts of a call together) bound a web replay.
"""

from __future__ import annotations

import os
from enum import StrEnum

from runtime.config import anthropic_client_options
from runtime.providers import AnthropicAdapter, ModelClient, OfflineModel, api_key_available

from .conf import runtime_config, web_config


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
    options = anthropic_client_options(runtime_config(), os.environ)
    if config.ANTHROPIC_BASE_URL is not None:
        options["base_url"] = config.ANTHROPIC_BASE_URL
    if config.ANTHROPIC_TIMEOUT_S is not None:
        options["timeout"] = config.ANTHROPIC_TIMEOUT_S
    options["connect_timeout"] = config.ANTHROPIC_CONNECT_TIMEOUT_S
    options["total_timeout"] = config.REPLAY_TIMEOUT_S
    return AnthropicAdapter(**options)
