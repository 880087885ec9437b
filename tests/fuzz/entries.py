"""Every entry point that reads outside data, as a function of the input's bytes.

The fuzz tests and the corpus replay both run inputs through these, so a saved crash is
replayed exactly the way it was found.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from runtime.blocks import canonical_json
from runtime.cli import main
from runtime.config import load_config
from runtime.providers import AnthropicAdapter
from runtime.replay.resend import CallBasis, send_traced
from runtime.storage.lmdb.store import LmdbStore
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.transfer.exchange import import_session, parse_export
from runtime.transfer.importer import ImportOptions, import_transcripts
from runtime.transfer.transcripts import read_transcripts
from tests.fakes.anthropic_server import AnthropicServer, RawReply
from tests.fuzz.stores import good_store

REQUEST = canonical_json(
    {"model": "claude-sonnet-4-5", "max_tokens": 64,
     "messages": [{"role": "user", "content": "hi"}]}
)  # fmt: skip
BASIS = CallBasis("fuzz-replies", 1, {}, {}, "", None, {}, None, None)


@dataclass
class Targets:
    """A good store, a scratch folder and (for model replies) a loopback API server."""

    folder: Path
    store: LmdbStore
    traces: LmdbTraceStore
    sessions: list[str]
    server: AnthropicServer | None = None
    _copies: Iterator[int] = field(default_factory=itertools.count)

    def run(self, entry: str, data: bytes) -> object:
        return RUNNERS[entry](self, data)

    def transcript(self, data: bytes) -> object:
        return read_transcripts(data, "fuzz.json")

    def import_(self, data: bytes) -> object:
        return import_transcripts(self.store, self.traces, data, name="fuzz.json",
                                  options=ImportOptions(prefix="fuzz"))  # fmt: skip

    def export_parse(self, data: bytes) -> object:
        return parse_export(data, "fuzz.jsonl")

    def import_session(self, data: bytes) -> object:
        # A copy under a new name gets past "already exists" to the write path.
        copy = f"copy-{next(self._copies)}"
        return import_session(self.store, self.traces, data, name="fuzz.jsonl", as_session=copy)

    def config(self, data: bytes) -> object:
        path = self.folder / "llm386.toml"
        path.write_bytes(data)
        return load_config(path)

    def reply(self, data: bytes) -> object:
        """Send a request to a server answering ``data``; the call must be recorded either way."""
        assert self.server is not None, "model replies need the loopback server"
        self.server.enqueue(RawReply(200, data))
        with AnthropicAdapter("sk-fuzz-key", self.server.base_url, 5.0, 0) as adapter:
            outcome = send_traced(self.traces, adapter, REQUEST, BASIS)
        stored = self.traces.get(outcome.record.call_id)
        assert stored.status.value == ("ok" if outcome.ok else "error")
        return outcome

    def cli_import(self, data: bytes) -> object:
        """``llm386 import FILE``: exit 0, or exit 2 with one line on stderr; no traceback."""
        return self._cli(data, "fuzz.json", ["import", "--prefix", "cli"])

    def cli_import_session(self, data: bytes) -> object:
        return self._cli(
            data, "fuzz.jsonl", ["import-session", "--as", f"cli-{next(self._copies)}"]
        )

    def _cli(self, data: bytes, name: str, command: list[str]) -> int:
        path = self.folder / name
        path.write_bytes(data)
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            status = main(["--store", str(self.folder / "cli-store"), *command, str(path)])
        lines = err.getvalue().splitlines()
        assert status in (0, 2), (status, lines)
        if status == 2:
            assert len(lines) == 1 and lines[0].startswith("llm386: error: "), lines
        return status


RUNNERS: dict[str, Callable[[Targets, bytes], object]] = {
    "transcript": Targets.transcript,
    "import": Targets.import_,
    "export-parse": Targets.export_parse,
    "import-session": Targets.import_session,
    "config": Targets.config,
    "reply": Targets.reply,
    "cli-import": Targets.cli_import,
    "cli-import-session": Targets.cli_import_session,
}


@contextmanager
def targets(folder: Path, *, server: bool = False) -> Iterator[Targets]:
    """Open the targets in ``folder`` (and a loopback server if asked); close them after."""
    store, traces, sessions = good_store(folder / "store")
    try:
        if not server:
            yield Targets(folder, store, traces, sessions)
            return
        with AnthropicServer(max_lifetime=3600.0) as api:
            yield Targets(folder, store, traces, sessions, api)
    finally:
        store.close()
