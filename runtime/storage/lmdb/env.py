"""The one place that opens LMDB environments: a per-process cache and safe write transactions.

Invariants:
- One open ``lmdb.Environment`` per real path per process (py-lmdb forbids opening it twice).
- Every write goes through :func:`write`, which retries once per doubling when the map is full
  (growing it up to ``MAX_MAP_SIZE``) and adopts a map grown by another process. A failed write
  leaves nothing behind: LMDB aborts the whole transaction. A commit the disk refuses (full, or
  an I/O error) becomes ``StoreFull`` / ``StoreWriteFailed``, never a raw ``lmdb.Error``.
- Writes nest: a :func:`write` or :func:`read` called while this thread already runs a write
  transaction of the same environment joins it, so several store calls (a whole import, an
  agent turn with its reply and paging state) commit together or not at all. A retry after
  growing the map re-runs the outermost function, so it must not have effects outside the store.
  LMDB serialises writers across processes, so a read-modify-write inside one write
  transaction cannot lose another process's update. Reads nested in a read share its snapshot.
- Resizing the map (``set_mapsize``) invalidates every open transaction of the process, so it
  only happens while no other thread has a transaction open: transactions hold a
  :class:`ResizeLock` shared, resizing holds it exclusively.
- A path that exists but is not an LMDB environment is refused with ``StoreNotAStore`` rather
  than overwritten.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import lmdb

from runtime.errors import StoreError, StoreFull, StoreNotAStore, StoreReadOnly, StoreWriteFailed

T = TypeVar("T")

# py-lmdb's stubs type every read as bytes | memoryview although buffers=False (our only mode)
# always yields bytes; transactions and database handles are typed loosely here instead of
# casting at every read.
Txn: TypeAlias = Any
DbHandle: TypeAlias = Any

INITIAL_MAP_SIZE = 64 * 1024 * 1024
MAX_MAP_SIZE = 1 << 40  # 1 TiB of address space; only what is written takes disk
MAX_DBS = 64
MARKER = "LLM386_STORE"

_lock = threading.RLock()
_envs: dict[str, Env] = {}


class ResizeLock:
    """Many transactions at once, or one map resize with no transaction of another thread open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False
        self._mine = threading.local()

    def _held_here(self) -> int:
        return getattr(self._mine, "count", 0)

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._resizing and not self._held_here():
                self._cond.wait()
            self._active += 1
        self._mine.count = self._held_here() + 1
        try:
            yield
        finally:
            self._mine.count -= 1
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # A thread may resize while it holds a transaction of its own further up its stack
        # (a write nested in a read); only other threads' transactions are waited for.
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active - self._held_here():
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


@dataclass
class _Outcome:
    committed: bool = False
    # A read ended: LMDB drops the handles it opened (py-lmdb ends reads by abort), so they are
    # opened again outside any transaction, where they stay valid for every later one.
    read_ended: bool = False


@dataclass
class Env:
    """An open environment, its named databases, and how it was opened."""

    path: str
    env: lmdb.Environment
    readonly: bool
    dbs: dict[bytes, DbHandle]
    lock: threading.RLock
    resize: ResizeLock = field(default_factory=ResizeLock)
    # Opened read-only because writing was refused (not asked for): writers get it too, and
    # their writes raise StoreReadOnly saying why.
    write_refused: bool = False
    local: threading.local = field(default_factory=threading.local)

    def current_write(self) -> Txn | None:
        """Return this thread's open write transaction of this environment, if any."""
        return getattr(self.local, "txn", None)

    def adopt_map_size(self) -> None:
        """Take up a map size another process has grown the environment to."""
        with self.resize.exclusive():
            self.env.set_mapsize(0)

    def table(self, name: bytes) -> DbHandle | None:
        """Return the named database for this thread's open transaction (None: a read's
        snapshot has no such table).

        Opened inside that transaction when new: a handle LMDB opens in a transaction is valid
        in it (one opened in a transaction begun later is not) and, until it commits, only in
        it; so it is kept for this thread and shared once the transaction commits, and
        forgotten if it aborts.
        """
        handle = self.dbs.get(name)
        if handle is not None:
            return handle
        write_txn = self.current_write()
        txn = write_txn or getattr(self.local, "read_txn", None)
        if txn is None:
            return self.db(name)
        pending = self.local.pending
        if name in pending:
            return pending[name]
        with self.lock:
            try:
                handle = self.env.open_db(name, txn=txn, create=write_txn is not None)
            except lmdb.NotFoundError:
                return None
        pending[name] = handle
        return handle

    @contextmanager
    def opening_tables(self) -> Iterator[_Outcome]:
        """Track the tables a top-level transaction opens: shared once it commits, else dropped."""
        outer = getattr(self.local, "pending", {})
        self.local.pending = {}
        outcome = _Outcome()
        try:
            yield outcome
        finally:
            pending, self.local.pending = self.local.pending, outer
            if outcome.committed:
                with self.lock:
                    for name, handle in pending.items():
                        self.dbs.setdefault(name, handle)
            elif outcome.read_ended:
                for name in pending:
                    with suppress(StoreError, lmdb.Error):  # the next read opens it again
                        self.db(name)

    def db(self, name: bytes, *, dupsort: bool = False) -> DbHandle:
        """Return the named database, creating it (in its own transaction) if writable."""
        with self.lock:
            handle = self.dbs.get(name)
            if handle is None:
                if self.readonly:
                    try:
                        handle = self.env.open_db(name, create=False, dupsort=dupsort)
                    except lmdb.NotFoundError:
                        raise StoreError(
                            f"{self.path} has no {name.decode()} table yet; open it writable "
                            "once (any llm386 write command does) to create it"
                        ) from None
                else:
                    handle = write(
                        self, lambda txn: self.env.open_db(name, txn=txn, dupsort=dupsort)
                    )
                self.dbs[name] = handle
            return handle


def _check_path(path: Path, create: bool) -> None:
    if path.exists() and not path.is_dir():
        raise StoreNotAStore(f"{path} is a file, not a store folder; pass a folder path")
    if path.is_dir():
        names = set(os.listdir(path))
        if names and "data.mdb" not in names:
            raise StoreNotAStore(
                f"{path} is a folder with other files in it but no store; choose an empty or "
                "new folder, or the folder an llm386 store was created in"
            )
        if not names and not create:
            raise StoreNotAStore(f"{path} holds no store; create one with `llm386 init {path}`")
    elif not create:
        raise StoreNotAStore(f"no store at {path}; create one with `llm386 init {path}`")


def _make_store_dir(path: Path) -> None:
    """Create a missing store folder readable by its owner only: traces hold whole prompts.

    An existing folder keeps the permissions its owner gave it.
    """
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return  # another process created it first
    path.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened; be exact


def _lmdb_open(key: str, *, readonly: bool, lock: bool = True) -> lmdb.Environment:
    try:
        return lmdb.open(
            key,
            map_size=INITIAL_MAP_SIZE,
            max_dbs=MAX_DBS,
            readonly=readonly,
            subdir=True,
            create=not readonly,
            lock=lock,
            max_readers=256,
            max_spare_txns=4,
        )
    except lmdb.InvalidError:
        raise StoreNotAStore(f"{key} holds a data.mdb that is not an LMDB store") from None


def _not_writable(exc: lmdb.Error) -> bool:
    """Whether an open failed because the files or their file system refuse writes."""
    # py-lmdb maps EACCES to ReadonlyError and leaves EROFS a plain Error with strerror's text.
    return isinstance(exc, lmdb.ReadonlyError) or str(exc).endswith(
        (os.strerror(errno.EROFS), os.strerror(errno.EACCES))
    )


def _nobody_can_write(p: Path) -> bool:
    """Whether no writer can start in ``p``: the folder is read-only to us and data.mdb has no
    write permission for anyone (its owner included: a data.mdb only we may not write could
    still be written by its owner)."""
    return not os.access(p, os.W_OK) and (p / "data.mdb").stat().st_mode & 0o222 == 0


def _open_readonly_fallback(p: Path, key: str, refused: lmdb.Error) -> lmdb.Environment:
    """Open read-only a store we may not write (``refused`` says why), for read-only commands.

    With the lock file usable, readers register in it as usual and a writer elsewhere stays
    safe. On a read-only file system LMDB itself goes on without the lock file (no one can
    write there). If only the lock file is out of reach (EACCES) we open without locking only
    when no writer can exist: without a reader slot a concurrent writer could reuse the pages
    being read, so otherwise the open is refused with what to do. (A writer that opened the
    store before its permissions were taken away could still be at work; nothing on disk shows
    it, which is why write permission for anyone at all is enough to refuse.)
    """
    if not (p / "data.mdb").is_file():
        raise StoreReadOnly(
            f"cannot create a store at {key}: {refused}; choose a folder you can write to"
        )
    try:
        try:
            return _lmdb_open(key, readonly=True)
        except lmdb.Error as exc:
            if not _not_writable(exc):
                raise
            if not _nobody_can_write(p):
                raise StoreReadOnly(
                    f"cannot open the store at {key} even read-only: its lock file lock.mdb is "
                    "not writable for you and someone else may be writing the store; make "
                    "lock.mdb writable for you, or copy the store folder and read the copy"
                ) from None
            return _lmdb_open(key, readonly=True, lock=False)
    except lmdb.Error as exc:
        raise StoreError(f"cannot open store at {key} read-only: {exc}") from None


def open_env(path: str | os.PathLike[str], *, readonly: bool = False, create: bool = True) -> Env:
    """Return the process-wide environment for ``path``, opening it on first use.

    A store that cannot be opened for writing (read-only files or file system) is opened
    read-only instead when it exists: reads work and every write raises ``StoreReadOnly``.
    """
    p = Path(path).expanduser().resolve()
    key = str(p)
    with _lock:
        cached = _envs.get(key)
        if cached is not None:
            if cached.readonly and not readonly and not cached.write_refused:
                raise StoreReadOnly(f"{key} is already open read-only in this process")
            return cached
        _check_path(p, create and not readonly)
        if not readonly:
            _make_store_dir(p)
        refused = False
        try:
            env = _open(key, readonly)
        except lmdb.Error as exc:
            if readonly or not _not_writable(exc):
                raise StoreError(f"cannot open store at {key}: {exc}") from None
            env, readonly, refused = _open_readonly_fallback(p, key, exc), True, True
        # Another process may have grown the map beyond our initial size: adopt it.
        env.set_mapsize(0)
        opened = Env(key, env, readonly, {}, threading.RLock(), write_refused=refused)
        _envs[key] = opened
        return opened


def _open(key: str, readonly: bool) -> lmdb.Environment:
    """Open the environment; retry while another process grows the map under the opening."""
    for _ in range(7):
        try:
            return _lmdb_open(key, readonly=readonly)
        except lmdb.MapResizedError:
            continue  # opening again adopts the new size
    return _lmdb_open(key, readonly=readonly)


def close_env(path: str | os.PathLike[str]) -> None:
    """Close and forget the cached environment for ``path`` (tests and repair use this)."""
    key = str(Path(path).expanduser().resolve())
    with _lock:
        opened = _envs.pop(key, None)
        if opened is not None:
            opened.env.close()


def _grow(opened: Env) -> None:
    with opened.resize.exclusive():
        current = opened.env.info()["map_size"]
        if current >= MAX_MAP_SIZE:
            raise StoreFull(f"the store at {opened.path} reached its {MAX_MAP_SIZE} byte map limit")
        opened.env.set_mapsize(min(current * 2, MAX_MAP_SIZE))


def write(opened: Env, fn: Callable[[Txn], T]) -> T:
    """Run ``fn`` in one write transaction, growing the map and retrying when it is full.

    Called inside another write of this thread, ``fn`` joins that transaction instead.
    """
    if opened.readonly:
        raise StoreReadOnly(
            f"the store at {opened.path} is read-only (opened read-only, or its files or file "
            "system refuse writes); this command changes it: make the store writable for you, "
            "or run it on a writable copy"
        )
    ambient = opened.current_write()
    if ambient is not None:
        return fn(ambient)
    while True:
        try:
            # Growing happens outside ``opened.lock``: a reader thread that needs the lock (to
            # open a table) must be able to finish, or the resize would wait for it forever.
            with opened.opening_tables() as outcome:
                with opened.lock, opened.resize.shared(), opened.env.begin(write=True) as txn:
                    result = _as_ambient(opened, "txn", txn, fn)
                outcome.committed = True
            return result
        except lmdb.MapFullError:
            _grow(opened)
        except lmdb.MapResizedError:
            opened.adopt_map_size()
        except lmdb.DiskError as exc:
            raise StoreFull(
                f"the disk under {opened.path} is full: {exc}; free space and retry"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFull(
                    f"the disk under {opened.path} is full; free space and retry"
                ) from None
            raise
        except lmdb.Error as exc:
            raise _refused(opened, exc) from None


def _as_ambient(opened: Env, slot: str, txn: Txn, fn: Callable[[Txn], T]) -> T:
    """Run ``fn(txn)`` with ``txn`` as this thread's ambient write (``txn``) or read (``read_txn``)."""
    setattr(opened.local, slot, txn)
    try:
        return fn(txn)
    finally:
        setattr(opened.local, slot, None)


def _refused(opened: Env, exc: lmdb.Error) -> StoreError:
    """Say why LMDB refused a write; LMDB reports a full disk at commit as an I/O error."""
    try:
        stat = os.statvfs(opened.path)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = -1
    if 0 <= free < 1024 * 1024:
        return StoreFull(
            f"the disk under {opened.path} is full ({free} bytes free; LMDB said: {exc}); "
            "nothing of this write was stored: free space and retry"
        )
    return StoreWriteFailed(
        f"writing the store at {opened.path} failed ({exc}); nothing of this write was stored: "
        "check the disk (space, quota, file size limit, health) and retry"
    )


def read(opened: Env, fn: Callable[[Txn], T]) -> T:
    """Run ``fn`` in a read transaction (readers never block the writer).

    Inside a write of this thread, ``fn`` reads that transaction (and sees its writes); inside
    a read, it reads the same snapshot, so checks made of several reads agree with each other.
    """
    ambient = opened.current_write() or getattr(opened.local, "read_txn", None)
    if ambient is not None:
        return fn(ambient)
    while True:
        try:
            with opened.opening_tables() as outcome:
                with opened.resize.shared(), opened.env.begin(write=False, buffers=False) as txn:
                    result = _as_ambient(opened, "read_txn", txn, fn)
                outcome.read_ended = True
            return result
        except lmdb.MapResizedError:
            opened.adopt_map_size()
