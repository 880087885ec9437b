"""Opening a block store by where it lives: the one factory every writer goes through.

A target is a path (``str`` or ``Path``, or an ``lmdb:`` / ``file:`` URL): an LMDB store; or a
``postgresql://`` (``postgres://``) URL: the same store code on the PostgreSQL engine, imported
only when asked for. The factory also attaches the pager's session index to every writable
store, so no writer can leave the index behind.

Invariants: a plain path opens exactly as it always has (a path with a colon in it stays a
path unless it starts with a known scheme); a URL's password never appears in a message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from runtime.errors import StoreError
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.kv import Engine

LMDB_SCHEMES = ("lmdb", "file")
POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

StoreTarget = str | os.PathLike[str]


def open_store(target: StoreTarget, **options: Any) -> KvBlockStore:
    """Open (creating if needed) the block store at ``target``: a path or a store URL.

    ``options`` are those of the store (``max_block_bytes``, ``tokenizers``) and of its engine
    (``readonly``; ``create`` for LMDB).
    """
    store = _open(target, options)
    if not store.readonly:
        # The pager's per-session index (catalog, BM25 postings) is kept in step with every
        # write from the start, so no writer can leave it behind.
        from runtime.indexes.snapshot import index_for

        index_for(store)
    return store


def open_engine(target: StoreTarget, *, readonly: bool = False) -> Engine:
    """Open only the engine at ``target`` (no store stamped on it): what a copy writes into."""
    text = os.fspath(target)
    scheme = text.split(":", 1)[0].lower() if is_store_url(target) else "lmdb"
    if scheme in POSTGRES_SCHEMES:
        engine: Engine = _postgres_engine_class()(text, readonly=readonly)
        return engine
    if scheme not in LMDB_SCHEMES:
        raise StoreError(
            f"cannot open a store at {safe_location(text)}: {scheme}: is not a store scheme; "
            "give a folder path, an lmdb: URL, or a postgresql:// URL"
        )
    from runtime.storage.lmdb.engine import LmdbEngine

    return LmdbEngine(_url_path(text) if is_store_url(target) else text, readonly=readonly)


def is_store_url(target: StoreTarget) -> bool:
    """Whether ``target`` names a store by URL rather than by a plain path."""
    if isinstance(target, os.PathLike):
        return False
    match = _SCHEME.match(target)
    if match is None:
        return False
    return match.group(1).lower() in LMDB_SCHEMES + POSTGRES_SCHEMES or "://" in target


def safe_location(target: StoreTarget) -> str:
    """Return ``target`` as it may be shown: a URL without its password."""
    text = os.fspath(target)
    if not is_store_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _open(target: StoreTarget, options: dict[str, Any]) -> KvBlockStore:
    if not is_store_url(target):
        return _lmdb(os.fspath(target), options)
    text = os.fspath(target)
    scheme = text.split(":", 1)[0].lower()
    if scheme in LMDB_SCHEMES:
        return _lmdb(_url_path(text), options)
    if scheme in POSTGRES_SCHEMES:
        return _postgres(text, options)
    raise StoreError(
        f"cannot open a store at {safe_location(text)}: {scheme}: is not a store scheme; "
        "give a folder path, an lmdb: URL, or a postgresql:// URL"
    )


def _url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise StoreError(
            f"an LMDB store is a local folder, but {url} names the host {parts.netloc!r}; "
            "use lmdb:///absolute/path or a plain path"
        )
    if not parts.path:
        raise StoreError(f"{url} names no folder; use lmdb:///absolute/path or a plain path")
    return unquote(parts.path)


def _lmdb(path: str, options: dict[str, Any]) -> KvBlockStore:
    from runtime.storage.lmdb.store import LmdbStore

    return LmdbStore(Path(path), **options)


def _postgres(url: str, options: dict[str, Any]) -> KvBlockStore:
    engine_class = _postgres_engine_class()
    store_options = {k: options.pop(k) for k in ("max_block_bytes", "tokenizers") if k in options}
    options.pop("create", None)  # the database must exist; its tables are made on first use
    engine_options = {"readonly": True} if options.pop("readonly", False) else {}
    if options:
        raise TypeError(f"open_store got unexpected options {sorted(options)}")
    return KvBlockStore(engine_class(url, **engine_options), **store_options)


def _postgres_engine_class() -> Any:
    try:
        from runtime.storage.postgres.engine import PostgresEngine
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("runtime.storage.postgres"):
            raise StoreError(
                "the PostgreSQL backend is not installed in this llm386 "
                "(runtime.storage.postgres is missing); use a store folder path instead, or "
                "install an llm386 that includes it"
            ) from None
        raise StoreError(
            f"the PostgreSQL backend needs the {exc.name} package, which is not installed; "
            "install psycopg 3 (pip install 'psycopg[binary,pool]') and retry"
        ) from None
    return PostgresEngine
