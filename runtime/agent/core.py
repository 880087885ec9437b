"""The sample agent: a chatbot with a calculator and a user-profile lookup, whose only memory is
the store.

Owns: ``Agent`` (one user message in, one reply out), ``AgentReply``, the agent's system prompt,
and ``create_demo_conversations`` (the offline demo sessions the web's demo command loads).

How a message is handled, one model call per turn:
1. the message is put as a user-message block;
2. the pager pages the session as it was before that block, with the message as the task, and
   the packer renders the Anthropic request bytes and their hash;
3. the client sends them;
4. the tool-use reducer turns the response into assistant-message and tool-call blocks and each
   tool call is run; then ONE write transaction numbers the turn, records the trace (plan,
   bytes, hash, response or error), puts the reply blocks and the tool-result blocks with their
   tool-invocation edges, and records the turn's page faults in the paging state. A crash
   leaves either the whole turn or none of it, and two agents on one session never share a
   turn number or lose each other's faults (LMDB serialises the writes);
5. while the model asks for tools (at most ``max_tool_rounds`` rounds) it is called again: the
   whole session is paged with no new task and the user message required, so the request ends
   with the tool results.

Demand paging (``paging``, on by default; ``paging=None`` turns it off): each call is paged with
``runtime.paging.demand`` under the session's fault pins (stored in the session meta ``paging``), so
stale tool results, duplicates and tool schemas go out as placeholders and stubs and the request
offers ``recall``. A ``recall`` call is answered with the paged-out block's content instead of
running a tool; a recall, or a repeat of a call whose result was paged out, is a page fault: it
is recorded in the session's paging state (refaults marked, backoff applied), the block is
pinned for the rest of the session, and the fault is written on the trace of the request that
serves it (the next call's ``paging.faults``). Each record's ``paging`` slot holds the turn's
evictions and accounting (``paging.PagedTurn.to_json``).

Invariants:
- No conversation is held in the process: an ``Agent`` keeps only handles and settings, so a
  conversation resumes after a restart with the same store.
- Deterministic: the same store contents and message give the same request bytes; nothing from
  the clock or the process reaches a prompt.
- The system prompt and tool schemas are put once per session (checked by block membership).
- The agent never runs for a retired model (ModelRetired at construction, before any call);
  for a deprecated one ``warnings`` holds the line the CLI shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.agent.tools import TOOL_DEFINITIONS, ToolRunner
from runtime.blocks import BlockKind, NewBlock, Provenance, ToolCall, ToolResult, canonical_json
from runtime.config import Config
from runtime.errors import (
    BlockNotFound,
    InvalidInput,
    ModelCallFailed,
    ReducerError,
    SessionNotFound,
)
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.pager.plan import PagePlan
from runtime.paging.demand import DemandPaging, page_with_paging, paged_turn, session_entries
from runtime.paging.eviction import EvictionConfig, EvictionPlan
from runtime.paging.faults import PageFault, load_state, recall_content, save_state
from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.paging.presets import AGENT_PAGING
from runtime.paging.turn import PagedTurn, finish_turn
from runtime.profiles.catalog import ModelProfile, get_profile
from runtime.profiles.lifecycle import check_callable
from runtime.providers import ModelClient, OfflineModel, get_provider
from runtime.reducers import Reduction, ToolUseReducer, block_id
from runtime.storage.interface import BlockStore
from runtime.tracing.record import CallBasis, CallOutcome, SentCall, record_sent, send_call
from runtime.tracing.records import TokenizerInfo, TraceStore

AGENT_NAME = "llm386-sample-agent"
DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TOOL_ROUNDS = 5
SOURCE = "sample-agent"
SYSTEM_PROMPT = (
    "You are the llm386 sample agent, a concise assistant. Use the calculator tool for any "
    "arithmetic and the lookup_user_profile tool to answer questions about a user (ids look "
    "like u-1001). Answer in one or two sentences."
)


ToolHook = Callable[[ToolCall, ToolResult], None]


@dataclass(frozen=True)
class ToolRun:
    """One tool call the model asked for and what the tool returned."""

    call: ToolCall
    result: ToolResult

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call.__dict__, "result": self.result.__dict__}


@dataclass(frozen=True)
class AgentReply:
    """What one user message led to: the final text, the model calls and the tools run."""

    session: str
    text: str
    call_ids: tuple[str, ...]
    tools: tuple[ToolRun, ...] = ()
    stop: str = "end_turn"  # end_turn | tool-round-limit | error
    error: ModelCallFailed | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session, "text": self.text, "call_ids": list(self.call_ids),
            "tools": [t.to_json() for t in self.tools], "stop": self.stop,
            "error": None if self.error is None else {"type": self.error.error_type,
                                                      "status": self.error.status,
                                                      "message": str(self.error)},
        }  # fmt: skip


@dataclass(frozen=True)
class _Paged:
    """What one demand-paged call needs after its answer: the turn and the request it saw."""

    turn: PagedTurn
    evictions: EvictionPlan
    entries: tuple[Any, ...]


@dataclass(frozen=True)
class _Answer:
    """What a reply leads to, before it is written: its blocks, tool calls and their results."""

    reply: Reduction
    calls: tuple[ToolCall, ...]
    results: Reduction
    runs: tuple[ToolRun, ...]
    error: ReducerError | None = None  # the reply did not reduce: raised after it is recorded


@dataclass(frozen=True)
class _Turn:
    """What to ask the pager for one model call of a message."""

    task: str
    upto: int | None
    required: tuple[str, ...]
    round: int


class Agent:
    """The sample agent over one session of a store (see the module docstring)."""

    def __init__(
        self,
        store: BlockStore,
        traces: TraceStore,
        client: ModelClient,
        *,
        session: str,
        profile: ModelProfile | str = DEFAULT_MODEL,
        config: Config | None = None,
        max_tool_rounds: int = MAX_TOOL_ROUNDS,
        on_tool: ToolHook | None = None,
        paging: EvictionConfig | None = AGENT_PAGING,
        runner: ToolRunner | None = None,
    ) -> None:
        self.store, self.traces, self.client = store, traces, client
        self.session = session
        self.config = config or Config.default()
        self.profile = get_profile(profile, self.config) if isinstance(profile, str) else profile
        warning = check_callable(
            self.profile.name,
            action=f"run the agent for {self.profile.name}",
            instead="`llm386 chat --model {replacement}`",
        )
        self.warnings: tuple[str, ...] = (warning,) if warning else ()
        self.max_tool_rounds = max_tool_rounds
        self.on_tool = on_tool
        self.runner = runner or ToolRunner()
        self.reducer = ToolUseReducer()
        self.paging = paging
        self._last: _Paged | None = None  # the previous call's paging (cache prefix, faults)
        self._served: tuple[PageFault, ...] = ()  # faults the next request serves

    @property
    def answering_model(self) -> str:
        """The model that answers this agent: the profile's, unless its client stands in."""
        return get_provider(self.client.provider).answering_model(self.profile.name)

    def say(self, message: str) -> AgentReply:
        """Handle one user message: store it, call the model (and tools), return the reply."""
        self.ensure_setup()
        entry = self.store.put(
            self.session, NewBlock(BlockKind.USER_MESSAGE, message, provenance=Provenance("user"))
        )
        turn = _Turn(message, entry.seq, (), 1)
        call_ids: list[str] = []
        runs: list[ToolRun] = []
        while True:
            outcome, new_runs = self._call(turn)
            call_ids.append(outcome.record.call_id)
            if outcome.failure is not None:
                return AgentReply(self.session, "", tuple(call_ids), tuple(runs), "error",
                                  outcome.failure)  # fmt: skip
            assert outcome.response is not None
            runs += new_runs
            for run in new_runs:
                if self.on_tool is not None:
                    self.on_tool(run.call, run.result)
            if not new_runs:
                return AgentReply(self.session, outcome.response.text, tuple(call_ids), tuple(runs))
            if turn.round >= self.max_tool_rounds:
                note = f"(stopped: the model still wanted tools after {turn.round} tool rounds)"
                return AgentReply(self.session, note, tuple(call_ids), tuple(runs),
                                  "tool-round-limit")  # fmt: skip
            turn = _Turn("", None, (entry.id,), turn.round + 1)

    def ensure_setup(self) -> None:
        """Put the system prompt and tool schemas in the session unless it already holds them."""
        self.store.atomic(self._setup)  # checked and written at once: two agents set up once

    def _setup(self) -> None:
        try:
            self.store.session_info(self.session)
            new = False
        except SessionNotFound:
            new = True
        missing = [b for b in setup_blocks() if not self._holds(b)]
        if missing:
            self.store.put_many(self.session, missing)
        if new:  # an existing session keeps its own title, source and model
            model = self.answering_model
            self.store.set_session_meta(
                self.session, source=SOURCE, profile=self.profile.name, model=model,
                title=f"sample agent chat ({model})",
            )  # fmt: skip

    def _holds(self, block: NewBlock) -> bool:
        bid = block_id(block)
        if not self.store.has(bid):
            return False
        return any(sid == self.session for sid, _ in self.store.memberships(bid))

    def _call(self, turn: _Turn) -> tuple[CallOutcome, list[ToolRun]]:
        """Page, send, and commit the call with everything its answer leads to (one write)."""
        request = PageRequest.from_config(
            self.config, self.session, turn.task, self.profile, upto=turn.upto,
            required=turn.required,
        )  # fmt: skip
        number = self._next_turn()
        plan, paged = self._page(request, number)
        packed = pack(self.store, plan)
        agent = {"name": AGENT_NAME, "round": turn.round, "max_tool_rounds": self.max_tool_rounds,
                 "paging": self.paging is not None}  # fmt: skip
        basis = CallBasis(
            session=self.session, turn=number, profile=self.profile.to_json(),
            config={"pager": dict(plan.settings), "agent": agent}, task=plan.task,
            upto_seq=plan.upto, plan=plan.to_json(),
            tokenizer=TokenizerInfo(self.profile.tokenizer, plan.tokenizer_version),
            estimated_input_tokens=packed.input_tokens,
            paging={} if paged is None else paged.turn.to_json(),
        )  # fmt: skip
        self._last = paged
        sent = send_call(self.client, packed.body, basis)
        answer = self._answer(sent)
        committed = self.store.atomic(lambda: self._commit(sent, answer))
        if answer is not None and answer.error is not None:
            raise answer.error  # recorded first: every send is traced
        return committed

    def _answer(self, sent: SentCall) -> _Answer | None:
        """Turn the reply into blocks and run its tools (nothing is written yet)."""
        if sent.response is None:
            return None
        data = sent.response.data
        try:
            reduction = self.reducer.reduce(None, data)
            calls = self.reducer.calls(data)
        except ReducerError as exc:
            return _Answer(Reduction(), (), Reduction(), (), error=exc)
        results = [self._run(c) for c in calls]
        answered = self.reducer.results(calls, results) if calls else Reduction()
        runs = tuple(ToolRun(c, r) for c, r in zip(calls, results, strict=True))
        return _Answer(reduction, tuple(calls), answered, runs)

    def _commit(self, sent: SentCall, answer: _Answer | None) -> tuple[CallOutcome, list[ToolRun]]:
        """In one write: number the turn, record it, put the reply and tool results, and
        record its page faults in the session's paging state (read and written here)."""
        sent = sent.numbered(self._next_turn())
        outcome = record_sent(self.traces, sent)
        if answer is None or answer.error is not None:
            return outcome, []
        if answer.reply.blocks:
            self.store.put_many(self.session, answer.reply.blocks, answer.reply.edges)
        if not answer.calls:
            return outcome, []
        self._fault(answer.calls, sent.record.turn)
        self.store.put_many(self.session, answer.results.blocks, answer.results.edges)
        return outcome, list(answer.runs)

    def _page(self, request: PageRequest, number: int) -> tuple[PagePlan, _Paged | None]:
        """Page with demand paging under the session's fault pins (or plainly when it is off)."""
        if self.paging is None:
            return page(self.store, request), None
        state = load_state(self.store, self.session)
        entries = self.store.entries(self.session)
        upto = request.upto if request.upto is not None else len(entries) and entries[-1].seq + 1
        user_turn = sum(1 for e in entries if e.seq < upto and e.kind is BlockKind.USER_MESSAGE)
        option = DemandPaging.from_state(state, user_turn, self.paging)
        plan = page_with_paging(self.store, request, option)
        seen = tuple(session_entries(self.store, plan))
        previous = self._last.turn if self._last is not None else None
        turn = paged_turn(plan, seen, turn=number, previous=previous)
        if self._served:  # the faults found in the previous answer: this request serves them
            refaults = sum(1 for f in self._served if f.refault)
            accounting = replace(turn.accounting, faults=len(self._served), refaults=refaults)
            turn = replace(turn, faults=self._served, accounting=accounting)
            self._served = ()
        return plan, _Paged(turn, turn.plan, seen)

    def _next_turn(self) -> int:
        turns = self.traces.turns(self.session)
        return max((turn for turn, _ in turns), default=0) + 1

    def _run(self, call: ToolCall) -> ToolResult:
        """Run one tool call; a ``recall`` pages the block back in from the request it saw."""
        paged = self._last
        if call.name != RECALL_TOOL_NAME or paged is None or not paged.evictions.offers_recall:
            return self.runner.run(call.call_id, call.name, call.input)
        target = call.input.get("block_id") if isinstance(call.input, dict) else None
        try:
            content = recall_content(paged.entries, paged.evictions, str(target or ""))
        except (BlockNotFound, InvalidInput) as exc:
            return ToolResult(call.call_id, str(exc), True)
        return ToolResult(call.call_id, content, False)

    def _fault(self, calls: Sequence[ToolCall], number: int) -> None:
        """Record the page faults among ``calls`` (pins, refaults, backoff) in the session.

        Runs inside the turn's write transaction, so the state read here is the latest and no
        other writer's faults are lost.
        """
        paged = self._last
        if paged is None or self.paging is None:
            return
        state = load_state(self.store, self.session)
        found, new_state = finish_turn(replace(paged.turn, turn=number), calls, state)
        if found.faults:
            save_state(self.store, self.session, new_state)
        self._served = found.faults


def setup_blocks() -> list[NewBlock]:
    """Return the blocks every sample-agent session starts with: system prompt, tool schemas."""
    source = Provenance(AGENT_NAME)
    blocks = [NewBlock(BlockKind.SYSTEM, SYSTEM_PROMPT, provenance=source)]
    blocks += [NewBlock(BlockKind.TOOL_SCHEMA, canonical_json(t).decode(), provenance=source)
               for t in TOOL_DEFINITIONS]  # fmt: skip
    return blocks


# -- demo conversations ------------------------------------------------------------------------

DEMO_CONVERSATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("demo-agent-arithmetic", "Sample agent: arithmetic with the calculator",
     ("What is 1234 * 56?", "And what is 69104 / 8?")),
    ("demo-agent-profile", "Sample agent: a user-profile lookup",
     ("Show me the profile of user u-1001.",)),
    ("demo-agent-chat", "Sample agent: a multi-turn chat",
     ("Hello! What can you do?", "Please compute 17 + 25 for me.",
      "Thanks. Who is user u-1003?", "Summarise what we talked about.")),
)  # fmt: skip


@dataclass(frozen=True)
class DemoReport:
    """What ``create_demo_conversations`` did."""

    sessions: tuple[str, ...]
    created: tuple[str, ...]
    model_calls: int

    def summary(self) -> str:
        if not self.created:
            return f"sample agent: all {len(self.sessions)} demo conversations already loaded."
        return (
            f"sample agent: {len(self.created)} demo conversation(s) created with the offline "
            f"model ({self.model_calls} traced model calls)."
        )


def create_demo_conversations(
    store: BlockStore,
    traces: TraceStore,
    *,
    profile: ModelProfile | str = DEFAULT_MODEL,
    conversations: Sequence[tuple[str, str, Sequence[str]]] = DEMO_CONVERSATIONS,
) -> DemoReport:
    """Create the demo sessions with the offline model; a session already traced is skipped."""
    created, calls = [], 0
    for session, title, messages in conversations:
        if traces.count(session=session):
            continue
        agent = Agent(store, traces, OfflineModel(), session=session, profile=profile)
        agent.ensure_setup()
        store.set_session_meta(session, title=title)
        for message in messages:
            calls += len(agent.say(message).call_ids)
        created.append(session)
    return DemoReport(tuple(c[0] for c in conversations), tuple(created), calls)


def load_demo_conversations(store: BlockStore, traces: TraceStore) -> str:
    """Create the demo conversations (idempotent); return a one-line summary for `make demo`."""
    return create_demo_conversations(store, traces).summary()
