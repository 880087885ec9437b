"""Moving a whole session between machines: one JSON Lines file that verifies on arrival.

Owns: ``export_session`` and ``import_session`` and the file format, version 1. Every line is
canonical JSON with a ``type``, in this order:

    header   {format: "llm386-session", version: 1, session, meta, counts, exported_by}
    block    {id, kind, body}                  id = content_hash(kind, body)
    entry    {seq, block, priority, created_at, provenance}
    edge     {from, kind, to}                  both ends are blocks of the file
    trace    {record, request: {sha256, size, text | base64}, response: {...} | null, flag,
              fidelity}                        one line per record, in turn order
    footer   {sha256}                          SHA-256 of every byte before the footer line

Invariants:
- Import re-derives every hash (the file digest, each block id, each request and response
  hash against the record) and checks every reference, count and trace record before writing
  anything; any mismatch rejects the whole file with its line number. The write itself is one
  transaction (blocks, entries, edges, meta and traces share the LMDB environment), so a
  refused or failed import leaves the store exactly as it was.
- Import never merges: the session (or a call id) must not exist yet. ``as_session`` imports a
  copy under another name, with fresh call ids (parent links remapped).
- An export is whole or not made: a record without its request bytes is found before the
  first line is written (a web download's 200 has not been sent yet) and refuses the export,
  naming its turn. A file never claims bytes it does not hold.
- Edges to blocks outside the session cannot travel and are left out (the export counts them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime import __version__, limits
from runtime.blocks import (
    Block,
    BlockKind,
    Edge,
    EdgeKind,
    Entry,
    NewBlock,
    Provenance,
    canonical_json,
    check_session,
    content_hash,
)
from runtime.errors import (
    InvalidInput,
    Llm386Error,
    MalformedFile,
    NotFound,
    SessionNotFound,
    StoreCorrupted,
)
from runtime.replay.fidelity import replay_capability
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Tables
from runtime.tracing.records import (
    Flag,
    StoredTrace,
    TraceRecord,
    TraceStore,
    check_record,
    new_call_id,
    prompt_hash,
)

FORMAT = "llm386-session"
VERSION = 1


@dataclass(frozen=True)
class ExchangeReport:
    session: str
    blocks: int
    entries: int
    edges: int
    traces: int
    edges_left_out: int = 0
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- export -------------------------------------------------------------------------------------


def _bytes_json(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sha256": prompt_hash(data), "size": len(data)}
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["base64"] = base64.b64encode(data).decode("ascii")
    return out


def _session_edges(store: BlockStore, ids: Sequence[str]) -> tuple[list[Edge], int]:
    inside = set(ids)
    edges, outside = set(), 0
    for bid in ids:
        for edge in store.edges_from(bid) + store.edges_to(bid):
            if edge.src in inside and edge.dst in inside:
                edges.add(edge)
            else:
                outside += 1
    return sorted(edges), outside


@dataclass
class ExportStream:
    """A session's export file, read lazily: the header, blocks, entries and edges are read when
    it is opened; each trace line is read as it is yielded, so a long session streams."""

    head: list[bytes]
    call_ids: list[str]
    traces: TraceStore
    report: ExchangeReport  # its sha256 is set once every line was yielded

    def lines(self) -> Iterator[bytes]:
        """Yield every line of the file, the footer last."""
        digest = hashlib.sha256()
        for line in self.head:
            digest.update(line)
            yield line
        for cid in self.call_ids:
            line = _line(_trace_json(self.traces.stored_trace(cid)))
            digest.update(line)
            yield line
        self.report = replace(self.report, sha256=digest.hexdigest())
        yield _line({"type": "footer", "sha256": self.report.sha256})


def open_export(store: BlockStore, traces: TraceStore, session: str) -> ExportStream:
    """Start a session's export file (SessionNotFound now, not mid-stream)."""
    info = store.session_info(check_session(session))
    entries = store.entries(session)
    blocks: dict[str, Block] = {}
    for entry in entries:
        blocks.setdefault(entry.id, entry.block)
    edges, outside = _session_edges(store, list(blocks))
    turns = traces.turns(session)
    _check_request_bytes(traces, session, turns)
    call_ids = [cid for _, cid in turns]
    counts = {
        "blocks": len(blocks),
        "entries": len(entries),
        "edges": len(edges),
        "traces": len(call_ids),
    }
    head = [_line({"type": "header", "format": FORMAT, "version": VERSION, "session": session,
                   "meta": info.meta, "counts": counts, "exported_by": f"llm386 {__version__}"})]  # fmt: skip
    head += [
        _line({"type": "block", "id": b.id, "kind": b.kind.value, "body": b.body})
        for b in blocks.values()
    ]
    head += [_line(_entry_json(e)) for e in entries]
    head += [_line({"type": "edge", **e.to_json()}) for e in edges]
    report = ExchangeReport(session, len(blocks), len(entries), len(edges), len(call_ids), outside)
    return ExportStream(head, call_ids, traces, report)


def _check_request_bytes(traces: TraceStore, session: str, turns: list[tuple[int, str]]) -> None:
    """Raise StoreCorrupted, naming the turn, if a record's request bytes are not in the store.

    Checked before the first line is written: a web download has sent its 200 by the time the
    trace lines are read, so a record found without its bytes then would cut the file off
    short of its footer, and ``import-session`` would refuse it as damaged."""
    for turn, cid in turns:
        if traces.request_bytes(traces.get(cid).prompt_hash) is None:
            raise StoreCorrupted(
                f"turn {turn} of session {session} (call {cid}) has no stored request bytes, "
                "so the session cannot be exported byte for byte and nothing was exported; "
                "`llm386 verify` lists every record that lacks its bytes, and restoring the "
                "store from a backup (or purging those turns) lets the export run"
            )


def export_lines(
    store: BlockStore, traces: TraceStore, session: str
) -> tuple[list[bytes], ExchangeReport]:
    """Return the lines of a session's export file (footer included) and what they hold."""
    stream = open_export(store, traces, session)
    lines = list(stream.lines())
    return lines, stream.report


def _line(value: Mapping[str, Any]) -> bytes:
    return canonical_json(value) + b"\n"


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {"type": "entry", "seq": entry.seq, "block": entry.id, "priority": entry.priority,
            "created_at": entry.created_at, "provenance": entry.provenance.to_json()}  # fmt: skip


def _trace_json(item: StoredTrace) -> dict[str, Any]:
    return {
        "type": "trace",
        "record": item.record.stored_json(),
        "request": _bytes_json(item.request),
        "response": None if item.response is None else _bytes_json(item.response),
        "flag": None if item.record.flag is None else item.record.flag.__dict__,
        # Informative, as judged when exported (import re-derives it): what replay can promise.
        "fidelity": replay_capability(item.record).fidelity.value,
    }


def export_session(
    store: BlockStore, traces: TraceStore, session: str, path: str | Path
) -> ExchangeReport:
    """Write a session's blocks, entries, edges and traces to a JSON Lines file at ``path``."""
    lines, report = export_lines(store, traces, session)
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_bytes(b"".join(lines))
        partial.replace(target)  # a reader never sees half a file
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from None
    return report


# -- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    header: Mapping[str, Any]
    blocks: dict[str, tuple[BlockKind, str]]
    entries: list[tuple[int, Mapping[str, Any]]]  # (line, entry)
    edges: list[Edge]
    traces: list[StoredTrace]


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, line: int, reason: str) -> MalformedFile:
        return MalformedFile(f"{self.name} line {line}: {reason}; nothing was imported")


def parse_export(data: bytes, name: str = "input") -> _Parsed:
    """Check a whole export file (digest, hashes, references, counts) and return its contents."""
    reader = _Reader(name)
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    if not raw_lines:
        raise reader.fail(1, "the file is empty; expected an llm386 session export")
    _check_digest(reader, raw_lines)
    items = [_json_line(reader, n, raw) for n, raw in enumerate(raw_lines, start=1)]
    header = _header(reader, items[0])
    parsed = _Parsed(header, {}, [], [], [])
    for n, item in enumerate(items[1:-1], start=2):
        _take(reader, parsed, n, item)
    _check_references(reader, parsed)
    _check_counts(reader, parsed, len(raw_lines))
    return parsed


def _check_digest(reader: _Reader, raw_lines: list[bytes]) -> None:
    last = len(raw_lines)
    footer = _json_line(reader, last, raw_lines[-1])
    if footer.get("type") != "footer" or not isinstance(footer.get("sha256"), str):
        raise reader.fail(last, "the last line is not the footer: the file is cut short")
    actual = hashlib.sha256(b"".join(raw + b"\n" for raw in raw_lines[:-1])).hexdigest()
    if actual != footer["sha256"]:
        raise reader.fail(last, f"the file's SHA-256 is {actual[:12]}, the footer says "
                                f"{footer['sha256'][:12]}: the file was changed or damaged")  # fmt: skip


def _json_line(reader: _Reader, n: int, raw: bytes) -> dict[str, Any]:
    try:
        value = limits.loads(raw, reader.name, line_offset=n - 1)
    except limits.InputRejected as exc:
        at = "" if exc.column is None else f" at column {exc.column}"
        raise reader.fail(n, f"{exc.reason}{at}") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise reader.fail(n, 'expected a JSON object with a "type"')
    return value


def _header(reader: _Reader, item: Mapping[str, Any]) -> Mapping[str, Any]:
    if item.get("type") != "header" or item.get("format") != FORMAT:
        raise reader.fail(1, f"not an llm386 session export (no {FORMAT} header)")
    if item.get("version") != VERSION:
        raise reader.fail(1, f"format version {item.get('version')!r}; this llm386 reads {VERSION}")
    try:
        check_session(item.get("session"))  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise reader.fail(1, str(exc)) from None
    if not isinstance(item.get("meta"), dict) or not isinstance(item.get("counts"), dict):
        raise reader.fail(1, 'the header needs "meta" and "counts" objects')
    return item


def _take(reader: _Reader, parsed: _Parsed, n: int, item: Mapping[str, Any]) -> None:
    kind = item["type"]
    try:
        if kind == "block":
            bkind, body = BlockKind.parse(item.get("kind", "")), item.get("body")
            if not isinstance(body, str) or content_hash(bkind, body) != item.get("id"):
                raise InvalidInput("the block's id is not the hash of its kind and body")
            parsed.blocks[item["id"]] = (bkind, body)
        elif kind == "entry":
            parsed.entries.append((n, _checked_entry(item)))
        elif kind == "edge":
            parsed.edges.append(
                Edge(
                    str(item.get("from")), EdgeKind.parse(item.get("kind", "")), str(item.get("to"))
                )
            )
        elif kind == "trace":
            parsed.traces.append(_trace(item))
        else:
            raise InvalidInput(f"unknown line type {kind!r}")
    except (Llm386Error, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise reader.fail(n, f"{kind}: {exc}") from None


def _bytes_from(value: Any, what: str) -> bytes:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} is missing")
    data = (
        base64.b64decode(value["base64"], validate=True)
        if "base64" in value
        else str(value["text"]).encode()
    )
    if prompt_hash(data) != value.get("sha256"):
        raise InvalidInput(f"{what} bytes do not hash to their recorded sha256")
    return data


def _trace(item: Mapping[str, Any]) -> StoredTrace:
    if not isinstance(item.get("record"), dict):
        raise InvalidInput("the record is missing")
    record = TraceRecord.from_json(item["record"])
    limits.check_fields(record, "the record")  # typed before anything sorts or keys on it
    request = _bytes_from(item.get("request"), "request")
    if prompt_hash(request) != record.prompt_hash:
        raise InvalidInput(
            f"request bytes do not hash to the record's prompt hash {record.prompt_hash[:12]}"
        )
    response = None if item.get("response") is None else _bytes_from(item["response"], "response")
    if response is not None and record.response_hash not in (None, prompt_hash(response)):
        raise InvalidInput("response bytes do not hash to the record's response hash")
    return StoredTrace(record, request, response, _flag(item.get("flag")))


def _flag(value: Any) -> Flag | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or sorted(value) != ["flagged_at", "note"]
        or not isinstance(value["note"], str)
        or not _is_int(value["flagged_at"])
    ):
        raise InvalidInput('the flag must be null or {"note": text, "flagged_at": integer}')
    return Flag(value["note"], value["flagged_at"])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_entry(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return an entry line after checking the type of every field import reads."""
    priority = item.get("priority")
    if not _is_int(item.get("seq")) or item["seq"] < 0:
        raise InvalidInput('"seq" must be an integer >= 0')
    if not isinstance(item.get("block"), str):
        raise InvalidInput('"block" must be a block id')
    if isinstance(priority, bool) or not isinstance(priority, int | float) or abs(priority) > 1e300:
        raise InvalidInput('"priority" must be a number')
    if not _is_int(item.get("created_at")) or not 0 <= item["created_at"] < 2**63:
        raise InvalidInput('"created_at" must be an integer (ms since the epoch)')
    Provenance.from_json(item.get("provenance") or {})
    return item


def _check_references(reader: _Reader, parsed: _Parsed) -> None:
    session = parsed.header["session"]
    for n, entry in parsed.entries:
        if entry.get("block") not in parsed.blocks:
            raise reader.fail(
                n,
                f"entry {entry.get('seq')} names block {str(entry.get('block'))[:12]}, not in the file",
            )
    for edge in parsed.edges:
        if edge.src not in parsed.blocks or edge.dst not in parsed.blocks:
            raise reader.fail(
                1, f"an edge names a block not in the file ({edge.src[:12]} -> {edge.dst[:12]})"
            )
    for item in parsed.traces:
        if item.record.session != session:
            raise reader.fail(
                1,
                f"trace {item.record.call_id} belongs to {item.record.session!r}, not {session!r}",
            )


def _check_counts(reader: _Reader, parsed: _Parsed, lines: int) -> None:
    found = {"blocks": len(parsed.blocks), "entries": len(parsed.entries),
             "edges": len(parsed.edges), "traces": len(parsed.traces)}  # fmt: skip
    for key, value in found.items():
        if parsed.header["counts"].get(key) != value:
            raise reader.fail(
                1,
                f"the header counts {parsed.header['counts'].get(key)} {key}, the file holds {value}",
            )


def import_session(
    store: BlockStore,
    traces: TraceStore,
    data: bytes,
    *,
    name: str = "input",
    as_session: str | None = None,
) -> ExchangeReport:
    """Verify an export file completely, then write its session in one transaction.

    Refuses to merge: the session and every call id must be new here. Nothing is written
    unless everything is.
    """
    parsed = parse_export(data, name)
    session = check_session(as_session or parsed.header["session"])
    renamed = _renamed(parsed.traces, session) if as_session else parsed.traces
    entries = sorted(parsed.entries, key=lambda pair: int(pair[1]["seq"]))
    # A new session numbers its entries from 0 in file order; upto_seq follows.
    new_seq = {int(e["seq"]): i for i, (_, e) in enumerate(entries)}
    items = [_reseq(item, new_seq) for item in renamed]
    _check_traces(items)
    _refuse_existing(store, traces, session, items)
    blocks = [_new_block(parsed.blocks[e["block"]], e) for _, e in entries]
    _write_session(store, traces, session, blocks, parsed.edges, parsed.header["meta"], items)
    digest = hashlib.sha256(data[: data.rstrip(b"\n").rfind(b"\n") + 1]).hexdigest()
    return ExchangeReport(
        session, len(parsed.blocks), len(entries), len(parsed.edges), len(items), 0, digest
    )


def _new_block(block: tuple[BlockKind, str], entry: Mapping[str, Any]) -> NewBlock:
    prov = Provenance.from_json(entry.get("provenance") or {})
    return NewBlock(block[0], block[1], float(entry["priority"]), prov, int(entry["created_at"]))


def _check_traces(items: Sequence[StoredTrace]) -> None:
    """Refuse the file unless every trace would be recorded: well formed, each call id once."""
    seen: set[str] = set()
    for item in items:
        cid = item.record.call_id
        try:
            check_record(item.record, item.request, item.response)
        except InvalidInput as exc:
            raise InvalidInput(f"{exc}; nothing was imported") from None
        if cid in seen:
            raise InvalidInput(f"trace {cid} appears twice in the file; nothing was imported")
        seen.add(cid)


def _write_session(
    store: BlockStore, traces: TraceStore, session: str, blocks: Sequence[NewBlock],
    edges: Sequence[Edge], meta: Mapping[str, Any], items: Sequence[StoredTrace],
) -> None:  # fmt: skip
    """Write blocks, entries, edges, meta and traces in one transaction of the shared engine."""
    if not (isinstance(store, KvBlockStore) and store.kv.shares_writes_with(_engine(traces))):
        raise InvalidInput("import needs the trace store of the same store (one transaction)")
    prepared = store.prepare_put(session, blocks, edges)
    canonical_json(dict(meta))  # refuses what is not JSON-able before the write

    def write(t: Tables) -> None:
        if store.has_session_txn(t, session):  # made by another writer since the check
            raise InvalidInput(
                f"session {session!r} appeared while importing; nothing was imported"
            )
        store.put_txn(t, prepared)
        store.set_session_meta_txn(t, session, dict(meta))
        traces.record_many(items)  # joins this write: the engine is shared

    store.kv.write(write)


def _engine(traces: TraceStore) -> object:
    """Return the engine a trace store writes through (None if it says nothing of one)."""
    return getattr(traces, "kv", None)


def _refuse_existing(
    store: BlockStore, traces: TraceStore, session: str, items: Sequence[StoredTrace]
) -> None:
    try:
        store.session_info(session)
    except SessionNotFound:
        pass
    else:
        raise InvalidInput(f"session {session!r} already exists here; nothing was imported. "
                           "Import a copy with --as NEW_NAME, or purge it first")  # fmt: skip
    for item in items:
        try:
            traces.get(item.record.call_id)
        except NotFound:
            continue  # only a missing trace is free; a damaged one is an error to see
        raise InvalidInput(
            f"trace {item.record.call_id} already exists here; import a copy with --as NEW_NAME"
        )


def _renamed(items: Sequence[StoredTrace], session: str) -> list[StoredTrace]:
    """Give a copy fresh call ids (sorted like the originals) and point parents at them."""
    fresh = {
        item.record.call_id: new_call_id() for item in sorted(items, key=lambda i: i.record.call_id)
    }
    out = []
    for item in items:
        rec = item.record
        parent = fresh.get(rec.parent_call_id or "", rec.parent_call_id)
        out.append(
            replace(
                item,
                record=replace(
                    rec, call_id=fresh[rec.call_id], session=session, parent_call_id=parent
                ),
            )
        )
    return out


def _reseq(item: StoredTrace, new_seq: Mapping[int, int]) -> StoredTrace:
    """Map a record's ``upto_seq`` onto the renumbered entries (exports with gaps renumber)."""
    upto = item.record.upto_seq
    if upto is None:
        return item
    mapped = sum(1 for old in new_seq if old < upto)
    return replace(item, record=replace(item.record, upto_seq=mapped))


def read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
