"""The pager's per-session index, kept by a store hook inside the store's own write transaction.

Owns: the layout below and its maintenance on put and removal (``SessionIndex.on_put``,
``on_remove``: a ``runtime.storage.feed.ChangeFeed``, written only on the engine-neutral
``Tables`` of the store's own transaction), plus the repairs ``runtime.indexes.snapshot`` runs on
an index that missed writes (a process that wrote without the hook attached): catching up or
rebuilding. ``llm386 reindex`` (``runtime.indexes.rebuild``) drops and replays it all.

Layout (tables of the store's engine; ``S`` is the session id, ``S0`` is ``S`` + 0x00):

    ix_meta   S                      -> version, flags, next_seq, n_docs, total_len, gen, rgen
    ix_cols   S0 chunk(4 BE)         -> RECORD[1024]: kind, flags, distinct terms, length,
                                        priority, block id; one row per seq (kind 255 = absent)
    ix_terms  S0 term                -> document frequency (u32); a term starting with 0x01 is a
                                        field term: a word of the entry's provenance source
    ix_post   S0 term 0x00 chunk(4)  -> POSTING[<=512]: (seq, term frequency), seq ascending
    ix_hist   S0 df(4 BE)            -> how many terms have that document frequency (u32)
    ix_calls  S0 b"c" call id digest -> seq of the latest tool call with that call id
    ix_state  b"changes"             -> u64 BE: changes the feed reported, store-wide

Invariants:
- After every put or removal the hook saw, ``next_seq`` equals the store's next seq for the
  session and ``n_docs`` its entry count; ``sync`` checks both and repairs on a mismatch.
- A term's postings are its documents in ascending seq, chunk ``i`` holding positions
  ``[512 i, 512 (i + 1))``, so appending touches only the last chunk and a reader can cut the
  list at any ``upto`` with a binary search.
- A tool call and its result (same call id, as CONVENTIONS.md writes them) point at each other
  through their rows' ``pair`` column (partner seq + 1; 0 = no partner yet), so the pager pairs
  them without reading edges. Links are always two-way: a result takes the latest earlier call
  with its id only while that call is unanswered.
- Field terms (``SOURCE_PREFIX`` + a word of the provenance source) share the postings tables
  but never the BM25 statistics: no document length, no histogram entry.
- Row flags say which blocks have edges the pager follows (dependencies, summaries, tool
  edges), read from the store's edge tables when a row is written and updated by ``on_edges``
  when an edge is added later, so a page reads edges only for flagged blocks.
- ``gen`` changes on every change; ``rgen`` only on removals (appends never invalidate what a
  reader cached about earlier seqs). Readers (``runtime.indexes.snapshot``) cache by them.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from runtime.blocks import BlockKind, Edge, EdgeKind, Entry, parse_tool_call, parse_tool_result
from runtime.errors import InvalidBlock
from runtime.indexes.bm25 import forget_terms, terms
from runtime.storage.codec import split_member_key
from runtime.storage.kv import Tables

INDEX_VERSION = 4
COL_CHUNK = 1024
POST_CHUNK = 512
ABSENT = 255
FLAG_PINNED = 1
FLAG_DEPENDS = 2  # the block has parent or supports edges out
FLAG_SUMMARISED = 4  # some block has a derived-from edge to it
FLAG_TOOL_EDGE = 8  # the block has a tool-invocation edge (either way)
FLAG_PLAIN_TOOL = 16  # a tool block whose body is not CONVENTIONS.md JSON: it is sent as text
_OUT, _IN = "edges_out", "edges_in"
SOURCE_PREFIX = "\x01"
_PARENT, _DERIVED, _SUPPORTS, _TOOL = b"\x01", b"\x02", b"\x03", b"\x05"
PINNED_LABEL = "pinned"
KIND_CODES: tuple[BlockKind, ...] = tuple(BlockKind)
KIND_CODE: dict[BlockKind, int] = {kind: i for i, kind in enumerate(KIND_CODES)}
RECORD = np.dtype(
    [("kind", "u1"), ("flags", "u1"), ("uniq", "<u2"), ("dlen", "<u4"), ("prio", "<f4"),
     ("pair", "<u4"), ("id", "u1", (32,))]
)  # fmt: skip
POSTING = np.dtype([("seq", "<u4"), ("tf", "<u4")])
_META = struct.Struct("<HHQQQQQ")
_STALE = 1
DB_NAMES = ("ix_meta", "ix_cols", "ix_terms", "ix_post", "ix_hist", "ix_calls")
# Per-block caches kept by other modules (vectors, render costs): keyed by block id first, and
# deleted here when the store deletes the block, so no derived data outlives its block.
BLOCK_CACHE_DBS = ("ix_vec", "ix_units")
# Per-session caches kept by other modules (the vector chunks of ``runtime.indexes.vectorchunks``,
# the ANN graphs of ``runtime.indexes.ann``): keyed by ``session_cache_prefix`` first, and
# deleted here on any removal from the session, for the same reason.
SESSION_CACHE_DBS = ("ix_svec", "ix_ann")


def session_cache_prefix(session: str) -> bytes:
    """Return the key prefix of ``session``'s entries in the ``SESSION_CACHE_DBS``."""
    return hashlib.blake2b(b"session\x00" + session.encode(), digest_size=16).digest()


# The store-wide change counter (``changes``): bumped by every put, removal or edge the feed
# reports, so a reader caching something derived from the store can tell, in one read, that
# nothing changed since. Never reset (``llm386 reindex`` bumps it too).
STATE_DB = "ix_state"
CHANGES_KEY = b"changes"


@dataclass(frozen=True)
class Meta:
    """One session's index header."""

    next_seq: int = 0
    n_docs: int = 0
    total_len: int = 0
    gen: int = 0
    rgen: int = 0
    stale: bool = False

    def encode(self) -> bytes:
        flags = _STALE if self.stale else 0
        fields = (self.next_seq, self.n_docs, self.total_len, self.gen, self.rgen)
        return _META.pack(INDEX_VERSION, flags, *fields)

    @classmethod
    def decode(cls, raw: bytes | None) -> Meta | None:
        if raw is None:
            return None
        version, flags, next_seq, n_docs, total_len, gen, rgen = _META.unpack(raw)
        if version != INDEX_VERSION:
            return cls(gen=gen + 1, rgen=rgen + 1, stale=True)  # an old layout: rebuild it
        return cls(next_seq, n_docs, total_len, gen, rgen, stale=bool(flags & _STALE))


def prefix(session: str) -> bytes:
    return session.encode() + b"\x00"


def col_key(session: str, chunk: int) -> bytes:
    return prefix(session) + chunk.to_bytes(4, "big")


def term_key(session: str, term: str) -> bytes:
    return prefix(session) + term.encode()


def post_key(session: str, term: str, chunk: int) -> bytes:
    return _chunk_key(term_key(session, term), chunk)


@functools.lru_cache(maxsize=256)
def _pack(n: int) -> Callable[..., bytes]:
    """Return the packer of ``n`` little-endian u32 values (a struct built once per length)."""
    return struct.Struct(f"<{n}I").pack


def _chunk_key(term_key: bytes, chunk: int) -> bytes:
    return term_key + b"\x00" + chunk.to_bytes(4, "big")


def hist_key(session: str, df: int) -> bytes:
    return prefix(session) + df.to_bytes(4, "big")


def empty_chunk() -> np.ndarray:
    chunk = np.zeros(COL_CHUNK, dtype=RECORD)
    chunk["kind"] = ABSENT
    return chunk


@dataclass(frozen=True)
class _Doc:
    seq: int
    tf: dict[str, int]  # a plain dict: it crosses from prepare workers (a Counter costs more)
    length: int
    fields: tuple[str, ...] = ()  # field terms: postings only, outside BM25's corpus


class SessionIndex:
    """The store hook (a ``ChangeFeed``); ``runtime.indexes.snapshot.index_for`` shares one per
    engine. It holds no state: every method works on the :class:`Tables` it is given."""

    # -- hook ---------------------------------------------------------------------------
    def on_put(self, t: Tables, entries: list[Entry]) -> None:
        for session, group in _by_session(entries):
            self._add(t, session, group)
        bump_changes(t)

    def on_edges(self, t: Tables, edges: Sequence[Edge]) -> None:
        """Flag the rows of both ends of new edges (the store calls this for added edges)."""
        for edge in edges:
            src, dst = bytes.fromhex(edge.src), bytes.fromhex(edge.dst)
            if edge.kind in (EdgeKind.PARENT, EdgeKind.SUPPORTS):
                self._flag_block(t, src, FLAG_DEPENDS)
            elif edge.kind is EdgeKind.DERIVED_FROM:
                self._flag_block(t, dst, FLAG_SUMMARISED)
            elif edge.kind is EdgeKind.TOOL_INVOCATION:
                self._flag_block(t, src, FLAG_TOOL_EDGE)
                self._flag_block(t, dst, FLAG_TOOL_EDGE)
        bump_changes(t)

    def _edge_flags_many(self, t: Tables, raws: Sequence[bytes]) -> tuple[list[int], list[bool]]:
        """Return each block's edge flags, and whether it was derived from another block.

        Batched lookups (one per edge table and round, whatever the batch size): first
        whether a block has any edge in a table, then, for those that have, which kinds."""
        outs = _first_of_kinds(t, _OUT, raws, (_PARENT, _SUPPORTS, _TOOL, _DERIVED))
        ins = _first_of_kinds(t, _IN, raws, (_DERIVED, _TOOL))
        flags, derives = [], []
        for i in range(len(raws)):
            parent, supports, tool_out, derived = (x is not None for x in outs[4 * i : 4 * i + 4])
            summarised, tool_in = (x is not None for x in ins[2 * i : 2 * i + 2])
            flags.append((FLAG_DEPENDS if parent or supports else 0)
                         | (FLAG_SUMMARISED if summarised else 0)
                         | (FLAG_TOOL_EDGE if tool_out or tool_in else 0))  # fmt: skip
            derives.append(derived)
        return flags, derives

    def _flag_block(self, t: Tables, raw: bytes, flag: int) -> None:
        # Every indexed row holding this block, in every session (the store's members table).
        for key in list(t.keys("members", raw)):
            session, seq = split_member_key(key)
            meta = self.meta(t, session)
            if meta is None or meta.stale or seq >= meta.next_seq:
                continue  # not indexed yet: its flags are read when it is
            rows = _Rows(self, t, session)
            row = rows.get(seq)
            if row["kind"] != ABSENT and not row["flags"] & flag:
                row["flags"] |= flag
                rows.save()
                self.save_meta(t, session, replace(meta, gen=meta.gen + 1))

    def on_meta(self, t: Tables, session: str) -> None:
        """A session's meta changed: lists that show it (titles, paging faults) must refresh."""
        bump_changes(t)

    def on_remove(self, t: Tables, entries: list[Entry]) -> None:
        for session, group in _by_session(entries):
            self._remove(t, session, group)
            for name in SESSION_CACHE_DBS:
                _delete_prefix(t, name, session_cache_prefix(session))
        for block_id in sorted({e.id for e in entries}):
            raw = bytes.fromhex(block_id)
            if t.get("blocks", raw) is None:
                for name in BLOCK_CACHE_DBS:
                    _delete_prefix(t, name, raw)
        bump_changes(t)

    # -- metadata -----------------------------------------------------------------------
    def meta(self, t: Tables, session: str) -> Meta | None:
        return Meta.decode(t.get("ix_meta", session.encode()))

    def save_meta(self, t: Tables, session: str, meta: Meta) -> None:
        t.put("ix_meta", session.encode(), meta.encode())

    # -- adding -------------------------------------------------------------------------
    def _add(self, t: Tables, session: str, entries: Sequence[Entry]) -> None:
        meta = self.meta(t, session) or Meta()
        if meta.stale or entries[0].seq != meta.next_seq:
            # Writes happened without this hook: leave the repair to ``sync``.
            self.save_meta(t, session, replace(meta, gen=meta.gen + 1, stale=True))
            return
        docs = [_doc(entry) for entry in entries]
        rows = _Rows(self, t, session)
        raws = [bytes.fromhex(entry.id) for entry in entries]
        flags, derives = self._edge_flags_many(t, raws)
        for entry, doc, flag in zip(entries, docs, flags, strict=True):
            record = _record(entry, doc)
            rows.set(entry.seq, record)
            ident = _call_id(entry)  # once: a tool block's JSON is parsed for it
            rows.get(entry.seq)["flags"] |= flag | _plain_tool(entry, ident)
            self._pair(t, rows, entry, ident)
        rows.save()
        for raw, derived in zip(raws, derives, strict=True):  # a new summary flags its sources
            for dst in _targets(t, _OUT, raw + _DERIVED) if derived else ():
                self._flag_block(t, dst, FLAG_SUMMARISED)
        self._append_postings(t, session, docs)
        meta = replace(
            meta,
            next_seq=entries[-1].seq + 1,
            n_docs=meta.n_docs + len(docs),
            total_len=meta.total_len + sum(d.length for d in docs),
            gen=meta.gen + 1,
        )
        self.save_meta(t, session, meta)

    def _pair(self, t: Tables, rows: _Rows, entry: Entry, ident: bytes | None) -> None:
        # A result answers the latest earlier call with its id, if that call is still
        # unanswered: models reuse ids (GPT-4o did in 36 of the 120 tau-bench sessions), so a
        # later call must never take an earlier call's result. ``ident``: _call_id(entry).
        if ident is None:
            return
        key = prefix(rows.session) + b"c" + ident
        if entry.kind is BlockKind.TOOL_CALL:
            t.put("ix_calls", key, entry.seq.to_bytes(8, "big"))
            return
        raw = t.get("ix_calls", key)
        if raw is None:
            return
        call = rows.get(int.from_bytes(raw, "big"))
        if call["kind"] != ABSENT and call["pair"] == 0:
            rows.link(entry.seq, int.from_bytes(raw, "big"))

    def _unpair(self, t: Tables, rows: _Rows, entry: Entry) -> None:
        partner = int(rows.get(entry.seq)["pair"])
        if partner:
            rows.link(partner - 1, None)
        ident = _call_id(entry)
        if ident is not None and entry.kind is BlockKind.TOOL_CALL:
            key = prefix(rows.session) + b"c" + ident
            raw = t.get("ix_calls", key)
            if raw is not None and int.from_bytes(raw, "big") == entry.seq:
                t.delete("ix_calls", key)

    def load_chunk(self, t: Tables, session: str, number: int) -> np.ndarray:
        raw = t.get("ix_cols", col_key(session, number))
        return empty_chunk() if raw is None else np.frombuffer(raw, dtype=RECORD).copy()

    def _append_postings(self, t: Tables, session: str, docs: Sequence[_Doc]) -> None:
        # Each term's new POSTING rows, flat: seq, tf, seq, tf, ... (docs in seq order)
        new: dict[str, list[int]] = {}
        for doc in docs:
            seq = doc.seq
            for term, tf in doc.tf.items():
                flat = new.get(term)
                if flat is None:
                    new[term] = [seq, tf]
                else:
                    flat += (seq, tf)
            for term in doc.fields:
                new.setdefault(term, []).extend((seq, 1))
        words = sorted(new)
        base = prefix(session)
        # A session without terms yet (its first write, as most sessions from spans are) has
        # no frequencies to read: one seek instead of one read a term.
        held_terms = t.first("ix_terms", base) is not None
        dfs = self.dfs(t, session, words) if held_terms else [0] * len(words)
        hist: dict[int, int] = {}  # the histogram's changes, written once for the batch
        chunk_bytes = POST_CHUNK * POSTING.itemsize
        keys = [base + term.encode() for term in words]
        # The last chunk of each term that has one partly filled, read in one batch.
        partial = [_chunk_key(k, df // POST_CHUNK) for k, df in zip(keys, dfs, strict=True) if df % POST_CHUNK]  # fmt: skip
        held = iter(t.get_many("ix_post", partial))
        posts: list[tuple[bytes, bytes]] = []
        counts: list[tuple[bytes, bytes]] = []
        first = b"\x00" + (0).to_bytes(4, "big")  # the suffix of chunk 0's key
        for term, key, df in zip(words, keys, dfs, strict=True):
            # POSTING rows as bytes: (seq, tf) as two little-endian u32 each, as numpy lays them
            flat = new[term]
            data = _pack(len(flat))(*flat)
            count = df + len(flat) // 2
            if not df and len(data) <= chunk_bytes:  # a new term (most are): one chunk, no read
                posts.append((key + first, data))
            else:
                start, used = divmod(df, POST_CHUNK)
                if used:
                    data = (next(held) or b"") + data
                posts.extend((_chunk_key(key, start + offset // chunk_bytes),
                              data[offset : offset + chunk_bytes])
                             for offset in range(0, len(data), chunk_bytes))  # fmt: skip
            counts.append((key, count.to_bytes(4, "little")))
            if term[:1] != SOURCE_PREFIX:
                hist[df] = hist.get(df, 0) - 1
                hist[count] = hist.get(count, 0) + 1
        t.put_many("ix_post", posts)
        t.put_many("ix_terms", counts)
        self._bump_hist_many(t, session, hist)

    # -- removing -----------------------------------------------------------------------
    def _remove(self, t: Tables, session: str, entries: Sequence[Entry]) -> None:
        meta = self.meta(t, session)
        if meta is None:
            return
        if meta.stale:
            self.save_meta(t, session, replace(meta, gen=meta.gen + 1, rgen=meta.rgen + 1))
            return
        removed = [e for e in entries if e.seq < meta.next_seq]
        if len(removed) >= meta.n_docs:
            self.drop(t, session)  # a purge: nothing of the session is left to index
            return
        docs = [_doc(entry) for entry in removed]
        rows = _Rows(self, t, session)
        for entry in removed:
            self._unpair(t, rows, entry)
            rows.set(entry.seq, empty_chunk()[0])
        rows.save()
        self._remove_postings(t, session, docs)
        meta = replace(
            meta,
            n_docs=meta.n_docs - len(docs),
            total_len=meta.total_len - sum(d.length for d in docs),
            gen=meta.gen + 1,
            rgen=meta.rgen + 1,
        )
        self.save_meta(t, session, meta)

    def _remove_postings(self, t: Tables, session: str, docs: Sequence[_Doc]) -> None:
        gone: dict[str, list[int]] = {}
        for doc in docs:
            for term in (*doc.tf, *doc.fields):
                gone.setdefault(term, []).append(doc.seq)
        for term in sorted(gone):
            df = self._df(t, session, term)
            old = self.read_postings(t, session, term, df)
            kept = old[~np.isin(old["seq"], np.array(gone[term], dtype=np.uint32))]
            for number in range(df // POST_CHUNK + 1):
                t.delete("ix_post", post_key(session, term, number))
            self._write_postings(t, session, term, 0, kept)
            self._set_df(t, session, term, df, len(kept))

    def drop(self, t: Tables, session: str) -> None:
        """Delete everything indexed for ``session``, leaving a header whose generations grow.

        Generations never go back: a purged session refilled to the same length must not look
        unchanged to a reader that cached the old rows (it would page purged content).
        """
        key = session.encode()
        old = Meta.decode(t.get("ix_meta", key))
        for name in DB_NAMES[1:]:
            _delete_prefix(t, name, prefix(session))
        if old is None:
            t.delete("ix_meta", key)
        else:
            t.put("ix_meta", key, Meta(gen=old.gen + 1, rgen=old.rgen + 1).encode())

    # -- postings and document frequencies ----------------------------------------------
    def _df(self, t: Tables, session: str, term: str) -> int:
        return self.dfs(t, session, [term])[0]

    def dfs(self, t: Tables, session: str, words: Sequence[str]) -> list[int]:
        """Return the document frequency of each of ``words`` in ``session`` (0: absent)."""
        raws = t.get_many("ix_terms", [term_key(session, w) for w in words])
        return [0 if raw is None else int.from_bytes(raw, "little") for raw in raws]

    def _set_df(self, t: Tables, session: str, term: str, old: int, new: int) -> None:
        if new:
            t.put("ix_terms", term_key(session, term), new.to_bytes(4, "little"))
        else:
            t.delete("ix_terms", term_key(session, term))
        if not term.startswith(SOURCE_PREFIX):
            self._bump_hist(t, session, old, -1)
            self._bump_hist(t, session, new, +1)

    def _bump_hist(self, t: Tables, session: str, df: int, delta: int) -> None:
        if df == 0:
            return
        key = hist_key(session, df)
        raw = t.get("ix_hist", key)
        count = (0 if raw is None else int.from_bytes(raw, "little")) + delta
        if count > 0:
            t.put("ix_hist", key, count.to_bytes(4, "little"))
        else:
            t.delete("ix_hist", key)

    def _bump_hist_many(self, t: Tables, session: str, deltas: Mapping[int, int]) -> None:
        """Add ``deltas`` (df -> change in its number of terms) to the histogram: one read of
        the changed rows, then one write each (what ``_bump_hist`` per change would leave)."""
        changed = sorted(df for df, delta in deltas.items() if df and delta)
        keys = [hist_key(session, df) for df in changed]
        for df, key, raw in zip(changed, keys, t.get_many("ix_hist", keys), strict=True):
            count = (0 if raw is None else int.from_bytes(raw, "little")) + deltas[df]
            if count > 0:
                t.put("ix_hist", key, count.to_bytes(4, "little"))
            else:
                t.delete("ix_hist", key)

    def _post_chunk(self, t: Tables, session: str, term: str, number: int) -> np.ndarray:
        raw = t.get("ix_post", post_key(session, term, number))
        return np.zeros(0, dtype=POSTING) if raw is None else np.frombuffer(raw, dtype=POSTING)

    def _write_postings(
        self, t: Tables, session: str, term: str, start: int, postings: np.ndarray
    ) -> None:
        t.put_many("ix_post", [
            (post_key(session, term, start + offset // POST_CHUNK),
             postings[offset : offset + POST_CHUNK].tobytes())
            for offset in range(0, len(postings), POST_CHUNK)
        ])  # fmt: skip

    def read_postings(self, t: Tables, session: str, term: str, df: int, first: int = 0) -> Any:
        """Return the postings of ``term`` from chunk ``first`` on (``df`` = their number)."""
        keys = [post_key(session, term, n) for n in range(first, -(-df // POST_CHUNK))]
        chunks = [
            np.zeros(0, dtype=POSTING) if raw is None else np.frombuffer(raw, dtype=POSTING)
            for raw in t.get_many("ix_post", keys)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=POSTING)

    def histogram(self, t: Tables, session: str) -> list[tuple[int, int]]:
        """Return (document frequency, number of terms) pairs for the session, df ascending."""
        start = prefix(session)
        return [
            (int.from_bytes(key[-4:], "big"), int.from_bytes(raw, "little"))
            for key, raw in t.scan("ix_hist", start)
            if len(key) == len(start) + 4
        ]

    # -- repair -------------------------------------------------------------------------
    def reindex(self, t: Tables, session: str, entries: Sequence[Entry], next_seq: int) -> None:
        """Rebuild ``session`` from all of its ``entries``; ``next_seq`` is the store's."""
        old = self.meta(t, session) or Meta()
        self.drop(t, session)
        if entries:
            self.save_meta(t, session, Meta(next_seq=entries[0].seq))
            self._add(t, session, entries)
        meta = self.meta(t, session) or Meta()
        # Generations keep growing across a rebuild, so no reader mistakes new for cached.
        gen, rgen = old.gen + meta.gen + 1, old.rgen + 1
        self.save_meta(t, session, replace(meta, next_seq=next_seq, gen=gen, rgen=rgen))

    def catch_up(self, t: Tables, session: str, entries: Sequence[Entry], next_seq: int) -> None:
        """Index ``entries`` put after ``meta.next_seq`` without the hook (gaps allowed)."""
        meta = self.meta(t, session) or Meta()
        if entries:
            self.save_meta(t, session, replace(meta, next_seq=entries[0].seq))
            self._add(t, session, entries)
            meta = self.meta(t, session) or Meta()
        self.save_meta(t, session, replace(meta, next_seq=next_seq, gen=meta.gen + 1))


def changes(t: Tables) -> int:
    """Return the store-wide change counter (0 before the first change the feed reported)."""
    raw = t.get(STATE_DB, CHANGES_KEY)
    return 0 if raw is None else int.from_bytes(raw, "big")


def bump_changes(t: Tables) -> None:
    """Count one more change, in the transaction making it."""
    t.put(STATE_DB, CHANGES_KEY, (changes(t) + 1).to_bytes(8, "big"))


class _Rows:
    """Catalog rows being changed in one transaction, written back chunk by chunk."""

    def __init__(self, index: SessionIndex, t: Tables, session: str) -> None:
        self.index, self.t, self.session = index, t, session
        self.chunks: dict[int, np.ndarray] = {}

    def get(self, seq: int) -> Any:
        number, row = divmod(seq, COL_CHUNK)
        if number not in self.chunks:
            self.chunks[number] = self.index.load_chunk(self.t, self.session, number)
        return self.chunks[number][row]

    def set(self, seq: int, record: Any) -> None:
        self.get(seq)
        self.chunks[seq // COL_CHUNK][seq % COL_CHUNK] = record

    def link(self, seq: int, other: int | None) -> None:
        """Point ``seq``'s row at ``other`` (and back), or clear it when ``other`` is None."""
        self.get(seq)["pair"] = 0 if other is None else other + 1
        if other is not None:
            self.get(other)["pair"] = seq + 1

    def save(self) -> None:
        self.t.put_many("ix_cols", [
            (col_key(self.session, number), self.chunks[number].tobytes())
            for number in sorted(self.chunks)
        ])  # fmt: skip


def _plain_tool(entry: Entry, ident: bytes | None) -> int:
    """FLAG_PLAIN_TOOL for a tool block without a call id (``ident``: its ``_call_id``)."""
    tool = entry.kind in (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT)
    return FLAG_PLAIN_TOOL if tool and ident is None else 0


def _call_id(entry: Entry) -> bytes | None:
    try:
        if entry.kind is BlockKind.TOOL_CALL:
            ident = parse_tool_call(entry.body).call_id
        elif entry.kind is BlockKind.TOOL_RESULT:
            ident = parse_tool_result(entry.body).call_id
        else:
            return None
    except InvalidBlock:
        return None  # not CONVENTIONS.md JSON: the pager falls back to tool-invocation edges
    # A digest keeps any call id (they are model-made and unbounded) inside a key.
    return hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _first_of_kinds(
    t: Tables, table: str, raws: Sequence[bytes], kinds: Sequence[bytes]
) -> list[bytes | None]:
    """Return ``t.first(table, raw + kind)`` for each raw id and kind (kinds inner), asking
    about the kinds only for the ids with some edge in ``table`` (most blocks have none)."""
    found = [key is not None for key in t.first_many(table, list(raws))]
    some = [raw for raw, has in zip(raws, found, strict=True) if has]
    firsts = iter(t.first_many(table, [raw + kind for raw in some for kind in kinds]))
    return [next(firsts) if has else None for has in found for _ in kinds]


def _targets(t: Tables, table: str, start: bytes) -> list[bytes]:
    return [key[33:] for key in t.keys(table, start)]


def _delete_prefix(t: Tables, table: str, start: bytes) -> None:
    for key in list(t.keys(table, start)):  # collected first: no scan sees its own deletes
        t.delete(table, key)


def _doc(entry: Entry) -> _Doc:
    tf, length = _analysed(entry.id, entry.body)
    return _Doc(entry.seq, tf, length, _fields(entry.provenance.source))


# Term frequencies and length by block id: a block (one id, one body) is analysed once per
# process however many sessions it joins (system prompts and tool schemas join every one).
# The counters are shared: nothing changes a _Doc's ``tf``.
_analyses: dict[str, tuple[dict[str, int], int]] = {}
ANALYSIS_CACHE_SIZE = 4_096


def forget_analyses() -> None:
    """Empty the process's term analyses by block id and the word cache of ``bm25.terms``
    (a benchmark measuring a cold writer calls it)."""
    _analyses.clear()
    forget_terms()


def analyses_of(blocks: Mapping[str, str]) -> dict[str, tuple[dict[str, int], int]]:
    """Return the term frequencies and length of each block body (by block id), as the index
    analyses them: what a process that prepares a write hands to the one that writes it."""
    return {block_id: _analysed(block_id, body) for block_id, body in blocks.items()}


def remember_analyses(analyses: Mapping[str, tuple[dict[str, int], int]]) -> None:
    """Take up analyses ``analyses_of`` made in another process (see ``_analyses``)."""
    if len(_analyses) + len(analyses) > ANALYSIS_CACHE_SIZE:
        _analyses.clear()
    _analyses.update(analyses)


def _analysed(block_id: str, body: str) -> tuple[dict[str, int], int]:
    found = _analyses.get(block_id)
    if found is None:
        words = terms(body)
        found = (dict(Counter(words)), len(words))
        if len(_analyses) >= ANALYSIS_CACHE_SIZE:
            _analyses.clear()
        _analyses[block_id] = found
    return found


@functools.lru_cache(maxsize=1_024)  # a store's provenance sources are few
def _fields(source: str) -> tuple[str, ...]:
    return tuple(sorted({SOURCE_PREFIX + t for t in terms(source)}))


def _record(entry: Entry, doc: _Doc) -> tuple[Any, ...]:
    flags = FLAG_PINNED if PINNED_LABEL in entry.provenance.labels else 0
    uniq = min(len(doc.tf), 0xFFFF)
    ident = np.frombuffer(bytes.fromhex(entry.id), dtype=np.uint8)
    return (KIND_CODE[entry.kind], flags, uniq, doc.length, entry.priority, 0, ident)


def _by_session(entries: Iterable[Entry]) -> list[tuple[str, list[Entry]]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.session, []).append(entry)
    return [(s, sorted(groups[s], key=lambda e: e.seq)) for s in sorted(groups)]
