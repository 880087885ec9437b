"""The runtime's exception tree: one base class, subclasses named for what went wrong.

Every message says what happened and what to do next. Nothing in the runtime swallows an
exception silently; callers (the CLI, the web app) catch ``Llm386Error`` and show its message.

    Llm386Error
    ├── InvalidInput                 bad arguments from a caller
    │   ├── InvalidBlock             empty body, invalid UTF-8, unknown kind, bad priority
    │   ├── BlockTooLarge            body over the configured size limit
    │   ├── InvalidEdge              unknown edge kind, self-loop
    │   ├── InvalidSession           empty or malformed session id
    │   ├── ConfigError              llm386.toml unreadable or wrong
    │   ├── UnknownModel             no profile by that name
    │   ├── ModelRetired             the model is retired: nothing is sent for it
    │   ├── MalformedFile            an import file that cannot be read (with line and reason)
    │   │   └── InputRejected        outside data over a limit (runtime.limits), with its place
    │   ├── AmbiguousPrefix          a shortened id or hash that matches several (lists them)
    │   ├── NotCanonicalJson         a value with no canonical JSON (NaN, huge int); also ValueError
    │   └── ReducerError             model output a reducer cannot turn into blocks
    ├── NotFound
    │   ├── BlockNotFound
    │   ├── SessionNotFound
    │   └── TraceNotFound
    ├── StoreError
    │   ├── StoreNotAStore           the path holds something that is not a store
    │   ├── StoreCorrupted           verify found damage
    │   ├── StoreFull                the disk (not the map) is full
    │   ├── StoreWriteFailed         the disk refused a commit (I/O error, quota, size limit)
    │   ├── StoreReadOnly            a write on a store opened read-only
    │   ├── StoreUnavailable         the database server is down, unreachable or refused the login
    │   └── StoreOutdated            a read-only store of an older layout (run llm386 migrate)
    ├── TokenizerError               BPE file missing or its checksum wrong
    ├── BudgetTooSmall               required content does not fit the budget
    ├── ModelCallFailed              API error, timeout, malformed response, missing key
    └── ReplayMismatch               stored bytes do not hash to the recorded prompt hash
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.providers.response import Attempt


class Llm386Error(Exception):
    """Base class of every error the runtime raises on purpose."""


class InvalidInput(Llm386Error):
    """A caller passed something the runtime cannot accept."""


class InvalidBlock(InvalidInput):
    """A block's kind, body or metadata is not acceptable."""


class BlockTooLarge(InvalidBlock):
    """A block's body is over the store's size limit."""


class InvalidEdge(InvalidInput):
    """An edge's kind or ends are not acceptable."""


class InvalidSession(InvalidInput):
    """A session id is empty or malformed."""


class ConfigError(InvalidInput):
    """The configuration file cannot be read or holds wrong values."""


class UnknownModel(InvalidInput):
    """No model profile has that name."""


class ModelRetired(InvalidInput):
    """The model is retired (runtime.profiles.lifecycle); nothing was sent. ``replacement`` names its successor."""

    def __init__(self, message: str, model: str, replacement: str | None):
        super().__init__(message)
        self.model = model
        self.replacement = replacement


class MalformedFile(InvalidInput):
    """An input file cannot be parsed; the message names the line and the reason."""


class NotCanonicalJson(InvalidInput, ValueError):
    """A value has no canonical JSON; a ValueError too, as ``json.dumps`` raised before."""


class ReducerError(InvalidInput):
    """A reducer cannot turn the model output into blocks."""


class AmbiguousPrefix(InvalidInput):
    """A shortened id or hash matches more than one; ``candidates`` holds (some of) them."""

    def __init__(self, message: str, candidates: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.candidates = candidates


class NotFound(Llm386Error):
    """Something looked up by id does not exist."""


class BlockNotFound(NotFound):
    """No block has that id."""


class SessionNotFound(NotFound):
    """No session has that id."""


class TraceNotFound(NotFound):
    """No trace record has that id."""


class StoreError(Llm386Error):
    """The store cannot do what was asked."""


class StoreNotAStore(StoreError):
    """The path exists but does not hold an llm386 store."""


class StoreCorrupted(StoreError):
    """The store's contents fail verification."""


class StoreFull(StoreError):
    """The disk under the store is full."""


class StoreWriteFailed(StoreError):
    """The disk refused a write (an I/O error, a quota or file size limit); nothing was stored."""


class StoreReadOnly(StoreError):
    """A write was attempted on a store opened read-only."""


class StoreUnavailable(StoreError):
    """The store's database server cannot be reached, refused the login or dropped the connection."""


class StoreOutdated(StoreError):
    """The store's layout is older than this llm386 and it cannot be upgraded where it is."""


class TokenizerError(Llm386Error):
    """A tokenizer cannot be loaded."""


class BudgetTooSmall(Llm386Error):
    """Required content does not fit the model's input budget."""


class ModelCallFailed(Llm386Error):
    """A model call failed; ``status`` and ``error_type`` say how when known.

    ``attempts`` holds every HTTP attempt made (``runtime.providers.Attempt``), empty when the call
    failed before sending anything (for example: no API key).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "error",
        status: int | None = None,
        attempts: tuple[Attempt, ...] = (),
    ):
        super().__init__(message)
        self.error_type = error_type
        self.status = status
        self.attempts = attempts


class ReplayMismatch(Llm386Error):
    """Stored request bytes do not hash to the recorded prompt hash; nothing was sent."""
