"""Pager commands: ``llm386 page`` shows what a model would see and why; ``llm386 pack`` renders it.

Both page the session with the configured retrievers and budgets (``--config`` or
./llm386.toml), pack the plan, and print the prompt hash: the SHA-256 of the exact request bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runtime.cli.common import Output, add_command, open_store_from, preview, table
from runtime.cli.models_cmds import ESTIMATE_NOTE, config_from
from runtime.errors import InvalidInput
from runtime.packer.core import PackedRequest, pack
from runtime.packer.rendering import RenderMode
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import Omission, PagePlan, Selection
from runtime.storage.interface import BlockStore


def _paged(args: argparse.Namespace) -> tuple[BlockStore, PagePlan, PackedRequest]:
    config = config_from(args)
    store = open_store_from(args)
    options = PageOptions(
        threshold=args.threshold,
        follow_edges=not args.no_edges,
        render=RenderMode(args.render),
    )
    request = PageRequest.from_config(
        config,
        args.session,
        args.task,
        config.profile(args.model),
        required=tuple(args.require or ()),
        pinned=tuple(args.pin or ()),
        options=options,
        upto=args.upto,
    )
    plan = page(store, request)
    return store, plan, pack(store, plan)


def _decision_row(d: Selection | Omission) -> list[str]:
    c = d.candidate
    return [
        c.section.value,
        "-" if c.seq is None else f"#{c.seq}",
        c.kind.value,
        d.reason.value,
        f"{c.score:.3f}",
        f"{c.tokens:,}",
        c.block_id[:12],
    ]


def _plan_text(plan: PagePlan, out: PackedRequest, *, previews: dict[str, str]) -> str:
    estimate = " (estimate)" if plan.profile.tokens_estimated else ""
    head = [
        f"session {plan.session}  model {plan.profile.name}  entries < {plan.upto}",
        f"budget {plan.budget:,}  planned {plan.tokens:,}  text {out.text_tokens:,}  "
        f"request {out.chat_tokens:,} tokens{estimate} ({plan.profile.tokenizer})",
        f"prompt hash {out.prompt_hash}",
    ]
    usage = [
        [u.section.value, "-" if u.allocated is None else f"{u.allocated:,}", f"{u.used:,}"]
        for u in plan.sections
    ]
    cols = ["section", "seq", "kind", "reason", "score", "tokens", "block", "text"]
    chosen = [[*_decision_row(s), previews.get(s.candidate.block_id, "")] for s in plan.selected]
    left = [[*_decision_row(o), previews.get(o.candidate.block_id, "")] for o in plan.omitted]
    parts = [
        "\n".join(head),
        table(usage, ["section", "allocated", "used"]),
        f"selected ({len(chosen)})\n" + table(chosen, cols),
        f"omitted ({len(left)})\n" + (table(left, cols) if left else "  nothing"),
    ]
    if plan.profile.tokens_estimated:
        parts.append(ESTIMATE_NOTE)
    return "\n\n".join(parts)


def _previews(store: BlockStore, plan: PagePlan) -> dict[str, str]:
    chosen = {s.candidate.block_id for s in plan.selected}
    ids = sorted(chosen | {o.candidate.block_id for o in plan.omitted})
    return {b.id: preview(b.body, 40) for b in store.get_many(ids)}


def cmd_page(args: argparse.Namespace) -> Output:
    store, plan, out = _paged(args)
    data = {"plan": plan.to_json(), "packed": out.to_json()}
    return Output(_plan_text(plan, out, previews=_previews(store, plan)), data)


def cmd_pack(args: argparse.Namespace) -> Output:
    _, plan, out = _paged(args)
    if args.out:
        _write(Path(args.out), out.body if args.chat else out.text.encode("utf-8"))
    data: dict[str, Any] = {**out.to_json(), "plan_tokens": plan.tokens, "budget": plan.budget}
    data["request" if args.chat else "text"] = out.request if args.chat else out.text
    if args.chat:
        # stdout carries the exact request bytes (pipe-able); the hash goes to stderr.
        if not (args.json or getattr(args, "json_after", False)):
            print(f"prompt hash {out.prompt_hash}", file=sys.stderr)
        return Output(out.body.decode("utf-8"), data, raw=out.body)
    footer = (
        f"prompt hash {out.prompt_hash}  (text sha256 {out.text_hash}, {out.text_tokens:,} tokens)"
    )
    return Output(f"{out.text}\n{footer}", data)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}; choose another --out") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", required=True, help="the session to page")
    parser.add_argument("--model", required=True, help="model profile (see `llm386 models`)")
    parser.add_argument("--task", default="", help="the task or question for this turn")
    parser.add_argument("--upto", type=int, help="page the session as it was before entry #N")
    parser.add_argument("--require", action="append", help="a block id that must be included")
    parser.add_argument("--pin", action="append", help="a block id to pin for this page")
    parser.add_argument("--threshold", type=float, default=0.0, help="omit scores below this")
    parser.add_argument("--no-edges", action="store_true", help="do not follow edges")
    parser.add_argument(
        "--render",
        choices=[m.value for m in RenderMode],
        default=RenderMode.BOTH.value,
        help="which render the plan must fit (default: both)",
    )
    parser.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``page`` and ``pack``."""
    _common(add_command(sub, "page", cmd_page, "show what a model would see and why"))
    parser = add_command(sub, "pack", cmd_pack, "render the prompt a model would be sent")
    _common(parser)
    parser.add_argument("--chat", action="store_true", help="print the exact request bytes")
    parser.add_argument("--out", help="also write the text (or with --chat the bytes) to FILE")
