"""Trace commands: import, traces, trace, diff, flag, export, import-session."""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from runtime.cli.common import Output, add_command, open_store_from, table
from runtime.errors import NotFound
from runtime.inspect.diff import TraceDiff, diff_stored
from runtime.inspect.textdiff import DiffLine, LineOp
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.tracerows import FLAGGED
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceRecord, TraceStatus
from runtime.transfer.exchange import export_session, import_session, read_file
from runtime.transfer.importer import ImportOptions, import_file


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _open(args: argparse.Namespace, *, create: bool = False) -> tuple[KvBlockStore, KvTraceStore]:
    store = open_store_from(args, create=create)
    return store, KvTraceStore(store)


def cmd_import(args: argparse.Namespace) -> Output:
    store, traces = _open(args, create=True)
    options = ImportOptions(source=args.source, prefix=args.prefix, model=args.model,
                            flag_failing=not args.no_flag, tags=tuple(args.tag or ()))  # fmt: skip
    report = import_file(store, traces, args.file, tools_path=args.tools, options=options)
    text = (
        f"imported {len(report.sessions)} sessions from {Path(args.file).name}: "
        f"{report.sessions_written} new, {report.turns_recorded} turns recorded, "
        f"{report.turns_skipped} already there; {report.failing} failing (reward 0)"
    )
    return Output(text, report.to_json())


def _status_of(record: TraceRecord) -> str:
    return FLAGGED if record.flagged else record.status.value


def cmd_traces(args: argparse.Namespace) -> Output:
    _, traces = _open(args)
    status = None if args.status in (None, FLAGGED) else TraceStatus(args.status)
    records = traces.list(
        session=args.session, status=status, flagged=True if args.status == FLAGGED else None,
        prompt_hash=args.hash, offset=args.offset, limit=args.limit,
        newest_first=not args.oldest_first,
    )  # fmt: skip
    rows = [
        [r.call_id, r.session, str(r.turn), _status_of(r), r.provider.value, r.model,
         str(r.total_tokens), r.prompt_hash[:12], "yes" if r.replay_complete else "NO"]
        for r in records
    ]  # fmt: skip
    headers = [
        "call id",
        "session",
        "turn",
        "status",
        "provider",
        "model",
        "tokens",
        "prompt",
        "replayable",
    ]
    text = table(rows, headers) if rows else "no traces"
    if args.limit is not None and len(records) == args.limit:
        text += f"\n(first {len(records)} from offset {args.offset}; --offset or --limit for more)"
    return Output(text, [r.to_json() for r in records])


def _trace_text(r: TraceRecord) -> str:
    usage = r.usage
    lines = [
        f"call {r.call_id}  session {r.session}  turn {r.turn}  ({r.origin.value})",
        f"status: {_status_of(r)}" + (f"  note: {r.flag.note}" if r.flag else ""),
        f"started {_when(r.started_at)} UTC  latency {r.latency_ms if r.latency_ms is not None else '-'} ms",
        f"provider {r.provider.value}  model {r.model}  runtime {r.runtime_version or '-'}",
        f"prompt hash {r.prompt_hash}  ({r.request_size} bytes, "
        + (
            "replay-complete)"
            if r.replay_complete
            else "NOT replayable: stored bytes missing or changed)"
        ),
        f"tokens (estimated, {r.tokenizer.name if r.tokenizer else '?'}): input {r.estimated_input_tokens} "
        f"output {r.estimated_output_tokens}",
    ]
    if usage is not None:
        lines.append(
            f"usage (reported): input {usage.input_tokens} + cache read {usage.cache_read_input_tokens} "
            f"+ cache write {usage.cache_creation_input_tokens} = {usage.total_input_tokens}; "
            f"output {usage.output_tokens}"
        )
    if r.parent_call_id:
        lines.append(f"parent {r.parent_call_id}")
    if r.error is not None:
        lines.append(f"error {r.error.type} (HTTP {r.error.status}): {r.error.message}")
    selected = r.plan.get("selected") or []
    lines.append(f"plan: {len(selected)} selected, {len(r.plan.get('omitted') or [])} omitted")
    if r.stop_reason:
        lines.append(f"stop reason {r.stop_reason}")
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace) -> Output:
    _, traces = _open(args)
    record = traces.get(args.id)
    if args.request or args.response:
        return _trace_bytes(traces, record, "request" if args.request else "response")
    return Output(_trace_text(record), record.to_json())


def _trace_bytes(traces: KvTraceStore, record: TraceRecord, part: str) -> Output:
    """Return the stored request or response bytes as they are: stdout gets no newline added,
    so ``llm386 trace ID --request | sha256sum`` prints the prompt hash."""
    if part == "request":
        raw = traces.request_bytes(record.prompt_hash)
        missing = "its request bytes are not stored (not replay-complete); run `llm386 verify`"
    else:
        raw = traces.response_bytes(record.call_id)
        missing = (
            "no response was stored (the call failed or none came back); see `llm386 trace ID`"
        )
    if raw is None:
        raise NotFound(f"trace {record.call_id}: {missing}")
    data = {"call_id": record.call_id, "part": part, "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(), "body": raw.decode("utf-8", "replace")}  # fmt: skip
    return Output("", data, raw=raw)


def _line_text(line: DiffLine) -> str:
    mark = {LineOp.SAME: " ", LineOp.REMOVED: "-", LineOp.ADDED: "+"}[line.op]
    return f"{mark} {line.text}"


def _diff_text(d: TraceDiff) -> str:
    plan, cache = d.plan, d.cache
    lines = [f"a: {d.a.call_id} (turn {d.a.turn})", f"b: {d.b.call_id} (turn {d.b.turn})",
             f"blocks: {plan.summary()}"]  # fmt: skip
    lines += [f"  + {c.block_id[:12]} {c.b.section}/{c.b.reason}" for c in plan.added if c.b]
    lines += [f"  - {c.block_id[:12]} {c.a.section}/{c.a.reason}"
              + (f" (now omitted: {c.omitted_b.reason})" if c.omitted_b else "")
              for c in plan.removed if c.a]  # fmt: skip
    lines += [f"  ~ {c.block_id[:12]} {c.a.reason} -> {c.b.reason}"
              for c in plan.kept if c.reason_changed and c.a and c.b]  # fmt: skip
    lines += [f"section {s.section}: {s.used_a} -> {s.used_b} ({s.delta:+})" for s in plan.sections]
    lines.append(
        f"cache: {cache.verdict.value}; first different byte "
        f"{cache.first_divergent_byte if cache.first_divergent_byte is not None else '-'} "
        f"(in {cache.first_divergent_unit or '-'}), "
        + (
            f"cached prefix {cache.cached_prefix_bytes} bytes up to {cache.breakpoint_unit}"
            if cache.cached_prefix_bytes is not None
            else "no cache breakpoint"
        )  # fmt: skip
    )
    lines.append(f"text: +{d.text.added} -{d.text.removed} lines")
    for hunk in d.text.hunks:
        lines.append(f"@@ -{hunk.a_start + 1},{hunk.a_end - hunk.a_start} "
                     f"+{hunk.b_start + 1},{hunk.b_end - hunk.b_start} @@ {hunk.label}")  # fmt: skip
        lines += [_line_text(line) for line in hunk.lines]
    if d.text.truncated:
        lines.append("(more changes not shown; raise --max-lines)")
    return "\n".join(lines)


def cmd_diff(args: argparse.Namespace) -> Output:
    _, traces = _open(args)
    d = diff_stored(traces, args.a, args.b, context=args.context, max_lines=args.max_lines)
    return Output(_diff_text(d), d.to_json())


def cmd_flag(args: argparse.Namespace) -> Output:
    _, traces = _open(args)
    record = traces.unflag(args.id) if args.clear else traces.flag(args.id, args.note or "")
    text = f"{record.call_id}: " + (
        f"flagged as failing: {args.note or ''}" if record.flag else "unflagged"
    )
    return Output(text.rstrip(": "), record.to_json())


def cmd_export(args: argparse.Namespace) -> Output:
    store, traces = _open(args)
    report = export_session(store, traces, args.session, args.file)
    text = (f"exported {report.session} to {args.file}: {report.blocks} blocks, {report.entries} "
            f"entries, {report.edges} edges, {report.traces} traces; sha256 {report.sha256}")  # fmt: skip
    if report.edges_left_out:
        text += f"\n{report.edges_left_out} edges to blocks of other sessions were left out"
    return Output(text, report.to_json())


def cmd_import_session(args: argparse.Namespace) -> Output:
    store, traces = _open(args, create=True)
    report = import_session(store, traces, read_file(args.file), name=Path(args.file).name,
                            as_session=args.as_session)  # fmt: skip
    text = (f"verified and imported {report.session}: {report.blocks} blocks, {report.entries} "
            f"entries, {report.edges} edges, {report.traces} traces")  # fmt: skip
    return Output(text, report.to_json())


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "import", cmd_import, "import OpenAI-format chat transcripts as traced sessions"
    )
    p.add_argument("file", help="a JSON array of sessions, or JSON Lines (one session per line)")
    p.add_argument("--tools", help="OpenAI tool definitions (default: tools.json beside FILE)")
    p.add_argument("--prefix", default="transcript", help="session id prefix (default: transcript)")
    p.add_argument("--source", default="openai-transcript", help="session meta 'source'")
    p.add_argument("--model", default="gpt-4o", help="model that made the calls (default: gpt-4o)")
    p.add_argument("--no-flag", action="store_true", help="do not flag failing runs' last turn")
    p.add_argument("--tag", action="append", help="tag each new session (repeatable)")
    p = add_command(sub, "traces", cmd_traces, "list trace records, newest first")
    p.add_argument("--session")
    p.add_argument("--status", choices=[s.value for s in TraceStatus] + [FLAGGED])
    p.add_argument("--hash", help="only records with this prompt hash (or a unique 8+ prefix)")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--oldest-first", action="store_true", help="turn order for a session")
    p = add_command(sub, "trace", cmd_trace, "show one trace record (id or unique prefix)")
    p.add_argument("id")
    part = p.add_mutually_exclusive_group()
    part.add_argument(
        "--request",
        action="store_true",
        help="print the exact stored request bytes (no newline: they hash to the prompt hash)",
    )
    part.add_argument("--response", action="store_true",
                      help="print the raw response bytes exactly as they came back")  # fmt: skip
    p = add_command(sub, "diff", cmd_diff, "compare two trace records: blocks, tokens, text, cache")
    p.add_argument("a", metavar="ID_A")
    p.add_argument("b", metavar="ID_B")
    p.add_argument("--context", type=int, default=3, help="unchanged lines around changes")
    p.add_argument("--max-lines", type=int, default=2000, help="stop the text diff after this many")
    p = add_command(sub, "flag", cmd_flag, "flag a trace record as failing, with a note")
    p.add_argument("id")
    p.add_argument("--note", help="what went wrong")
    p.add_argument("--clear", action="store_true", help="remove the flag")
    p = add_command(
        sub, "export", cmd_export, "write a session (blocks, edges, traces) to JSON Lines"
    )
    p.add_argument("session")
    p.add_argument("file")
    p = add_command(
        sub, "import-session", cmd_import_session, "verify and import an exported session"
    )
    p.add_argument("file")
    p.add_argument("--as", dest="as_session", help="import a copy under this session id")
