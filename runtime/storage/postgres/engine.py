"""The PostgreSQL engine: the key-value seam over one database that many processes and machines share.

Owns: the connections (a small psycopg pool), transactions and their nesting, retries, and
turning the driver's errors into ``StoreError`` subclasses that say what to do and never hold
the password. The SQL of one transaction is in ``tables``, the schema in ``schema``.

Invariants (those of ``runtime.storage.kv``, and how they are kept here):
- A read is one ``REPEATABLE READ READ ONLY`` transaction: one snapshot, taken at its first
  statement, for the whole read; readers never block the writer.
- A write is one ``READ COMMITTED`` transaction that first takes ``pg_advisory_xact_lock`` on
  :data:`WRITER_LOCK`: one writer at a time in every process on every machine using the database.
  The lock is released only once the commit is visible, and each statement of a READ COMMITTED
  transaction sees every commit before it, so a read-modify-write cannot lose another's update.
  Serialization failures and deadlocks (SQLSTATE 40001, 40P01) roll back and run the function
  again, at most :data:`MAX_ATTEMPTS` times, with a growing randomised pause.
- Nesting is per thread: a read or write inside this thread's write joins it (and sees its
  writes); a read inside a read (or a ``batch_reads``) shares its snapshot; a write inside a
  read runs its own transaction on another connection, as on LMDB.
- A connection lost before COMMIT rolls the write back on the server: nothing of it is visible,
  and the error says so; lost during COMMIT, the error says it may have landed.
- The password is handed to libpq apart from the URL (``urls.split``): ``location``, reprs and
  every message raised here are free of it.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from runtime.errors import (
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
    StoreWriteFailed,
)
from runtime.storage.kv import Engine, Tables
from runtime.storage.postgres import schema, urls
from runtime.storage.postgres.tables import PgTables

T = TypeVar("T")

#: The advisory lock every writer of a database takes: SHA-256 of "llm386 kv", first 8 bytes, signed.
WRITER_LOCK = 6997276490437350366
MAX_ATTEMPTS = 10
_RETRY = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_LOCK = f"SELECT pg_advisory_xact_lock({WRITER_LOCK})"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"


class _Retry(Exception):
    """This attempt failed in a way that running the function again may fix."""


class PostgresEngine(Engine):
    """The seam's tables in one PostgreSQL database, reached through a small connection pool."""

    scheme = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        create: bool = True,
        pool_size: int = 4,
        statement_timeout: float | None = 60.0,
        connect_timeout: float = 10.0,
        pool_timeout: float = 10.0,
    ) -> None:
        if not urls.is_postgres_url(url):
            raise StoreError("a PostgreSQL store is named by a postgresql://user@host/db URL")
        self.location = urls.location(url)
        self.readonly = readonly
        self._password = urls.password_of(url)
        self._conninfo = urls.without_password(url)
        self._connect_args: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        if self._password is not None:
            self._connect_args["password"] = self._password
        if "application_name" not in psycopg.conninfo.conninfo_to_dict(self._conninfo):
            self._connect_args["application_name"] = "llm386"  # how the server lists us
        self._statement_timeout = statement_timeout
        self._pool_timeout = pool_timeout
        self._pool_size = max(2, pool_size)  # a write nested in a read needs a second connection
        self._local = threading.local()
        self._open_schema(create=create)
        self._pool = psycopg_pool.ConnectionPool(
            self._conninfo,
            kwargs=self._connect_args,
            min_size=1,
            max_size=self._pool_size,
            timeout=pool_timeout,
            configure=self._configure,
            name="llm386",
            open=True,
        )

    def __repr__(self) -> str:
        return f"PostgresEngine({self.location!r}, readonly={self.readonly})"

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, **self._connect_args)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to the PostgreSQL store at {self.location}: {self._reason(exc)}; "
                "check that the server runs and accepts connections there (pg_isready -h HOST "
                "-p PORT) and the user, password and database of the URL (a password can also "
                "come from ~/.pgpass or PGPASSWORD)"
            ) from None
        self._configure(conn)
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        if self._statement_timeout is not None:
            ms = f"{max(1, round(self._statement_timeout * 1000))}ms"
            conn.execute("SELECT set_config('statement_timeout', %s, false)", [ms])

    def _open_schema(self, *, create: bool) -> None:
        """Check the database's schema version; migrate it when writable and allowed to create."""
        conn = self._connect()
        try:
            with conn.transaction():
                version = schema.current_version(conn)
                if self.readonly or (version is None and not create):
                    schema.check_version(version, self.location, writable=False)
                elif version != schema.SCHEMA_VERSION:
                    schema.check_version(version, self.location, writable=True)
                    schema.migrate(conn, _LOCK)
        except psycopg.Error as exc:
            raise self._translate(exc, write=True) from None
        finally:
            conn.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = self._pool.getconn()
        except psycopg_pool.PoolTimeout:
            raise self._unreachable() from None
        except psycopg_pool.PoolClosed:
            raise StoreError(f"the store at {self.location} was closed; open it again") from None
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    def _unreachable(self) -> StoreError:
        """Say why the pool gave no connection in time: the server is gone, or every one is busy."""
        self._connect().close()  # raises StoreUnavailable with libpq's reason if unreachable
        return StoreUnavailable(
            f"all {self._pool_size} connections to the PostgreSQL store at {self.location} "
            f"stayed busy for {self._pool_timeout:g} s; retry, or open the store with a larger "
            "pool_size"
        )

    # -- transactions --------------------------------------------------------------------------

    def read(self, fn: Callable[[Tables], T]) -> T:
        ambient = getattr(self._local, "write", None) or getattr(self._local, "read", None)
        if ambient is not None and ambient.failure is None:
            return fn(ambient)
        return self._transact(fn, write=False)

    @contextmanager
    def batch_reads(self) -> Iterator[None]:
        """Run this thread's reads in one REPEATABLE READ transaction until the block ends.

        A write inside runs its own transaction (as a write inside a read does). A batch whose
        transaction cannot begin, or whose statement failed, leaves each read to its own."""
        if getattr(self._local, "write", None) or getattr(self._local, "read", None):
            yield
            return
        with self._connection() as conn:
            try:
                conn.execute(_BEGIN_READ, prepare=False)
            except psycopg.Error:
                yield  # a stale pooled connection: each read retries on a fresh one
                return
            tables = PgTables(
                conn, readonly=True, translate=lambda exc: self._translate(exc, write=False)
            )
            self._local.read = tables
            try:
                yield
            finally:
                self._local.read = None
                self._end(conn, tables)  # read only: nothing to commit

    def writing(self) -> bool:
        return getattr(self._local, "write", None) is not None

    def write(self, fn: Callable[[Tables], T]) -> T:
        if self.readonly:
            raise StoreReadOnly(
                f"the store at {self.location} was opened read-only; this command changes it: "
                "open it writable (with a role allowed to write)"
            )
        ambient = getattr(self._local, "write", None)
        if ambient is not None:
            return fn(ambient)
        return self._transact(fn, write=True)

    def _transact(self, fn: Callable[[Tables], T], *, write: bool) -> T:
        stale_retried = False
        for attempt in itertools.count(1):
            try:
                return self._attempt(fn, write=write)
            except _Retry as retry:
                cause = retry.args[0]
                if isinstance(cause, StoreUnavailable):
                    # A pooled connection died while idle (a server restart): drop every dead
                    # one and try once more on a fresh connection.
                    if stale_retried:
                        raise cause from None
                    stale_retried = True
                    self._pool.check()
                    continue
                if attempt >= MAX_ATTEMPTS:
                    raise StoreWriteFailed(
                        f"a write to {self.location} conflicted with other transactions "
                        f"{attempt} times in a row ({cause}); nothing of it was stored: retry"
                    ) from None
                time.sleep(min(0.5, 0.005 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _attempt(self, fn: Callable[[Tables], T], *, write: bool) -> T:
        slot = "write" if write else "read"
        with self._connection() as conn:
            try:
                conn.execute(f"{_BEGIN_WRITE}; {_LOCK}" if write else _BEGIN_READ, prepare=False)
            except psycopg.Error as exc:
                failed = self._translate(exc, write=write)
                if isinstance(failed, StoreUnavailable):
                    raise _Retry(failed) from None
                raise failed from None
            tables = PgTables(
                conn,
                readonly=not write,
                translate=lambda exc: self._translate(exc, write=write),
            )
            setattr(self._local, slot, tables)
            try:
                result = fn(tables)
            except BaseException:
                self._end(conn, tables)
                if _retryable(tables.failure):
                    raise _Retry(tables.failure) from None
                raise
            finally:
                setattr(self._local, slot, None)
            if tables.failure is None and write:
                with contextlib.suppress(StoreError):  # kept in tables.failure: handled below
                    tables.flush()
            if tables.failure is not None:  # a statement failed and the caller went on
                self._end(conn, tables)
                if _retryable(tables.failure):
                    raise _Retry(tables.failure)
                raise self._translate(tables.failure, write=write)
            tables.open = False
            try:
                conn.execute("COMMIT", prepare=False)
            except psycopg.Error as exc:
                if _retryable(exc):
                    raise _Retry(exc) from None
                raise self._translate(exc, write=write, committing=True) from None
            return result

    @staticmethod
    def _end(conn: psycopg.Connection[Any], tables: PgTables) -> None:
        """Roll back after a failure; a connection that cannot is discarded by the pool."""
        tables.open = False
        if conn.broken or conn.closed:
            return
        try:
            conn.execute("ROLLBACK", prepare=False)
        except psycopg.Error:
            # The connection died as we rolled back: the server rolls back on its own, the pool
            # discards the connection, and the caller gets the error that brought us here.
            return

    # -- errors --------------------------------------------------------------------------------

    def _reason(self, exc: BaseException) -> str:
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return urls.redact(text or type(exc).__name__, self._password)

    def _translate(
        self, exc: psycopg.Error, *, write: bool, committing: bool = False
    ) -> StoreError:
        """Turn a driver error into the StoreError that says what happened and what to do."""
        state = exc.sqlstate or ""
        reason = self._reason(exc)
        kind = "write" if write else "read"
        if state in _RETRY:
            return StoreWriteFailed(f"a {kind} on {self.location} conflicted ({reason}); retry")
        if state == "57014":
            waited = (
                " (or waited that long for the write lock another writer held)" if write else ""
            )
            return StoreError(
                f"a {kind} on {self.location} ran past the statement timeout of "
                f"{self._statement_timeout} s{waited} and was rolled back ({reason}); retry, or "
                "raise statement_timeout if the store is this slow"
            )
        if _connection_lost(exc):
            if not write:
                outcome = "nothing was changed"
            elif committing:
                outcome = "the write may or may not have been committed: check, then retry"
            else:
                outcome = "the write was rolled back: nothing of it was stored"
            return StoreUnavailable(
                f"lost the connection to the PostgreSQL store at {self.location} ({reason}); "
                f"{outcome}; check that the server is up (pg_isready) and retry"
            )
        if state == "53100":
            return StoreFull(
                f"the database server of {self.location} is out of disk ({reason}); nothing of "
                "this write was stored: free space and retry"
            )
        if state == "25006":
            return StoreReadOnly(
                f"the server of {self.location} accepts no writes ({reason}): a standby, or "
                "default_transaction_read_only; point the store at the primary"
            )
        if state == "42501":
            return StoreError(
                f"the role of {self.location} lacks a privilege ({reason}): grant it the use of "
                "the llm386_kv and llm386_schema tables (see docs/storage-postgresql.md)"
            )
        if write:
            return StoreWriteFailed(
                f"PostgreSQL refused a write to {self.location} ({state} {reason}); nothing of "
                "it was stored"
            )
        return StoreError(f"PostgreSQL refused a read of {self.location} ({state} {reason})")

    def close(self) -> None:
        self._pool.close()


def _connection_lost(exc: psycopg.Error) -> bool:
    """Tell a lost or refused connection (the client's own error, class 08, a shutdown) apart."""
    state = exc.sqlstate or ""
    if not state:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state.startswith("08") or state in {"57P01", "57P02", "57P03"}


def _retryable(exc: BaseException | None) -> bool:
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "") in _RETRY
