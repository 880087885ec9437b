"""Content-defined chunking of request bytes, so that requests sharing content share storage.

Owns: cutting bytes into chunks where their content says (a gear rolling hash), grouping chunk
digests into nodes the same way, and ``ChunkStream``, which chunks a prefix that only grows and
gives, at any moment, the chunks and SHA-256 of "prefix so far + a suffix" without building or
re-reading the prefix. The importer uses it so a session's N requests cost O(total new bytes)
rather than O(N x request size).

Invariants:
- Deterministic: cuts depend only on the bytes (a fixed gear table derived from SHA-256 of
  fixed strings), never on a seed, the clock or the machine.
- Cutting goes left to right and restarts at each cut, and whether a position is a cut depends
  only on the 32 bytes ending there and the distance from the previous cut. So byte strings with
  a common prefix share every chunk that ends inside it, and feeding a stream in pieces gives
  exactly the chunks of cutting the whole (property-tested).
- A chunk's digest is the SHA-256 of its bytes; a node's is the SHA-256 of ``b"node"`` followed by
  its children's digests, so a node can never be mistaken for a chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_CHUNK = 2 * 1024
MAX_CHUNK = 64 * 1024
WINDOW = 32  # bytes the gear hash of a position depends on (its 32-bit width)
_CUT_BELOW = 1 << (32 - 12)  # top 12 bits zero: 1 in 4,096 positions (about 10 KiB chunks in JSON)
_SLAB = 16 * 1024  # bytes hashed per numpy pass: most chunks end within the first one
MAX_GROUP = 256
_GROUP_END_BELOW = 4  # a digest whose first byte is < 4 ends a group: 64 chunks on average
DIGEST_SIZE = 32

GEAR = np.array(
    [int.from_bytes(hashlib.sha256(b"llm386 gear %d" % i).digest()[:4], "big") for i in range(256)],
    dtype=np.uint32,
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of request bytes and its SHA-256 (raw 32 bytes)."""

    digest: bytes
    data: bytes = field(repr=False)

    @classmethod
    def of(cls, data: bytes) -> Chunk:
        return cls(hashlib.sha256(data).digest(), data)


@dataclass(frozen=True)
class RequestParts:
    """A request's bytes as content-defined chunks, with the SHA-256 and size of the whole."""

    prompt_hash: str
    size: int
    chunks: tuple[Chunk, ...] = field(repr=False)

    def join(self) -> bytes:
        return b"".join(c.data for c in self.chunks)


def gear_hashes(data: bytes | bytearray, start: int, end: int) -> np.ndarray:
    """Return the gear hash at each position in [start, end): the 32-bit sum of
    ``GEAR[data[i - k]] << k`` over k < 32 (bytes before the start of ``data`` count as absent)."""
    lo = max(0, start - (WINDOW - 1))
    view = np.frombuffer(data, dtype=np.uint8, count=end - lo, offset=lo)
    h = GEAR[view]
    width = 1
    while width < WINDOW:  # doubling: h holds the sum over the last `width` bytes, then twice that
        h[width:] += h[:-width] << np.uint32(width)
        width *= 2
    return h[start - lo :]


def gear_hash_reference(data: bytes, i: int) -> int:
    """Return the gear hash at position ``i`` one byte at a time (the definition, for tests)."""
    h = 0
    for k in range(min(WINDOW, i + 1)):
        h = (h + (int(GEAR[data[i - k]]) << k)) & 0xFFFFFFFF
    return h


def _next_cut(buf: bytearray, scanned: int) -> tuple[int | None, int]:
    """Return the first cut in ``buf`` (a chunk starting at 0) and how far it was scanned.

    Positions below ``scanned`` were searched before and held no cut."""
    pos = max(scanned, MIN_CHUNK - 1)
    limit = min(len(buf), MAX_CHUNK)
    while pos < limit:
        end = min(limit, pos + _SLAB)
        hits = np.flatnonzero(gear_hashes(buf, pos, end) < _CUT_BELOW)
        if hits.size:
            return pos + int(hits[0]) + 1, 0
        pos = end
    if len(buf) >= MAX_CHUNK:
        return MAX_CHUNK, 0
    return None, pos


class HashStream:
    """Bytes appended in pieces, of which only the SHA-256 and size are kept."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._size = 0

    def append(self, data: bytes) -> None:
        self._sha.update(data)
        self._size += len(data)

    def digest_with(self, suffix: bytes) -> tuple[str, int]:
        """Return the SHA-256 (hex) and size of the bytes so far followed by ``suffix``."""
        sha = self._sha.copy()
        sha.update(suffix)
        return sha.hexdigest(), self._size + len(suffix)


class ChunkStream(HashStream):
    """Bytes appended in pieces, cut into chunks as they come; see the module invariants."""

    def __init__(self) -> None:
        super().__init__()
        self._done: list[Chunk] = []
        self._pending = bytearray()
        self._scanned = 0

    def append(self, data: bytes) -> None:
        super().append(data)
        self._pending += data
        while True:
            cut, self._scanned = _next_cut(self._pending, self._scanned)
            if cut is None:
                return
            self._done.append(Chunk.of(bytes(self._pending[:cut])))
            del self._pending[:cut]

    def parts_with(self, suffix: bytes) -> RequestParts:
        """Return the bytes so far followed by ``suffix`` as chunks (the stream is unchanged)."""
        digest, size = self.digest_with(suffix)
        rest = ChunkStream()  # the pending bytes, searched already as far as they were
        rest._pending, rest._scanned = bytearray(self._pending), self._scanned
        rest.append(suffix)
        return RequestParts(digest, size, (*self._done, *rest.chunks()))

    def chunks(self) -> list[Chunk]:
        """Return every chunk of the bytes so far, the last one cut where the bytes end."""
        tail = [Chunk.of(bytes(self._pending))] if self._pending else []
        return [*self._done, *tail]


def chunk_bytes(data: bytes) -> list[Chunk]:
    """Return the content-defined chunks of ``data`` (none for empty bytes)."""
    stream = ChunkStream()
    stream.append(data)
    return stream.chunks()


def request_parts(data: bytes) -> RequestParts:
    """Return ``data`` as chunks with its SHA-256 and size."""
    return RequestParts(hashlib.sha256(data).hexdigest(), len(data), tuple(chunk_bytes(data)))


def node_digest(children: bytes) -> bytes:
    """Return a node's digest from its children's concatenated digests."""
    return hashlib.sha256(b"node" + children).digest()


def group_digests(digests: Sequence[bytes]) -> list[bytes]:
    """Return the digests grouped into nodes' children (each the concatenated digests).

    A group ends after a digest whose first byte is small, or at MAX_GROUP digests; like the
    chunk cuts, this goes left to right, so lists with a common prefix share their groups."""
    groups: list[bytes] = []
    current: list[bytes] = []
    for digest in digests:
        current.append(digest)
        if digest[0] < _GROUP_END_BELOW or len(current) >= MAX_GROUP:
            groups.append(b"".join(current))
            current = []
    if current:
        groups.append(b"".join(current))
    return groups


def split_digests(joined: bytes) -> Iterable[bytes]:
    """Yield the 32-byte digests in a concatenation of them."""
    return (joined[i : i + DIGEST_SIZE] for i in range(0, len(joined), DIGEST_SIZE))
