"""Experiment options of ``llm386 replay``: change one thing and re-send, or sample N times.

``llm386 replay ID`` keeps its behaviour (the stored bytes, unchanged). With one of ``--edit
BLOCK=FILE``, ``--drop BLOCK``, ``--insert AFTER=FILE``, ``--set NAME=VALUE``, ``--model NAME``,
``--provider NAME``, ``--budget SECTION=N`` or ``--weight RETRIEVER=W`` it runs a
counterfactual (``runtime.replay.experiment``); with ``--samples N`` it sends the same bytes N
times and groups the answers (``runtime.replay.variance``), after showing the estimated cost
and asking (``--yes`` skips the question; without a terminal it is required).

A provider whose key is not set falls back to the offline model for a Messages request, and
says so; nothing is sent or recorded otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runtime.cli.agent_cmds import provider_client
from runtime.cli.common import Output, open_store_from, warn
from runtime.cli.models_cmds import config_from
from runtime.errors import InvalidInput
from runtime.progress import Progress
from runtime.providers import ModelClient, OfflineModel, get_provider, sending_providers
from runtime.replay.edits import Change, ChangeKind, parse_value
from runtime.replay.experiment import ExperimentResult, run_experiment
from runtime.replay.resend import check_replayable, output_text
from runtime.replay.variance import DEFAULT_CONCURRENCY, estimate_samples, sample
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceRecord

_CHANGES = ("edit", "drop", "insert", "set", "model", "provider", "budget", "weight")


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InvalidInput(f"--{flag} takes NAME=VALUE (got {text!r})")
    return name.strip(), value


def _file_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--{flag}: cannot read {path} ({exc.__class__.__name__}); give a "
                           "UTF-8 text or JSON file") from None  # fmt: skip


def change_from(args: argparse.Namespace) -> Change | None:
    """Return the one change the options ask for (None: none), or raise if they ask for more."""
    given = [name for name in _CHANGES if getattr(args, f"x_{name}") is not None]
    if len(given) > 1:
        raise InvalidInput(
            f"an experiment changes exactly one thing; got --{' and --'.join(given)}. "
            "Run one experiment per change (each child can be replayed and changed again)"
        )
    if not given:
        return None
    name, raw = given[0], getattr(args, f"x_{given[0]}")
    if name == "drop":
        return Change(ChangeKind.DROP, raw)
    if name in ("model", "provider"):
        return Change(ChangeKind(name), "", raw)
    key, value = _pair(raw, name)
    if name in ("edit", "insert"):
        return Change(ChangeKind(name), key, _file_text(value, name))
    kind = {"set": ChangeKind.PARAM, "budget": ChangeKind.BUDGET, "weight": ChangeKind.WEIGHT}
    return Change(kind[name], key, parse_value(value))


def wants_experiment(args: argparse.Namespace) -> bool:
    return args.x_samples is not None or any(getattr(args, f"x_{n}") is not None for n in _CHANGES)


def _client(args: argparse.Namespace, original: TraceRecord, change: Change | None) -> ModelClient:
    """Return the client: --provider's, else --anthropic/--openai/--offline, else the record's;
    the offline model (said on stderr) when that provider has no key and it can stand in."""
    chosen = [p for p in sending_providers() if getattr(args, p.name, False)]
    if change is not None and change.kind is ChangeKind.PROVIDER:
        chosen = [get_provider(str(change.value))]
    provider = chosen[0] if chosen else get_provider(original.provider)
    if provider.available():
        return provider_client(provider, config_from(args))
    offline = get_provider("offline")
    if offline.request_format != get_provider(original.provider).request_format:
        raise InvalidInput(
            f"no {provider.credentials_name} is set ({provider.credentials_env}), so nothing was "
            f"sent or recorded; set it and run again"
        )
    warn([f"{provider.credentials_env} is not set: sending to the offline model instead "
          "(its replies are canned, not a real model's)"])  # fmt: skip
    return OfflineModel()


def _who(args: argparse.Namespace) -> str:
    return args.who or os.environ.get("USER") or "cli"


def cmd_experiment(args: argparse.Namespace) -> Output:
    """Run the counterfactual or the samples the options ask for."""
    store = open_store_from(args)
    traces = KvTraceStore(store)
    original = traces.get(args.id)
    check_replayable(original)
    change = change_from(args)
    if args.x_samples is not None and change is not None:
        raise InvalidInput("--samples sends the same bytes N times: give it without a change")
    client = _client(args, original, change)
    try:
        if change is None:
            return _samples(args, store, traces, original, client)
        result = run_experiment(store, traces, original.call_id, change, client, who=_who(args),
                                config=config_from(args))  # fmt: skip
    finally:
        client.close()
    return Output(experiment_text(result), result.to_json())


def experiment_text(r: ExperimentResult) -> str:
    """Return what the CLI prints about one counterfactual."""
    d, rec = r.prepared.diff, r.record
    where = ("the same bytes" if d.identical else
             f"bytes {d.first_divergent_byte}..{d.original_end} of {d.original_size} became "
             f"{d.first_divergent_byte}..{d.child_end} of {d.child_size}")  # fmt: skip
    proof = {True: "only the change differs (proved)", False: "NOT isolated",
             None: "re-paged: the pager chose again"}[d.isolated]  # fmt: skip
    lines = [
        f"experiment on {r.prepared.original.call_id}: {r.row.description}",
        *(f"  {note}" for note in r.prepared.notes),
        f"child {rec.call_id} ({rec.provider.value}, {rec.model}): {rec.status.value}",
        f"request: {where}; {proof}; cache prefix "
        + ("kept" if d.prefix_kept else "changed")
        + f" (first changed unit {d.first_changed_unit or '-'})",
        f"tokens: {r.row.input_tokens:,} in, {r.row.output_tokens:,} out"
        + (f"; input cost ~${r.row.cost_usd:.6f}" if r.row.cost_usd is not None else ""),
    ]
    if rec.error is not None:
        lines.append(f"error {rec.error.type}: {rec.error.message}")
    lines += ["output:", *(f"  {line}" for line in output_text(rec).splitlines())]
    return "\n".join(lines)


def _samples(
    args: argparse.Namespace, store: KvBlockStore, traces: KvTraceStore, original: TraceRecord,
    client: ModelClient,
) -> Output:  # fmt: skip
    estimate = estimate_samples(original, client, args.x_samples)
    print(f"llm386: {estimate.text()}", file=sys.stderr, flush=True)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInput("add --yes to send (there is no terminal to confirm on); "
                               "nothing was sent")  # fmt: skip
        if input("send them? [y/N] ").strip().lower() not in ("y", "yes"):
            return Output("nothing was sent", {"sent": 0, "estimate": estimate.to_json()})
    with Progress("sampling", args.x_samples, unit="sends") as progress:
        result = sample(store, traces, original.call_id, client, args.x_samples, who=_who(args),
                        concurrency=args.concurrency, progress=progress)  # fmt: skip
    total = len(result.records)
    lines = [f"{total} samples of {original.call_id}: {result.verdict.upper()} "
             f"({result.explanation()})"]  # fmt: skip
    for i, c in enumerate(result.clusters):
        mark = " <- the recorded turn" if i == result.original_cluster else ""
        first = (c.text.splitlines() or [""])[0]
        lines.append(f"  {c.size:3d}/{total} [{c.how}] {first[:100]}{mark}")
    return Output("\n".join(lines), result.to_json())


def register(sub: argparse._SubParsersAction) -> None:
    """Add the experiment options to ``llm386 replay`` (registered by runtime.cli.agent_cmds)."""
    p = sub.choices["replay"]
    plain = p.get_default("func")

    def dispatch(args: argparse.Namespace) -> Output:
        return cmd_experiment(args) if wants_experiment(args) else plain(args)

    p.set_defaults(func=dispatch)
    g = p.add_argument_group("experiments (change exactly one thing and re-send)")
    g.add_argument("--edit", dest="x_edit", metavar="BLOCK=FILE",
                   help="replace a unit (messages[N].content[M], system[N], tools[N] or a block id) with FILE's text or JSON")  # fmt: skip
    g.add_argument("--drop", dest="x_drop", metavar="BLOCK", help="remove a unit (a tool_use takes its result with it)")  # fmt: skip
    g.add_argument("--insert", dest="x_insert", metavar="AFTER=FILE", help="insert FILE's text or JSON unit after a unit")  # fmt: skip
    g.add_argument("--set", dest="x_set", metavar="NAME=VALUE", help="set a sampling parameter, e.g. temperature=0")  # fmt: skip
    g.add_argument("--model", dest="x_model", metavar="NAME", help="send to another model")
    g.add_argument("--provider", dest="x_provider", metavar="NAME",
                   choices=[q.name for q in sending_providers()], help="send the same bytes to another provider")  # fmt: skip
    g.add_argument("--budget", dest="x_budget", metavar="SECTION=N", help="re-page with a section's budget (a fraction, or tokens)")  # fmt: skip
    g.add_argument("--weight", dest="x_weight", metavar="RETRIEVER=W", help="re-page with a retriever's weight")  # fmt: skip
    g.add_argument("--samples", dest="x_samples", type=int, metavar="N", help="send the same bytes N times (at most 50) and group the answers")  # fmt: skip
    g.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="sends at once for --samples")  # fmt: skip
    g.add_argument("--yes", action="store_true", help="send --samples without asking")
    g.add_argument("--who", help="who ran the experiment (default: $USER)")
