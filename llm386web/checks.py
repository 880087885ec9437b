"""System checks: misconfiguration is reported at start-up with an id and a hint.

llm386.E001  the store cannot be opened
llm386.E002  LLM386_HOME is not a writable folder
llm386.E003  settings.LLM386 has keys the app does not know
llm386.E004  the configured llm386.toml (CONFIG_PATH or LLM386_CONFIG) does not exist
llm386.E005  the configured llm386.toml cannot be read or has a wrong value
llm386.E006  a numeric LLM386 setting has a wrong type or is out of range
llm386.W001  the configured llm386.toml has keys llm386 does not understand
"""

from __future__ import annotations

import os
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from runtime.errors import ConfigError, Llm386Error
from runtime.storage.open import safe_location

from . import store_access
from .conf import KNOWN_KEYS, runtime_config, setting_problems, unknown_keys, web_config


@register("llm386")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report unknown LLM386 keys and a missing configuration file."""
    problems: list[CheckMessage] = []
    unknown = unknown_keys()
    if unknown:
        problems.append(
            Error(
                f"settings.LLM386 has unknown keys: {', '.join(unknown)}",
                hint=f"Use only: {', '.join(KNOWN_KEYS)}.",
                id="llm386.E003",
            )
        )
    problems += [Error(problem, hint="Set it to a value in that range, or remove it for the default.",
                       id="llm386.E006") for problem in setting_problems()]  # fmt: skip
    config = web_config().CONFIG_PATH
    if config is not None and not config.is_file():
        problems.append(
            Error(
                f"the configuration file {config} does not exist",
                hint="Create it, or remove CONFIG_PATH from settings.LLM386 (or unset LLM386_CONFIG).",
                id="llm386.E004",
            )
        )
    elif config is not None:
        problems += _config_problems()
    return problems


def _config_problems() -> list[CheckMessage]:
    """Load llm386.toml as replays will, and report what is wrong with it."""
    try:
        loaded = runtime_config()
    except ConfigError as exc:
        return [Error(str(exc), hint="Fix the file; `llm386 models --config PATH` reads it the same way.",
                      id="llm386.E005")]  # fmt: skip
    return [Warning(line, hint="Remove or correct the key.", id="llm386.W001")
            for line in loaded.warnings]  # fmt: skip


@register("llm386")
def check_home(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report an LLM386_HOME that is missing, not a folder, or not writable."""
    home = web_config().HOME
    if home.is_dir() and os.access(home, os.W_OK | os.X_OK):
        return []
    return [
        Error(
            f"LLM386_HOME ({home}) is not a writable folder",
            hint="Create it and make it writable, or set LLM386_HOME to a writable folder "
            "(the Makefile uses <repo>/var).",
            id="llm386.E002",
        )
    ]


@register("llm386")
def check_store(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report a store path that cannot be opened, with the runtime's reason."""
    try:
        store_access.get_store()
    except Llm386Error as exc:
        return [
            Error(
                f"the llm386 store at {safe_location(web_config().STORE_PATH)} cannot be opened: {exc}",
                hint="Set LLM386_STORE (or LLM386['STORE_PATH']) to a store folder or to a new, "
                "empty folder; `llm386 --store PATH verify` checks an existing store.",
                id="llm386.E001",
            )
        ]
    return []
