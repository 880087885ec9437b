"""What every CLI command shares: its output type, opening the store, and printing."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtime.config import configured_store
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.migrations import migrate
from runtime.storage.open import StoreTarget, is_store_url, open_store

# The same home the web app and `make run` use (<repo>/var), so the CLI sees the demo store.
DEFAULT_HOME = "var"


@dataclass(frozen=True)
class Output:
    """What a command prints: ``text`` for people, ``data`` (JSON-able) for ``--json``."""

    text: str
    data: object = None
    raw: bytes | None = None  # exact bytes for stdout (no newline added), e.g. a request body


def store_target(value: str) -> StoreTarget:
    """Return a ``--store`` or ``$LLM386_STORE`` value as a store URL, or else a path."""
    return value if is_store_url(value) else Path(value)


def default_store_path() -> StoreTarget:
    """Return the store: $LLM386_STORE (a path or URL), else ``[store] url`` (or ``path``) of
    llm386.toml ($LLM386_CONFIG, else ./llm386.toml), else $LLM386_HOME/store, else ./var/store."""
    configured = configured_store(os.environ, Path.cwd())
    if configured:
        return store_target(configured)
    return Path(os.environ.get("LLM386_HOME") or DEFAULT_HOME) / "store"


def store_path_from(args: argparse.Namespace) -> StoreTarget:
    return store_target(args.store) if getattr(args, "store", None) else default_store_path()


def open_store_from(args: argparse.Namespace, *, create: bool = False) -> KvBlockStore:
    """Open the store named by ``--store`` (or the default); only ``init`` and writers create.

    A writable store of an older layout is migrated first (``llm386 migrate`` does only that)."""
    store = open_store(store_path_from(args), create=create)
    if not store.kv.readonly:
        migrate(store.kv)
    return store


def warn(warnings: Iterable[str]) -> None:
    """Print each warning on stderr as ``llm386: warning: ...`` (stdout stays the output)."""
    for warning in warnings:
        print(f"llm386: warning: {warning}", file=sys.stderr, flush=True)


def to_json_text(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Return a plain aligned text table."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def preview(text: str, width: int = 60) -> str:
    """Return ``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def add_command(
    sub: argparse._SubParsersAction, name: str, func: object, help: str
) -> argparse.ArgumentParser:
    """Add a subcommand that also accepts ``--json`` after its name."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument(
        "--json", dest="json_after", action="store_true", help="print JSON for scripts"
    )
    parser.set_defaults(func=func)
    return parser
