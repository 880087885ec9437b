"""Counterfactual replay: change exactly one thing in a recorded turn and re-send it.

Owns: ``prepare`` (the child request and its checked byte diff, nothing sent), ``run_experiment``
(send it and record the child with its experiment row) and ``ExperimentResult``.

Invariants:
- Only a turn replay can send is experimented on (``check_replayable``), and only if its stored
  bytes are canonical JSON (the packer's own): one unit can then change while every other byte
  stays, which ``runtime.replay.isolation`` proves before anything is sent. A change whose bytes
  differ outside its units raises ReplayMismatch; nothing is sent or recorded.
- A re-page change (a section's budget, a retriever's weight) first rebuilds the turn unchanged
  and requires the recorded bytes back, so the difference is the change's alone; the child
  carries the new plan. Its bytes may differ in many units (the pager chose again): measured,
  not proved (``ByteDiff.isolated`` is None).
- The child is an ordinary trace record (origin replay, parent the original, same session and
  turn) with ``config["experiment"]`` saying what changed, written with its row in one
  transaction (``runtime.replay.experimentlog``). A model error is recorded like a replay's; a
  refusal (bad change, wrong client format, retired model) records nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runtime.blocks import canonical_json
from runtime.config import Config
from runtime.errors import InvalidInput, ReplayMismatch
from runtime.inspect.request import parse_request
from runtime.packer.core import pack
from runtime.pager.core import page
from runtime.pager.plan import profile_from_json
from runtime.paging.demand import page_with_paging, recorded_paging
from runtime.profiles.lifecycle import check_callable
from runtime.providers import ModelClient, get_provider
from runtime.replay.edits import Change, ChangeKind, apply_change, check_tool_pairs, tool_pairs
from runtime.replay.experimentlog import ExperimentRow, record_experiments
from runtime.replay.isolation import ByteDiff, byte_diff, edit_diff
from runtime.replay.repage import page_request_for
from runtime.replay.resend import (
    REPLAY_KEY,
    check_client_takes,
    check_replayable,
    stored_request,
)
from runtime.replay.targets import resolve_target
from runtime.storage.interface import BlockStore
from runtime.tracing.record import CallBasis, SentCall, provider_of, send_call
from runtime.tracing.records import (
    REPAGE_KEY,
    StoredTrace,
    TraceOrigin,
    TraceRecord,
    TraceStore,
)

EXPERIMENT_KEY = "experiment"  # record.config key describing the experiment that made it
_REPAGED = (ChangeKind.BUDGET, ChangeKind.WEIGHT)


@dataclass(frozen=True)
class Prepared:
    """A child request ready to send: its bytes, its diff against the original, and notes."""

    original: TraceRecord
    change: Change
    original_bytes: bytes
    request: bytes
    diff: ByteDiff
    notes: tuple[str, ...] = ()
    plan: Mapping[str, Any] | None = None  # a re-page's new plan
    estimated_input_tokens: int | None = None


@dataclass(frozen=True)
class ExperimentResult:
    """An experiment sent and recorded: what was prepared, the child record and its row."""

    prepared: Prepared
    record: TraceRecord
    row: ExperimentRow

    @property
    def ok(self) -> bool:
        return self.record.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.record.call_id, "parent_call_id": self.prepared.original.call_id,
            "change": self.prepared.change.to_json(), "description": self.row.description,
            "notes": list(self.prepared.notes), "byte_diff": self.prepared.diff.to_json(),
            "status": self.record.status.value, "row": self.row.to_json(),
            "record": self.record.to_json(),
        }  # fmt: skip


def canonical_data(original: TraceRecord, raw: bytes) -> dict[str, Any]:
    """Return the request JSON of ``raw``, or refuse bytes that are not canonical JSON."""
    data = parse_request(raw)
    if data is None or canonical_json(data) != raw:
        raise InvalidInput(
            f"trace {original.call_id}'s request is not canonical JSON (it was captured as the "
            "agent wrote it), so changing one unit would rewrite every byte; replay it "
            f"unchanged with `llm386 replay {original.call_id}`, or sample it with --samples"
        )
    return data


def prepare(
    store: BlockStore, traces: TraceStore, call_id: str, change: Change,
    *, config: Config | None = None,
) -> Prepared:  # fmt: skip
    """Return the child request of ``change`` on ``call_id``, its byte diff checked; send nothing."""
    original = traces.get(call_id)
    check_replayable(original)
    raw = stored_request(traces, original)
    if change.kind in (ChangeKind.NONE, ChangeKind.PROVIDER):
        return Prepared(original, change, raw, raw, byte_diff({}, {}, (), "both"))
    data = canonical_data(original, raw)
    if change.kind in _REPAGED:
        return _repaged(store, original, change, raw, data, config)
    if change.kind is ChangeKind.REQUEST:
        return _playground(original, change, raw, data)
    if change.kind in (ChangeKind.EDIT, ChangeKind.DROP, ChangeKind.INSERT):
        change = replace(change, target=resolve_target(store, original, data, change.target))
    applied = apply_change(data, change)
    diff = byte_diff(data, applied.data, applied.paths, applied.sides)
    if not diff.isolated:
        raise ReplayMismatch(
            f"{change.describe()} changed bytes outside {', '.join(diff.changed_units)} of trace "
            f"{original.call_id}; nothing was sent or recorded. Report this as a bug"
        )
    return Prepared(original, change, raw, canonical_json(applied.data), diff, applied.notes)


def _playground(
    original: TraceRecord, change: Change, raw: bytes, data: dict[str, Any]
) -> Prepared:
    """A request edited as JSON: sent as its canonical bytes (unchanged: the original's)."""
    edited = parse_request(str(change.value or "").encode("utf-8"))
    if edited is None:
        raise InvalidInput(
            "the edited request is not a JSON object: fix the JSON (the editor shows the "
            "recorded request) and send again; nothing was sent"
        )
    _check_shape(edited)
    if tool_pairs(edited) != tool_pairs(data):
        check_tool_pairs(data, edited, change)
    request = canonical_json(edited)
    return Prepared(original, change, raw, request, edit_diff(data, edited))


def _check_shape(edited: Mapping[str, Any]) -> None:
    """Refuse an edited request no API would take: a model and a list of message objects."""
    messages = edited.get("messages")
    if not isinstance(edited.get("model"), str) or not edited.get("model"):
        raise InvalidInput('the edited request has no "model" (a model name): put it back; '
                           "nothing was sent")  # fmt: skip
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        raise InvalidInput('the edited request\'s "messages" must be a non-empty list of '
                           'objects with a "role"; nothing was sent')  # fmt: skip


def _repaged(
    store: BlockStore, original: TraceRecord, change: Change, raw: bytes,
    data: dict[str, Any], config: Config | None,
) -> Prepared:  # fmt: skip
    if not isinstance(original.plan.get("settings"), Mapping):
        raise InvalidInput(
            f"trace {original.call_id} was not paged by llm386 (no pager settings recorded), so "
            "there is no budget or retriever weight to change; edit its blocks instead"
        )
    request = page_request_for(original, profile_from_json(original.profile), config)
    paging = recorded_paging(original.plan.get("settings") or {})

    def packed(req: Any) -> Any:
        plan = page(store, req) if paging is None else page_with_paging(store, req, paging)
        return plan, pack(store, plan)

    _, again = packed(request)
    if again.body != raw:
        raise ReplayMismatch(
            f"trace {original.call_id} no longer re-pages to its recorded bytes (blocks were "
            "deleted or the pager changed), so a re-paged child would differ by more than the "
            "change; nothing was sent. Edit its blocks instead"
        )
    plan, child = packed(_changed_request(request, original, change))
    diff = byte_diff(data, dict(child.request), (), "")
    if diff.identical:
        raise InvalidInput(f"{change.describe()} re-pages to the same bytes: nothing changes")
    return Prepared(original, change, raw, child.body, diff, (), plan.to_json(), child.input_tokens)


def _changed_request(request: Any, original: TraceRecord, change: Change) -> Any:
    if change.kind is ChangeKind.BUDGET:
        fraction = _fraction(change.value, original)
        names = [name for name, _ in request.budgets.items()]
        if change.target not in names:
            raise InvalidInput(
                f"{change.target!r} is not a section: --budget takes {', '.join(names)}"
            )
        return replace(request, budgets=replace(request.budgets, **{change.target: fraction}))
    names = [w.name for w in request.retrievers]
    if change.target not in names:
        raise InvalidInput(
            f"trace {original.call_id} was paged without a {change.target!r} retriever: "
            f"--weight takes {', '.join(names)}"
        )
    stack = tuple(replace(w, weight=_number(change.value)) if w.name == change.target else w
                  for w in request.retrievers)  # fmt: skip
    return replace(request, retrievers=stack)


def _number(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            or not math.isfinite(value)):  # fmt: skip
        raise InvalidInput(f"{value!r} is not a weight or budget: give a number of 0 or more")
    return float(value)


def _fraction(value: Any, original: TraceRecord) -> float:
    """A budget as a fraction of the input budget: 0.3, or a token count like 2000."""
    number = _number(value)
    if number <= 1:
        return number
    total = original.plan.get("budget")
    if not isinstance(total, int) or total <= 0:
        raise InvalidInput("give the budget as a fraction of the input budget, e.g. 0.3")
    return min(1.0, number / total)


# -- sending -----------------------------------------------------------------------------------


def experiment_config(prepared: Prepared, client: ModelClient, who: str) -> dict[str, Any]:
    """Return the child record's config: the original's, with what the experiment changed."""
    original = prepared.original
    config = {k: v for k, v in original.config.items()
              if k not in (REPLAY_KEY, REPAGE_KEY, EXPERIMENT_KEY)}  # fmt: skip
    config[REPLAY_KEY] = {"of": original.call_id, "client": provider_of(client).value}
    config[EXPERIMENT_KEY] = {"change": prepared.change.to_json(), "who": who,
                              "notes": list(prepared.notes), "root": root_of(original)}  # fmt: skip
    return config


def root_of(record: TraceRecord) -> str:
    """Return the recorded turn an experiment tree grows from (the record, if no experiment)."""
    about = record.config.get(EXPERIMENT_KEY)
    root = about.get("root") if isinstance(about, Mapping) else None
    return str(root) if root else record.call_id


def send_prepared(prepared: Prepared, client: ModelClient, who: str) -> SentCall:
    """Send a prepared child through ``client``; the call is returned unwritten."""
    original = prepared.original
    check_client_takes(original, client)
    model = get_provider(provider_of(client)).model_of(prepared.request)
    check_callable(model, action=f"run an experiment on trace {original.call_id} with it")
    basis = CallBasis.of_record(original, experiment_config(prepared, client, who))
    if prepared.plan is not None:
        basis = replace(basis, plan=prepared.plan,
                        estimated_input_tokens=prepared.estimated_input_tokens)  # fmt: skip
    return send_call(
        client, prepared.request, basis, origin=TraceOrigin.REPLAY, parent=original.call_id
    )


def row_for(prepared: Prepared, sent: SentCall, who: str, group: str = "") -> ExperimentRow:
    """Return the experiment row of a sent child."""
    rec, original = sent.record, prepared.original
    usage = rec.usage
    return ExperimentRow(
        child=rec.call_id, parent=original.call_id, root=root_of(original),
        kind=prepared.change.kind.value, change=prepared.change.to_json(),
        description=prepared.change.describe(), who=who, started_at=rec.started_at,
        status=rec.status.value, provider=rec.provider.value, model=rec.model,
        input_tokens=usage.total_input_tokens if usage else (rec.estimated_input_tokens or 0),
        output_tokens=usage.output_tokens if usage else 0,
        cost_usd=get_provider(rec.provider).price(usage, rec.model),
        isolated=prepared.diff.isolated, group=group, notes=prepared.notes,
    )  # fmt: skip


def stored(sent: SentCall) -> StoredTrace:
    return StoredTrace(sent.record, sent.request, sent.response.body if sent.response else None)


def run_experiment(
    store: BlockStore, traces: TraceStore, call_id: str, change: Change, client: ModelClient,
    *, who: str, config: Config | None = None,
) -> ExperimentResult:  # fmt: skip
    """Make ``change`` on ``call_id``, send it through ``client`` and record the child."""
    prepared = prepare(store, traces, call_id, change, config=config)
    sent = send_prepared(prepared, client, who)
    row = row_for(prepared, sent, who)
    (record,) = record_experiments(traces, [(stored(sent), row)])
    return ExperimentResult(prepared, record, row)
