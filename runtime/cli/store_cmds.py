"""Store commands: init, put, show, sessions, session, tag, edges, add-edge, delete, purge, verify, repair."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from runtime.blocks import Block, BlockKind, Edge, EdgeKind, Entry, NewBlock, Provenance
from runtime.cli.common import (
    Output,
    add_command,
    open_store_from,
    preview,
    store_path_from,
    store_target,
    table,
)
from runtime.errors import InvalidInput
from runtime.storage.interface import RepairReport, VerifyReport
from runtime.storage.open import open_store
from runtime.storage.purge import purge_session
from runtime.storage.sessioncheck import check_sessions, repair_sessions
from runtime.storage.tracestore import KvTraceStore
from runtime.tags import retag


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_init(args: argparse.Namespace) -> Output:
    target = store_target(args.path) if args.path else store_path_from(args)
    store = open_store(target, create=True)
    return Output(f"store ready at {store.location}", {"path": store.location})


def _read_body(args: argparse.Namespace) -> bytes:
    if args.file:
        try:
            return Path(args.file).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
    if args.text is None or args.text == "-":
        return sys.stdin.buffer.read()
    return args.text.encode("utf-8", "surrogateescape")


def cmd_put(args: argparse.Namespace) -> Output:
    store = open_store_from(args, create=True)
    prov = Provenance(args.source or "cli", tuple(args.parent or ()), tuple(args.label or ()))
    entry = store.put(args.session, NewBlock(args.kind, _read_body(args), args.priority, prov))
    return Output(f"{entry.id}  {entry.session}#{entry.seq}", entry.to_json())


SHOW_LIMIT = 20  # sessions and edges listed in text; --json lists all


def cmd_show(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    block = store.get(args.id)
    entries = [store.entry(session, seq) for session, seq in store.memberships(block.id)]
    edges_out, edges_in = store.edges_from(block.id), store.edges_to(block.id)
    data = block.to_json()
    data["labels"] = _labels(block, entries)
    data["memberships"] = [{"session": e.session, "seq": e.seq, "priority": e.priority,
                            "labels": list(e.provenance.labels)} for e in entries]  # fmt: skip
    data["edges_out"] = [e.to_json() for e in edges_out]
    data["edges_in"] = [e.to_json() for e in edges_in]
    return Output(_show_text(block, entries, edges_out, edges_in), data)


def _labels(block: Block, entries: list[Entry]) -> list[str]:
    """Return the labels of the block and of every entry of it, sorted, each once."""
    return sorted({*block.provenance.labels, *(x for e in entries for x in e.provenance.labels)})


def _show_text(block: Block, entries: list[Entry], out: list[Edge], inc: list[Edge]) -> str:
    prov = block.provenance
    lines = [
        block.id,
        f"kind: {block.kind.value}  priority: {block.priority}  created: {_when(block.created_at)}",
        f"source: {prov.source or '-'}  labels: {', '.join(_labels(block, entries)) or '-'}",
    ]
    if prov.parents:
        lines.append("parents: " + ", ".join(p[:12] for p in prov.parents))
    lines.append(f"sessions ({len(entries)}):")
    lines += [f"  {e.session} #{e.seq}" + _entry_labels(e) for e in entries[:SHOW_LIMIT]]
    lines += _more(len(entries))
    lines.append(f"edges ({len(out)} out, {len(inc)} in):")
    rows = [f"  -> {e.kind.value} {e.dst[:12]}" for e in out]
    rows += [f"  <- {e.kind.value} {e.src[:12]}" for e in inc]
    lines += rows[:SHOW_LIMIT] + _more(len(rows)) if rows else ["  none"]
    return "\n".join(lines) + "\n\n" + block.body


def _entry_labels(entry: Entry) -> str:
    labels = entry.provenance.labels
    return f"  labels: {', '.join(labels)}" if labels else ""


def _more(count: int) -> list[str]:
    return [f"  ... {count - SHOW_LIMIT} more (--json lists all)"] if count > SHOW_LIMIT else []


def cmd_sessions(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    infos = store.sessions(args.offset, args.limit)
    rows = [
        [i.session, str(i.count), _when(i.updated_at), str(i.meta.get("model", ""))] for i in infos
    ]
    text = table(rows, ["session", "blocks", "updated (UTC)", "model"]) if rows else "no sessions"
    total = store.session_count()
    if args.offset + len(infos) < total:
        shown = f"{args.offset + 1}-{args.offset + len(infos)}"
        text += f"\n({shown} of {total} sessions; --offset {args.offset + len(infos)} for more)"
    return Output(text, [i.to_json() for i in infos])


def cmd_session(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    store.session_info(args.session)
    entries = store.entries(args.session, args.start, args.limit)
    rows = [
        [str(e.seq), e.id[:12], e.kind.value, f"{e.priority:g}", preview(e.body)] for e in entries
    ]
    text = table(rows, ["seq", "id", "kind", "prio", "body"]) if rows else "no entries"
    return Output(text, [e.to_json() for e in entries])


def cmd_tag(args: argparse.Namespace) -> Output:
    """Add (and with --remove, take off) tags of a session; print its tags after."""
    store = open_store_from(args)
    tags = retag(store, args.session, args.tags, args.remove or ())
    text = f"{args.session}: " + (", ".join(tags) if tags else "no tags")
    return Output(text, {"session": args.session, "tags": list(tags)})


def cmd_edges(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    bid = store.resolve(args.id)
    out = store.edges_from(bid, args.kind) if args.direction in ("out", "both") else []
    inc = store.edges_to(bid, args.kind) if args.direction in ("in", "both") else []
    rows = [[e.src[:12], e.kind.value, e.dst[:12]] for e in out + inc]
    text = table(rows, ["from", "kind", "to"]) if rows else "no edges"
    return Output(text, {"out": [e.to_json() for e in out], "in": [e.to_json() for e in inc]})


def cmd_add_edge(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    new = store.add_edge(args.src, args.kind, args.dst)
    return Output("edge added" if new else "edge already present", {"added": new})


def cmd_delete(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    bid = store.resolve(args.id)
    store.delete_block(bid)
    return Output(f"deleted {bid}", {"deleted": bid})


def cmd_purge(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    report, traces = purge_session(store, KvTraceStore(store), args.session)
    text = (
        f"purged {report.session}: {report.entries_removed} entries, "
        f"{report.blocks_deleted} blocks deleted, {report.blocks_kept} kept (used elsewhere), "
        f"{traces} trace records"
    )
    return Output(text, {**report.__dict__, "traces_deleted": traces})


def cmd_verify(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    trace_store = KvTraceStore(store)
    blocks, traces = store.verify(), trace_store.verify()
    sessions = tuple(check_sessions(store, trace_store))
    report = VerifyReport(
        blocks.blocks, blocks.entries, blocks.edges, blocks.problems + traces.problems + sessions
    )
    lines = [f"{report.blocks} blocks, {report.entries} entries, {report.edges} edges"]
    lines.append(f"{traces.entries} trace records, {traces.blocks} stored requests")
    lines += [
        f"{p.code}: {p.detail}{'' if p.repairable else ' (not repairable)'}"
        for p in report.problems
    ]
    lines.append(
        "ok"
        if report.ok
        else f"{len(report.problems)} problems; `llm386 repair` fixes the repairable ones"
    )
    if not report.ok:
        print("\n".join(lines))
        raise InvalidInput(f"verify found {len(report.problems)} problems")
    return Output("\n".join(lines), report.to_json())


def cmd_repair(args: argparse.Namespace) -> Output:
    store = open_store_from(args)
    trace_store = KvTraceStore(store)

    def repair() -> RepairReport:  # one write: a crash mid-repair leaves the store as it was
        blocks, traces = store.repair(), trace_store.repair()
        sessions = tuple(repair_sessions(store, trace_store))
        return RepairReport(
            blocks.fixed + traces.fixed + sessions, blocks.unfixable + traces.unfixable
        )

    report = store.atomic(repair)
    lines = [f"fixed {p.code}: {p.detail}" for p in report.fixed]
    lines += [f"cannot fix {p.code}: {p.detail}" for p in report.unfixable]
    lines.append(f"{len(report.fixed)} fixed, {len(report.unfixable)} left")
    data = {
        "fixed": [p.__dict__ for p in report.fixed],
        "unfixable": [p.__dict__ for p in report.unfixable],
    }
    return Output("\n".join(lines), data)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "init", cmd_init, "create a store (or check an existing one)")
    p.add_argument(
        "path", nargs="?", help="store folder (default: --store or $LLM386_HOME/store, ./var/store)"
    )
    p = add_command(sub, "put", cmd_put, "store a block and append it to a session")
    p.add_argument("--session", required=True)
    p.add_argument("--kind", required=True, choices=[k.value for k in BlockKind])
    p.add_argument("--priority", type=float, default=0.5)
    p.add_argument("--source")
    p.add_argument("--parent", action="append", help="parent block id (repeatable)")
    p.add_argument("--label", action="append", help="label, e.g. pinned (repeatable)")
    p.add_argument("--file", help="read the body from this file")
    p.add_argument("text", nargs="?", help="the body; '-' or nothing reads standard input")
    p = add_command(
        sub, "show", cmd_show, "show a block with its labels, sessions and edges (in and out)"
    )
    p.add_argument("id")
    p = add_command(sub, "sessions", cmd_sessions, "list sessions")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=100)
    p = add_command(sub, "session", cmd_session, "list a session's blocks in order")
    p.add_argument("session")
    p.add_argument("--start", type=int, default=0, help="first seq to list")
    p.add_argument("--limit", type=int, default=100)
    p = add_command(sub, "tag", cmd_tag, "add or remove a session's tags (its meta 'tags')")
    p.add_argument("session")
    p.add_argument("tags", nargs="*", metavar="TAG", help="tags to add")
    p.add_argument(
        "--remove", action="append", metavar="TAG", help="a tag to take off (repeatable)"
    )
    p = add_command(sub, "edges", cmd_edges, "list a block's edges")
    p.add_argument("id")
    p.add_argument("--kind", choices=[k.value for k in EdgeKind])
    p.add_argument("--direction", choices=["out", "in", "both"], default="both")
    p = add_command(sub, "add-edge", cmd_add_edge, "add a typed edge FROM -> TO")
    p.add_argument("src", metavar="FROM")
    p.add_argument("kind", choices=[k.value for k in EdgeKind])
    p.add_argument("dst", metavar="TO")
    p = add_command(sub, "delete", cmd_delete, "delete a block with its edges and entries")
    p.add_argument("id")
    p = add_command(sub, "purge", cmd_purge, "remove a session (blocks used elsewhere are kept)")
    p.add_argument("session")
    add_command(sub, "verify", cmd_verify, "re-derive every hash and check every index")
    add_command(sub, "repair", cmd_repair, "fix what verify reports as repairable")
