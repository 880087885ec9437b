"""A writer process for the crash and race tests: it loops on one kind of write and prints an
acknowledgement line only after each write has committed.

    python -m tests.fuzz.crash_worker ROLE STORE NAME [COUNT]

ROLE is import (a new transcript file each time; every third time the shared one, so imports of
one file race), agent (the offline sample agent on the shared session), fault (page faults in the
shared fault session), purge (import a session, then purge it) or mixed (a block in the shared
mixed session, one in the worker's own, a page fault in the shared fault session, and every 25th
time a page of the shared session, as an agent does). COUNT stops after that many
writes; without it the worker runs until it is killed. Ack lines: ``ready``, ``import SESSION``,
``turn CALL_ID``, ``fault BLOCK_ID``, ``purged SESSION``, ``block SESSION BLOCK_ID``.
"""

from __future__ import annotations

import hashlib
import sys

from runtime import KvBlockStore, NewBlock, open_store
from runtime.agent.core import Agent
from runtime.errors import SessionNotFound
from runtime.pager.core import PageRequest, page
from runtime.paging.eviction import EvictionConfig
from runtime.paging.faults import FaultKind, PageFault, record_faults
from runtime.profiles.catalog import get_profile
from runtime.providers import OfflineModel
from runtime.storage.purge import purge_session
from runtime.storage.tracestore import KvTraceStore
from runtime.transfer.importer import ImportOptions, import_transcripts
from tests.runtime.atomic_support import transcript_file

AGENT_SESSION = "agent-shared"
FAULT_SESSION = "faults-shared"
MIXED_SESSION = "mixed-shared"
SHARED_TASK = 999
MESSAGES = ("What is 1234 * 56?", "Show me the profile of user u-1001.", "Hello!")


def _ack(line: str) -> None:
    print(line, flush=True)


def _task(name: str, i: int) -> int:
    return int(hashlib.sha256(f"{name}/{i}".encode()).hexdigest()[:6], 16) % 900_000 + 1000


def run(role: str, store: KvBlockStore, traces: KvTraceStore, name: str, i: int) -> None:
    if role == "import":
        task = SHARED_TASK if i % 3 == 0 else _task(name, i)
        report = import_transcripts(store, traces, transcript_file(task))
        _ack(f"import {report.sessions[0]}")
    elif role == "agent":
        agent = Agent(store, traces, OfflineModel(), session=AGENT_SESSION)
        for cid in agent.say(MESSAGES[i % len(MESSAGES)]).call_ids:
            _ack(f"turn {cid}")
    elif role == "fault":
        block = hashlib.sha256(f"{name}/{i}".encode()).hexdigest()
        fault = PageFault(FaultKind.RECALL, block, turn=i + 1, user_turn=1)
        record_faults(store, FAULT_SESSION, [fault], EvictionConfig())
        _ack(f"fault {block}")
    elif role == "mixed":
        _mixed(store, name, i)
    elif role == "purge":
        options = ImportOptions(prefix=f"purge-{name}-{i}")
        [session] = import_transcripts(store, traces, transcript_file(1), options=options).sessions
        purge_session(store, traces, session)
        _ack(f"purged {session}")
    else:
        raise SystemExit(f"unknown role {role!r}")


def _mixed(store: KvBlockStore, name: str, i: int) -> None:
    for session in (MIXED_SESSION, f"mixed-{name}"):
        entry = store.put(session, NewBlock("user-message", f"{name} {i} in {session}"))
        _ack(f"block {session} {entry.id}")
    block = hashlib.sha256(f"{name}/{i}".encode()).hexdigest()
    record_faults(store, FAULT_SESSION, [PageFault(FaultKind.RECALL, block, turn=i + 1,
                                                   user_turn=1)], EvictionConfig())  # fmt: skip
    _ack(f"fault {block}")
    if i % 25 == 0:
        page(store, PageRequest(MIXED_SESSION, f"what did {name} say?", get_profile("gpt-4o")))


def main(argv: list[str]) -> None:
    role, path, name = argv[:3]
    count = int(argv[3]) if len(argv) > 3 else None
    store = open_store(path)
    traces = KvTraceStore(store)
    if role in ("fault", "mixed"):
        store.atomic(lambda: _fault_session(store))
    _ack("ready")
    i = 0
    while count is None or i < count:
        run(role, store, traces, name, i)
        i += 1


def _fault_session(store: KvBlockStore) -> None:
    try:
        store.session_info(FAULT_SESSION)
    except SessionNotFound:
        store.put(FAULT_SESSION, NewBlock("user-message", "faults live here"))


if __name__ == "__main__":
    main(sys.argv[1:])
