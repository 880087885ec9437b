"""The trace tables' rows: their names and keys, and reading one record or request back.

Owns the layout the trace store (``runtime.storage.tracestore``) writes and
``runtime.storage.tracecheck`` verifies; both go through these functions, never through keys
of their own.

Layout (tables; ``cid`` is the 25-byte ASCII call id, ``h`` the 32 raw hash bytes):

    trace_meta       b"schema" -> b"2"; b"totals" -> JSON {calls, error, flagged};
                     b"generation" -> JSON {added, deleted, repairs, writes} (TraceGeneration)
    traces           cid -> canonical JSON record (TraceRecord.stored_json), or its chunks
                     when large (``runtime.storage.tracechunks``)
    trace_by_session session 0x00 turn(4 BE) cid -> b""
    trace_by_time    started_at(8 BE) cid -> b""
    trace_by_status  status 0x00 cid -> b""          status in ok | error | flagged
    trace_by_hash    h cid -> b""
    trace_requests   h -> the request's chunk nodes   once per prompt hash
    trace_responses  cid -> codec byte + bytes
    trace_flags      cid -> JSON {note, flagged_at}
    trace_sessions   session -> JSON SessionTraceStats (``runtime.tracing.aggregates``)
    trace_turns      session 0x00 turn(4 BE) -> JSON TurnGroup (layout version 2 on)
    proxy-client-requests  cid -> zlib(the client's own request bytes), for a call the capture
                     proxy paged (``runtime.proxy.originals``); deleted with its record

Invariants: a request row's bytes are returned only when they hash to the prompt hash that keys
them (``load_request``); reading a record only checks that its request is stored, so a page
that shows records never decompresses or hashes request bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

from runtime.blocks import canonical_json, check_session
from runtime.errors import AmbiguousPrefix, InvalidInput, StoreCorrupted, StoreError, TraceNotFound
from runtime.storage.chunking import DIGEST_SIZE, split_digests
from runtime.storage.codec import json_load
from runtime.storage.kv import Tables, prefix_end
from runtime.storage.tracechunks import CHUNKED, CHUNKS, NODES, RAW, REFS, ZLIB
from runtime.tracing.aggregates import SessionTraceStats, TurnGroup
from runtime.tracing.records import (
    CALL_ID_LEN,
    Flag,
    TraceRecord,
    TraceStatus,
    check_call_id,
    check_hash,
)
from runtime.tracing.records import prompt_hash as hash_of

META, TRACES, FLAGS = "trace_meta", "traces", "trace_flags"
BY_SESSION, BY_TIME = "trace_by_session", "trace_by_time"
BY_STATUS, BY_HASH = "trace_by_status", "trace_by_hash"
REQUESTS, RESPONSES = "trace_requests", "trace_responses"
SESSIONS, TURNS = "trace_sessions", "trace_turns"
INDEXES = (BY_SESSION, BY_TIME, BY_STATUS, BY_HASH)
TABLES = (META, TRACES, FLAGS, *INDEXES, REQUESTS, RESPONSES, SESSIONS, TURNS, CHUNKS, NODES, REFS)
FLAGGED = "flagged"
SCHEMA = b"2"  # the trace tables' own layout: requests as chunks (1: whole requests, still read)
READABLE_SCHEMAS = (b"1", SCHEMA)
TOTALS, GENERATION = b"totals", b"generation"
CLIENT_REQUESTS = "proxy-client-requests"  # named by the record's paging.proxy slot
CANDIDATES = 5  # hashes an ambiguous prefix error lists
CHUNK_RECORDS_FROM = 16 * 1024  # bytes of record JSON from which it is stored as chunks


def session_key(session: str, turn: int, cid: str = "") -> bytes:
    return session.encode() + b"\x00" + turn.to_bytes(4, "big") + cid.encode()


def session_prefix(session: str) -> bytes:
    return session.encode() + b"\x00"


def status_key(status: str, cid: str) -> bytes:
    return status.encode() + b"\x00" + cid.encode()


def index_rows(rec: TraceRecord) -> list[tuple[str, bytes]]:
    """Return the (table, key) index rows of a record (its flag row aside)."""
    cid = rec.call_id
    return [
        (BY_SESSION, session_key(rec.session, rec.turn, cid)),
        (BY_TIME, rec.started_at.to_bytes(8, "big") + cid.encode()),
        (BY_STATUS, status_key(rec.status.value, cid)),
        (BY_HASH, bytes.fromhex(rec.prompt_hash) + cid.encode()),
    ]


def unpack_bytes(stored: bytes) -> bytes:
    """Return the bytes ``pack_bytes`` stored; raise StoreCorrupted if they are damaged."""
    tag, body = stored[:1], stored[1:]
    if tag == RAW:
        return body
    if tag == ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            raise StoreCorrupted(
                "stored trace bytes do not decompress; run `llm386 verify`"
            ) from None
    raise StoreCorrupted(f"stored trace bytes have unknown codec {tag!r}; run `llm386 verify`")


def load_chunked(t: Tables, stored: bytes) -> bytes:
    """Return the bytes of a row of node digests (raise StoreCorrupted if a piece is missing)."""
    out = []
    for node in split_digests(stored[1:]):
        children = t.get(NODES, node)
        if children is None or len(children) % DIGEST_SIZE:
            raise StoreCorrupted(f"request node {node.hex()[:12]} is missing; run `llm386 verify`")
        for digest, chunk in zip(
            split_digests(children), t.get_many(CHUNKS, list(split_digests(children))), strict=True
        ):
            if chunk is None:
                raise StoreCorrupted(
                    f"request chunk {digest.hex()[:12]} is missing; run `llm386 verify`"
                )
            out.append(unpack_bytes(chunk))
    return b"".join(out)


def load_request(t: Tables, stored: bytes, expected: str) -> bytes:
    """Return a request row's bytes; raise StoreCorrupted unless they hash to ``expected``."""
    data = load_chunked(t, stored) if stored[:1] == CHUNKED else unpack_bytes(stored)
    if hash_of(data) != expected:
        raise StoreCorrupted(
            f"the stored request {expected[:12]} no longer hashes to its prompt hash; "
            "run `llm386 verify`"
        )
    return data


def client_sha256(rec: TraceRecord) -> str | None:
    """The SHA-256 of the client's own request bytes if the proxy paged ``rec``'s call."""
    proxy = rec.paging.get("proxy") if isinstance(rec.paging, dict) else None
    held = proxy.get("client_request") if isinstance(proxy, dict) else None
    sha = held.get("sha256") if isinstance(held, dict) else None
    return sha if isinstance(sha, str) else None


def client_request_in(t: Tables, cid: str, sha256: str) -> bytes | None:
    """Return the client's request bytes kept for ``cid`` if they hash to ``sha256``, else
    None (never kept, or damaged)."""
    raw = t.get(CLIENT_REQUESTS, cid.encode())
    if raw is None:
        return None
    try:
        body = zlib.decompress(raw)
    except zlib.error:
        return None
    return body if hash_of(body) == sha256 else None


def request_intact(t: Tables, expected: str) -> bool:
    """Whether the stored request hashes to ``expected`` (a damaged copy is replaced)."""
    stored = t.get(REQUESTS, bytes.fromhex(expected))
    if stored is None:
        return False
    try:
        load_request(t, stored, expected)
    except StoreCorrupted:
        return False
    return True


def decode_row(t: Tables, raw: bytes) -> TraceRecord:
    """Return the record a ``traces`` row holds, whole or as chunks."""
    return TraceRecord.decode(load_chunked(t, raw) if raw[:1] == CHUNKED else raw)


def stored_stats(t: Tables, session: str) -> SessionTraceStats:
    raw = t.get(SESSIONS, session.encode())
    return (
        SessionTraceStats(session)
        if raw is None
        else SessionTraceStats.from_stored(session, json_load(raw))
    )


def put_stats(t: Tables, stats: SessionTraceStats) -> None:
    key = stats.session.encode()
    if stats.calls <= 0:
        t.delete(SESSIONS, key)
    else:
        t.put(SESSIONS, key, canonical_json(stats.stored()))


def put_group(t: Tables, session: str, turn: int, group: TurnGroup) -> None:
    t.put(TURNS, session_key(session, turn), canonical_json(group.stored()))


def trace_layout(t: Tables) -> bytes | None:
    try:
        return t.get(META, b"schema")
    except StoreError:
        return None  # a read-only store never written by a trace store has no trace tables


def turn_of(key: bytes, prefix: bytes) -> int:
    return int.from_bytes(key[len(prefix) : len(prefix) + 4], "big")


def add_to_turn(t: Tables, rec: TraceRecord) -> bool:
    """Add ``rec`` to its turn's group; return whether the turn is new."""
    raw = t.get(TURNS, session_key(rec.session, rec.turn))
    group = TurnGroup.of(rec) if raw is None else TurnGroup.from_stored(json_load(raw)).adding(rec)
    put_group(t, rec.session, rec.turn, group)
    return raw is None


def get_in(t: Tables, call_id: str) -> TraceRecord:
    """Read one record: its row once, its flag, and whether its request is stored."""
    prefix = check_call_id(call_id)
    if len(prefix) == CALL_ID_LEN:
        raw = t.get(TRACES, prefix.encode())
        if raw is None:
            raise TraceNotFound(f"no trace {prefix}; `llm386 traces` lists them")
        return loaded(t, prefix, raw)
    found = list(t.scan(TRACES, prefix.encode(), limit=2))
    if not found:
        raise TraceNotFound(f"no trace with id {prefix}; `llm386 traces` lists them")
    if len(found) > 1:
        raise InvalidInput(f"trace id prefix {prefix} is ambiguous; give more characters")
    return loaded(t, found[0][0].decode(), found[0][1])


def load_in(t: Tables, cid: str) -> TraceRecord:
    raw = t.get(TRACES, cid.encode())
    if raw is None:
        raise StoreCorrupted(f"trace {cid} is indexed but missing; run `llm386 verify`")
    return loaded(t, cid, raw)


def loaded(t: Tables, cid: str, raw: bytes) -> TraceRecord:
    rec = decode_row(t, raw)
    flag_raw = t.get(FLAGS, cid.encode())
    flag = None if flag_raw is None else Flag(**json_load(flag_raw))
    stored = t.get(REQUESTS, bytes.fromhex(rec.prompt_hash)) is not None
    return replace(rec, flag=flag, replay_complete=stored)


def hashes_in(t: Tables, prefix: str, limit: int) -> list[str]:
    """Return up to ``limit`` distinct recorded prompt hashes starting with ``prefix``."""
    if len(prefix) == 64:
        return [prefix] if t.first(BY_HASH, bytes.fromhex(prefix)) is not None else []
    found: list[str] = []
    low: bytes | None = bytes.fromhex(prefix.ljust(64, "0"))
    while low is not None and len(found) < limit:
        key = next(t.keys(BY_HASH, lo=low, limit=1), None)
        if key is None or not key[:32].hex().startswith(prefix):
            break
        found.append(key[:32].hex())
        low = prefix_end(key[:32])  # skip the other calls that sent this hash
    return found


def pick_index(
    session: str | None, status: TraceStatus | None, flagged: bool | None, prompt_hash: str | None
) -> tuple[str, bytes, bool]:
    """Return the narrowest index for these filters, the key prefix to read in it, and whether
    its keys alone decide a match (then skipped rows need not be loaded)."""
    if prompt_hash is not None:
        exact = session is None and status is None and flagged is None
        return BY_HASH, bytes.fromhex(check_hash(prompt_hash)), exact
    if session is not None:
        return (
            BY_SESSION,
            session_prefix(check_session(session)),
            status is None and flagged is None,
        )
    if flagged:
        return BY_STATUS, FLAGGED.encode() + b"\x00", status is None
    if status is not None:
        return BY_STATUS, status.value.encode() + b"\x00", flagged is None
    return BY_TIME, b"", flagged is None


def ambiguous_hash(prefix: str, found: Sequence[str]) -> AmbiguousPrefix:
    shown = found[:CANDIDATES]
    width = distinct_width(shown)
    listed = ", ".join(h[:width] for h in shown) + (", ..." if len(found) > len(shown) else "")
    return AmbiguousPrefix(
        f"prompt hash prefix {prefix} matches {'more than ' if len(found) > len(shown) else ''}"
        f"{len(shown)} hashes: {listed}; give more characters",
        tuple(shown),
    )


def distinct_width(hashes: Sequence[str]) -> int:
    """Return the shortest length (at least 12) at which ``hashes`` are all different."""
    width = 12
    while width < 64 and len({h[:width] for h in hashes}) < len(hashes):
        width += 4
    return min(width, 64)
