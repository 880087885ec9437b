"""The seam under every store: named, ordered tables of bytes, read and written in transactions.

Every backend (LMDB embedded, PostgreSQL for teams) implements only this small interface; the
block store, the trace store, the derived indexes and the page models are written once on top
of it, so they behave, and hash, the same on every backend.

Invariants every engine keeps (the contract tests in tests/runtime/storage_contract.py check
them on each backend):
- A table is a map from ``bytes`` keys to ``bytes`` values, ordered by unsigned byte
  comparison of keys (memcmp order; a shorter key sorts before its extensions).
- Keys are 1 to :data:`MAX_KEY_BYTES` bytes (LMDB's limit, kept on every engine so any store
  can be copied to any other); a put of another key raises an ``Llm386Error`` and its write
  stores nothing.
- :meth:`Engine.write` runs its function in one transaction: every change lands or none does.
  Writers are serialised against each other, in every process, so a read-modify-write inside
  one write cannot lose another writer's update. The function may be run again (after the
  engine grows its storage or retries a conflict), so it must have no effect outside the store.
- A write or read called while this thread already runs a write of the same engine joins it
  (and sees its writes); a read inside a read shares its snapshot.
- :meth:`Engine.read` sees one consistent snapshot; readers never block the writer.
- Inside :meth:`Engine.batch_reads` this thread's reads share one snapshot (an engine whose
  transactions cost a round trip, PostgreSQL, opens one transaction for them all; LMDB's reads
  are free and it does nothing).
- Scans are in key order (descending with ``reverse``) and see the transaction's own writes.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypedDict, TypeVar, Unpack

from runtime.errors import StoreError

T = TypeVar("T")
C = TypeVar("C")

#: The longest key every engine takes (LMDB's default maximum key size).
MAX_KEY_BYTES = 511

#: A scan as an engine walks it: keys in [low, high) (high None: no end), descending if
#: ``reverse``, at most ``limit`` rows (None: all; never 0 or less).
Span = tuple[bytes, bytes | None, bool, int | None]


class ScanBounds(TypedDict, total=False):
    """The keyword arguments of :meth:`Tables.scan` and :meth:`Tables.keys`."""

    lo: bytes | None  # the first key the scan may yield
    hi: bytes | None  # the first key past the scan's end
    reverse: bool  # descending key order
    limit: int | None  # how many rows at most


class Tables(abc.ABC):
    """One transaction's view of the engine's tables."""

    readonly: bool = False

    @abc.abstractmethod
    def get(self, table: str, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or None."""

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """Return the values of ``keys`` in the order given (None where absent)."""
        return [self.get(table, key) for key in keys]

    def prefetch(self, table: str, keys: Sequence[bytes]) -> None:  # noqa: B027 - optional
        """Say that ``keys`` will be read soon: an engine whose reads cost a round trip fetches
        them now, in one (PostgreSQL, inside a write); others do nothing."""

    def send_pending(self) -> None:  # noqa: B027 - optional
        """Say that the caller is about to wait on other work: an engine that holds writes
        back to send many at once sends them now, so its server works meanwhile
        (PostgreSQL); others do nothing. What the transaction reads and commits is the same."""

    @abc.abstractmethod
    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing what was there."""

    def put_many(self, table: str, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Store every (key, value) pair, in order."""
        for key, value in items:
            self.put(table, key, value)

    @abc.abstractmethod
    def delete(self, table: str, key: bytes) -> bool:
        """Remove ``key``; return whether it was there."""

    def scan(
        self, table: str, prefix: bytes = b"", **bounds: Unpack[ScanBounds]
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for keys starting with ``prefix`` and ``lo <= key < hi``, in order.

        The caller may write to ``table`` between rows: the scan goes on from the last key it
        yielded (never the same key twice, never backwards); rows written ahead of it may or
        may not be seen."""
        span = scan_span(prefix, bounds)
        return iter(()) if span is None else self._scan(table, span)

    def keys(
        self, table: str, prefix: bytes = b"", **bounds: Unpack[ScanBounds]
    ) -> Iterator[bytes]:
        """Yield the keys :meth:`scan` would, without their values where the engine can."""
        span = scan_span(prefix, bounds)
        return iter(()) if span is None else self._keys(table, span)

    @abc.abstractmethod
    def _scan(self, table: str, span: Span) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for the keys of ``span`` (see :func:`scan_span`), in its order."""

    def _keys(self, table: str, span: Span) -> Iterator[bytes]:
        """Yield the keys :meth:`_scan` would; an engine that can skip the values overrides it."""
        for key, _ in self._scan(table, span):
            yield key

    def first(self, table: str, prefix: bytes = b"", *, reverse: bool = False) -> bytes | None:
        """Return the first key with ``prefix`` (the last with ``reverse``), or None."""
        return next(self.keys(table, prefix, reverse=reverse, limit=1), None)

    def first_many(self, table: str, prefixes: Sequence[bytes]) -> list[bytes | None]:
        """Return :meth:`first` of each of ``prefixes``, in order (one round trip where it costs)."""
        return [self.first(table, prefix) for prefix in prefixes]

    @abc.abstractmethod
    def count(self, table: str) -> int:
        """Return how many keys the table holds."""

    @abc.abstractmethod
    def clear(self, table: str) -> None:
        """Remove every key of the table."""

    def table_names(self) -> list[str]:
        """Return the names of the tables that hold (or have held) keys, sorted."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its tables")


class Engine(abc.ABC):
    """A storage engine: where the tables live, and how transactions run over them."""

    #: Where the data lives, safe to show (a path, or a URL without its password).
    location: str
    readonly: bool = False
    #: The URL scheme that selects this engine ("lmdb", "postgresql").
    scheme: str

    @abc.abstractmethod
    def read(self, fn: Callable[[Tables], T]) -> T:
        """Run ``fn`` in a read transaction and return its result."""

    @abc.abstractmethod
    def write(self, fn: Callable[[Tables], T]) -> T:
        """Run ``fn`` in one write transaction (all or nothing) and return its result."""

    def batch_reads(self) -> contextlib.AbstractContextManager[None]:
        """Return a context in which this thread's reads share one read transaction.

        For work that reads many times and never needs its own writes read back (a page, a
        pack, a web page): one snapshot, and one transaction where each costs a round trip."""
        return contextlib.nullcontext()

    def close(self) -> None:  # noqa: B027 - engines without resources need no close
        """Release connections or handles held by this engine."""

    def shares_writes_with(self, other: object) -> bool:
        """Whether ``other``'s writes run inside this engine's ongoing write (one transaction)."""
        return other is self

    @abc.abstractmethod
    def writing(self) -> bool:
        """Whether this thread is inside one of this engine's writes (a write it starts now
        would run in that one, committed or rolled back with it)."""


def prefix_end(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def scan_span(prefix: bytes, bounds: ScanBounds) -> Span | None:
    """Fold ``prefix`` and ``bounds`` into the span an engine walks; None when it holds no key."""
    low, high = scan_bounds(prefix, bounds.get("lo"), bounds.get("hi"))
    limit = bounds.get("limit")
    if (limit is not None and limit <= 0) or (high is not None and low >= high):
        return None
    return low, high, bounds.get("reverse", False), limit


def scan_bounds(prefix: bytes, lo: bytes | None, hi: bytes | None) -> tuple[bytes, bytes | None]:
    """Fold ``prefix`` into the half-open key range [low, high) a scan covers."""
    low = max(prefix, lo) if lo is not None else prefix
    end = prefix_end(prefix) if prefix else None
    if hi is not None:
        end = hi if end is None else min(end, hi)
    return low, end


class EngineCache(Generic[C]):
    """One value per engine, made on first use, thread-safe. Keyed weakly: a store closed and
    opened again (a new engine) starts fresh, and a dropped engine's value goes with it."""

    def __init__(self, make: Callable[[Engine], C]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._values: weakref.WeakKeyDictionary[Engine, C] = weakref.WeakKeyDictionary()

    def get(self, kv: Engine) -> C:
        """Return the value of ``kv``, making it on the first call."""
        with self._lock:
            value = self._values.get(kv)
            if value is None:
                value = self._values[kv] = self._make(kv)
            return value


class EngineRef:
    """A weak reference to an engine, for a cache kept per engine (it must not keep its engine
    alive); calling it returns the engine, or raises StoreError naming ``what`` once it closed."""

    __slots__ = ("_ref", "_what")

    def __init__(self, kv: Engine, what: str) -> None:
        self._ref = weakref.ref(kv)
        self._what = what

    def __call__(self) -> Engine:
        kv = self._ref()
        if kv is None:
            raise StoreError(f"the store of this {self._what} was closed; open it again")
        return kv
