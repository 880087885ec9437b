"""The pager's per-session index, kept by a store hook inside the store's own write transaction.

Owns: the LMDB layout below and its maintenance on put and removal (``SessionIndex.on_put``,
``on_remove``), plus ``sync``, which repairs an index that missed writes (a process that wrote
without the hook attached) by catching up or rebuilding.

Layout (named databases; ``S`` is the session id, ``S0`` is ``S`` + 0x00):

    ix_meta   S                      -> version, flags, next_seq, n_docs, total_len, gen, rgen
    ix_cols   S0 chunk(4 BE)         -> RECORD[1024]: kind, flags, distinct terms, length,
                                        priority, block id; one row per seq (kind 255 = absent)
    ix_terms  S0 term                -> document frequency (u32); a term starting with 0x01 is a
                                        field term: a word of the entry's provenance source
    ix_post   S0 term 0x00 chunk(4)  -> POSTING[<=512]: (seq, term frequency), seq ascending
    ix_hist   S0 df(4 BE)            -> how many terms have that document frequency (u32)
    ix_calls  S0 b"c" call id digest -> seq of the latest tool call with that call id

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

import hashlib
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np

from runtime.blocks import BlockKind, Edge, EdgeKind, Entry, parse_tool_call, parse_tool_result
from runtime.errors import InvalidBlock
from runtime.indexes.bm25 import terms
from runtime.storage.kv import Tables
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.engine import LmdbTables
from runtime.storage.lmdb.env import Env, Txn

INDEX_VERSION = 4
COL_CHUNK = 1024
POST_CHUNK = 512
ABSENT = 255
FLAG_PINNED = 1
FLAG_DEPENDS = 2  # the block has parent or supports edges out
FLAG_SUMMARISED = 4  # some block has a derived-from edge to it
FLAG_TOOL_EDGE = 8  # the block has a tool-invocation edge (either way)
FLAG_PLAIN_TOOL = 16  # a tool block whose body is not CONVENTIONS.md JSON: it is sent as text
_OUT, _IN = b"edges_out", b"edges_in"
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
DB_NAMES = (b"ix_meta", b"ix_cols", b"ix_terms", b"ix_post", b"ix_hist", b"ix_calls")
# Per-block caches kept by other modules (vectors, render costs): keyed by block id first, and
# deleted here when the store deletes the block, so no derived data outlives its block.
BLOCK_CACHE_DBS = (b"ix_vec", b"ix_units")


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
    return term_key(session, term) + b"\x00" + chunk.to_bytes(4, "big")


def hist_key(session: str, df: int) -> bytes:
    return prefix(session) + df.to_bytes(4, "big")


def empty_chunk() -> np.ndarray:
    chunk = np.zeros(COL_CHUNK, dtype=RECORD)
    chunk["kind"] = ABSENT
    return chunk


@dataclass(frozen=True)
class _Doc:
    seq: int
    tf: Counter[str]
    length: int
    fields: tuple[str, ...] = ()  # field terms: postings only, outside BM25's corpus


def _txn(t: Tables) -> Txn:
    # Transitional: the index still works on the LMDB transaction under the tables.
    return cast(LmdbTables, t).txn


class SessionIndex:
    """The store hook: one per LMDB environment (``runtime.indexes.snapshot.index_for`` shares it)."""

    def __init__(self, env: Env) -> None:
        self.env = env
        names = (*DB_NAMES, *BLOCK_CACHE_DBS, b"blocks", b"members", _OUT, _IN)
        self.dbs: dict[bytes, Any] = {name: env.db(name) for name in names}

    # -- hook ---------------------------------------------------------------------------
    def on_put(self, t: Tables, entries: list[Entry]) -> None:
        txn = _txn(t)
        for session, group in _by_session(entries):
            self._add(txn, session, group)

    def on_edges(self, t: Tables, edges: Sequence[Edge]) -> None:
        """Flag the rows of both ends of new edges (the store calls this for added edges)."""
        txn = _txn(t)
        for edge in edges:
            src, dst = bytes.fromhex(edge.src), bytes.fromhex(edge.dst)
            if edge.kind in (EdgeKind.PARENT, EdgeKind.SUPPORTS):
                self._flag_block(txn, src, FLAG_DEPENDS)
            elif edge.kind is EdgeKind.DERIVED_FROM:
                self._flag_block(txn, dst, FLAG_SUMMARISED)
            elif edge.kind is EdgeKind.TOOL_INVOCATION:
                self._flag_block(txn, src, FLAG_TOOL_EDGE)
                self._flag_block(txn, dst, FLAG_TOOL_EDGE)

    def _edge_flags(self, txn: Txn, raw: bytes) -> int:
        flags = 0
        if self._has(txn, _OUT, raw + _PARENT) or self._has(txn, _OUT, raw + _SUPPORTS):
            flags |= FLAG_DEPENDS
        if self._has(txn, _IN, raw + _DERIVED):
            flags |= FLAG_SUMMARISED
        if self._has(txn, _OUT, raw + _TOOL) or self._has(txn, _IN, raw + _TOOL):
            flags |= FLAG_TOOL_EDGE
        return flags

    def _has(self, txn: Txn, name: bytes, start: bytes) -> bool:
        with txn.cursor(db=self.dbs[name]) as cur:
            return bool(cur.set_range(start)) and cur.key().startswith(start)

    def _flag_block(self, txn: Txn, raw: bytes, flag: int) -> None:
        # Every indexed row holding this block, in every session (the store's members table).
        with txn.cursor(db=self.dbs[b"members"]) as cur:
            held = [key[32:] for key in _keys_from(cur, raw)]
        for where in held:
            session, seq = where[:-9].decode(), int.from_bytes(where[-8:], "big")
            meta = self.meta(txn, session)
            if meta is None or meta.stale or seq >= meta.next_seq:
                continue  # not indexed yet: its flags are read when it is
            rows = _Rows(self, txn, session)
            row = rows.get(seq)
            if row["kind"] != ABSENT and not row["flags"] & flag:
                row["flags"] |= flag
                rows.save()
                self._save_meta(txn, session, replace(meta, gen=meta.gen + 1))

    def on_remove(self, t: Tables, entries: list[Entry]) -> None:
        txn = _txn(t)
        for session, group in _by_session(entries):
            self._remove(txn, session, group)
        for block_id in sorted({e.id for e in entries}):
            raw = bytes.fromhex(block_id)
            if txn.get(raw, db=self.dbs[b"blocks"]) is None:
                for name in BLOCK_CACHE_DBS:
                    _delete_prefix(txn, self.dbs[name], raw)

    # -- metadata -----------------------------------------------------------------------
    def meta(self, txn: Txn, session: str) -> Meta | None:
        return Meta.decode(txn.get(session.encode(), db=self.dbs[b"ix_meta"]))

    def _save_meta(self, txn: Txn, session: str, meta: Meta) -> None:
        txn.put(session.encode(), meta.encode(), db=self.dbs[b"ix_meta"])

    # -- adding -------------------------------------------------------------------------
    def _add(self, txn: Txn, session: str, entries: Sequence[Entry]) -> None:
        meta = self.meta(txn, session) or Meta()
        if meta.stale or entries[0].seq != meta.next_seq:
            # Writes happened without this hook: leave the repair to ``sync``.
            self._save_meta(txn, session, replace(meta, gen=meta.gen + 1, stale=True))
            return
        docs = [_doc(entry) for entry in entries]
        rows = _Rows(self, txn, session)
        for entry, doc in zip(entries, docs, strict=True):
            raw = bytes.fromhex(entry.id)
            record = _record(entry, doc)
            rows.set(entry.seq, record)
            rows.get(entry.seq)["flags"] |= self._edge_flags(txn, raw) | _plain_tool(entry)
            self._pair(txn, rows, entry)
        rows.save()
        for entry in entries:  # a new summary flags the blocks it was derived from
            for dst in _targets(txn, self.dbs[_OUT], bytes.fromhex(entry.id) + _DERIVED):
                self._flag_block(txn, dst, FLAG_SUMMARISED)
        self._append_postings(txn, session, docs)
        meta = replace(
            meta,
            next_seq=entries[-1].seq + 1,
            n_docs=meta.n_docs + len(docs),
            total_len=meta.total_len + sum(d.length for d in docs),
            gen=meta.gen + 1,
        )
        self._save_meta(txn, session, meta)

    def _pair(self, txn: Txn, rows: _Rows, entry: Entry) -> None:
        # A result answers the latest earlier call with its id, if that call is still
        # unanswered: models reuse ids (GPT-4o did in 36 of the 120 tau-bench sessions), so a
        # later call must never take an earlier call's result.
        ident = _call_id(entry)
        if ident is None:
            return
        db, key = self.dbs[b"ix_calls"], prefix(rows.session) + b"c" + ident
        if entry.kind is BlockKind.TOOL_CALL:
            txn.put(key, entry.seq.to_bytes(8, "big"), db=db)
            return
        raw = txn.get(key, db=db)
        if raw is None:
            return
        call = rows.get(int.from_bytes(raw, "big"))
        if call["kind"] != ABSENT and call["pair"] == 0:
            rows.link(entry.seq, int.from_bytes(raw, "big"))

    def _unpair(self, txn: Txn, rows: _Rows, entry: Entry) -> None:
        partner = int(rows.get(entry.seq)["pair"])
        if partner:
            rows.link(partner - 1, None)
        ident = _call_id(entry)
        if ident is not None and entry.kind is BlockKind.TOOL_CALL:
            key, db = prefix(rows.session) + b"c" + ident, self.dbs[b"ix_calls"]
            raw = txn.get(key, db=db)
            if raw is not None and int.from_bytes(raw, "big") == entry.seq:
                txn.delete(key, db=db)

    def load_chunk(self, txn: Txn, session: str, number: int) -> np.ndarray:
        raw = txn.get(col_key(session, number), db=self.dbs[b"ix_cols"])
        return empty_chunk() if raw is None else np.frombuffer(raw, dtype=RECORD).copy()

    def _append_postings(self, txn: Txn, session: str, docs: Sequence[_Doc]) -> None:
        new: dict[str, list[tuple[int, int]]] = {}
        for doc in docs:
            for term, tf in (*doc.tf.items(), *((f, 1) for f in doc.fields)):
                new.setdefault(term, []).append((doc.seq, tf))
        for term in sorted(new):
            df = self._df(txn, session, term)
            added = np.array(new[term], dtype=POSTING)
            start = df // POST_CHUNK
            head = self._post_chunk(txn, session, term, start) if df % POST_CHUNK else None
            tail = added if head is None else np.concatenate([head, added])
            self._write_postings(txn, session, term, start, tail)
            self._set_df(txn, session, term, df, df + len(added))

    # -- removing -----------------------------------------------------------------------
    def _remove(self, txn: Txn, session: str, entries: Sequence[Entry]) -> None:
        meta = self.meta(txn, session)
        if meta is None:
            return
        if meta.stale:
            self._save_meta(txn, session, replace(meta, gen=meta.gen + 1, rgen=meta.rgen + 1))
            return
        removed = [e for e in entries if e.seq < meta.next_seq]
        if len(removed) >= meta.n_docs:
            self.drop(txn, session)  # a purge: nothing of the session is left to index
            return
        docs = [_doc(entry) for entry in removed]
        rows = _Rows(self, txn, session)
        for entry in removed:
            self._unpair(txn, rows, entry)
            rows.set(entry.seq, empty_chunk()[0])
        rows.save()
        self._remove_postings(txn, session, docs)
        meta = replace(
            meta,
            n_docs=meta.n_docs - len(docs),
            total_len=meta.total_len - sum(d.length for d in docs),
            gen=meta.gen + 1,
            rgen=meta.rgen + 1,
        )
        self._save_meta(txn, session, meta)

    def _remove_postings(self, txn: Txn, session: str, docs: Sequence[_Doc]) -> None:
        gone: dict[str, list[int]] = {}
        for doc in docs:
            for term in (*doc.tf, *doc.fields):
                gone.setdefault(term, []).append(doc.seq)
        for term in sorted(gone):
            df = self._df(txn, session, term)
            old = self.read_postings(txn, session, term, df)
            kept = old[~np.isin(old["seq"], np.array(gone[term], dtype=np.uint32))]
            for number in range(df // POST_CHUNK + 1):
                txn.delete(post_key(session, term, number), db=self.dbs[b"ix_post"])
            self._write_postings(txn, session, term, 0, kept)
            self._set_df(txn, session, term, df, len(kept))

    def drop(self, txn: Txn, session: str) -> None:
        """Delete everything indexed for ``session``, leaving a header whose generations grow.

        Generations never go back: a purged session refilled to the same length must not look
        unchanged to a reader that cached the old rows (it would page purged content).
        """
        key, meta_db = session.encode(), self.dbs[b"ix_meta"]
        old = Meta.decode(txn.get(key, db=meta_db))
        for name in DB_NAMES[1:]:
            _delete_prefix(txn, self.dbs[name], prefix(session))
        if old is None:
            txn.delete(key, db=meta_db)
        else:
            txn.put(key, Meta(gen=old.gen + 1, rgen=old.rgen + 1).encode(), db=meta_db)

    # -- postings and document frequencies ----------------------------------------------
    def _df(self, txn: Txn, session: str, term: str) -> int:
        raw = txn.get(term_key(session, term), db=self.dbs[b"ix_terms"])
        return 0 if raw is None else int.from_bytes(raw, "little")

    def _set_df(self, txn: Txn, session: str, term: str, old: int, new: int) -> None:
        if new:
            txn.put(term_key(session, term), new.to_bytes(4, "little"), db=self.dbs[b"ix_terms"])
        else:
            txn.delete(term_key(session, term), db=self.dbs[b"ix_terms"])
        if not term.startswith(SOURCE_PREFIX):
            self._bump_hist(txn, session, old, -1)
            self._bump_hist(txn, session, new, +1)

    def _bump_hist(self, txn: Txn, session: str, df: int, delta: int) -> None:
        if df == 0:
            return
        db, key = self.dbs[b"ix_hist"], hist_key(session, df)
        raw = txn.get(key, db=db)
        count = (0 if raw is None else int.from_bytes(raw, "little")) + delta
        if count > 0:
            txn.put(key, count.to_bytes(4, "little"), db=db)
        else:
            txn.delete(key, db=db)

    def _post_chunk(self, txn: Txn, session: str, term: str, number: int) -> np.ndarray:
        raw = txn.get(post_key(session, term, number), db=self.dbs[b"ix_post"])
        return np.zeros(0, dtype=POSTING) if raw is None else np.frombuffer(raw, dtype=POSTING)

    def _write_postings(
        self, txn: Txn, session: str, term: str, start: int, postings: np.ndarray
    ) -> None:
        db = self.dbs[b"ix_post"]
        for offset in range(0, len(postings), POST_CHUNK):
            piece = postings[offset : offset + POST_CHUNK]
            txn.put(post_key(session, term, start + offset // POST_CHUNK), piece.tobytes(), db=db)

    def read_postings(self, txn: Txn, session: str, term: str, df: int, first: int = 0) -> Any:
        """Return the postings of ``term`` from chunk ``first`` on (``df`` = their number)."""
        chunks = [
            self._post_chunk(txn, session, term, n) for n in range(first, -(-df // POST_CHUNK))
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=POSTING)

    def histogram(self, txn: Txn, session: str) -> list[tuple[int, int]]:
        """Return (document frequency, number of terms) pairs for the session, df ascending."""
        start, out = prefix(session), []
        with txn.cursor(db=self.dbs[b"ix_hist"]) as cur:
            if cur.set_range(start):
                for key, raw in cur:
                    if not key.startswith(start) or len(key) != len(start) + 4:
                        break
                    out.append((int.from_bytes(key[-4:], "big"), int.from_bytes(raw, "little")))
        return out

    # -- repair -------------------------------------------------------------------------
    def reindex(self, txn: Txn, session: str, entries: Sequence[Entry], next_seq: int) -> None:
        """Rebuild ``session`` from all of its ``entries``; ``next_seq`` is the store's."""
        old = self.meta(txn, session) or Meta()
        self.drop(txn, session)
        if entries:
            self._save_meta(txn, session, Meta(next_seq=entries[0].seq))
            self._add(txn, session, entries)
        meta = self.meta(txn, session) or Meta()
        # Generations keep growing across a rebuild, so no reader mistakes new for cached.
        gen, rgen = old.gen + meta.gen + 1, old.rgen + 1
        self._save_meta(txn, session, replace(meta, next_seq=next_seq, gen=gen, rgen=rgen))

    def catch_up(self, txn: Txn, session: str, entries: Sequence[Entry], next_seq: int) -> None:
        """Index ``entries`` put after ``meta.next_seq`` without the hook (gaps allowed)."""
        meta = self.meta(txn, session) or Meta()
        if entries:
            self._save_meta(txn, session, replace(meta, next_seq=entries[0].seq))
            self._add(txn, session, entries)
            meta = self.meta(txn, session) or Meta()
        self._save_meta(txn, session, replace(meta, next_seq=next_seq, gen=meta.gen + 1))


class _Rows:
    """Catalog rows being changed in one transaction, written back chunk by chunk."""

    def __init__(self, index: SessionIndex, txn: Txn, session: str) -> None:
        self.index, self.txn, self.session = index, txn, session
        self.chunks: dict[int, np.ndarray] = {}

    def get(self, seq: int) -> Any:
        number, row = divmod(seq, COL_CHUNK)
        if number not in self.chunks:
            self.chunks[number] = self.index.load_chunk(self.txn, self.session, number)
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
        db = self.index.dbs[b"ix_cols"]
        for number in sorted(self.chunks):
            key = col_key(self.session, number)
            self.txn.put(key, self.chunks[number].tobytes(), db=db)


def _plain_tool(entry: Entry) -> int:
    tool = entry.kind in (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT)
    return FLAG_PLAIN_TOOL if tool and _call_id(entry) is None else 0


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
    # A digest keeps any call id (they are model-made and unbounded) inside an LMDB key.
    return hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _keys_from(cur: Any, start: bytes) -> list[bytes]:
    keys: list[bytes] = []
    if cur.set_range(start):
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(start):
                break
            keys.append(key)
    return keys


def _targets(txn: Txn, db: Any, start: bytes) -> list[bytes]:
    with txn.cursor(db=db) as cur:
        return [key[33:] for key in _keys_from(cur, start)]


def _delete_prefix(txn: Txn, db: Any, start: bytes) -> None:
    with txn.cursor(db=db) as cur:
        if not cur.set_range(start):
            return
        while cur.key().startswith(start):
            if not cur.delete():
                return


def _doc(entry: Entry) -> _Doc:
    words = terms(entry.body)
    fields = tuple(sorted({SOURCE_PREFIX + t for t in terms(entry.provenance.source)}))
    return _Doc(entry.seq, Counter(words), len(words), fields)


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


def write(env: Env, fn: Any) -> Any:
    """Run ``fn`` in a write transaction of ``env`` (the index's writes outside a store put)."""
    return lmdbenv.write(env, fn)
