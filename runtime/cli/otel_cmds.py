"""OpenTelemetry commands: ingest tokens (``token create|list|revoke``) and
``export --otlp URL`` (sessions as GenAI spans to a collector, added to ``llm386 export``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from runtime.cli.common import Output, add_command, open_store_from, table
from runtime.cli.models_cmds import config_from
from runtime.errors import InvalidInput
from runtime.otel import tokens
from runtime.otel.export import DEFAULT_TIMEOUT_S, check_url, export_sessions
from runtime.storage.tracestore import KvTraceStore


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


def cmd_export_otlp(args: argparse.Namespace) -> Output:
    """Send one session (or --all) to an OTLP/HTTP collector as GenAI spans."""
    url = args.otlp or config_from(args).otel.export_url
    if not url:
        raise InvalidInput("--otlp needs a URL (http://HOST:4318/v1/traces), or set "
                           "[otel] export_url in llm386.toml")  # fmt: skip
    check_url(url)
    if args.file:
        raise InvalidInput("`llm386 export --otlp` sends spans and writes no FILE; drop "
                           f"{args.file!r} (or drop --otlp to write JSON Lines)")  # fmt: skip
    if bool(args.session) == args.all:
        raise InvalidInput("give one SESSION, or --all to send every session")
    store = open_store_from(args)
    sessions = [s.session for s in store.sessions()] if args.all else [args.session]
    if args.session:
        store.session_info(args.session)  # SessionNotFound says so, before any request
    report = export_sessions(KvTraceStore(store), sessions, url, headers=_headers(args.header),
                             timeout=args.timeout, progress=_progress)  # fmt: skip
    text = f"sent {len(report.sessions)} session(s), {report.spans} spans, to {report.url}"
    return Output(text, report.to_json())


def _headers(given: list[str] | None) -> dict[str, str]:
    out = {}
    for item in given or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"--header {item!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _extend_export(sub: argparse._SubParsersAction) -> None:
    """Add --otlp to ``llm386 export`` (registered by runtime.cli.trace_cmds)."""
    p = sub.choices["export"]
    plain = p.get_default("func")

    def dispatch(args: argparse.Namespace) -> Output:
        if args.otlp is not None:
            return cmd_export_otlp(args)
        if not args.session or not args.file or args.all or args.header:
            raise InvalidInput("`llm386 export SESSION FILE` writes JSON Lines; --all and "
                               "--header go with --otlp URL")  # fmt: skip
        return plain(args)

    p.set_defaults(func=dispatch)
    for action in p._actions:  # SESSION and FILE are optional once --otlp may stand in for FILE
        if action.dest in ("session", "file"):
            action.nargs, action.default = "?", None
    g = p.add_argument_group("OpenTelemetry (send GenAI spans to a collector instead of a FILE)")
    g.add_argument("--otlp", nargs="?", const="", metavar="URL",
                   help="the collector's OTLP/HTTP traces URL (default: [otel] export_url)")  # fmt: skip
    g.add_argument("--all", action="store_true", help="with --otlp: every session")
    g.add_argument("--header", action="append", metavar="NAME=VALUE",
                   help="a header to send, e.g. Authorization=Bearer ... (repeatable; default: "
                   "$OTEL_EXPORTER_OTLP_TRACES_HEADERS)")  # fmt: skip
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds the exporter keeps trying a request (default: 10)")  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    _extend_export(sub)
    p = add_command(sub, "token", cmd_token, "create, list or revoke OTLP ingest tokens")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="the token's name (create, revoke)")
