"""The storage interface every backend implements (LMDB now, PostgreSQL next), and its reports.

Invariants a backend must keep:
- Blocks are content-addressed (``Block.id`` = ``content_hash(kind, body)``), stored once.
- A session is an ordered list of entries numbered 0, 1, 2 ... in put order; an entry carries
  the per-session priority, time and provenance of that put.
- Every ``put``/``put_many`` is one atomic write: all of it lands or none of it does.
  ``atomic(fn)`` makes every store call inside ``fn`` (and every call of a trace store sharing
  the backend) one atomic write, serialised against every other writer, so a read-modify-write
  inside it cannot lose another writer's update.
- Edges are a set: re-adding one is a no-op. Deleting a block removes every edge, entry and
  index row that touches it. Purging a session keeps blocks other sessions still hold.
- Listing order is total and deterministic (sessions by id, entries by seq, edges by
  (src, kind, dst)), so nothing downstream depends on insertion races or hash seeds.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from runtime.blocks import Block, Edge, EdgeKind, Entry, EntryRef, NewBlock, SessionInfo
from runtime.storage.feed import ChangeFeed
from runtime.storage.kv import Engine

DEFAULT_MAX_BLOCK_BYTES = 16 * 1024 * 1024
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class PurgeReport:
    session: str
    entries_removed: int
    blocks_deleted: int
    blocks_kept: int


@dataclass(frozen=True)
class Problem:
    """One thing verify found wrong, and whether repair can fix it."""

    code: str  # hash-mismatch, dangling-edge, dangling-entry, orphan-index, count-mismatch ...
    detail: str
    repairable: bool = True


@dataclass(frozen=True)
class VerifyReport:
    blocks: int
    entries: int
    edges: int
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self), "problems": [asdict(p) for p in self.problems]}


@dataclass(frozen=True)
class RepairReport:
    fixed: tuple[Problem, ...] = ()
    unfixable: tuple[Problem, ...] = field(default_factory=tuple)


class BlockStore(abc.ABC):
    """A durable, content-addressed block store with ordered sessions and a typed-edge graph."""

    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    #: The engine whose tables hold this store (and its trace store and derived indexes).
    kv: Engine

    # -- change feed --------------------------------------------------------------------
    @abc.abstractmethod
    def subscribe(self, feed: ChangeFeed) -> None:
        """Tell ``feed`` of every put, removal and new edge from now on, inside each write."""

    def add_hook(self, hook: ChangeFeed) -> None:
        """Former name of :meth:`subscribe`."""
        self.subscribe(hook)

    # -- writes -------------------------------------------------------------------------
    @abc.abstractmethod
    def atomic(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` as one write: its store and trace calls all land or none do.

        ``fn`` may be run again (after the backend grows its storage), so it must have no
        effect outside the store.
        """

    @abc.abstractmethod
    def put(self, session: str, block: NewBlock) -> Entry:
        """Store ``block`` (once per content) and append it to ``session``."""

    @abc.abstractmethod
    def put_many(
        self, session: str, blocks: Sequence[NewBlock], edges: Iterable[Edge] = ()
    ) -> list[Entry]:
        """Store ``blocks`` and ``edges`` in one atomic write; edges may name blocks of the batch."""

    @abc.abstractmethod
    def add_edge(self, src: str, kind: EdgeKind | str, dst: str) -> bool:
        """Add an edge between two stored blocks; return False when it already existed."""

    @abc.abstractmethod
    def delete_block(self, block_id: str) -> None:
        """Delete a block with every entry, edge and cached count that touches it."""

    @abc.abstractmethod
    def purge_session(self, session: str) -> PurgeReport:
        """Remove a session; delete its blocks unless another session still holds them."""

    @abc.abstractmethod
    def set_session_meta(self, session: str, **meta: Any) -> SessionInfo:
        """Merge JSON-able ``meta`` into the session's metadata (model, reward, labels ...)."""

    # -- reads --------------------------------------------------------------------------
    @abc.abstractmethod
    def get(self, block_id: str) -> Block:
        """Return the block with this id or unique id prefix; raise BlockNotFound otherwise."""

    @abc.abstractmethod
    def get_many(self, block_ids: Sequence[str]) -> list[Block]:
        """Return the blocks with these full ids, in the order given."""

    @abc.abstractmethod
    def resolve(self, block_id: str) -> str:
        """Return the full id of ``block_id`` (a full id, or a unique prefix of 4+ hex digits)."""

    @abc.abstractmethod
    def has(self, block_id: str) -> bool:
        """Return whether a block with this full id is stored."""

    @abc.abstractmethod
    def sessions(self, offset: int = 0, limit: int | None = None) -> list[SessionInfo]:
        """Return sessions ordered by id."""

    @abc.abstractmethod
    def session_count(self) -> int:
        """Return how many sessions exist."""

    @abc.abstractmethod
    def session_info(self, session: str) -> SessionInfo:
        """Return one session's summary; raise SessionNotFound if it has none."""

    @abc.abstractmethod
    def entries(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[Entry]:
        """Return a session's entries from seq ``start`` in seq order (newest first if reverse)."""

    @abc.abstractmethod
    def entry_refs(
        self, session: str, start: int = 0, limit: int | None = None, *, reverse: bool = False
    ) -> list[EntryRef]:
        """Return entries as :meth:`entries` does, without their bodies (no block is read)."""

    @abc.abstractmethod
    def memberships(self, block_id: str) -> list[tuple[str, int]]:
        """Return every (session, seq) that holds this block, sorted."""

    @abc.abstractmethod
    def edges_from(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        """Return edges whose source is ``block_id``, sorted."""

    @abc.abstractmethod
    def edges_to(self, block_id: str, kind: EdgeKind | str | None = None) -> list[Edge]:
        """Return edges whose destination is ``block_id``, sorted."""

    @abc.abstractmethod
    def token_counts(self, block_ids: Sequence[str], tokenizer: str) -> list[int]:
        """Return token counts of these blocks' bodies under ``tokenizer``, cached per hash."""

    # -- integrity ----------------------------------------------------------------------
    @abc.abstractmethod
    def verify(self) -> VerifyReport:
        """Re-derive every hash and check every index and edge; change nothing."""

    @abc.abstractmethod
    def repair(self) -> RepairReport:
        """Fix what verify reports as repairable (drop dangling rows, rebuild counts)."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release resources held by this handle."""


def one_snapshot(
    fn: Callable[Concatenate[BlockStore, P], T],
) -> Callable[Concatenate[BlockStore, P], T]:
    """Run ``fn(store, ...)`` with all its reads of ``store`` in one snapshot (``batch_reads``)."""

    @functools.wraps(fn)
    def in_one_snapshot(store: BlockStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with store.kv.batch_reads():
            return fn(store, *args, **kwargs)

    return in_one_snapshot
