"""The copy command: ``llm386 copy SRC DST`` moves a whole store between backends, verified."""

from __future__ import annotations

import argparse

from runtime.cli.common import Output, add_command
from runtime.storage.copy import copy_store
from runtime.storage.open import open_engine, open_store, safe_location
from runtime.storage.tracestore import KvTraceStore


def cmd_copy(args: argparse.Namespace) -> Output:
    """Copy every table of SRC into the empty DST, then check digests and verify DST."""
    source = open_store(args.source, readonly=True)  # checks SRC is an llm386 store
    target = open_engine(args.destination)
    try:
        report = copy_store(source.kv, target)
    finally:
        target.close()
    copied = open_store(args.destination)
    problems = copied.verify().problems + KvTraceStore(copied).verify().problems
    where = f"{safe_location(args.source)} -> {safe_location(args.destination)}"
    text = (
        f"copied {report.keys:,} keys in {len(report.tables)} tables {where}; "
        f"every table's SHA-256 matches; verify: "
        + ("ok" if not problems else f"{len(problems)} problems (run llm386 verify)")
    )
    data = {
        "source": safe_location(args.source),
        "destination": safe_location(args.destination),
        "keys": report.keys,
        "tables": [{"name": d.name, "keys": d.keys, "sha256": d.sha256} for d in report.tables],
        "verify_problems": len(problems),
    }
    return Output(text, data)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "copy", cmd_copy,
        "copy a whole store into a new, empty one (a folder or a postgresql:// URL), "
        "byte for byte, checked by hash",
    )  # fmt: skip
    p.add_argument("source", help="the store to copy: a folder path or a store URL")
    p.add_argument("destination", help="a new, empty folder or database (URL)")
