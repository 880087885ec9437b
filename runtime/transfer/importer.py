"""Importing OpenAI-format transcripts as sessions of blocks with one traced turn per model call.

Owns: turning checked transcripts (``runtime.transfer.transcripts``) into blocks, edges and trace records,
and writing them idempotently; the shipped tau-bench demo data (``load_demo_sessions``).

Invariants:
- Every assistant message is one turn whose input was every message before it. Its request bytes
  are the canonical JSON of the OpenAI chat request the model received,
  ``{"model", "messages": [...all before], "tools": [...]}``, so its prompt hash is the hash of
  what that model saw. The plan lists every block of that input as selected, reason
  ``required`` (the original agent sent its full history; nothing was paged).
- Requests are never built whole: the canonical JSON of ``messages[:i]`` is the one of
  ``messages[:i-1]`` plus a comma and message ``i-1``, so ``_Requests`` appends each message
  once to a chunk stream and gives each turn its hash (when preparing) or its chunks (when
  writing). Records are built and written one turn at a time inside one write, so an import's
  memory grows with the session's size, not with its square.
- Blocks follow CONVENTIONS.md: tool definitions become ``tool-schema`` blocks (Anthropic shape),
  then each message in order; tool calls link to their results with ``tool-invocation`` edges.
- All files are read and checked before anything is written; then one write transaction
  compares every session with what the store holds and writes what is missing, so an import
  lands whole or not at all, and two imports of one file at once add it once. Re-importing the
  same file adds nothing and leaves existing sessions' meta alone; a session that already holds
  different content is refused, never merged.
- Token counts use ``o200k_base`` (GPT-4o's tokenizer) and are block counts: message framing and
  the tools encoding OpenAI adds are not in them, so they are labelled estimates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from runtime import __version__, limits
from runtime.blocks import (
    BlockKind,
    Edge,
    EdgeKind,
    NewBlock,
    Provenance,
    ToolCall,
    ToolResult,
    canonical_json,
    check_body,
    check_session,
    content_hash,
)
from runtime.errors import InvalidInput, MalformedFile, UnknownModel
from runtime.pager.sections import Section, section_of
from runtime.storage.chunking import ChunkStream, HashStream, RequestParts
from runtime.storage.interface import BlockStore
from runtime.tags import check_tag
from runtime.tokenizers import get_tokenizer
from runtime.tracing.records import (
    ChunkedTrace,
    Flag,
    Provider,
    TokenizerInfo,
    TraceOrigin,
    TraceRecord,
    TraceStore,
    new_call_id,
    now_ms,
    prompt_hash,
)
from runtime.transfer.failing import failing_turn
from runtime.transfer.transcripts import (
    ToolDefinition,
    Transcript,
    message_text,
    read_tools,
    read_transcripts,
)

TOKENIZER = "o200k_base"
DEFAULT_MODEL = "gpt-4o"
DEMO_DIR = Path(__file__).parents[1] / "data" / "tau_bench_airline"
DEMO_SOURCE = "tau-bench-airline"
DEMO_LICENSE = "MIT (sierra-research/tau-bench, Copyright (c) 2024 Sierra)"


@dataclass(frozen=True)
class Turn:
    """One assistant message: its turn number, where its input ends, and its request's hash."""

    number: int
    upto: int  # blocks (and entries) before this message
    end: int  # blocks up to and including this message's own blocks
    prompt_hash: str
    request_size: int
    response: Mapping[str, Any] = field(hash=False)
    index: int = 0  # of the message in the transcript


@dataclass(frozen=True)
class PreparedSession:
    """A transcript converted and checked, ready to write."""

    session: str
    blocks: tuple[NewBlock, ...]
    block_ids: tuple[str, ...]
    edges: tuple[Edge, ...]
    turns: tuple[Turn, ...]
    meta: Mapping[str, Any] = field(hash=False)
    write_blocks: bool = True
    new_turns: tuple[int, ...] = ()  # indexes into ``turns`` not yet recorded
    messages: Sequence[Mapping[str, Any]] = field(default=(), hash=False, repr=False)
    openai_tools: Sequence[Mapping[str, Any]] = field(default=(), hash=False, repr=False)


@dataclass(frozen=True)
class ImportReport:
    sessions: tuple[str, ...]
    sessions_written: int
    turns_recorded: int
    turns_skipped: int
    blocks: int
    failing: int

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["sessions"] = list(self.sessions)
        return data


@dataclass(frozen=True)
class ImportOptions:
    source: str = "openai-transcript"
    prefix: str = "transcript"
    model: str = DEFAULT_MODEL
    license: str | None = None
    flag_failing: bool = True
    tags: tuple[str, ...] = ()  # meta "tags" of each new session (checked by check_tag)


def session_id(t: Transcript, prefix: str) -> str:
    """Return the session id for a transcript: explicit, else from task and trial, else index."""
    if t.session:
        return check_session(t.session)
    if t.task_id is not None and t.trial is not None:
        return check_session(f"{prefix}-task{t.task_id:03d}-trial{t.trial}")
    return check_session(f"{prefix}-{t.index:04d}")


def call_arguments(arguments: str) -> Any:
    """Return a tool call's ``function.arguments`` as its JSON value; text that is not (safe)
    JSON, such as ``""`` or a truncated object, is kept exactly as the model wrote it."""
    try:
        return limits.loads(arguments, "arguments")
    except limits.InputRejected:
        return arguments


def _tool_call_body(call: Mapping[str, Any]) -> str:
    fn = call["function"]
    return ToolCall(call["id"], fn["name"], call_arguments(fn["arguments"])).body()


class _Requests:
    """The requests of one session's turns, built by appending each message once.

    Canonical JSON sorts keys, so a request is ``{"messages":[`` + the messages joined by
    commas + ``],"model":...,"tools":[...]}``; the part after the messages is the same for
    every turn."""

    def __init__(
        self, model: str, tools: Sequence[Mapping[str, Any]], *, chunked: bool = True
    ) -> None:
        rest: dict[str, Any] = {"model": model}
        if tools:
            rest["tools"] = list(tools)
        self.suffix = b"]," + canonical_json(rest)[1:]
        self.chunks = ChunkStream() if chunked else None
        self.stream = self.chunks or HashStream()
        self.stream.append(b'{"messages":[')
        self.count = 0

    def add(self, message: Mapping[str, Any]) -> None:
        self.stream.append((b"," if self.count else b"") + canonical_json(message))
        self.count += 1

    def digest(self) -> tuple[str, int]:
        """Return the prompt hash and size of the request of every message added so far."""
        return self.stream.digest_with(self.suffix)

    def parts(self) -> RequestParts:
        if self.chunks is None:
            raise TypeError("these requests were built for their hashes only")
        return self.chunks.parts_with(self.suffix)


class _Builder:
    """Accumulates one session's blocks, edges and turns in put order."""

    def __init__(self, source: Provenance, max_bytes: int, tools: Sequence[ToolDefinition]):
        self.source, self.max_bytes = source, max_bytes
        self.blocks: list[NewBlock] = []
        self.ids: list[str] = []
        self.edges: list[Edge] = []
        self.call_block: dict[str, str] = {}
        for tool in tools:
            self.add(BlockKind.TOOL_SCHEMA, canonical_json(tool.anthropic()).decode())

    def add(self, kind: BlockKind, body: str) -> str:
        body = check_body(body, max_bytes=self.max_bytes)
        self.blocks.append(NewBlock(kind, body, provenance=self.source))
        self.ids.append(content_hash(kind, body))
        return self.ids[-1]

    def message(self, message: Mapping[str, Any]) -> None:
        role, content = message["role"], message_text(message)
        if role == "assistant":
            self._assistant(message)
        elif role == "tool":
            result_id = self.add(
                BlockKind.TOOL_RESULT, ToolResult(message["tool_call_id"], content).body()
            )
            # A checked transcript always made the call first; a span's history may begin
            # after it, and then the result has no call to link to.
            call_id = self.call_block.get(message["tool_call_id"])
            if call_id is not None:
                self.edges.append(Edge(call_id, EdgeKind.TOOL_INVOCATION, result_id))
        elif content:  # an empty system or user message has nothing to store
            self.add(BlockKind.SYSTEM if role == "system" else BlockKind.USER_MESSAGE, content)

    def _assistant(self, message: Mapping[str, Any]) -> None:
        content = message_text(message)
        text_id = self.add(BlockKind.ASSISTANT_MESSAGE, content) if content else None
        for call in message.get("tool_calls") or ():
            self.call_block[call["id"]] = call_block = self.add(
                BlockKind.TOOL_CALL, _tool_call_body(call)
            )
            if text_id is not None:
                self.edges.append(Edge(call_block, EdgeKind.PARENT, text_id))


def prepare(
    t: Transcript, tools: Sequence[ToolDefinition], opts: ImportOptions, max_bytes: int
) -> PreparedSession:
    """Convert one transcript to blocks, edges and per-turn requests (no store access)."""
    session = session_id(t, opts.prefix)
    model = t.model or opts.model
    openai_tools = [dict(tool.openai) for tool in tools]
    builder = _Builder(Provenance(f"import:{opts.source}"), max_bytes, tools)
    requests = _Requests(model, openai_tools, chunked=False)  # hashes now, chunks when writing
    turns: list[Turn] = []
    for i, message in enumerate(t.messages):
        before = len(builder.blocks)
        builder.message(message)
        if message["role"] == "assistant":
            digest, size = requests.digest()
            turns.append(
                Turn(len(turns) + 1, before, len(builder.blocks), digest, size, message, i)
            )
        requests.add(message)
    meta = _meta(t, session, model, opts)
    return PreparedSession(session, tuple(builder.blocks), tuple(builder.ids),
                           tuple(builder.edges), tuple(turns), meta, messages=t.messages,
                           openai_tools=openai_tools)  # fmt: skip


def _meta(t: Transcript, session: str, model: str, opts: ImportOptions) -> dict[str, Any]:
    first_user = next((message_text(m) for m in t.messages if m["role"] == "user"), "")
    label = f"task {t.task_id} trial {t.trial}" if t.task_id is not None else session
    meta: dict[str, Any] = {
        "model": model,
        "source": opts.source,
        "title": f"{label}: {' '.join(first_user.split())[:80]}",
    }
    if t.reward is not None:
        meta |= {"reward": t.reward, "failing": t.reward == 0}
    for key, value in (("task_id", t.task_id), ("trial", t.trial), ("license", opts.license)):
        if value is not None:
            meta[key] = value
    if t.info:
        meta["info"] = dict(t.info)
    if opts.tags:
        meta["tags"] = sorted({check_tag(tag) for tag in opts.tags})
    return meta


# -- checking against the store, then writing ------------------------------------------------


def _conflict(session: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"session {session!r} already holds {what} than this file; nothing was imported. "
        f"Purge it (`llm386 purge {session}`) or import under another --prefix"
    )


def reconcile(store: BlockStore, traces: TraceStore, p: PreparedSession) -> PreparedSession:
    """Return ``p`` marked with what is still missing from the store; refuse a conflict."""
    held = [ref.id for ref in store.entry_refs(p.session)]
    if held and held != list(p.block_ids):
        raise _conflict(p.session, "different blocks")
    # Replays and re-pages of imported turns share their turn numbers; only the imported
    # records themselves are compared with the file.
    records = traces.get_many([call_id for _, call_id in traces.turns(p.session)])
    old = {r.turn: r for r in records if r.origin is TraceOrigin.IMPORT}
    if set(old) - {t.number for t in p.turns}:
        raise _conflict(p.session, "more turns")
    for turn in p.turns:
        if turn.number in old and old[turn.number].prompt_hash != turn.prompt_hash:
            raise _conflict(p.session, f"a different turn {turn.number}")
    new_turns = tuple(i for i, t in enumerate(p.turns) if t.number not in old)
    return replace(p, write_blocks=not held, new_turns=new_turns)


def _upto_seq(turn: Turn, seqs: Sequence[int]) -> int:
    """Return the seq bound of a turn's input: entries with a smaller seq came before it."""
    if turn.upto < len(seqs):
        return seqs[turn.upto]
    return seqs[-1] + 1 if seqs else 0


def _plan(p: PreparedSession, turn: Turn, seqs: Sequence[int], tokens: Sequence[int]) -> dict:
    selected, used = [], dict.fromkeys((Section.SYSTEM, Section.TOOLS, Section.RECENT), 0)
    for i in range(turn.upto):
        kind = BlockKind.parse(p.blocks[i].kind)
        section = section_of(kind)
        used[section] = used.get(section, 0) + tokens[i]
        selected.append({"block_id": p.block_ids[i], "seq": seqs[i], "kind": kind.value,
                         "section": section.value, "reason": "required", "score": 1.0, "scores": {},
                         "tokens": tokens[i]})  # fmt: skip
    ranked = sorted(used, key=lambda s: s.rank)
    sections = [{"section": s.value, "allocated": None, "used": used[s]} for s in ranked]
    note = "imported full history: the original agent sent every earlier message; nothing was paged"
    return {"version": 1, "session": p.session, "task": "", "upto": _upto_seq(turn, seqs),
            "selected": selected, "omitted": [], "sections": sections,
            "tokens": sum(used.values()), "note": note}  # fmt: skip


def _record(
    p: PreparedSession, turn: Turn, request: RequestParts, seqs: Sequence[int],
    tokens: Sequence[int],
) -> ChunkedTrace:  # fmt: skip
    model = str(p.meta["model"])
    response = canonical_json(turn.response)
    upto_seq = _upto_seq(turn, seqs)
    record = TraceRecord(
        call_id=new_call_id(), session=p.session, turn=turn.number, started_at=now_ms(),
        provider=Provider.OPENAI, model=model, prompt_hash=request.prompt_hash,
        request_size=request.size, origin=TraceOrigin.IMPORT, runtime_version=__version__,
        tokenizer=tokenizer_info(), profile=_profile(model),
        config={"importer": {"history": "full", "source": p.meta["source"]}},
        upto_seq=upto_seq, plan=_plan(p, turn, seqs, tokens),
        estimated_input_tokens=sum(tokens[: turn.upto]), response=dict(turn.response),
        response_hash=prompt_hash(response), estimated_output_tokens=sum(tokens[turn.upto : turn.end]),
    )  # fmt: skip
    return ChunkedTrace(record, request, response)


def tokenizer_info() -> TokenizerInfo:
    """Return the tokenizer that imported turns are counted with (``TOKENIZER``), as recorded."""
    tok = get_tokenizer(TOKENIZER)
    return TokenizerInfo(tok.name, tok.version)


def _profile(model: str) -> dict[str, Any]:
    from runtime.profiles.catalog import get_profile

    try:
        return dict(get_profile(model).to_json())
    except UnknownModel:
        return {}  # an unknown model is still importable; there is just no profile to show


def write_blocks(store: BlockStore, p: PreparedSession) -> list[int]:
    """Put what ``reconcile`` found missing; return the blocks' seqs.

    A new session gets the file's meta; an existing one keeps its own (labels, reward or notes
    changed since the first import are the user's, and re-importing adds nothing).
    """
    if not p.write_blocks:
        return [ref.seq for ref in store.entry_refs(p.session)]
    seqs = [e.seq for e in store.put_many(p.session, p.blocks, p.edges)]
    store.set_session_meta(p.session, **p.meta)
    return seqs


def turn_requests(p: PreparedSession, wanted: Sequence[int]) -> Iterator[tuple[Turn, RequestParts]]:
    """Yield the turns at indexes ``wanted`` (ascending) with their requests as chunks."""
    requests = _Requests(str(p.meta["model"]), p.openai_tools)
    pending = iter(wanted)
    target = next(pending, None)
    for i, message in enumerate(p.messages):
        if target is None:
            return
        turn = p.turns[target]
        if turn.index == i:
            parts = requests.parts()
            if parts.prompt_hash != turn.prompt_hash:  # the same messages give the same bytes
                raise InvalidInput(f"{p.session} turn {turn.number} changed while importing")
            yield turn, parts
            target = next(pending, None)
        requests.add(message)


def new_records(
    p: PreparedSession, seqs: Sequence[int], tokens: Sequence[int], opts: ImportOptions
) -> Iterator[ChunkedTrace]:
    """Yield the records of the turns not yet recorded; a failing run's flag goes on the turn
    that went wrong (``runtime.transfer.failing``).

    One record at a time: each holds its turn's plan and request, so holding them all would
    grow with the square of the session's length. ``tokens`` are the blocks' counts
    (``store.token_counts``), taken before the write: counting may write the cache."""
    turns = [(t.number, t.index) for t in p.turns]
    flagged, note = failing_turn(p.meta, p.messages, turns) if opts.flag_failing else (None, "")
    for turn, request in turn_requests(p, p.new_turns):
        item = _record(p, turn, request, seqs, tokens)
        if turn.number == flagged:
            item = replace(item, flag=Flag(note, now_ms()))
        yield item


def import_transcripts(
    store: BlockStore,
    traces: TraceStore,
    data: bytes,
    *,
    name: str = "input",
    tools: Sequence[ToolDefinition] = (),
    options: ImportOptions = ImportOptions(),  # noqa: B008 - frozen, so sharing is safe
) -> ImportReport:
    """Import every session of a transcript file; check all of it before writing any of it."""
    prepared = [_prepare_at(t, tools, options, store.max_block_bytes, name)
                for t in read_transcripts(data, name)]  # fmt: skip
    _check_unique(prepared, name)
    # One write transaction: the comparison with the store is made where the writes are, so a
    # concurrent import of the same file finds this one's sessions (and adds nothing), and a
    # crash or a refusal anywhere leaves the store as it was.
    planned, recorded = store.atomic(lambda: _write_all(store, traces, prepared, options))
    return ImportReport(
        sessions=tuple(p.session for p in planned),
        sessions_written=sum(p.write_blocks for p in planned),
        turns_recorded=recorded,
        turns_skipped=sum(len(p.turns) for p in planned) - recorded,
        blocks=sum(len(p.blocks) for p in planned if p.write_blocks),
        failing=sum(bool(p.meta.get("failing")) for p in planned),
    )


def _write_all(
    store: BlockStore, traces: TraceStore, prepared: Sequence[PreparedSession], opts: ImportOptions
) -> tuple[list[PreparedSession], int]:
    """Compare every session with the store, then write what is missing (in the caller's write).

    Records are streamed one turn at a time (``new_records``): holding every turn's request
    would grow with the square of a session's length."""
    planned = [reconcile(store, traces, p) for p in prepared]
    recorded = 0
    for p in planned:
        seqs = write_blocks(store, p)
        tokens = store.token_counts(list(p.block_ids), TOKENIZER)
        recorded += traces.record_stream(partial(new_records, p, seqs, tokens, opts))
    return planned, recorded


def _prepare_at(
    t: Transcript, tools: Sequence[ToolDefinition], opts: ImportOptions, max_bytes: int, name: str
) -> PreparedSession:
    try:
        return prepare(t, tools, opts, max_bytes)
    except (InvalidInput, KeyError) as exc:
        reason = str(exc) if isinstance(exc, InvalidInput) else f"missing {exc}"
        raise MalformedFile(f"{name} line {t.line}: session item {t.index}: {reason}") from None


def _check_unique(prepared: Sequence[PreparedSession], name: str) -> None:
    seen: dict[str, int] = {}
    for index, p in enumerate(prepared):
        if p.session in seen:
            raise MalformedFile(
                f"{name}: session items {seen[p.session]} and {index} are both {p.session!r}; "
                "give each session a distinct task_id/trial or session id"
            )
        seen[p.session] = index


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None


def import_file(
    store: BlockStore,
    traces: TraceStore,
    path: str | Path,
    *,
    tools_path: str | Path | None = None,
    options: ImportOptions = ImportOptions(),  # noqa: B008 - frozen, so sharing is safe
) -> ImportReport:
    """Import a transcript file; tools come from ``tools_path`` or a tools.json beside it."""
    path = Path(path)
    beside = path.parent / "tools.json"
    tools_file = Path(tools_path) if tools_path else (beside if beside.is_file() else None)
    tools = read_tools(_read_file(tools_file), tools_file.name) if tools_file else []
    return import_transcripts(store, traces, _read_file(path), name=path.name, tools=tools,
                              options=options)  # fmt: skip


def load_demo_sessions(store: BlockStore, traces: TraceStore) -> ImportReport:
    """Import the shipped tau-bench airline sessions (120 GPT-4o runs); safe to call again."""
    options = ImportOptions(
        source=DEMO_SOURCE, prefix="tau-airline", model=DEFAULT_MODEL, license=DEMO_LICENSE
    )
    return import_file(store, traces, DEMO_DIR / "sessions.json",
                       tools_path=DEMO_DIR / "tools.json", options=options)  # fmt: skip
