"""The migrate command: bring a store written by an older llm386 up to this layout version."""

from __future__ import annotations

import argparse

from runtime.cli.common import Output, add_command, store_path_from
from runtime.storage.migrations import CURRENT_VERSION, Migration, current_version, migrate
from runtime.storage.open import open_store


def cmd_migrate(args: argparse.Namespace) -> Output:
    """Apply every pending migration, printing each as it is applied."""
    store = open_store(store_path_from(args))  # not open_store_from: that migrates too
    before = current_version(store.kv)
    lines: list[str] = []

    def progress(m: Migration) -> None:
        lines.append(f"applied {m.version} {m.name}")
        print(lines[-1], flush=True)

    applied = migrate(store.kv, progress=progress)
    text = "" if applied else f"up to date (layout version {CURRENT_VERSION})"
    data = {"from": before, "to": current_version(store.kv), "applied": applied}
    return Output(text, data)


def register(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "migrate", cmd_migrate, "upgrade a store written by an older llm386 in place")
