"""The client's own request bytes of a call the proxy paged: kept under the record's call id,
deleted with the record (a purged session leaves none of its conversation behind), and checked
by verify, whose repair drops copies no record names."""

from __future__ import annotations

import hashlib
import zlib

from runtime import NewBlock
from runtime.blocks import BlockKind
from runtime.proxy.originals import client_request, keep
from runtime.storage.purge import purge_session
from runtime.storage.tracerows import CLIENT_REQUESTS
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import Provider, StoredTrace, new_record

CLIENT = b'{"messages":[{"role":"user","content":"my whole private history"}],"model":"m"}'
SENT = b'{"messages":[{"role":"user","content":"[paged out]"}],"model":"m"}'


def _paged_call(store, traces, session: str) -> str:
    store.put_many(session, [NewBlock(BlockKind.USER_MESSAGE, "my whole private history")])
    sha = hashlib.sha256(CLIENT).hexdigest()
    rec = new_record(SENT, session=session, turn=1, started_at=1_760_000_000_000,
                     provider=Provider.ANTHROPIC, model="m",
                     paging={"proxy": {"preset": "default",
                                       "client_request": {"sha256": sha, "bytes": len(CLIENT)}}})  # fmt: skip
    store.kv.write(lambda t: keep(t, rec.call_id, CLIENT))
    traces.record_many([StoredTrace(rec, SENT)])
    return rec.call_id


def _kept(store) -> list[bytes]:
    return store.kv.read(lambda t: list(t.keys(CLIENT_REQUESTS)))


def test_a_purged_session_leaves_no_client_copy(backend_store) -> None:
    store, traces = backend_store, KvTraceStore(backend_store)
    cid = _paged_call(store, traces, "private")
    other = _paged_call(store, traces, "kept")
    sha = hashlib.sha256(CLIENT).hexdigest()
    assert client_request(store.kv, cid, sha) == CLIENT
    assert client_request(store.kv, cid, "0" * 64) is None  # other bytes never pass for these
    purge_session(store, traces, "private")
    assert _kept(store) == [other.encode()]
    assert client_request(store.kv, other, sha) == CLIENT
    assert traces.verify().ok


def test_verify_names_a_damaged_copy_and_repair_drops_an_orphan(backend_store) -> None:
    store, traces = backend_store, KvTraceStore(backend_store)
    cid = _paged_call(store, traces, "s")
    store.kv.write(lambda t: t.put(CLIENT_REQUESTS, cid.encode(), zlib.compress(b"tampered")))
    store.kv.write(lambda t: t.put(CLIENT_REQUESTS, b"no-such-call", zlib.compress(CLIENT)))
    codes = sorted(p.code for p in traces.verify().problems)
    assert codes == ["client-request-damaged", "client-request-orphan"]
    report = traces.repair()
    assert [p.code for p in report.unfixable] == ["client-request-damaged"]
    assert _kept(store) == [cid.encode()]
