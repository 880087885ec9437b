"""The client's own request bytes of a paged call, kept beside the bytes the model saw.

Owns: ``keep`` (in the recorder's write) and ``client_request`` (for the web) over the
``proxy-client-requests`` table (call id -> the client's bytes, zlib-compressed; the trace
store deletes a record's row with the record and ``llm386 verify`` checks it).

Invariants:
- A paged call's trace record holds the bytes sent upstream (its prompt hash is theirs); the
  client's bytes are here under its call id; their SHA-256 is the record's
  ``paging.proxy.client_request``.
- Read back bytes are checked against their SHA-256: a damaged row reads as missing, never as
  other bytes.
"""

from __future__ import annotations

import hashlib
import zlib

from runtime.storage.kv import Engine, Tables
from runtime.storage.tracerows import CLIENT_REQUESTS as TABLE
from runtime.storage.tracerows import client_request_in


def keep(t: Tables, call_id: str, body: bytes) -> str:
    """Store a call's client request bytes in the caller's write; return their SHA-256 (hex)."""
    t.put(TABLE, call_id.encode(), zlib.compress(body, 6))
    return hashlib.sha256(body).hexdigest()


def client_request(kv: Engine, call_id: str, sha256: str) -> bytes | None:
    """Return the client's request bytes of ``call_id`` if held and hashing to ``sha256``."""
    return kv.read(lambda t: client_request_in(t, call_id, sha256))
