"""What every provider's HTTP client shares: secrets kept out of messages, error bodies read,
and the retry policy's small pieces.

Owns: ``Scrubber`` (removes an API key and a base URL's credentials, whole or cut short, from
text quoted from elsewhere), ``public_url``, ``error_detail`` (type and message of an error body
in either API's shape), ``retry_after``, ``is_retryable``, ``with_wait``, ``ms_since`` and
``sha256``. The Anthropic adapter and the OpenAI client both use them, so both keep the same
promises about keys and retries.

Invariants:
- A scrubbed text contains neither the secret nor any run of ``MIN_SECRET_PREFIX`` or more
  characters cut from it; text is scrubbed whole before it is shortened.
- 429 and every 5xx are retryable; other statuses are not (retrying will not change them).
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit, urlunsplit

from runtime import limits
from runtime.blocks import canonical_json
from runtime.errors import Llm386Error, ModelCallFailed
from runtime.providers.response import Attempt, RawResponse

MAX_QUOTED_CHARS = 200  # of a non-JSON error body quoted in a message
MIN_SECRET_PREFIX = 8  # a cut copy of a secret shorter than this is not masked
MAX_ERROR_TYPE_CHARS = 80  # of the API's error type, which names a kind and is never long


# Failure kinds both clients report in their attempts.
BYTE_MISMATCH = "byte-mismatch"
MISSING_KEY = "missing-key"
TIMEOUT = "timeout"
CONNECTION = "connection"


class BytesAltered(Exception):
    """Raised inside a request hook to stop a send whose bytes are not the request's."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: a successful answer, or a failure and whether to try again."""

    attempt: Attempt
    raw: RawResponse | None = None
    failure: ModelCallFailed | None = None
    retryable: bool = False
    retry_after: float | None = None


@dataclass(frozen=True)
class Scrubber:
    """Removes one API key and one base URL's ``user:password`` from text."""

    api_key: str | None
    url: str

    def __call__(self, text: str) -> str:
        if self.api_key:
            text = mask(text, self.api_key, "[api key]")
        for secret in url_secrets(self.url):
            text = mask(text, secret, "[credentials]")
        return text


def mask(text: str, secret: str, label: str) -> str:
    """Replace ``secret`` in ``text``, and every run of 8+ characters cut from any part of it.

    A server may echo the key's head, its tail ("...x7Kq2vLm") or a middle piece; each is a
    substring of the key at least ``MIN_SECRET_PREFIX`` long, so each is masked.
    """
    text = text.replace(secret, label)
    if len(secret) < MIN_SECRET_PREFIX:
        return text
    pieces = _pieces(secret)
    kept, start = [], 0
    for found in pieces.finditer(text):
        if found.start() < start:
            continue  # inside a run already masked
        end = found.end()
        while end < len(text) and text[found.start() : end + 1] in secret:
            end += 1
        kept += [text[start : found.start()], label]
        start = end
    return "".join(kept) + text[start:]


@functools.lru_cache(maxsize=8)
def _pieces(secret: str) -> re.Pattern[str]:
    """Match any ``MIN_SECRET_PREFIX`` characters in a row taken from ``secret``."""
    grams = {secret[i : i + MIN_SECRET_PREFIX] for i in range(len(secret) - MIN_SECRET_PREFIX + 1)}
    return re.compile("|".join(re.escape(gram) for gram in sorted(grams)))


def url_secrets(url: str) -> Iterator[str]:
    """Yield the ``user:password`` part of ``url`` and its password, as written and decoded."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    # Longest first, so the whole user:password goes before its password alone.
    for secret in (userinfo, unquote(userinfo), password, unquote(password)):
        if secret:
            yield secret


def public_url(url: str) -> str:
    """Return ``url`` with any ``user:password@`` replaced, so that a message can name it."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"[credentials]@{host}"))


def error_detail(reply: RawResponse, scrub: Callable[[str], str]) -> tuple[str, str]:
    """Return (error type, message) from an error body of either API's shape, else its raw text.

    Both APIs answer ``{"error": {"type": ..., "message": ...}}`` (OpenAI-compatible servers
    sometimes leave ``type`` null and set ``code``). Both come from the server, so both are
    scrubbed (a gateway may put the key in either, or nest it deeper in the message). Raw text
    is scrubbed whole before it is shortened: a key cut in two by the shortening would no
    longer match the key.
    """
    try:
        error = limits.loads(reply.body, "the error body", limits.RESPONSE_LIMITS)["error"]
        kind, message = error.get("type") or error["code"], error.get("message", "")
    except (Llm386Error, TypeError, KeyError, AttributeError):
        text = scrub(reply.body.decode("utf-8", "replace"))
        return f"http-{reply.status}", text[:MAX_QUOTED_CHARS]
    kind = scrub(kind if isinstance(kind, str) else canonical_json(kind).decode())
    message = message if isinstance(message, str) else canonical_json(message).decode()
    return kind[:MAX_ERROR_TYPE_CHARS], scrub(message)


def is_retryable(status: int) -> bool:
    """Whether an answer with ``status`` is worth another attempt (429 and 5xx)."""
    return status == 429 or status >= 500


def retry_after(reply: RawResponse) -> float | None:
    """Return the ``retry-after`` seconds the server asked for, or None."""
    try:
        return float(reply.header("retry-after") or "")
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def with_wait(attempt: Attempt, wait_seconds: float) -> Attempt:
    """Return ``attempt`` noting how long we waited after it."""
    return replace(attempt, wait_ms=round(wait_seconds * 1000, 3))


def ms_since(started: float) -> float:
    """Return the milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
