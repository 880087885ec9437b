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

import bisect
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
    """A piece of request bytes and its SHA-256 (raw 32 bytes); ``packed``, when set, its
    stored form (``tracechunks.pack_bytes``), made by a process that prepared the write."""

    digest: bytes
    data: bytes = field(repr=False)
    packed: bytes | None = field(default=None, repr=False, compare=False)

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
    """Bytes appended in pieces, cut into chunks as they come; see the module invariants.

    Cutting is lazy: pieces are searched for cuts a slab at a time (each search is a numpy pass
    whose fixed cost outweighs a short piece), and always before chunks are read. Where the
    stream is searched from never changes where it is cut (the module invariants)."""

    def __init__(self) -> None:
        super().__init__()
        self._done: list[Chunk] = []
        self._pending = bytearray()
        self._scanned = 0

    def append(self, data: bytes) -> None:
        super().append(data)
        self._pending += data
        if len(self._pending) - self._scanned >= _SLAB:
            self._cut()

    def _cut(self) -> None:
        while True:
            cut, self._scanned = _next_cut(self._pending, self._scanned)
            if cut is None:
                return
            self._done.append(Chunk.of(bytes(self._pending[:cut])))
            del self._pending[:cut]

    def parts_with(self, suffix: bytes) -> RequestParts:
        """Return the bytes so far followed by ``suffix`` as chunks (the stream is unchanged)."""
        self._cut()
        digest, size = self.digest_with(suffix)
        if _SUFFIX_FROM <= len(suffix) <= _SUFFIX_UP_TO:
            tail = _suffix(suffix).chunks_after(self._pending, self._scanned)
        else:
            rest = ChunkStream()  # the pending bytes, searched already as far as they were
            rest._pending, rest._scanned = bytearray(self._pending), self._scanned
            rest.append(suffix)
            tail = rest.chunks()
        return RequestParts(digest, size, (*self._done, *tail))

    def chunks(self) -> list[Chunk]:
        """Return every chunk of the bytes so far, the last one cut where the bytes end."""
        self._cut()
        tail = [Chunk.of(bytes(self._pending))] if self._pending else []
        return [*self._done, *tail]


# Suffixes of these lengths are cut from a cache (a request's tools and settings); the bounds
# keep it within _SUFFIX_CACHE_SIZE x _RESTS_PER_SUFFIX x 256 KiB.
_SUFFIX_FROM, _SUFFIX_UP_TO = MIN_CHUNK, 4 * MAX_CHUNK
_SUFFIX_CACHE_SIZE = 16
_RESTS_PER_SUFFIX = 16  # the offsets of first cuts a suffix has seen: few (see ``_first_cut``)


class _Suffix:
    """Where a suffix can be cut, and how each of its tails is cut, worked out once.

    A session's requests all end with the same bytes (the fields after the messages: the
    model, the tool schemas), so ``parts_with`` would search them for cuts on every turn. A
    position's gear hash depends only on the 32 bytes ending there, so at offsets of 31 or
    more into the suffix it is the suffix's own; and after the stream's first cut inside the
    suffix, at offset ``k``, the rest is cut exactly as ``suffix[k:]`` alone is cut."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        hashes = gear_hashes(data, 0, len(data))
        hits = np.flatnonzero(hashes < _CUT_BELOW)
        self.hits = hits[hits >= WINDOW - 1].tolist()  # cut candidates whatever comes before
        self._rests: dict[int, tuple[Chunk, ...]] = {}

    def chunks_after(self, pending: bytearray, scanned: int) -> list[Chunk]:
        """Return the chunks of ``pending + data``: ``pending`` is a stream's uncut bytes,
        searched without a cut up to where they end (or to ``scanned``, past that)."""
        k = self._first_cut(pending, scanned)
        if k is None:
            whole = bytes(pending) + self.data
            return [Chunk.of(whole)] if whole else []
        rest = self._rests.get(k)
        if rest is None:
            if len(self._rests) >= _RESTS_PER_SUFFIX:
                self._rests.clear()
            rest = self._rests[k] = tuple(chunk_bytes(self.data[k:]))
        return [Chunk.of(bytes(pending) + self.data[:k]), *rest]

    def _first_cut(self, pending: bytearray, scanned: int) -> int | None:
        """Return the offset into ``data`` of the first cut of ``pending + data``, if any."""
        p = len(pending)
        start = max(scanned, MIN_CHUNK - 1, p)  # no cut before: ``_next_cut`` searched there
        limit = min(p + len(self.data), MAX_CHUNK)
        if start - p < WINDOW - 1:  # hashes whose window reaches into the pending bytes
            lo = max(0, p - (WINDOW - 1))
            head = bytes(pending[lo:]) + self.data[: WINDOW - 1]
            end = min(limit, p + WINDOW - 1)
            if start < end:
                hits = np.flatnonzero(gear_hashes(head, start - lo, end - lo) < _CUT_BELOW)
                if hits.size:
                    return start - p + int(hits[0]) + 1
        at = bisect.bisect_left(self.hits, start - p)
        if at < len(self.hits) and p + self.hits[at] < limit:
            return self.hits[at] + 1
        if p + len(self.data) >= MAX_CHUNK:
            return MAX_CHUNK - p
        return None


_suffixes: dict[bytes, _Suffix] = {}


def _suffix(data: bytes) -> _Suffix:
    known = _suffixes  # another thread may clear it: a miss only costs the work again
    found = known.get(data)
    if found is None:
        if len(known) >= _SUFFIX_CACHE_SIZE:
            known.clear()
        found = known[data] = _Suffix(data)
    return found


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
