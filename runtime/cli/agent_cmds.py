"""Agent commands: ``chat`` runs the sample agent; ``replay`` and ``repage`` re-run a recorded turn."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from runtime.agent.core import DEFAULT_MODEL, Agent, AgentReply
from runtime.blocks import ToolCall, ToolResult, canonical_json
from runtime.cli.common import Output, add_command, open_store_from, preview, to_json_text, warn
from runtime.cli.models_cmds import config_from
from runtime.config import Config
from runtime.errors import ModelCallFailed, ReplayMismatch, UnknownModel
from runtime.inspect.textdiff import LineOp
from runtime.providers import (
    ModelClient,
    OfflineModel,
    Provider,
    find_provider,
    get_provider,
    sending_providers,
)
from runtime.providers.offline.model import OFFLINE_MODEL_NAME
from runtime.replay.fidelity import replay_capability
from runtime.replay.repage import RepageResult, repage
from runtime.replay.resend import ReplayResult, check_replayable, replay
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceOrigin, TraceRecord

QUIT = "/quit"


def _open(args: argparse.Namespace, *, create: bool = False) -> tuple[KvBlockStore, KvTraceStore]:
    store = open_store_from(args, create=create)
    return store, KvTraceStore(store)


def provider_client(provider: Provider, config: Config) -> ModelClient:
    """Return ``provider``'s client with the config's settings (the environment wins)."""
    return provider.client(**provider.client_options(config, os.environ))


def _emit(args: argparse.Namespace, out: Output) -> None:
    """Print ``out`` now (for a command that then exits with an error)."""
    as_json = args.json or getattr(args, "json_after", False)
    print(to_json_text(out.data) if as_json else out.text, flush=True)


# -- chat ----------------------------------------------------------------------------------------


def _chat_client(args: argparse.Namespace, config: Config) -> tuple[ModelClient, str]:
    if args.offline:
        return _offline_client("--offline")
    profile = config.profile(args.model)
    provider = _calling_provider(profile.name, profile.provider)
    if not provider.available():
        return _offline_client(f"{provider.credentials_env} is not set")
    client = provider_client(provider, config)
    where = getattr(client, "base_url", None)
    return client, f"{provider.label}{f' at {where}' if where else ''} (model {profile.name})"


def _offline_client(why: str) -> tuple[ModelClient, str]:
    return OfflineModel(), (
        f"offline model {OFFLINE_MODEL_NAME} ({why}): its replies are canned, not Claude's"
    )


def _calling_provider(model: str, name: str) -> Provider:
    """Return the provider the agent can call ``model`` through, or raise UnknownModel."""
    provider = find_provider(name)
    if provider is None or not provider.takes_packed_requests:
        raise UnknownModel(
            f"{model} is a {name} model and llm386 calls Anthropic models "
            "only: pick a claude-* model, or add --offline to page for it with the offline model"
        )
    return provider


def cmd_chat(args: argparse.Namespace) -> Output:
    config = config_from(args)
    store, traces = _open(args, create=True)
    client, label = _chat_client(args, config)
    quiet = args.json or args.json_after
    say = (lambda _text: None) if quiet else (lambda text: print(text, flush=True))
    on_tool = None if quiet else _print_tool
    agent = Agent(store, traces, client, session=args.session, profile=args.model,
                  config=config, max_tool_rounds=args.max_tool_rounds, on_tool=on_tool)  # fmt: skip
    warn(agent.warnings)
    say(f"llm386 chat: session {args.session}, {label}. Type {QUIT} or end input to stop.")
    replies: list[AgentReply] = []
    try:
        for line in _lines(sys.stdin):
            reply = agent.say(line)
            replies.append(reply)
            say(_reply_text(reply))
    finally:
        client.close()
    data = {"session": args.session, "client": label, "replies": [r.to_json() for r in replies]}
    return Output("" if quiet else f"({len(replies)} message(s) in session {args.session})", data)


def _lines(stream: Any) -> Any:
    interactive = stream.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = stream.readline()
        if not line or line.strip() == QUIT:
            return
        if line.strip():
            yield line.rstrip("\n")


def _print_tool(call: ToolCall, result: ToolResult) -> None:
    status = "error" if result.is_error else "ok"
    args = preview(canonical_json(call.input).decode(), 80)
    print(f"  [tool] {call.name} {args} -> {status}: {preview(result.content, 100)}", flush=True)


def _reply_text(reply: AgentReply) -> str:
    if reply.error is not None:
        return f"error: {reply.error} (recorded as trace {reply.call_ids[-1]})"
    return f"assistant: {reply.text}"


# -- replay --------------------------------------------------------------------------------------


def _replay_client(args: argparse.Namespace, original: TraceRecord) -> ModelClient:
    """Return the client to re-send ``original`` with: --offline, --anthropic or --openai, else
    the record's own provider (a record whose provider cannot re-send it is refused before;
    a client of another request format is refused by ``replay``)."""
    chosen = [p for p in sending_providers() if getattr(args, p.name, False)]
    provider = chosen[0] if chosen else get_provider(original.provider)
    return provider_client(provider, config_from(args))


def cmd_replay(args: argparse.Namespace) -> Output:
    _, traces = _open(args)
    original = traces.get(args.id)
    check_replayable(original)
    client = _replay_client(args, original)
    try:
        result = replay(traces, original.call_id, client)
    finally:
        client.close()
    warn(result.warnings)
    out = Output(_replay_text(result), result.to_json())
    if result.record.error is not None:
        _emit(args, out)
        error = result.record.error
        raise ModelCallFailed(
            f"the replay failed and was recorded as trace {result.record.call_id}: {error.message}",
            error_type=error.type,
            status=error.status,
        )
    return out


def _replay_text(r: ReplayResult) -> str:
    rec = r.record
    who = get_provider(rec.provider).model_label(rec.model)
    matched = {True: "yes", False: "NO", None: "nothing was sent"}[r.bytes_matched]
    capability = replay_capability(r.original)
    lines = [
        f"replayed {r.original.call_id} as {rec.call_id} ({who})",
        f"fidelity: {capability.label}: {capability.promise}",
        f"sent bytes matched the recorded hash: {matched} (prompt hash {r.original.prompt_hash})",
        f"status: {rec.status.value}"
        + (f"  latency {rec.latency_ms} ms" if rec.latency_ms else ""),
    ]
    if rec.error is not None:
        status = f"HTTP {rec.error.status}" if rec.error.status is not None else "no HTTP status"
        lines.append(f"error {rec.error.type} ({status}): {rec.error.message}")
    if r.usage is not None:
        u = r.usage
        lines.append(
            f"usage: input {u.input_tokens} + cache read {u.cache_read_input_tokens} + cache "
            f"write {u.cache_creation_input_tokens}; output {u.output_tokens}"
            + (f"; input cost ~${r.input_cost_usd:.6f}" if r.input_cost_usd is not None else "")
        )
    if rec.response is not None:
        lines += ["response:", *(f"  {line}" for line in r.new_text.splitlines())]
    return "\n".join(lines + _diff_lines(r))


def _diff_lines(r: ReplayResult) -> list[str]:
    base = f"output vs {r.compared_with.call_id}"
    if r.record.response is None:
        return []
    if r.output_diff.identical:
        same = "byte-identical response" if r.response_identical else "same output"
        return [f"{base}: {same}"]
    marks = {LineOp.SAME: " ", LineOp.REMOVED: "-", LineOp.ADDED: "+"}
    lines = [f"{base}: +{r.output_diff.added} -{r.output_diff.removed} lines"]
    return lines + [f"  {marks[line.op]} {line.text}" for line in r.output_diff.lines]


# -- repage --------------------------------------------------------------------------------------


def cmd_repage(args: argparse.Namespace) -> Output:
    config = config_from(args)
    store, traces = _open(args)
    result = repage(store, traces, args.id, profile=args.model, config=config, record=args.record)
    warn(result.warnings)
    out = Output(_repage_text(result), result.to_json())
    if not result.hash_matches and result.same_profile and _ours(result.original):
        _emit(args, out)
        raise ReplayMismatch(
            f"re-paging trace {result.original.call_id} did not rebuild the recorded request: "
            f"{result.explanation}"
        )
    return out


def _ours(record: TraceRecord) -> bool:
    """Whether this runtime packed the record's request (so a re-page must match it): not an
    import, nor a call an agent made itself through the proxy."""
    return record.origin not in (TraceOrigin.IMPORT, TraceOrigin.CAPTURE)


def _repage_text(r: RepageResult) -> str:
    recorded = r.original.profile.get("name", r.original.model)
    if r.hash_matches:
        verdict = f"prompt hash: matches the recorded one ({r.prompt_hash})"
    else:
        verdict = (
            f"prompt hash: differs (recorded {r.original.prompt_hash[:16]}…, rebuilt "
            f"{r.prompt_hash[:16]}…), first different byte {r.first_divergent_byte}"
        )
    lines = [
        f"re-paged {r.original.call_id} for {r.profile.name} (recorded: {recorded})",
        verdict,
        f"why: {r.explanation}",
        f"plan: {len(r.plan.selected)} selected, {len(r.plan.omitted)} omitted, "
        f"{r.plan.tokens:,} of {r.plan.budget:,} tokens; request {len(r.body):,} bytes",
    ]
    if r.record is not None:
        cid = r.record.call_id
        lines.append(f"recorded as {cid} (not sent): send it with `llm386 replay {cid}`")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``chat``, ``replay`` and ``repage``."""
    p = add_command(sub, "chat", cmd_chat, "chat with the sample agent (the store is its memory)")
    p.add_argument("--session", default="chat", help="session to continue or start (default chat)")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model profile (default {DEFAULT_MODEL})"
    )
    p.add_argument("--offline", action="store_true", help="use the offline model even with a key")
    p.add_argument("--max-tool-rounds", type=int, default=5, help="tool rounds per message")
    p.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")
    p = add_command(
        sub, "replay", cmd_replay, "re-send a trace's exact request bytes and record it"
    )
    p.add_argument("id", help="call id or unique prefix")
    how = p.add_mutually_exclusive_group()
    for provider in sending_providers():  # --anthropic, --openai, --offline
        how.add_argument(
            f"--{provider.name}", action="store_true", help=f"send to {provider.label}"
        )
    p.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")
    p = add_command(sub, "repage", cmd_repage, "rebuild a trace's plan and request from the store")
    p.add_argument("id", help="call id or unique prefix")
    p.add_argument("--model", help="re-page for this model profile (default: the recorded one)")
    p.add_argument("--record", action="store_true", help="record the new request (not sent)")
    p.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")
