"""The web app's configuration: the ``LLM386`` settings dict merged over defaults.

Read through :func:`web_config` at use time (not import time) so ``override_settings`` in tests
and a changed environment both take effect. Unknown keys are reported by the system check
``llm386.E003`` rather than ignored.

The runtime's own configuration is the same ``llm386.toml`` the CLI reads, found the same way
(``runtime.config.config_location``: ``CONFIG_PATH``, else ``$LLM386_CONFIG``, else the repo's
``llm386.toml`` if present) and loaded by :func:`runtime_config`. Its ``[anthropic]`` settings
(and ``[openai]``) and ``[models]`` tables apply to web replays and re-pages as they do to the
CLI's; the ``ANTHROPIC_*`` and ``OPENAI_*`` keys here, when set, override the file for this app
only.
"""

from __future__ import annotations

import math
import os
import reprlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from django.conf import settings

from runtime.config import Config, config_location, configured_store, load_config
from runtime.errors import ConfigError, Llm386Error
from runtime.providers.offline.model import OFFLINE_MODEL_NAME
from runtime.storage.open import is_store_url

from .home import REPO_DIR, home_dir


@dataclass(frozen=True)
class WebConfig:
    """Everything the web app needs from the runtime's world, as plain values."""

    HOME: Path
    STORE_PATH: Path | str  # a store folder, or a store URL (runtime.storage.open_store)
    CONFIG_PATH: Path | None
    ANTHROPIC_BASE_URL: str | None  # None: $ANTHROPIC_BASE_URL, else llm386.toml's base_url
    ANTHROPIC_TIMEOUT_S: float | None  # None: llm386.toml's [anthropic] timeout_seconds
    ANTHROPIC_CONNECT_TIMEOUT_S: float
    OPENAI_BASE_URL: str | None  # None: $OPENAI_BASE_URL, else llm386.toml's [openai] base_url
    OPENAI_TIMEOUT_S: float | None  # None: llm386.toml's [openai] timeout_seconds
    OPENAI_CONNECT_TIMEOUT_S: float
    PROXY_URL: str  # where `llm386 proxy` listens: what agents set their base URLs to
    PROXY_STATUS_TIMEOUT_S: float
    REPLAY_TIMEOUT_S: float
    REPLAY_SHOW_PROGRESS_AFTER_S: float
    OFFLINE_MODEL: str
    TOKENIZER: str
    PAGE_SIZE: int
    MAX_PAGE_SIZE: int
    LOGIN_FAILURES_ALLOWED: int
    LOGIN_LOCKOUT_S: float
    LOGIN_MAX_LOCKOUT_S: float
    OTLP_MAX_BODY_BYTES: int  # an OTLP export body as sent to /v1/traces
    OTLP_MAX_DECODED_BYTES: int  # after gzip
    OTLP_WORKERS: int  # processes that read and rebuild OTLP bodies while the app writes them


KNOWN_KEYS = tuple(f.name for f in fields(WebConfig))


@dataclass(frozen=True)
class _Number:
    """What a numeric setting may hold."""

    low: float
    high: float
    whole: bool = False  # a count of something, not seconds
    above: bool = False  # strictly above ``low`` (a timeout of 0 s waits for nothing)
    optional: bool = False  # None: take the value from elsewhere (llm386.toml)

    def problem(self, key: str, value: object) -> str | None:
        if value is None and self.optional:
            return None
        kinds = (int,) if self.whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            what = "a whole number" if self.whole else "a number of seconds"
            return f"LLM386[{key!r}] must be {what}, not {_shown(value)}"
        number = cast(float, value)  # an int of any size compares exactly, never as a float
        low_ok = number > self.low if self.above else number >= self.low
        if not (low_ok and number <= self.high and not _nan(number)):
            floor = f"above {self.low:g}" if self.above else f"at least {self.low:g}"
            return f"LLM386[{key!r}] must be {floor} and at most {self.high:g}, not {_shown(value)}"
        return None


def _nan(number: float) -> bool:
    return isinstance(number, float) and math.isnan(number)


def _shown(value: object) -> str:
    """The value for a message, short: a huge whole number by its size (its digits might not
    even print: Python refuses to print an int of over 4,300 digits)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a whole number of {value.bit_length()} bits"
    return reprlib.repr(value)


_SECONDS = _Number(0, 86_400, above=True)
_BYTES = _Number(1, 2**40, whole=True)
NUMBERS: dict[str, _Number] = {
    "ANTHROPIC_TIMEOUT_S": _Number(0, 86_400, above=True, optional=True),
    "ANTHROPIC_CONNECT_TIMEOUT_S": _SECONDS,
    "OPENAI_TIMEOUT_S": _Number(0, 86_400, above=True, optional=True),
    "OPENAI_CONNECT_TIMEOUT_S": _SECONDS,
    "PROXY_STATUS_TIMEOUT_S": _SECONDS,
    "REPLAY_TIMEOUT_S": _SECONDS,
    "REPLAY_SHOW_PROGRESS_AFTER_S": _Number(0, 86_400),
    "PAGE_SIZE": _Number(1, 100_000, whole=True),
    "MAX_PAGE_SIZE": _Number(1, 100_000, whole=True),
    "LOGIN_FAILURES_ALLOWED": _Number(1, 1_000_000, whole=True),
    "LOGIN_LOCKOUT_S": _Number(0, 31_536_000),
    "LOGIN_MAX_LOCKOUT_S": _Number(0, 31_536_000),
    "OTLP_MAX_BODY_BYTES": _BYTES,
    "OTLP_MAX_DECODED_BYTES": _BYTES,
    "OTLP_WORKERS": _Number(0, 64, whole=True),
}


def _configured_store() -> str | None:
    """$LLM386_STORE, else llm386.toml's ``[store] url``; a broken file is the config check's to
    report (llm386web.checks), so here it only falls back to the default store."""
    try:
        return configured_store(os.environ, REPO_DIR)
    except Llm386Error:
        return None


def defaults() -> dict[str, Any]:
    """Return the default values, derived from the environment."""
    home = home_dir()
    return {
        "HOME": home,
        "STORE_PATH": _configured_store() or home / "store",
        "CONFIG_PATH": config_location(None, REPO_DIR, os.environ),
        "ANTHROPIC_BASE_URL": None,
        "ANTHROPIC_TIMEOUT_S": None,
        # A web replay waits at most REPLAY_TIMEOUT_S for the model, retries included, and
        # at most ANTHROPIC_CONNECT_TIMEOUT_S to connect (llm386web.replayjobs).
        "ANTHROPIC_CONNECT_TIMEOUT_S": 5.0,
        "OPENAI_BASE_URL": None,
        "OPENAI_TIMEOUT_S": None,
        "OPENAI_CONNECT_TIMEOUT_S": 5.0,
        # The connect page shows the proxy's address and reads its status page, waiting at
        # most PROXY_STATUS_TIMEOUT_S (`make run` starts the proxy on this address).
        "PROXY_URL": os.environ.get("LLM386_PROXY_URL") or "http://127.0.0.1:8787",
        "PROXY_STATUS_TIMEOUT_S": 0.5,
        "REPLAY_TIMEOUT_S": 60.0,
        # An htmx replay answers with its result if it has one by then, else with progress.
        "REPLAY_SHOW_PROGRESS_AFTER_S": 1.0,
        "OFFLINE_MODEL": OFFLINE_MODEL_NAME,
        # Token counts on session and block pages until model profiles pick one per session.
        "TOKENIZER": "cl100k_base",
        "PAGE_SIZE": 50,
        "MAX_PAGE_SIZE": 500,
        # Failed log-ins per user name and per client address before a lockout; each further
        # failure doubles the lockout, up to the maximum (see llm386web.throttle).
        "LOGIN_FAILURES_ALLOWED": 5,
        "LOGIN_LOCKOUT_S": 30.0,
        "LOGIN_MAX_LOCKOUT_S": 3600.0,
        # The OTLP receiver at /v1/traces refuses bigger bodies whole (runtime.otel.wire).
        "OTLP_MAX_BODY_BYTES": 16 * 1024 * 1024,
        "OTLP_MAX_DECODED_BYTES": 64 * 1024 * 1024,
        # Started on the first export; 0: all of it in the request's thread (runtime.otel.workers).
        "OTLP_WORKERS": 1,
    }


def unknown_keys() -> list[str]:
    """Return keys of settings.LLM386 that the app does not know, sorted."""
    return sorted(set(getattr(settings, "LLM386", {})) - set(KNOWN_KEYS))


def setting_problems() -> list[str]:
    """Return what is wrong with the numeric settings (llm386.E006 at start-up), in key order."""
    config = web_config()
    found = (NUMBERS[key].problem(key, getattr(config, key)) for key in NUMBERS)
    return [problem for problem in found if problem is not None]


def checked(config: WebConfig, key: str) -> Any:
    """Return ``config``'s value of the numeric setting ``key``; ConfigError if it is wrong
    (for servers that skip the start-up checks, such as a WSGI server's)."""
    value = getattr(config, key)
    problem = NUMBERS[key].problem(key, value)
    if problem is not None:
        raise ConfigError(f"{problem}: fix it in the settings' LLM386 and restart the app")
    return value


def web_config() -> WebConfig:
    """Return settings.LLM386 merged over :func:`defaults`, with paths resolved."""
    merged = {**defaults(), **getattr(settings, "LLM386", {})}
    values = {key: merged[key] for key in KNOWN_KEYS}
    values["HOME"] = Path(values["HOME"]).expanduser().resolve()
    if not is_store_url(os.fspath(values["STORE_PATH"])):
        values["STORE_PATH"] = Path(values["STORE_PATH"]).expanduser().resolve()
    if values["CONFIG_PATH"] is not None:
        values["CONFIG_PATH"] = Path(values["CONFIG_PATH"]).expanduser().resolve()
    return WebConfig(**values)


def runtime_config() -> Config:
    """Return the runtime configuration (llm386.toml) the app runs with, read now.

    Raises ConfigError (a 400 on a page; ``llm386.E005`` at start-up) if the file is wrong.
    """
    return load_config(web_config().CONFIG_PATH)
