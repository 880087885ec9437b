"""The client's own request bytes of a paged call, kept beside the bytes the model saw.

Owns: the ``proxy-client-requests`` table (SHA-256 of the client's bytes -> those bytes,
zlib-compressed), ``keep`` (in the recorder's write) and ``client_request`` (for the web).

Invariants:
- A paged call's trace record holds the bytes sent upstream (its prompt hash is theirs); the
  client's bytes are here, named in the record's ``paging.proxy.client_request``.
- Read back bytes are checked against their SHA-256: a damaged row reads as missing, never as
  other bytes.
"""

from __future__ import annotations

import hashlib
import zlib

from runtime.storage.kv import Engine, Tables

TABLE = "proxy-client-requests"


def keep(t: Tables, body: bytes) -> str:
    """Store a client's request bytes in the caller's write; return their SHA-256 (hex)."""
    digest = hashlib.sha256(body).hexdigest()
    t.put(TABLE, bytes.fromhex(digest), zlib.compress(body, 6))
    return digest


def client_request(kv: Engine, sha256: str) -> bytes | None:
    """Return the client's request bytes with this SHA-256, or None if they are not held."""
    try:
        key = bytes.fromhex(sha256)
    except ValueError:
        return None
    raw = kv.read(lambda t: t.get(TABLE, key))
    if raw is None:
        return None
    try:
        body = zlib.decompress(raw)
    except zlib.error:
        return None
    return body if hashlib.sha256(body).digest() == key else None
