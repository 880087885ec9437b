"""Index commands: ``llm386 reindex`` drops the derived indexes and rebuilds them from the store."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.common import Output, add_command, open_store_from
from runtime.indexes.rebuild import reindex
from runtime.storage.tracestore import KvTraceStore


def _progress(line: str) -> None:
    print(f"llm386: {line}", file=sys.stderr, flush=True)


def cmd_reindex(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    report = reindex(store, KvTraceStore(store), progress=_progress)
    text = (
        f"reindexed {report.sessions} sessions ({report.entries} entries) and "
        f"{report.trace_records} trace records' block uses"
    )
    data = {"sessions": report.sessions, "entries": report.entries,
            "trace_records": report.trace_records, "tables": list(report.tables)}  # fmt: skip
    return Output(text, data)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "reindex", cmd_reindex,
        "drop the derived indexes (search, pairing, block uses, cost and vector caches) and "
        "rebuild them from the store",
    )  # fmt: skip
    # Also accepted after the command name; the global --store stays the default.
    p.add_argument("--store", default=argparse.SUPPRESS, help="store folder")
