"""Ingest tokens: what an OTLP exporter sends as ``Authorization: Bearer <token>``.

Owns: ``create_token``, ``list_tokens``, ``revoke_token``, ``check_token`` and
``IngestToken`` (a token's name and when it was made: never the token).

Invariants:
- A token is 32 random bytes (``secrets``), shown once, when it is created; the store keeps
  only its SHA-256 in the ``ingest_tokens`` table, keyed by name. A token is checked by
  hashing it and comparing with every stored hash in constant time (``hmac.compare_digest``),
  so neither its value nor which token nearly matched leaks through timing.
- Names are short printable words (letters, digits, ``.-_``), unique in a store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, NotFound, StoreError, StoreUnavailable
from runtime.otel.spans import ensure_tables
from runtime.storage.codec import json_load
from runtime.storage.kv import Engine, Tables

TOKENS = "ingest_tokens"
PREFIX = "llm386_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TokenNotFound(NotFound):
    """No ingest token has that name."""


@dataclass(frozen=True)
class IngestToken:
    name: str
    created_at: int  # ms since the epoch


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid token name, or raise InvalidInput saying what is."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not a token name: use 1-64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str) -> str:
    """Create a token called ``name`` and return it (the only time it is ever shown)."""
    check_name(name)
    token = PREFIX + secrets.token_urlsafe(32)
    row = canonical_json({"sha256": _digest(token), "created_at": int(time.time() * 1000)})

    def put(t: Tables) -> None:
        if t.get(TOKENS, name.encode()) is not None:
            raise InvalidInput(
                f"a token called {name!r} exists; revoke it first or choose another name"
            )
        t.put(TOKENS, name.encode(), row)

    ensure_tables(engine, TOKENS)
    engine.write(put)
    return token


def list_tokens(engine: Engine) -> list[IngestToken]:
    """Return every token's name and creation time, by name."""
    return [IngestToken(k.decode(), int(json_load(v)["created_at"])) for k, v in _rows(engine)]


def revoke_token(engine: Engine, name: str) -> None:
    """Delete the token called ``name``; raise TokenNotFound if there is none."""
    check_name(name)
    ensure_tables(engine, TOKENS)
    if not engine.write(lambda t: t.delete(TOKENS, name.encode())):
        raise TokenNotFound(f"no ingest token is called {name!r}; `llm386 token list` lists them")


def check_token(engine: Engine, token: str | None) -> str | None:
    """Return the name of the token ``token`` is, or None (compared in constant time)."""
    if not token:
        return None
    digest = _digest(token).encode()
    found = None
    for key, value in _rows(engine):
        if hmac.compare_digest(digest, str(json_load(value)["sha256"]).encode()):
            found = key.decode()  # no early exit: every row is compared
    return found


def _rows(engine: Engine) -> list[tuple[bytes, bytes]]:
    ensure_tables(engine, TOKENS)
    try:
        return engine.read(lambda t: list(t.scan(TOKENS)))
    except StoreError as exc:
        # A read-only store never written with a token has no table: no tokens. Any other
        # failure (the database is down) is the store's, not "no such token": an exporter
        # told 401 would drop its spans instead of sending them again.
        if engine.readonly and not isinstance(exc, StoreUnavailable):
            return []
        raise
