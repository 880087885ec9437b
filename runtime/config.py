"""The ``llm386.toml`` configuration: typed, frozen settings with defaults for every key.

Owns: reading and validating the file into a ``Config`` of frozen dataclasses that other modules
take as arguments (the pager takes ``BudgetFractions`` and ``RetrieverSettings``).

Invariants:
- ``load_config(None)`` and ``Config.default()`` give the documented defaults; a key missing from
  the file keeps its default, and a ``[models.NAME]`` table missing keys falls back to the
  built-in profile of that name (or to non-zero defaults for a new model).
- Every accepted value has the declared type and range, else ``ConfigError`` names the dotted key,
  the value and what was expected. Budget fractions lie in [0, 1] and sum to at most 1.
- No API key is ever read from the file: any ``api_key`` anywhere raises ``ConfigError``
  (without echoing the value); keys belong in ``ANTHROPIC_API_KEY`` / ``OPENAI_API_KEY``.
- Unknown sections and keys are not ignored silently: each becomes a line in ``Config.warnings``.
- A relative ``[store] path`` is relative to the directory holding the file; so is a ``[store]
  url`` that is a path (a path stays LMDB; a ``postgresql://`` URL selects PostgreSQL), and
  ``$LLM386_STORE`` wins over both (``configured_store``).
- One story for the CLI and the web app: both find the file with ``config_location`` (an
  explicit path, else ``$LLM386_CONFIG``, else ``llm386.toml`` in the caller's directory) and
  make their Anthropic client from ``anthropic_client_options`` (``ANTHROPIC_BASE_URL`` in the
  environment wins over the file's ``[anthropic] base_url``, as it does for the SDK itself).
"""

from __future__ import annotations

import math
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from runtime import limits
from runtime.errors import ConfigError
from runtime.paging.presets import PRESETS, preset_names
from runtime.profiles.catalog import (
    ANTHROPIC,
    BUILTIN_PROFILES,
    OPENAI,
    ModelProfile,
    get_profile,
    list_profiles,
    lookup_profile,
)
from runtime.tokenizers import KNOWN_TOKENIZERS

CONFIG_FILENAME = "llm386.toml"
CONFIG_ENV = "LLM386_CONFIG"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
STORE_ENV = "LLM386_STORE"
DEFAULT_MAX_BLOCK_BYTES = 16 * 1024 * 1024
_FORBIDDEN_KEYS = ("api_key", "apikey")
S = TypeVar("S")

Check = tuple[Callable[[Any], bool], str]
_NONNEG: Check = (lambda v: v >= 0, "a number >= 0")
_POSITIVE: Check = (lambda v: v > 0, "a number > 0")
_UNIT: Check = (lambda v: 0 <= v <= 1, "a number from 0 to 1")
_HTTP: Check = (lambda v: v.startswith(("http://", "https://")), "an http(s) URL")
_NONEMPTY: Check = (lambda v: bool(v.strip()), "a non-empty string")
_TOKENIZER: Check = (lambda v: v in KNOWN_TOKENIZERS, f"one of {', '.join(KNOWN_TOKENIZERS)}")
_PRESET: Check = (lambda v: v == "" or v in PRESETS,
                  f'"" (no paging) or a paging preset: {", ".join(preset_names())}')  # fmt: skip


def _setting(default: Any, check: Check | None = None) -> Any:
    return field(default=default, metadata={"check": check} if check else {})


class RecencyMode(StrEnum):
    """How the recency retriever decays with age (age counted in session entries)."""

    HALF_LIFE = "half-life"
    LINEAR = "linear"


@dataclass(frozen=True)
class BudgetFractions:
    """Share of a model's input budget each canonical prompt section may fill (sum <= 1)."""

    state: float = _setting(0.10, _UNIT)
    plan: float = _setting(0.05, _UNIT)
    recent: float = _setting(0.20, _UNIT)
    retrieved: float = _setting(0.40, _UNIT)
    tools: float = _setting(0.15, _UNIT)
    background: float = _setting(0.05, _UNIT)
    slack: float = _setting(0.05, _UNIT)

    def items(self) -> tuple[tuple[str, float], ...]:
        """Return (section, fraction) pairs in the canonical section order."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self))


@dataclass(frozen=True)
class RecencySettings:
    """Recency retriever: score by age; ``half_life`` and linear span are counted in entries."""

    weight: float = _setting(0.25, _NONNEG)
    mode: RecencyMode = RecencyMode.HALF_LIFE
    half_life: float = _setting(20.0, _POSITIVE)


@dataclass(frozen=True)
class Bm25Settings:
    """BM25 retriever (Okapi): ``k1`` term-frequency saturation, ``b`` length normalisation."""

    weight: float = _setting(1.0, _NONNEG)
    k1: float = _setting(1.2, _NONNEG)
    b: float = _setting(0.75, _UNIT)


@dataclass(frozen=True)
class EmbeddingSettings:
    """Local hashed-embedding retriever with vectors of ``dimensions`` components."""

    weight: float = _setting(0.25, _NONNEG)
    dimensions: int = _setting(256, _POSITIVE)


@dataclass(frozen=True)
class WeightSettings:
    """A retriever whose only setting is its weight (its default is set in RetrieverSettings)."""

    weight: float = _setting(1.0, _NONNEG)


def _weight(default: float) -> Any:
    return field(default_factory=lambda: WeightSettings(default))


@dataclass(frozen=True)
class RetrieverSettings:
    """Per-retriever settings; the pager multiplies each retriever's score by its ``weight``.

    ``lexical``: fuzzy lexical retriever, off (weight 0) unless configured. ``source``: blocks
    whose provenance source (a speaker, a tool) the task names. ``neighbours``: a block near a
    relevant block in the session shares its relevance. ``pinned``: blocks the user pinned
    always score this weight."""

    recency: RecencySettings = field(default_factory=RecencySettings)
    bm25: Bm25Settings = field(default_factory=Bm25Settings)
    lexical: WeightSettings = _weight(0.0)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    source: WeightSettings = _weight(0.3)
    neighbours: WeightSettings = _weight(3.75)
    pinned: WeightSettings = _weight(1.0)


@dataclass(frozen=True)
class StoreSettings:
    """Where the block store lives (None: the caller decides) and its per-block size limit.

    ``url`` is a store URL (``postgresql://user@host/db``) or a path; ``path`` is a path."""

    path: Path | None = None
    url: str | None = _setting(None, _NONEMPTY)
    max_block_bytes: int = _setting(DEFAULT_MAX_BLOCK_BYTES, _POSITIVE)


@dataclass(frozen=True)
class _ClientSettings:
    """A provider client's table: where it sends, how long an attempt may take (seconds) and
    how many retries follow the first attempt. Each provider's subclass sets ``base_url``'s
    default; which environment variable wins over it is the provider's rule, not this one's."""

    base_url: str
    timeout_seconds: float = _setting(60.0, _POSITIVE)
    max_retries: int = _setting(2, _NONNEG)

    def client_options(self, base_url: str | None) -> dict[str, Any]:
        """Return the client's keyword arguments, sending to ``base_url`` (None: the SDK's own
        choice)."""
        return {"base_url": base_url, "timeout": self.timeout_seconds,
                "max_retries": self.max_retries}  # fmt: skip


@dataclass(frozen=True)
class AnthropicSettings(_ClientSettings):
    """Anthropic Messages API client settings. The key comes from ``ANTHROPIC_API_KEY`` only."""

    base_url: str = _setting("https://api.anthropic.com", _HTTP)


@dataclass(frozen=True)
class OpenAISettings(_ClientSettings):
    """OpenAI Chat Completions client settings (any OpenAI-compatible server: its ``.../v1``).
    The key comes from ``OPENAI_API_KEY`` only; ``OPENAI_BASE_URL`` wins over ``base_url``."""

    base_url: str = _setting("https://api.openai.com/v1", _HTTP)


@dataclass(frozen=True)
class ProxyConfig:
    """``llm386 proxy`` settings: where it listens, where it forwards, how it records.
    Each command-line flag wins over its key here."""

    host: str = _setting("127.0.0.1", _NONEMPTY)
    port: int = _setting(8787, (lambda v: 0 <= v <= 65535, "a port from 0 to 65535"))
    anthropic_upstream: str = _setting("https://api.anthropic.com", _HTTP)
    openai_upstream: str = _setting("https://api.openai.com/v1", _HTTP)
    fail_closed: bool = False
    queue_size: int = _setting(10_000, _POSITIVE)
    timeout_seconds: float = _setting(600.0, _POSITIVE)
    page: str = _setting("", _PRESET)  # "": forward unchanged; else a paging.presets name
    page_budget: int = _setting(0, _NONNEG)  # 0: no budget; else input tokens per request
    otlp_workers: int = _setting(1, _NONNEG)  # processes preparing /v1/traces bodies (0: none)
    max_body_bytes: int = _setting(64 * 1024 * 1024, _POSITIVE)  # a provider call's body
    max_otlp_body_bytes: int = _setting(16 * 1024 * 1024, _POSITIVE)  # an OTLP export's body


@dataclass(frozen=True)
class OtelSettings:
    """OpenTelemetry: where ``llm386 export --otlp`` (and the session page) sends spans."""

    export_url: str = _setting("", _HTTP)  # "" : none; the URL of a collector's /v1/traces


@dataclass(frozen=True)
class _ModelTable:
    """The keys a ``[models.NAME]`` table may set; defaults are those of a brand-new model."""

    provider: str = _setting("other", _NONEMPTY)
    max_context_tokens: int = _setting(128_000, _POSITIVE)
    reserved_output_tokens: int = _setting(4_096, _POSITIVE)
    safety_margin_tokens: int = _setting(4_096, _NONNEG)
    tokenizer: str = _setting("cl100k_base", _TOKENIZER)
    tokens_estimated: bool = True
    supports_system_role: bool = True
    supports_tools: bool = True
    supports_prompt_caching: bool = False
    supports_vision: bool = False


_MODEL_KEYS = frozenset(f.name for f in fields(_ModelTable))


@dataclass(frozen=True)
class Config:
    """Everything read from ``llm386.toml``; ``warnings`` lists keys that were not understood."""

    models: tuple[ModelProfile, ...] = ()
    budgets: BudgetFractions = field(default_factory=BudgetFractions)
    retrievers: RetrieverSettings = field(default_factory=RetrieverSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    anthropic: AnthropicSettings = field(default_factory=AnthropicSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    otel: OtelSettings = field(default_factory=OtelSettings)
    warnings: tuple[str, ...] = ()
    source: Path | None = None

    @classmethod
    def default(cls) -> Config:
        """Return the configuration used when there is no file."""
        return cls()

    def profile(self, name: str) -> ModelProfile:
        """Return the profile for ``name``: this file's ``[models]`` first, then built-ins."""
        return get_profile(name, self)

    def profiles(self) -> list[ModelProfile]:
        """Return every known profile (built-ins with this file's changes) sorted by name."""
        return list_profiles(self)


def find_config(directory: Path) -> Path | None:
    """Return ``directory/llm386.toml`` if it exists, else None."""
    candidate = directory / CONFIG_FILENAME
    return candidate if candidate.is_file() else None


def config_location(
    explicit: str | Path | None, directory: Path, environ: Mapping[str, str]
) -> Path | None:
    """Return the file to read: ``explicit``, else $LLM386_CONFIG, else ``directory``'s
    llm386.toml if present (None: the defaults). A named file that is missing is returned
    as named, so that loading it says so instead of quietly using the defaults."""
    named = explicit or environ.get(CONFIG_ENV)
    return Path(named).expanduser() if named else find_config(directory)


def configured_store(
    environ: Mapping[str, str], directory: Path, explicit: str | Path | None = None
) -> str | None:
    """Return where the store is: $LLM386_STORE, else ``[store] url`` (or ``path``) of the
    llm386.toml ``config_location`` finds; None when neither says (the caller's default)."""
    if environ.get(STORE_ENV):
        return environ[STORE_ENV]
    path = config_location(explicit, directory, environ)
    if path is None:
        return None
    settings = load_config(path).store
    if settings.url is not None:
        return settings.url
    return None if settings.path is None else str(settings.path)


def anthropic_client_options(config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the Anthropic adapter's keyword arguments from ``config``.

    ``base_url`` is None when ANTHROPIC_BASE_URL is set: the SDK reads it, and it wins over
    the file's ``[anthropic] base_url``.
    """
    settings = config.anthropic
    return settings.client_options(None if environ.get(BASE_URL_ENV) else settings.base_url)


def load_config(path: Path | None) -> Config:
    """Read and validate ``path`` (None: defaults) into a ``Config``; raise ConfigError if wrong."""
    if path is None:
        return Config.default()
    text = _read_text(path)
    try:
        limits.check_toml_text(text, str(path))
        document = tomllib.loads(text)
        limits.check_value(document, str(path), limits.CONFIG_LIMITS, finite=False)
    except limits.InputRejected as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:  # TOMLDecodeError, or an integer Python will not convert
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix that line and retry") from None
    _refuse_api_keys(document, path)
    return _Reader(path, text).config(document)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid UTF-8 (bad byte at offset {exc.start}); save it as UTF-8"
        ) from exc


def _refuse_api_keys(node: object, path: Path, where: tuple[str, ...] = ()) -> None:
    if isinstance(node, list):
        for item in node:
            _refuse_api_keys(item, path, where)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key.lower().replace("-", "_").endswith(_FORBIDDEN_KEYS):
            raise ConfigError(
                f"{path} sets {_dotted((*where, key))}: API keys never go in llm386.toml; remove "
                "it and export ANTHROPIC_API_KEY in the environment instead"
            )
        _refuse_api_keys(value, path, (*where, key))


class _Reader:
    """Turns a parsed TOML document into typed settings, collecting warnings with line numbers."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _key_lines(text)
        self.warnings: list[str] = []

    def config(self, document: dict[str, Any]) -> Config:
        known = ("anthropic", "budgets", "models", "openai", "otel", "proxy", "retrievers", "store")
        self._warn_unknown(document, known, ())
        retrievers = self._table(document, ("retrievers",))
        defaults = RetrieverSettings()
        settings = {
            f.name: self.build(
                getattr(defaults, f.name),
                self._table(retrievers, ("retrievers", f.name)),
                ("retrievers", f.name),
            )
            for f in fields(defaults)
        }
        self._warn_unknown(retrievers, list(settings), ("retrievers",))
        return Config(
            models=self._models(self._table(document, ("models",))),
            budgets=self._budgets(self._table(document, ("budgets",))),
            retrievers=RetrieverSettings(**settings),
            store=self._store(self._table(document, ("store",))),
            anthropic=self.build(
                AnthropicSettings(), self._table(document, ("anthropic",)), ("anthropic",)
            ),
            openai=self.build(OpenAISettings(), self._table(document, ("openai",)), ("openai",)),
            proxy=self.build(ProxyConfig(), self._table(document, ("proxy",)), ("proxy",)),
            otel=self.build(OtelSettings(), self._table(document, ("otel",)), ("otel",)),
            warnings=tuple(self.warnings),
            source=self.path,
        )

    def build(self, default: S, table: Mapping[str, Any], where: tuple[str, ...]) -> S:
        """Return ``default`` with the values in ``table`` (found at ``where``) checked and
        converted."""
        hints = typing.get_type_hints(type(default))
        spec = {f.name: f for f in fields(default)}  # type: ignore[arg-type]
        self._warn_unknown(table, list(spec), where)
        values = {
            key: self._value(
                table[key], hints[key], spec[key].metadata.get("check"), where + (key,)
            )
            for key in spec
            if key in table
        }
        return replace(default, **values)  # type: ignore[type-var]

    def _models(self, table: Mapping[str, Any]) -> tuple[ModelProfile, ...]:
        profiles = []
        for name in sorted(table):
            where = ("models", name)
            entries = self._table(table, where)
            values = self.build(_ModelTable(), entries, where)
            base = lookup_profile(name, BUILTIN_PROFILES) or _new_profile(name, values)
            changed = {key: getattr(values, key) for key in entries if key in _MODEL_KEYS}
            profile = replace(base, name=name, **changed)
            if profile.input_budget <= 0:
                raise self._error(
                    where,
                    f"reserved_output_tokens ({profile.reserved_output_tokens}) + "
                    f"safety_margin_tokens ({profile.safety_margin_tokens}) leave no input "
                    f"budget out of max_context_tokens ({profile.max_context_tokens})",
                )
            profiles.append(profile)
        return tuple(profiles)

    def _budgets(self, table: Mapping[str, Any]) -> BudgetFractions:
        budgets: BudgetFractions = self.build(BudgetFractions(), table, ("budgets",))
        total = math.fsum(value for _, value in budgets.items())
        if total > 1.0 + 1e-9:
            fractions = dict(budgets.items())
            set_here = ", ".join(f"{k} = {table[k]}" for k in sorted(table) if k in fractions)
            raise self._error(
                ("budgets",),
                f"fractions sum to {total:.4g}, more than 1.0 ({set_here or 'defaults'}); "
                "lower one of them",
            )
        return budgets

    def _store(self, table: Mapping[str, Any]) -> StoreSettings:
        store: StoreSettings = self.build(StoreSettings(), table, ("store",))
        if store.path is not None and store.url is not None:
            raise self._error(
                ("store", "url"), "and store.path are both set; keep one (url takes a path too)"
            )
        if store.path is not None and not store.path.is_absolute():
            store = replace(store, path=self.path.parent / store.path)
        if store.url is not None and "://" not in store.url and not Path(store.url).is_absolute():
            store = replace(store, url=str(self.path.parent / store.url))  # a path: LMDB
        return store

    def _value(self, value: Any, expected: Any, check: Check | None, where: tuple[str, ...]) -> Any:
        converted = self._convert(value, expected, where)
        if check is not None and converted is not None and not check[0](converted):
            raise self._error(where, f"is {value!r}; expected {check[1]}")
        return converted

    def _convert(self, value: Any, expected: Any, where: tuple[str, ...]) -> Any:
        if expected is bool and isinstance(value, bool):
            return value
        if expected is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if expected is float and _is_finite_number(value):
            return float(value)
        if expected in (str, str | None) and isinstance(value, str):
            return value
        if expected == Path | None and isinstance(value, str) and value:
            return Path(value)
        if (
            isinstance(expected, type)
            and issubclass(expected, Enum)
            and value in _choices(expected)
        ):
            return expected(value)
        raise self._error(where, f"is {value!r}; expected {_type_name(expected)}")

    def _table(self, parent: Mapping[str, Any], where: tuple[str, ...]) -> Mapping[str, Any]:
        value = parent.get(where[-1], {})
        if not isinstance(value, dict):
            raise self._error(where, f"is {value!r}; expected a table ([{_dotted(where)}])")
        return value

    def _warn_unknown(self, table: Mapping[str, Any], known: Any, where: tuple[str, ...]) -> None:
        for key in sorted(set(table) - set(known)):
            kind = "section" if isinstance(table[key], dict) else "key"
            self.warnings.append(
                f"unknown {kind} {_dotted((*where, key))} in {self.path.name}"
                f"{self._line((*where, key))}; known: {', '.join(sorted(known))}"
            )

    def _error(self, where: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.path.name}{self._line(where)}: {_dotted(where)} {message}")

    def _line(self, where: tuple[str, ...]) -> str:
        line = self.lines.get(where)
        return f" (line {line})" if line else ""


def _new_profile(name: str, values: _ModelTable) -> ModelProfile:
    provider = ANTHROPIC if name.startswith("claude") else OPENAI if _is_openai(name) else "other"
    return ModelProfile(name=name, **{**vars(values), "provider": provider})


def _is_openai(name: str) -> bool:
    return name.startswith(("gpt-", "chatgpt-")) or re.match(r"^o\d", name) is not None


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _choices(enum: type[Enum]) -> list[str]:
    return [member.value for member in enum]


def _type_name(expected: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             str | None: "a string (a store URL or a path)"}  # fmt: skip
    if expected in names:
        return names[expected]
    if isinstance(expected, type) and issubclass(expected, Enum):
        return "one of " + ", ".join(repr(choice) for choice in _choices(expected))
    return "a non-empty path string"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_PART = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)')
_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]\[]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(
    r'^\s*(?P<key>(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|\'[^\']*\'))*)\s*='
)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    # Best effort, for messages only: tomllib reports no positions for valid documents.
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        assign = None if header else _ASSIGN.match(line)
        if header:
            table = _key_parts(header["key"])
            lines.setdefault(table, number)
        elif assign:
            lines.setdefault((*table, *_key_parts(assign["key"])), number)
    return lines


def _key_parts(raw: str) -> tuple[str, ...]:
    return tuple(quoted or literal or bare for quoted, literal, bare in _KEY_PART.findall(raw))


def _dotted(where: tuple[str, ...]) -> str:
    return ".".join(part if _BARE_KEY.match(part) else f'"{part}"' for part in where)
