"""The provider seam: what one model provider owns, and what a client of it does.

Owns: ``Provider`` (render, re-page render, make a client, parse, usage, price, and the few facts about a
provider the rest of the runtime asks instead of comparing names) and ``ModelClient`` (a
configured connection: ``send_raw`` one HTTP exchange, ``send`` a whole call), and
``MessagesProvider``, the parse, usage and content of every provider that answers in the
Anthropic Messages format.

Invariants:
- Nothing outside ``runtime/providers/`` branches on a provider's name: it looks the provider up
  (``runtime.providers.get_provider``) and asks it (tests/runtime/test_layout_providers.py).
- ``render`` is the canonical request bytes: what is hashed into the prompt hash and sent
  unchanged. A client refuses bytes that do not hash to the expected hash (ReplayMismatch) and
  reports the hash of what its HTTP layer sent.
- ``usage`` reads a reply into the one ``Usage`` type; ``price`` prices it from the one table
  (``runtime.providers.pricing``), filtered to this provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from runtime import limits
from runtime.blocks import canonical_json
from runtime.errors import Llm386Error
from runtime.providers.pricing import Price, call_cost, find_price, input_cost
from runtime.providers.response import (
    Attempt,
    ModelResponse,
    RawResponse,
    messages_content,
    messages_response,
    messages_usage,
)
from runtime.providers.usage import Usage

if TYPE_CHECKING:
    from runtime.config import Config
    from runtime.profiles.catalog import ModelProfile


@dataclass(frozen=True)
class PackedTurn:
    """What a re-page hands the target provider: a recorded turn packed by the packer."""

    request: Mapping[str, Any]  # the packer's Anthropic Messages request
    body: bytes  # its canonical JSON bytes
    recorded: bytes | None  # the turn's stored request, when it is in the provider's format
    call_id: str  # the trace re-paged


class ModelClient(Protocol):
    """A configured connection to one provider: what the tracer and replay call."""

    provider: str  # the Provider's name

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        """Send the bytes unchanged (with the client's retries) and return the parsed reply."""
        ...

    def send_raw(self, request_bytes: bytes, *, expected_sha256: str | None) -> RawResponse:
        """Send the bytes unchanged once and return the answer as it arrived, any status."""
        ...

    def close(self) -> None: ...


class Provider(ABC):
    """One model provider: how its requests are written, sent, read, counted and priced."""

    name: ClassVar[str]  # the trace records' provider value
    label: ClassVar[str]  # what a page or message calls it: "the Anthropic API"
    # Its client can re-send the stored request bytes of its own records unchanged.
    sends_stored_requests: ClassVar[bool] = True
    # The wire format of its requests: a record is replayed only by a client of the same format.
    request_format: ClassVar[str] = "anthropic-messages"
    # The packer's Messages requests are this provider's request format as they are (the
    # sample agent sends them); a provider that is not writes re-pages with ``repage_body``.
    takes_packed_requests: ClassVar[bool] = True
    # It caches the longest prefix it has seen without being asked (no cache breakpoints).
    caches_automatically: ClassVar[bool] = False
    # Where its settings live: ``<PREFIX>_API_KEY`` / ``_BASE_URL`` in the environment and the
    # web app's LLM386 settings ("" for a provider that needs none).
    settings_prefix: ClassVar[str] = ""
    # What ``available`` looks for, to say what is missing: the variable and what it holds.
    credentials_env: ClassVar[str] = ""
    credentials_name: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def render(self, request: Mapping[str, Any]) -> bytes:
        """Return the canonical request body bytes for a request object."""
        return canonical_json(request)

    def repage_body(self, turn: PackedTurn, profile: ModelProfile) -> bytes:
        """Return the request bytes of a re-page of ``turn`` for ``profile``: the packer's
        Messages request in this provider's format, keeping the settings of the turn's recorded
        request where they exist. A Messages provider sends the packer's bytes as they are."""
        return turn.body

    @abstractmethod
    def client(self, **settings: Any) -> ModelClient:
        """Return a client sending to this provider; raise UnknownModel if it has none."""

    def load_client(self) -> None:
        """Import what ``client`` needs now (an SDK can take seconds), for a server's startup."""
        return  # most providers need no import beyond their own module

    def client_options(self, config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
        """Return ``client``'s keyword arguments from llm386.toml and the environment."""
        return {}

    def available(self) -> bool:
        """Whether a call could authenticate (credentials are set); True if it needs none."""
        return True

    @abstractmethod
    def parse(self, raw: RawResponse, attempts: tuple[Attempt, ...] = ()) -> ModelResponse:
        """Parse a successful answer's body, or raise ModelCallFailed (malformed-response)."""

    @abstractmethod
    def usage(self, message: Mapping[str, Any]) -> Usage:
        """Read the token counts of a reply (as stored on a trace record) into ``Usage``."""

    @abstractmethod
    def content(self, message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Return a reply's content as Messages blocks (``text``, ``tool_use``), for output diffs."""

    def price_of(self, model: str) -> Price | None:
        """Return this provider's list price for ``model``, or None if it is not priced."""
        return find_price(model, self.name)

    def price(self, usage: Usage | None, model: str) -> float | None:
        """Return the list-price input cost in USD of ``usage`` on ``model`` (None: unpriced)."""
        return input_cost(usage, self.price_of(model))

    def call_price(self, usage: Usage | None, model: str) -> float | None:
        """Return the list-price input and output cost in USD of ``usage`` on ``model``."""
        return call_cost(usage, self.price_of(model))

    def model_of(self, request: bytes) -> str:
        """Return the model that answers a request: see ``answering_model``."""
        try:
            model = limits.loads(request, "the request").get("model")
        except (Llm386Error, AttributeError):
            model = None
        return self.answering_model(str(model) if model else "unknown")

    def answering_model(self, requested: str) -> str:
        """Return the model that answers a request for ``requested`` (that model, mostly)."""
        return requested

    def model_label(self, model: str) -> str:
        """Return how a message names ``model`` of this provider."""
        return model


class MessagesProvider(Provider):
    """A provider whose replies are Anthropic Messages replies (Anthropic, the offline model)."""

    def parse(self, raw: RawResponse, attempts: tuple[Attempt, ...] = ()) -> ModelResponse:
        return messages_response(raw, attempts)

    def usage(self, message: Mapping[str, Any]) -> Usage:
        return messages_usage(message.get("usage"))

    def content(self, message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return messages_content(message)
