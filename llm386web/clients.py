"""The only place the web app makes model clients: through the runtime's provider registry.

A record's replay can go to every provider whose client re-sends stored requests of its request
format (``runtime.providers.sending_providers``: the Anthropic API and the offline model for a
Messages request, the OpenAI API for a Chat Completions one); nothing here names one. An API
key is read by the provider's client from the server's environment (``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``); it is never taken from a request, put in a context, or shown on a page.
Base URL, timeout and retries come from llm386.toml exactly as for the CLI
(``Provider.client_options``: the provider's ``*_BASE_URL`` in the environment wins), and
settings.LLM386's ``<PREFIX>_BASE_URL`` / ``<PREFIX>_TIMEOUT_S`` (``ANTHROPIC_...``,
``OPENAI_...``), when set, win
over both. ``<PREFIX>_CONNECT_TIMEOUT_S`` and REPLAY_TIMEOUT_S (all attempts of a call together)
bound a web replay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidInput
from runtime.providers import ModelClient, Provider, get_provider, sending_providers

from .conf import runtime_config, web_config


@dataclass(frozen=True)
class ReplayTarget:
    """A provider the replay form offers: a button, enabled when it could authenticate."""

    provider: Provider
    available: bool
    primary: bool  # the first available target: the form's default button


def replay_targets(record_provider: str | None = None) -> tuple[ReplayTarget, ...]:
    """Return where a replay of a ``record_provider`` record can go (None: any record), in the
    order the form offers them."""
    form = None if record_provider is None else get_provider(record_provider).request_format
    providers = sending_providers(form)
    available = [p.available() for p in providers]
    first = available.index(True) if True in available else -1
    return tuple(
        ReplayTarget(p, ok, n == first)
        for n, (p, ok) in enumerate(zip(providers, available, strict=True))
    )


def load_clients() -> None:
    """Import every replay target's client: the Anthropic SDK takes a second or more (measured
    8 s on a loaded machine) to import, which the first replay would otherwise wait for."""
    for provider in sending_providers():
        provider.load_client()


load_clients()


def replay_target(name: str, record_provider: str | None = None) -> Provider | None:
    """Return the provider called ``name`` if a replay (of a ``record_provider`` record) can go
    to it, else None."""
    targets = replay_targets(record_provider)
    return next((t.provider for t in targets if t.provider.name == name), None)


def target_names(record_provider: str | None = None) -> str:
    """Return the names of where a replay (of a ``record_provider`` record) can go, for a message."""
    return ", ".join(t.provider.name for t in replay_targets(record_provider))


def model_client(provider: Provider) -> ModelClient:
    """Return a client for ``provider`` with the web app's settings; the caller closes it."""
    options = provider.client_options(runtime_config(), os.environ)
    options.update(_web_overrides(provider.settings_prefix))
    options["total_timeout"] = web_config().REPLAY_TIMEOUT_S
    return provider.client(**options)


def _web_overrides(prefix: str) -> dict[str, Any]:
    """Return the LLM386 settings named for a provider (``ANTHROPIC_BASE_URL``...) that are set."""
    if not prefix:
        return {}
    config = web_config()
    named = {"base_url": "BASE_URL", "timeout": "TIMEOUT_S", "connect_timeout": "CONNECT_TIMEOUT_S"}
    values = {option: getattr(config, f"{prefix}_{key}", None) for option, key in named.items()}
    return {option: value for option, value in values.items() if value is not None}


def experiment_client(record_provider: str, provider_name: str = "") -> tuple[ModelClient, str]:
    """Return the client an experiment on a ``record_provider`` record sends through, and a note
    when the offline model stands in for a provider with no key on the server.

    ``provider_name`` (a provider swap) must take the record's format; without it the record's
    own provider answers. A Messages request falls back to the offline model, said in the note;
    a request no offline model reads is refused (InvalidInput), and nothing is sent or recorded.
    """
    provider = get_provider(record_provider) if not provider_name else None
    if provider_name:
        provider = replay_target(provider_name, record_provider)
        if provider is None:
            raise InvalidInput(f"Choose a provider that takes this turn's format: "
                               f"{target_names(record_provider)} "
                               f"(got {provider_name!r}).")  # fmt: skip
    assert provider is not None
    if provider.available():
        return model_client(provider), ""
    missing = f"No {provider.credentials_name} is set on the server ({provider.credentials_env})"
    offline = get_provider("offline")
    if offline.request_format != get_provider(record_provider).request_format:
        raise InvalidInput(f"{missing}, so {provider.label} cannot answer and nothing was sent "
                           "or recorded. Restart the server with the key in its environment.")  # fmt: skip
    note = (f"{missing}: the experiment was sent to the offline model instead (its replies are "
            "canned, not a real model's). Restart the server with the key to ask the real model.")  # fmt: skip
    return model_client(offline), note
