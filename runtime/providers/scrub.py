"""Secrets kept out of messages: an API key and a base URL's credentials, whole or cut short.

Owns: ``Scrubber`` (removes an API key and a base URL's ``user:password`` from text quoted from
elsewhere), ``mask``, ``url_secrets`` and ``public_url`` (a URL a message can name).

Invariants:
- A scrubbed text contains neither the secret nor any run of ``MIN_SECRET_PREFIX`` or more
  characters cut from it; text is scrubbed whole before it is shortened.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

MIN_SECRET_PREFIX = 8  # a cut copy of a secret shorter than this is not masked


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
