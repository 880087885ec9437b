"""OpenTelemetry commands: ingest tokens (``token create|list|revoke``)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from runtime.cli.common import Output, add_command, open_store_from, table
from runtime.errors import InvalidInput
from runtime.otel import tokens


def cmd_token(args: argparse.Namespace) -> Output:
    if args.action != "list" and not args.name:
        raise InvalidInput(f"`llm386 token {args.action}` needs a NAME")
    store = open_store_from(args, create=args.action == "create")
    if args.action == "create":
        token = tokens.create_token(store.kv, args.name)
        text = (f"created ingest token {args.name!r}; it is shown this once, so keep it now:\n"
                f"{token}\nsend it as Authorization: Bearer <token> to /v1/traces")  # fmt: skip
        return Output(text, {"name": args.name, "token": token})
    if args.action == "revoke":
        tokens.revoke_token(store.kv, args.name)
        return Output(f"revoked ingest token {args.name!r}", {"revoked": args.name})
    listed = tokens.list_tokens(store.kv)
    rows = [[t.name, _when(t.created_at)] for t in listed]
    text = table(rows, ["NAME", "CREATED"]) if rows else "no ingest tokens"
    return Output(text, [{"name": t.name, "created_at": t.created_at} for t in listed])


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "token", cmd_token, "create, list or revoke OTLP ingest tokens")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="the token's name (create, revoke)")
