"""The store's layout version and the named migrations that bring an older store up to date.

The version lives in the meta table under b"schema" (b"1": the layout of every store written
before migrations existed). Each migration takes the store from the version before it to its
own, on the engine-neutral tables, so every backend migrates the same way.

Invariants:
- Migrations are ordered by version, one after another, and each runs in its own write
  transaction together with the version bump: a crash leaves the store at the version of the
  last migration that committed, never half-way. The version is read again inside that
  transaction, so two processes migrating at once apply each migration once.
- Running ``migrate`` again is a no-op; each migration also gives the same result if run twice
  (it recomputes what it writes from the records, never adds to it).
- A store newer than this code is refused (upgrade llm386), never migrated down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from runtime.errors import StoreError, StoreOutdated
from runtime.storage.kv import Engine, Tables

META = "meta"
SCHEMA_KEY = b"schema"
FIRST_VERSION = 1  # stores made before migrations existed (meta b"schema" = b"1", or none)


@dataclass(frozen=True)
class Migration:
    """One step of the layout: what it is called and how it rewrites the tables."""

    version: int  # the version the store has after it
    name: str
    apply: Callable[[Tables], None]


def _session_aggregates(t: Tables) -> None:
    from runtime.storage.tracecheck import rebuild_aggregates

    rebuild_aggregates(t)


def _ann_keys_by_session(t: Tables) -> None:
    # The ANN graphs are now keyed by the session's digest first, so a removal can delete them;
    # graphs under the old keys cannot be told apart by session. They are derived: dropped here,
    # each is rebuilt from the block vectors on the first page that needs it.
    if "ix_ann" in t.table_names():
        t.clear("ix_ann")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "session-aggregates", _session_aggregates),
    Migration(3, "ann-keys-by-session", _ann_keys_by_session),
)
CURRENT_VERSION = MIGRATIONS[-1].version


def version_of(t: Tables) -> int:
    """Return the layout version recorded in the meta table."""
    raw = t.get(META, SCHEMA_KEY)
    if raw is None:
        return FIRST_VERSION
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StoreError(
            f"the store's layout version {raw!r} is not a number; run `llm386 verify`"
        ) from None


def current_version(engine: Engine) -> int:
    """Return the layout version of the store behind ``engine``."""
    version = engine.read(version_of)
    if version > CURRENT_VERSION:
        raise StoreError(
            f"the store at {engine.location} has layout version {version}; this llm386 knows "
            f"versions up to {CURRENT_VERSION}: upgrade llm386"
        )
    return version


def pending(engine: Engine, registry: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Return the migrations the store has not had yet, in order."""
    version = current_version(engine)
    return [m for m in registry if m.version > version]


def migrate(
    engine: Engine,
    progress: Callable[[Migration], None] | None = None,
    *,
    registry: Sequence[Migration] = MIGRATIONS,
) -> list[str]:
    """Apply every pending migration, each in its own write; return the names applied."""
    todo = pending(engine, registry)
    if todo and engine.readonly:
        raise StoreOutdated(
            f"the store at {engine.location} has layout version {todo[0].version - 1} and "
            f"needs {', '.join(m.name for m in todo)}; run `llm386 migrate` with write access"
        )
    applied: list[str] = []
    for migration in todo:
        if engine.write(partial(_apply, migration=migration)):
            applied.append(migration.name)
            if progress is not None:
                progress(migration)
    return applied


def _apply(t: Tables, migration: Migration) -> bool:
    if version_of(t) >= migration.version:
        return False  # another process applied it since we looked
    migration.apply(t)
    t.put(META, SCHEMA_KEY, str(migration.version).encode())
    return True
