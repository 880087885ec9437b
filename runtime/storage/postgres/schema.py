"""The PostgreSQL store's schema: versioned steps, applied once, in order, under the writer lock.

One table holds every table of the seam: ``llm386_kv(t, k, v)`` with primary key ``(t, k)``, so a
scan of one table is a range of that index. ``bytea`` compares bytewise (memcmp, a shorter key
first), which is exactly the seam's key order, and ``t`` is compared in the "C" collation.
``llm386_schema`` records the version reached.

Invariants:
- A step runs in the same transaction as the version it records, under the writers' advisory
  lock: two processes opening a new database at once apply each step exactly once, and a step
  that fails leaves the database at the previous version.
- Migrating twice is a no-op; a database of a newer version than this code knows is refused.
- The names are prefixed ``llm386_`` so the store can share a database (or a schema chosen
  with ``?options=-csearch_path%3D...`` in the URL) with other applications.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import StoreError, StoreNotAStore

KV_TABLE = "llm386_kv"
VERSION_TABLE = "llm386_schema"
COMPONENT = "kv"

#: Each version's statements; version N is reached by running steps 1..N in order.
STEPS: dict[int, tuple[str, ...]] = {
    1: (
        f'CREATE TABLE {KV_TABLE} (t text COLLATE "C" NOT NULL, k bytea NOT NULL, '
        "v bytea NOT NULL, PRIMARY KEY (t, k))",
        # Values are mostly JSON and text: lz4 compresses them several times faster than pglz.
        f"ALTER TABLE {KV_TABLE} ALTER COLUMN v SET COMPRESSION lz4",
    ),
}
SCHEMA_VERSION = max(STEPS)

_CREATE_VERSIONS = (
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
    '(component text COLLATE "C" PRIMARY KEY, version integer NOT NULL)'
)


def current_version(conn: Any) -> int | None:
    """Return the schema version of the connected database (None: no llm386 store there)."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [VERSION_TABLE]).fetchone()
    if not found[0]:
        return None
    row = conn.execute(
        f"SELECT version FROM {VERSION_TABLE} WHERE component = %s", [COMPONENT]
    ).fetchone()
    return None if row is None else int(row[0])


def check_version(version: int | None, where: str, *, writable: bool) -> None:
    """Refuse a database this code cannot use as it is; say what to do."""
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {where} has schema version {version}, newer than this llm386 knows "
            f"({SCHEMA_VERSION}): upgrade llm386 on this machine"
        )
    if writable:
        return
    if version is None:
        raise StoreNotAStore(
            f"{where} holds no llm386 store yet: open it writable once (`llm386 migrate`, or any "
            "llm386 write command) to create it"
        )
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"the store at {where} has schema version {version} and this llm386 needs "
            f"{SCHEMA_VERSION}: run `llm386 migrate` with write access to upgrade it"
        )


def migrate(conn: Any, lock_sql: str) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the caller's transaction; return it.

    ``lock_sql`` takes the writers' advisory lock first, so concurrent openers queue here.
    """
    conn.execute(lock_sql)
    conn.execute(_CREATE_VERSIONS)
    version = current_version(conn) or 0
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in STEPS[step]:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} (component, version) VALUES (%s, %s) "
            "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
            [COMPONENT, SCHEMA_VERSION],
        )
    return max(version, SCHEMA_VERSION)
