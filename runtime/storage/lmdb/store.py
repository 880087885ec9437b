"""The LMDB implementation of ``BlockStore``: layout, atomic writes, listing, verify and repair.

Layout (named databases in one environment; ids are the 32 raw bytes of the SHA-256):

    meta        b"schema" -> b"1"; b"marker" -> b"LLM386_STORE"
    blocks      id -> canonical JSON {k: kind, b: body, p: priority, c: created_at, v: provenance}
    entries     session 0x00 seq(8 BE) -> canonical JSON {i: id hex, k, p, c, v, z: size}
    members     id session 0x00 seq(8 BE) -> b""            (reverse of entries)
    sessions    session -> canonical JSON {n: next seq, count, c, u, m: meta}
    edges_out   src kind(1) dst -> b""
    edges_in    dst kind(1) src -> b""
    tokens      tokenizer 0x00 id -> count(4 BE)

Invariants: every write is one LMDB transaction (all or nothing); session ids never contain NUL
(checked in blocks.check_session), so ``session 0x00`` prefixes cannot overlap; seq numbers only
grow, even after deletes; hooks run inside the same transaction as the change they index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runtime.blocks import (
    Block,
    BlockKind,
    Edge,
    EdgeKind,
    Entry,
    EntryRef,
    NewBlock,
    Provenance,
    SessionInfo,
    canonical_json,
    check_block_id,
    check_body,
    check_priority,
    check_session,
    content_hash,
)
from runtime.errors import BlockNotFound, InvalidBlock, InvalidEdge, SessionNotFound, StoreNotAStore
from runtime.storage.codec import (
    BYTE_EDGE,
    EDGE_BYTE,
    decode_block,
    decode_entry_ref,
    edge_key,
    encode_entry,
    entry_key,
    json_load,
    member_key,
    session_prefix,
    split_entry_key,
    split_member_key,
    token_key,
)
from runtime.storage.feed import ChangeFeed
from runtime.storage.interface import (
    DEFAULT_MAX_BLOCK_BYTES,
    BlockStore,
    PurgeReport,
    RepairReport,
    VerifyReport,
)
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.engine import LmdbEngine, LmdbTables
from runtime.storage.lmdb.env import Txn

SCHEMA_VERSION = b"1"
T = TypeVar("T")
DEFAULT_TOKENIZERS = ("cl100k_base", "o200k_base")


StoreHook = ChangeFeed  # the former name


def _now_ms() -> int:
    return int(time.time() * 1000)


Checked = tuple[BlockKind, str, float, Provenance, int]


@dataclass(frozen=True)
class PreparedPut:
    """A ``put_many`` checked and token-counted, ready to write in any write transaction."""

    session: str
    checked: list[Checked]
    counts: dict[str, list[int]]
    edges: list[Edge]


class LmdbStore(BlockStore):
    """A block store in one LMDB environment on disk."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
        tokenizers: Sequence[str] = DEFAULT_TOKENIZERS,
        readonly: bool = False,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_block_bytes = max_block_bytes
        self.tokenizers = tuple(tokenizers)
        self.kv = LmdbEngine(path, readonly=readonly, create=create)
        self.env = self.kv.env
        readonly = self.env.readonly  # a store whose files refuse writes opens read-only
        self._hooks: list[StoreHook] = []
        self._init_layout(readonly)
        if not readonly:
            # The pager's per-session index (catalog, BM25 postings) is kept in step with every
            # write from the start, so no writer can leave it behind.
            from runtime.indexes.snapshot import index_for

            index_for(self)

    # -- layout -------------------------------------------------------------------------
    def _init_layout(self, readonly: bool) -> None:
        if not readonly:
            self._stamp_or_check()
        db = self.env.db
        self._meta, self._blocks, self._entries = db(b"meta"), db(b"blocks"), db(b"entries")
        self._members, self._sessions, self._tokens = db(b"members"), db(b"sessions"), db(b"tokens")
        self._edges_out, self._edges_in = db(b"edges_out"), db(b"edges_in")
        if readonly:
            self._check_marker()

    def _stamp_or_check(self) -> None:
        meta = self.env.db(b"meta")

        def stamp(txn: Txn) -> None:
            marker = txn.get(b"marker", db=meta)
            if marker is None:
                if txn.stat(meta)["entries"] or self._has_foreign_dbs(txn):
                    raise StoreNotAStore(f"{self.path} is an LMDB environment of another program")
                txn.put(b"marker", lmdbenv.MARKER.encode(), db=meta)
                txn.put(b"schema", SCHEMA_VERSION, db=meta)
            elif marker != lmdbenv.MARKER.encode():
                raise StoreNotAStore(f"{self.path} is not an llm386 store")

        lmdbenv.write(self.env, stamp)

    def _has_foreign_dbs(self, txn: Txn) -> bool:
        known = {b"meta"}
        with txn.cursor() as cur:  # the main db lists named dbs
            return any(key not in known for key, _ in cur)

    def _check_marker(self) -> None:
        marker = lmdbenv.read(self.env, lambda txn: txn.get(b"marker", db=self._meta))
        if marker != lmdbenv.MARKER.encode():
            raise StoreNotAStore(f"{self.path} is not an llm386 store")

    def _tables(self, txn: Txn) -> LmdbTables:
        return LmdbTables(self.env, txn, readonly=False)

    def add_hook(self, hook: StoreHook) -> None:
        """Keep ``hook`` in step with every put and removal from now on."""
        self._hooks.append(hook)

    # -- writes -------------------------------------------------------------------------
    def _checked(self, block: NewBlock) -> Checked:
        kind = BlockKind.parse(block.kind)
        body = check_body(block.body, max_bytes=self.max_block_bytes)
        priority = check_priority(block.priority)
        for parent in block.provenance.parents:
            check_block_id(parent)
        created = _now_ms() if block.created_at is None else int(block.created_at)
        return kind, body, priority, block.provenance, created

    def atomic(self, fn: Callable[[], T]) -> T:
        return lmdbenv.write(self.env, lambda txn: fn())

    def put(self, session: str, block: NewBlock) -> Entry:
        return self.put_many(session, [block])[0]

    def put_many(
        self, session: str, blocks: Sequence[NewBlock], edges: Iterable[Edge] = ()
    ) -> list[Entry]:
        prepared = self.prepare_put(session, blocks, edges)
        return lmdbenv.write(self.env, lambda txn: self.put_txn(txn, prepared))

    def prepare_put(
        self, session: str, blocks: Sequence[NewBlock], edges: Iterable[Edge] = ()
    ) -> PreparedPut:
        """Check a ``put_many`` and count its tokens, writing nothing (raises what it would)."""
        check_session(session)
        checked = [self._checked(b) for b in blocks]  # all checks before any write
        edge_list = [
            Edge(check_block_id(e.src), EdgeKind.parse(e.kind), check_block_id(e.dst))
            for e in edges
        ]
        counts = self._count_tokens([body for _, body, *_ in checked])
        return PreparedPut(session, checked, counts, edge_list)

    def put_txn(self, txn: Txn, prepared: PreparedPut) -> list[Entry]:
        """Write a prepared ``put_many`` in the caller's write transaction (with its hooks)."""
        p = prepared
        return self._put_txn(txn, p.session, p.checked, p.counts, p.edges)

    def _count_tokens(self, bodies: list[str]) -> dict[str, list[int]]:
        from runtime.tokenizers import get_tokenizer

        return {name: get_tokenizer(name).count_many(bodies) for name in self.tokenizers}

    def _put_txn(
        self,
        txn: Txn,
        session: str,
        checked: list[Checked],
        counts: dict[str, list[int]],
        edges: list[Edge],
    ) -> list[Entry]:
        info = self._session_record(txn, session)
        entries: list[Entry] = []
        for i, (kind, body, priority, prov, created) in enumerate(checked):
            block = self._store_block(txn, kind, body, priority, prov, created)
            for name, values in counts.items():
                txn.put(token_key(name, block.id), values[i].to_bytes(4, "big"), db=self._tokens)
            entries.append(self._append_entry(txn, session, info, block, priority, prov, created))
        info["count"] += len(entries)
        info["u"] = max([info["u"]] + [e.created_at for e in entries])
        txn.put(session.encode(), canonical_json(info), db=self._sessions)
        for edge in edges:
            self._add_edge_txn(txn, edge)
        for hook in self._hooks:
            hook.on_put(self._tables(txn), entries)
        return entries

    def _session_record(self, txn: Txn, session: str) -> dict[str, Any]:
        raw = txn.get(session.encode(), db=self._sessions)
        if raw is None:
            now = _now_ms()
            return {"n": 0, "count": 0, "c": now, "u": now, "m": {}}
        return json_load(raw)

    def _store_block(
        self,
        txn: Txn,
        kind: BlockKind,
        body: str,
        priority: float,
        prov: Provenance,
        created: int,
    ) -> Block:
        bid = content_hash(kind, body)
        raw = txn.get(bytes.fromhex(bid), db=self._blocks)
        if raw is not None:
            return decode_block(bid, raw)
        record = {"k": kind.value, "b": body, "p": priority, "c": created, "v": prov.to_json()}
        txn.put(bytes.fromhex(bid), canonical_json(record), db=self._blocks)
        return Block(kind, body, bid, priority, created, prov)

    def _append_entry(
        self,
        txn: Txn,
        session: str,
        info: dict[str, Any],
        block: Block,
        priority: float,
        prov: Provenance,
        created: int,
    ) -> Entry:
        seq = info["n"]
        info["n"] = seq + 1
        record = encode_entry(block.id, block.kind, priority, created, block.size, prov)
        txn.put(entry_key(session, seq), record, db=self._entries)
        txn.put(member_key(block.id, session, seq), b"", db=self._members)
        return Entry(session, seq, block, priority, created, prov)

    def add_edge(self, src: str, kind: EdgeKind | str, dst: str) -> bool:
        edge = Edge(self.resolve(src), EdgeKind.parse(kind), self.resolve(dst))
        return lmdbenv.write(self.env, lambda txn: self._add_edges_txn(txn, [edge]) == 1)

    def add_edges(self, edges: Iterable[Edge]) -> int:
        """Add several edges in one write; return how many were new."""
        edge_list = [
            Edge(check_block_id(e.src), EdgeKind.parse(e.kind), check_block_id(e.dst))
            for e in edges
        ]
        return lmdbenv.write(self.env, lambda txn: self._add_edges_txn(txn, edge_list))

    def _add_edges_txn(self, txn: Txn, edges: list[Edge]) -> int:
        new = [edge for edge in edges if self._add_edge_txn(txn, edge)]
        for hook in self._hooks:
            # Hooks that index edges (the session index) see edges added after their blocks.
            if new:
                hook.on_edges(self._tables(txn), new)
        return len(new)

    def _add_edge_txn(self, txn: Txn, edge: Edge) -> bool:
        if edge.src == edge.dst:
            raise InvalidEdge(f"an edge from block {edge.src[:12]} to itself is not allowed")
        for end in (edge.src, edge.dst):
            if len(end) != 64 or txn.get(bytes.fromhex(end), db=self._blocks) is None:
                raise InvalidEdge(f"edge end {end[:12]} is not a stored block; put it first")
        kb = EDGE_BYTE[edge.kind]
        new = txn.put(edge_key(edge.src, kb, edge.dst), b"", db=self._edges_out, overwrite=False)
        txn.put(edge_key(edge.dst, kb, edge.src), b"", db=self._edges_in)
        return bool(new)

    def set_session_meta(self, session: str, **meta: Any) -> SessionInfo:
        check_session(session)
        canonical_json(meta)  # refuses what is not JSON-able before the write
        return lmdbenv.write(self.env, lambda txn: self.set_session_meta_txn(txn, session, meta))

    def set_session_meta_txn(self, txn: Txn, session: str, meta: dict[str, Any]) -> SessionInfo:
        """Merge ``meta`` (checked by the caller) into a session's, in the caller's transaction."""
        info = self._session_record(txn, session)
        info["m"] = {**info["m"], **meta}
        txn.put(session.encode(), canonical_json(info), db=self._sessions)
        return _session_info(session, info)

    def has_session_txn(self, txn: Txn, session: str) -> bool:
        """Whether ``session`` exists, seen from the caller's transaction."""
        return txn.get(session.encode(), db=self._sessions) is not None

    def delete_block(self, block_id: str) -> None:
        bid = self.resolve(block_id)
        lmdbenv.write(self.env, lambda txn: self._delete_txn(txn, bid))

    def _delete_txn(self, txn: Txn, bid: str) -> None:
        removed = [self._remove_entry(txn, s, q) for s, q in self._memberships_txn(txn, bid)]
        self._fix_counts(txn, removed)
        self._drop_block(txn, bid)
        for hook in self._hooks:
            hook.on_remove(self._tables(txn), removed)

    def _remove_entry(self, txn: Txn, session: str, seq: int) -> Entry:
        entry = self._entry_txn(txn, session, seq)
        txn.delete(entry_key(session, seq), db=self._entries)
        txn.delete(member_key(entry.id, session, seq), db=self._members)
        return entry

    def _fix_counts(self, txn: Txn, removed: list[Entry]) -> None:
        by_session: dict[str, int] = {}
        for entry in removed:
            by_session[entry.session] = by_session.get(entry.session, 0) + 1
        for session in sorted(by_session):
            info = self._session_record(txn, session)
            info["count"] = max(0, info["count"] - by_session[session])
            txn.put(session.encode(), canonical_json(info), db=self._sessions)

    def _drop_block(self, txn: Txn, bid: str) -> None:
        raw = bytes.fromhex(bid)
        for out_db, in_db in ((self._edges_out, self._edges_in), (self._edges_in, self._edges_out)):
            for key in list(_prefix_keys(txn, out_db, raw)):
                txn.delete(key, db=out_db)
                txn.delete(key[33:] + key[32:33] + key[:32], db=in_db)
        for name in self.tokenizers + self._cached_tokenizers(txn):
            txn.delete(token_key(name, bid), db=self._tokens)
        txn.delete(raw, db=self._blocks)

    def _cached_tokenizers(self, txn: Txn) -> tuple[str, ...]:
        names: list[str] = []
        with txn.cursor(db=self._tokens) as cur:
            key = b""
            while cur.set_range(key):
                name = cur.key().split(b"\x00", 1)[0]
                names.append(name.decode())
                key = name + b"\x01"
        return tuple(n for n in names if n not in self.tokenizers)

    def purge_session(self, session: str) -> PurgeReport:
        check_session(session)
        return lmdbenv.write(self.env, lambda txn: self._purge_txn(txn, session))

    def _purge_txn(self, txn: Txn, session: str) -> PurgeReport:
        if txn.get(session.encode(), db=self._sessions) is None:
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        seqs = [
            split_entry_key(k)[1] for k in _prefix_keys(txn, self._entries, session_prefix(session))
        ]
        removed = [self._remove_entry(txn, session, seq) for seq in seqs]
        txn.delete(session.encode(), db=self._sessions)
        deleted = kept = 0
        for bid in sorted({e.id for e in removed}):
            if self._memberships_txn(txn, bid):
                kept += 1
            else:
                self._drop_block(txn, bid)
                deleted += 1
        for hook in self._hooks:
            hook.on_remove(self._tables(txn), removed)
        return PurgeReport(session, len(removed), deleted, kept)

    # -- reads --------------------------------------------------------------------------
    def _read(self, fn: Any) -> Any:
        return lmdbenv.read(self.env, fn)

    def resolve(self, block_id: str) -> str:
        """Return the full id for a full id or unique prefix (4+ hex characters)."""
        prefix = check_block_id(block_id)
        return self._read(lambda txn: self._resolve_txn(txn, prefix))

    def _resolve_txn(self, txn: Txn, prefix: str) -> str:
        if len(prefix) == 64:
            if txn.get(bytes.fromhex(prefix), db=self._blocks) is None:
                raise BlockNotFound(f"no block {prefix[:12]}…; check the id or list a session")
            return prefix
        start = bytes.fromhex(prefix[: len(prefix) // 2 * 2])
        found: list[str] = []
        with txn.cursor(db=self._blocks) as cur:
            if cur.set_range(start):
                for key in cur.iternext(keys=True, values=False):
                    hexkey = key.hex()
                    if not hexkey.startswith(prefix[: len(start) * 2]):
                        break
                    if hexkey.startswith(prefix):
                        found.append(hexkey)
                    if len(found) > 1:
                        raise InvalidBlock(f"id prefix {prefix} is ambiguous; give more characters")
        if not found:
            raise BlockNotFound(f"no block with id {prefix}; check the id or list a session")
        return found[0]

    def get(self, block_id: str) -> Block:
        prefix = check_block_id(block_id)

        def load(txn: Txn) -> Block:
            bid = self._resolve_txn(txn, prefix)
            return decode_block(bid, txn.get(bytes.fromhex(bid), db=self._blocks))

        return self._read(load)

    def get_many(self, block_ids: Sequence[str]) -> list[Block]:
        def load(txn: Txn) -> list[Block]:
            out = []
            for bid in block_ids:
                raw = (
                    txn.get(bytes.fromhex(check_block_id(bid)), db=self._blocks)
                    if len(bid) == 64
                    else None
                )
                if raw is None:
                    raise BlockNotFound(f"no block {bid[:12]}; check the id")
                out.append(decode_block(bid, raw))
            return out

        return self._read(load)

    def has(self, block_id: str) -> bool:
        if len(block_id) != 64:
            return False
        key = bytes.fromhex(check_block_id(block_id))
        return self._read(lambda txn: txn.get(key, db=self._blocks) is not None)

    def sessions(self, offset: int = 0, limit: int | None = None) -> list[SessionInfo]:
        def load(txn: Txn) -> list[SessionInfo]:
            out: list[SessionInfo] = []
            with txn.cursor(db=self._sessions) as cur:
                for i, (key, raw) in enumerate(cur):
                    if i < offset:
                        continue
                    if limit is not None and len(out) >= limit:
                        break
                    out.append(_session_info(key.decode(), json_load(raw)))
            return out

        return self._read(load)

    def session_count(self) -> int:
        return self._read(lambda txn: txn.stat(self._sessions)["entries"])

    def session_info(self, session: str) -> SessionInfo:
        check_session(session)
        raw = self._read(lambda txn: txn.get(session.encode(), db=self._sessions))
        if raw is None:
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        return _session_info(session, json_load(raw))

    def entries(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[Entry]:
        def load(txn: Txn) -> list[Entry]:
            refs = self._refs_txn(txn, session, start, limit, reverse)
            return [self._entry_from_ref(txn, ref) for ref in refs]

        return self._read(load)

    def entry_refs(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[EntryRef]:
        """Return entries without their bodies (cheap: no block is read)."""
        return self._read(lambda txn: self._refs_txn(txn, session, start, limit, reverse))

    def entry(self, session: str, seq: int) -> Entry:
        """Return one entry by its place in the session."""
        return self._read(lambda txn: self._entry_txn(txn, session, seq))

    def _entry_txn(self, txn: Txn, session: str, seq: int) -> Entry:
        raw = txn.get(entry_key(session, seq), db=self._entries)
        if raw is None:
            raise BlockNotFound(f"session {session!r} has no entry #{seq}")
        return self._entry_from_ref(txn, decode_entry_ref(session, seq, raw))

    def _entry_from_ref(self, txn: Txn, ref: EntryRef) -> Entry:
        raw = txn.get(bytes.fromhex(ref.id), db=self._blocks)
        block = decode_block(ref.id, raw)
        return Entry(ref.session, ref.seq, block, ref.priority, ref.created_at, ref.provenance)

    def _refs_txn(
        self, txn: Txn, session: str, start: int, limit: int | None, reverse: bool
    ) -> list[EntryRef]:
        check_session(session)
        out: list[EntryRef] = []
        for key, raw in _iter_session(txn, self._entries, session, start, reverse):
            if limit is not None and len(out) >= limit:
                break
            out.append(decode_entry_ref(session, split_entry_key(key)[1], raw))
        return out

    def memberships(self, block_id: str) -> list[tuple[str, int]]:
        bid = self.resolve(block_id)
        return self._read(lambda txn: self._memberships_txn(txn, bid))

    def _memberships_txn(self, txn: Txn, bid: str) -> list[tuple[str, int]]:
        keys = _prefix_keys(txn, self._members, bytes.fromhex(bid))
        return [split_member_key(k) for k in keys]

    def edges_from(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        return self._edges(self._edges_out, block_id, kind, outgoing=True)

    def edges_to(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        return self._edges(self._edges_in, block_id, kind, outgoing=False)

    def _edges(
        self, db: Any, block_id: str, kind: EdgeKind | str | None, *, outgoing: bool
    ) -> list[Edge]:
        bid = check_block_id(block_id)
        prefix = bytes.fromhex(bid) if len(bid) == 64 else None
        if prefix is None:
            return self._edges(db, self.resolve(bid), kind, outgoing=outgoing)
        if kind is not None:
            prefix += bytes([EDGE_BYTE[EdgeKind.parse(kind)]])
        keys = self._read(lambda txn: _prefix_keys(txn, db, prefix))
        edges = []
        for key in keys:
            here, edge_kind, there = key[:32].hex(), BYTE_EDGE[key[32]], key[33:].hex()
            edges.append(Edge(here, edge_kind, there) if outgoing else Edge(there, edge_kind, here))
        return sorted(edges)

    def token_counts(self, block_ids: Sequence[str], tokenizer: str) -> list[int]:
        cached = self._read(
            lambda txn: [txn.get(token_key(tokenizer, bid), db=self._tokens) for bid in block_ids]
        )
        missing = [i for i, raw in enumerate(cached) if raw is None]
        counts = [0 if raw is None else int.from_bytes(raw, "big") for raw in cached]
        if missing:
            self._fill_counts(block_ids, tokenizer, missing, counts)
        return counts

    def _fill_counts(
        self, block_ids: Sequence[str], tokenizer: str, missing: list[int], counts: list[int]
    ) -> None:
        from runtime.tokenizers import get_tokenizer

        blocks = self.get_many([block_ids[i] for i in missing])
        values = get_tokenizer(tokenizer).count_many([b.body for b in blocks])
        for i, value in zip(missing, values, strict=True):
            counts[i] = value
        if not self.env.readonly:

            def save(txn: Txn) -> None:
                for block, value in zip(blocks, values, strict=True):
                    txn.put(
                        token_key(tokenizer, block.id), value.to_bytes(4, "big"), db=self._tokens
                    )

            lmdbenv.write(self.env, save)

    # -- integrity ----------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        from runtime.storage.lmdb.check import check_store

        return self._read(lambda txn: check_store(self, txn))

    def repair(self) -> RepairReport:
        from runtime.storage.lmdb.check import check_store, repair_problems

        return lmdbenv.write(
            self.env, lambda txn: repair_problems(self, txn, check_store(self, txn))
        )

    def close(self) -> None:
        lmdbenv.close_env(self.path)


def _session_info(session: str, info: dict[str, Any]) -> SessionInfo:
    return SessionInfo(session, info["count"], info["c"], info["u"], dict(info.get("m") or {}))


def _prefix_keys(txn: Txn, db: Any, prefix: bytes) -> list[bytes]:
    keys: list[bytes] = []
    with txn.cursor(db=db) as cur:
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                keys.append(key)
    return keys


def _iter_session(
    txn: Txn, db: Any, session: str, start: int, reverse: bool
) -> Iterator[tuple[bytes, bytes]]:
    prefix = session_prefix(session)
    with txn.cursor(db=db) as cur:
        if not reverse:
            if cur.set_range(entry_key(session, start)):
                for key, raw in cur:
                    if not key.startswith(prefix):
                        return
                    yield key, raw
            return
        # Newest first: start at the last key of this session (or the one before ``start``).
        upper = entry_key(session, start) if start else prefix + b"\xff" * 9
        positioned = cur.set_range(upper)
        ok = cur.prev() if positioned else cur.last()
        while ok:
            key = cur.key()
            if not key.startswith(prefix):
                return
            yield key, cur.value()
            ok = cur.prev()
