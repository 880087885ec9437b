"""The block store, written once on the key-value seam: every backend runs this same code.

``KvBlockStore`` implements :class:`~runtime.storage.interface.BlockStore` over any
:class:`~runtime.storage.kv.Engine` (LMDB embedded, PostgreSQL for teams). Layout (tables of the
engine; ids are the 32 raw bytes of the SHA-256; see ``runtime.storage.codec``):

    meta        b"schema" -> layout version (runtime.storage.migrations); b"marker" -> b"LLM386_STORE"
    blocks      id -> canonical JSON {k: kind, b: body, p: priority, c: created_at, v: provenance}
    entries     session 0x00 seq(8 BE) -> packed entry record (``codec.encode_entry``)
    members     id session 0x00 seq(8 BE) -> b""            (reverse of entries)
    sessions    session -> canonical JSON {n: next seq, count, c, u, m: meta}
    edges_out   src kind(1) dst -> b""
    edges_in    dst kind(1) src -> b""
    tokens      tokenizer 0x00 id -> count(4 BE)

Invariants: every write is one engine write (all or nothing); session ids never contain NUL
(checked in blocks.check_session), so ``session 0x00`` prefixes cannot overlap; seq numbers only
grow, even after deletes; the change feed's subscribers run inside the same write as the change
they index, with the :class:`~runtime.storage.kv.Tables` of that write.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
from runtime.errors import BlockNotFound, SessionNotFound, StoreNotAStore
from runtime.storage import blockrows, entryrows, sessionrows
from runtime.storage.codec import (
    BLOCKS,
    META,
    SESSIONS,
    TOKENS,
    decode_block,
    json_load,
    token_key,
)
from runtime.storage.edgerows import add_edge, list_edges, prefetch_edges
from runtime.storage.feed import ChangeFeed
from runtime.storage.interface import (
    DEFAULT_MAX_BLOCK_BYTES,
    BlockStore,
    PurgeReport,
    RepairReport,
    VerifyReport,
)
from runtime.storage.kv import Engine, Tables
from runtime.storage.migrations import CURRENT_VERSION

SCHEMA_VERSION = str(CURRENT_VERSION).encode()  # what a new store is stamped with
MARKER = b"LLM386_STORE"
DEFAULT_TOKENIZERS = ("cl100k_base", "o200k_base")
T = TypeVar("T")

StoreHook = ChangeFeed  # the former name
Checked = tuple[BlockKind, str, float, Provenance, int]


#: A put of at least this many blocks counts its tokens on the counting thread while its write
#: goes on (tiktoken lets go of the GIL as it encodes); a smaller put counts them inline.
COUNT_AHEAD_BLOCKS = 256


@dataclass(frozen=True)
class PreparedPut:
    """A ``put_many`` checked and token-counted (or being counted), ready to write in any
    write transaction."""

    session: str
    checked: list[Checked]
    counting: Future[dict[str, list[int]]]  # tokenizer -> each block's count, in order
    edges: list[Edge]
    ids: list[str]  # each checked block's content hash, in order

    @property
    def counts(self) -> dict[str, list[int]]:
        """Each tokenizer's count of every block (waits for the counting thread if need be)."""
        return self.counting.result()


_counter: tuple[int, ThreadPoolExecutor] | None = None
_counter_lock = threading.Lock()


def _counting_thread() -> ThreadPoolExecutor:
    """The process's one counting thread (a new one in a forked child, which has none)."""
    global _counter
    with _counter_lock:
        if _counter is None or _counter[0] != os.getpid():
            _counter = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="llm386-count"))
        return _counter[1]


class KvBlockStore(BlockStore):
    """A block store in the tables of one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
        tokenizers: Sequence[str] = DEFAULT_TOKENIZERS,
    ) -> None:
        self.kv = engine
        self.max_block_bytes = max_block_bytes
        self.tokenizers = tuple(tokenizers)
        self._feeds: list[ChangeFeed] = []
        self._open_layout()

    @property
    def location(self) -> str:
        """Where the store lives, safe to show (a path, or a URL without its password)."""
        return self.kv.location

    @property
    def readonly(self) -> bool:
        return self.kv.readonly

    # -- layout -------------------------------------------------------------------------
    def _open_layout(self) -> None:
        if self.kv.readonly:
            self.kv.read(self._check_marker)
        else:
            self.kv.write(self._stamp_or_check)

    def _stamp_or_check(self, t: Tables) -> None:
        marker = t.get(META, b"marker")
        if marker is None:
            self._check_fresh(t)
            t.put(META, b"marker", MARKER)
            t.put(META, b"schema", SCHEMA_VERSION)  # born at the current layout: nothing to migrate
        elif marker != MARKER:
            raise StoreNotAStore(f"{self.location} is not an llm386 store")

    def _check_fresh(self, t: Tables) -> None:
        """Refuse to stamp tables that already hold another program's data."""
        if t.count(META):
            raise StoreNotAStore(f"{self.location} holds the data of another program")

    def _check_marker(self, t: Tables) -> None:
        if t.get(META, b"marker") != MARKER:
            raise StoreNotAStore(f"{self.location} is not an llm386 store")

    # -- change feed --------------------------------------------------------------------
    def subscribe(self, feed: ChangeFeed) -> None:
        """Keep ``feed`` in step with every put, edge and removal from now on."""
        self._feeds.append(feed)

    def add_hook(self, hook: ChangeFeed) -> None:
        """Keep ``hook`` in step with every write (the former name of :meth:`subscribe`)."""
        self.subscribe(hook)

    def _removed(self, t: Tables, entries: list[Entry]) -> None:
        for feed in self._feeds:
            feed.on_remove(t, entries)

    # -- writes -------------------------------------------------------------------------
    def atomic(self, fn: Callable[[], T]) -> T:
        return self.kv.write(lambda t: fn())

    def _checked(self, block: NewBlock) -> Checked:
        kind = BlockKind.parse(block.kind)
        body = check_body(block.body, max_bytes=self.max_block_bytes)
        priority = check_priority(block.priority)
        for parent in block.provenance.parents:
            check_block_id(parent)
        created = sessionrows.now_ms() if block.created_at is None else int(block.created_at)
        return kind, body, priority, block.provenance, created

    def put(self, session: str, block: NewBlock) -> Entry:
        return self.put_many(session, [block])[0]

    def put_many(
        self, session: str, blocks: Sequence[NewBlock], edges: Iterable[Edge] = ()
    ) -> list[Entry]:
        prepared = self.prepare_put(session, blocks, edges)
        return self.kv.write(lambda t: self.put_txn(t, prepared))

    def prepare_put(
        self, session: str, blocks: Sequence[NewBlock], edges: Iterable[Edge] = ()
    ) -> PreparedPut:
        """Check a ``put_many`` and count its tokens, writing nothing (raises what it would)."""
        check_session(session)
        checked = [self._checked(b) for b in blocks]  # all checks before any write
        ids = [content_hash(kind, body) for kind, body, *_ in checked]
        bodies = [body for _, body, *_ in checked]
        names = self.tokenizers

        def count() -> dict[str, list[int]]:
            return {name: _block_counts(name, ids, bodies) for name in names}

        counting: Future[dict[str, list[int]]] | None = None
        if len(ids) >= COUNT_AHEAD_BLOCKS:  # counted while put_txn writes the rest
            try:
                counting = _counting_thread().submit(count)
            except RuntimeError:  # the interpreter is shutting down: no new threads' work
                counting = None
        if counting is None:
            counting = Future()
            counting.set_result(count())
        return PreparedPut(session, checked, counting, _checked_edges(edges), ids)

    def put_txn(self, t: Tables, prepared: PreparedPut, *, feed: bool = True) -> list[Entry]:
        """Write a prepared ``put_many`` in the caller's write (with its change feed).

        With ``feed=False`` the subscribers are not told: the caller hands the entries of
        several puts to :meth:`feed_puts` later in the same write, so a batch's derived index
        rows (a session's catalog chunk, postings, histogram) are written once, not once a put.
        Nothing in between may read those indexes."""
        session = prepared.session
        info = sessionrows.session_record(t, session)
        entries: list[Entry] = []
        t.prefetch(BLOCKS, [bytes.fromhex(bid) for bid in prepared.ids])
        for i, (kind, body, priority, prov, created) in enumerate(prepared.checked):
            block = blockrows.store_block(t, kind, body, priority, prov, created, prepared.ids[i])
            entries.append(entryrows.append_entry(t, session, info, block, priority, prov, created))
        info["count"] += len(entries)
        info["u"] = max([info["u"]] + [e.created_at for e in entries])
        sessionrows.save_session(t, session, info)
        prefetch_edges(t, prepared.edges)
        for edge in prepared.edges:
            add_edge(t, edge)
        if feed:
            self.feed_puts(t, entries)
        # Last: a big put's counts were being counted meanwhile (nothing above reads them).
        # If they are not ready, the engine's server gets the rows so far while we wait.
        if not prepared.counting.done():
            t.send_pending()
        for name, values in prepared.counts.items():
            t.put_many(TOKENS, [
                (token_key(name, bid), n.to_bytes(4, "big"))
                for bid, n in zip(prepared.ids, values, strict=True)
            ])  # fmt: skip
        return entries

    def feed_puts(self, t: Tables, entries: list[Entry]) -> None:
        """Tell the subscribers of entries appended in this write (any sessions, seq order
        within each) by ``put_txn(..., feed=False)``."""
        for subscriber in self._feeds:
            subscriber.on_put(t, entries)

    def add_edge(self, src: str, kind: EdgeKind | str, dst: str) -> bool:
        edge = Edge(self.resolve(src), EdgeKind.parse(kind), self.resolve(dst))
        return self.kv.write(lambda t: self.add_edges_txn(t, [edge]) == 1)

    def add_edges(self, edges: Iterable[Edge]) -> int:
        """Add several edges in one write; return how many were new."""
        edge_list = _checked_edges(edges)
        return self.kv.write(lambda t: self.add_edges_txn(t, edge_list))

    def add_edges_txn(self, t: Tables, edges: Sequence[Edge]) -> int:
        """Add checked edges in the caller's write; return how many were new."""
        new = [edge for edge in edges if add_edge(t, edge)]
        if new:
            # Subscribers that index edges (the session index) see them after their blocks.
            for feed in self._feeds:
                feed.on_edges(t, new)
        return len(new)

    def set_session_meta(self, session: str, **meta: Any) -> SessionInfo:
        check_session(session)
        canonical_json(meta)  # refuses what is not JSON-able before the write
        return self.kv.write(lambda t: self.set_session_meta_txn(t, session, meta))

    def set_session_meta_txn(self, t: Tables, session: str, meta: dict[str, Any]) -> SessionInfo:
        """Merge ``meta`` (checked by the caller) into a session's, in the caller's write."""
        info = sessionrows.session_record(t, session)
        info["m"] = {**info["m"], **meta}
        sessionrows.save_session(t, session, info)
        for feed in self._feeds:
            feed.on_meta(t, session)
        return sessionrows.session_info(session, info)

    def has_session_txn(self, t: Tables, session: str) -> bool:
        """Whether ``session`` exists, seen from the caller's transaction."""
        return sessionrows.has_session(t, session)

    def delete_block(self, block_id: str) -> None:
        bid = self.resolve(block_id)
        self.kv.write(lambda t: self._delete_txn(t, bid))

    def _delete_txn(self, t: Tables, bid: str) -> None:
        removed = [entryrows.remove_entry(t, s, q) for s, q in entryrows.memberships(t, bid)]
        sessionrows.lower_counts(t, removed)
        blockrows.drop_block(t, bid, self.tokenizers)
        self._removed(t, removed)

    def remove_entries_txn(self, t: Tables, session: str, seqs: Sequence[int]) -> list[Entry]:
        """Remove entries of a session (keeping their blocks) in the caller's write."""
        removed = [entryrows.remove_entry(t, session, seq) for seq in seqs]
        sessionrows.lower_counts(t, removed)
        self._removed(t, removed)
        return removed

    def purge_session(self, session: str) -> PurgeReport:
        check_session(session)
        return self.kv.write(lambda t: self._purge_txn(t, session))

    def _purge_txn(self, t: Tables, session: str) -> PurgeReport:
        if not sessionrows.has_session(t, session):
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        seqs = entryrows.session_seqs(t, session)
        removed = [entryrows.remove_entry(t, session, seq) for seq in seqs]
        t.delete(SESSIONS, session.encode())
        deleted = kept = 0
        for bid in sorted({e.id for e in removed}):
            if entryrows.memberships(t, bid):
                kept += 1
            else:
                blockrows.drop_block(t, bid, self.tokenizers)
                deleted += 1
        self._removed(t, removed)
        return PurgeReport(session, len(removed), deleted, kept)

    # -- reads --------------------------------------------------------------------------
    def _read(self, fn: Callable[[Tables], T]) -> T:
        return self.kv.read(fn)

    def resolve(self, block_id: str) -> str:
        """Return the full id for a full id or unique prefix (4+ hex characters)."""
        prefix = check_block_id(block_id)
        return self._read(lambda t: blockrows.resolve(t, prefix))

    def get(self, block_id: str) -> Block:
        prefix = check_block_id(block_id)

        def load(t: Tables) -> Block:
            if len(prefix) == 64:  # a full id: one read, no resolving
                raw = t.get(BLOCKS, bytes.fromhex(prefix))
                if raw is None:
                    raise BlockNotFound(f"no block {prefix[:12]}…; check the id or list a session")
                return decode_block(prefix, raw)
            bid = blockrows.resolve(t, prefix)
            return decode_block(bid, t.get(BLOCKS, bytes.fromhex(bid)))

        return self._read(load)

    def get_many(self, block_ids: Sequence[str]) -> list[Block]:
        ids = list(block_ids)
        for bid in ids:
            if len(bid) != 64:
                raise BlockNotFound(f"no block {bid[:12]}; check the id")
        keys = [bytes.fromhex(check_block_id(bid)) for bid in ids]
        raws = self._read(lambda t: t.get_many(BLOCKS, keys))
        for bid, raw in zip(ids, raws, strict=True):
            if raw is None:
                raise BlockNotFound(f"no block {bid[:12]}; check the id")
        return [decode_block(bid, raw) for bid, raw in zip(ids, raws, strict=True)]

    def has(self, block_id: str) -> bool:
        if len(block_id) != 64:
            return False
        key = bytes.fromhex(check_block_id(block_id))
        return self._read(lambda t: t.get(BLOCKS, key) is not None)

    def sessions(self, offset: int = 0, limit: int | None = None) -> list[SessionInfo]:
        return self._read(lambda t: sessionrows.list_sessions(t, offset, limit))

    def session_count(self) -> int:
        return self._read(lambda t: t.count(SESSIONS))

    def session_info(self, session: str) -> SessionInfo:
        check_session(session)
        raw = self._read(lambda t: t.get(SESSIONS, session.encode()))
        if raw is None:
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        return sessionrows.session_info(session, json_load(raw))

    def entries(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[Entry]:
        def load(t: Tables) -> list[Entry]:
            return entryrows.load_entries(t, self._refs_txn(t, session, start, limit, reverse))

        return self._read(load)

    def entry_refs(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[EntryRef]:
        """Return entries without their bodies (cheap: no block is read)."""
        return self._read(lambda t: self._refs_txn(t, session, start, limit, reverse))

    def entry(self, session: str, seq: int) -> Entry:
        """Return one entry by its place in the session."""
        return self._read(lambda t: entryrows.load_entry(t, session, seq))

    def _refs_txn(
        self, t: Tables, session: str, start: int, limit: int | None, reverse: bool
    ) -> list[EntryRef]:
        check_session(session)
        return entryrows.entry_refs(t, session, start, limit, reverse)

    def memberships(self, block_id: str) -> list[tuple[str, int]]:
        bid = self.resolve(block_id)
        return self._read(lambda t: entryrows.memberships(t, bid))

    def edges_from(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        return self._edges(block_id, kind, outgoing=True)

    def edges_to(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        return self._edges(block_id, kind, outgoing=False)

    def _edges(self, block_id: str, kind: EdgeKind | str | None, *, outgoing: bool) -> list[Edge]:
        bid = check_block_id(block_id)
        if len(bid) != 64:
            bid = self.resolve(bid)
        if kind is not None:
            kind = EdgeKind.parse(kind)
        return self._read(lambda t: list_edges(t, bid, kind, outgoing=outgoing))

    def token_counts(self, block_ids: Sequence[str], tokenizer: str) -> list[int]:
        keys = [token_key(tokenizer, bid) for bid in block_ids]
        cached = self._read(lambda t: t.get_many(TOKENS, keys))
        missing = [i for i, raw in enumerate(cached) if raw is None]
        counts = [0 if raw is None else int.from_bytes(raw, "big") for raw in cached]
        if missing:
            self._fill_counts(block_ids, tokenizer, missing, counts)
        return counts

    def _fill_counts(
        self, block_ids: Sequence[str], tokenizer: str, missing: list[int], counts: list[int]
    ) -> None:
        blocks = self.get_many([block_ids[i] for i in missing])
        values = _block_counts(tokenizer, [b.id for b in blocks], [b.body for b in blocks])
        for i, value in zip(missing, values, strict=True):
            counts[i] = value
        if not self.kv.readonly:
            items = [
                (token_key(tokenizer, b.id), v.to_bytes(4, "big"))
                for b, v in zip(blocks, values, strict=True)
            ]
            self.kv.write(lambda t: t.put_many(TOKENS, items))

    # -- integrity ----------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        from runtime.storage.check import check_store

        return self._read(check_store)

    def repair(self) -> RepairReport:
        from runtime.storage.check import check_store, repair_problems

        return self.kv.write(lambda t: repair_problems(t, check_store(t)))

    def close(self) -> None:
        self.kv.close()


def _block_counts(tokenizer: str, ids: Sequence[str], bodies: Sequence[str]) -> list[int]:
    """Count blocks' tokens, each distinct block once per process (the id names the body)."""
    from runtime.tokenizers import counts_by_key  # tiktoken loads only when a count is needed

    return counts_by_key(tokenizer, ids, bodies)


def _checked_edges(edges: Iterable[Edge]) -> list[Edge]:
    return [
        Edge(check_block_id(e.src), EdgeKind.parse(e.kind), check_block_id(e.dst)) for e in edges
    ]
