"""Golden store bytes of the write paths: making writes faster must not change a stored byte.

The same writes (an import of tau-bench transcripts, bulk ``put_many`` batches with edges and
repeated blocks, OTLP ingest of GenAI spans with a repeated request) go into a fresh store on
each backend; every table is then dumped (every key and value, in key order) and hashed. The
golden file ``tests/golden/write_bytes.json`` was written by the code of 33572a9, before the
write path was sped up (token counts, term analysis and trace aggregates computed once per
write instead of once per block or record): the hashes must stay those.

The clock and the random part of call ids are the only inputs that change between runs; they
are fixed here so the bytes are comparable. A change that alters stored bytes on purpose
regenerates the file with ``LLM386_WRITE_GOLDEN=1 pytest tests/runtime/test_write_bytes.py``
and says why in its commit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest

from bench.bench_otel import trace_of
from bench.bench_pager import grow
from bench.taudata import TAU_SESSIONS, TAU_TOOLS
from runtime import open_store
from runtime.blocks import BlockKind, NewBlock, content_hash
from runtime.otel.ingest import ingest
from runtime.otel.wire import PROTOBUF
from runtime.storage import sessionrows
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing import records
from runtime.transfer import importer
from runtime.transfer.transcripts import read_tools
from tests.fakes import otlp

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "write_bytes.json"
CLOCK_MS = 1_760_000_000_000
IMPORTED = 12  # tau-bench transcripts imported
BULK = 2_500  # blocks written by put_many
BATCH = 600
TRACES = 6  # tau-bench conversations ingested as OTLP spans


class _FixedCallIds:
    """Call ids in the runtime's format (ms, counter, 8 hex) without the clock or chance."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def next(self, now_ms: int | None = None) -> str:
        n = next(self._count)
        return f"{CLOCK_MS:013d}{n:04x}{n:08x}"


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "_call_ids", _FixedCallIds())
    for module in (records, sessionrows, importer):
        monkeypatch.setattr(module, "now_ms", lambda: CLOCK_MS)


def _import(store, traces) -> None:
    sessions = json.loads(TAU_SESSIONS.read_text())[:IMPORTED]
    tools = read_tools(TAU_TOOLS.read_bytes())
    options = importer.ImportOptions(source="golden", prefix="golden-import")
    data = json.dumps(sessions).encode()
    importer.import_transcripts(store, traces, data, name="golden", tools=tools, options=options)
    # Importing the same file again writes nothing new (every session is there already).
    importer.import_transcripts(store, traces, data, name="golden", tools=tools, options=options)


def _bulk(store) -> None:
    blocks, edges = grow(TAU_SESSIONS, TAU_TOOLS, BULK)
    blocks = [NewBlock(b.kind, b.body, created_at=CLOCK_MS + i) for i, b in enumerate(blocks)]
    position = {content_hash(BlockKind.parse(b.kind), str(b.body)): i for i, b in enumerate(blocks)}
    for start in range(0, len(blocks), BATCH):
        batch = blocks[start : start + BATCH]
        mine = [e for e in edges if start <= max(position[e.src], position[e.dst]) < start + BATCH]
        store.put_many("golden-bulk", batch, mine)
    # Blocks stored already, put again in another session (and twice in one batch).
    again = (
        blocks[:50] + blocks[20:30] + [NewBlock(BlockKind.USER_MESSAGE, "a new one", created_at=1)]
    )
    store.put_many("golden-bulk-again", again)
    store.put_many("golden-bulk", blocks[100:110])


def _otlp(store, traces) -> None:
    tools = json.dumps(json.loads(TAU_TOOLS.read_text()))
    sessions = json.loads(TAU_SESSIONS.read_text())[IMPORTED : IMPORTED + TRACES]
    bodies = [
        otlp.body(otlp.request(*trace_of(i, item["traj"], tools), service="golden"))
        for i, item in enumerate(sessions, start=1)
    ]
    for body in [*bodies, bodies[0]]:  # the last one again: recorded already, skipped
        result = ingest(body, PROTOBUF, None, store, traces)
        assert result.rejected == 0, result.message


def _dump(store) -> dict[str, str]:
    """Return the SHA-256 of each table's keys and values, in key order."""

    def read(t) -> dict[str, str]:
        out = {}
        for table in t.table_names():
            digest = hashlib.sha256()
            for key, value in t.scan(table):
                for part in (key, value):
                    digest.update(len(part).to_bytes(8, "big") + part)
            out[table] = digest.hexdigest()
        return out

    return store.kv.read(read)


@pytest.mark.parametrize("backend", ["lmdb", "postgresql"])
def test_writes_store_the_golden_bytes(backend, fixed_clock, tmp_path, request):
    target = tmp_path / "store" if backend == "lmdb" else request.getfixturevalue("pg_url")
    store = open_store(target)
    try:
        traces = KvTraceStore(store)
        _import(store, traces)
        _bulk(store)
        _otlp(store, traces)
        dump = _dump(store)
    finally:
        store.close()
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("LLM386_WRITE_GOLDEN") == "1":
        golden[backend] = dump
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    assert backend in golden, f"no golden bytes for {backend}: run with LLM386_WRITE_GOLDEN=1"
    changed = sorted(t for t in golden[backend].keys() | dump.keys()
                     if golden[backend].get(t) != dump.get(t))  # fmt: skip
    assert not changed, f"stored bytes changed in tables {changed}"
