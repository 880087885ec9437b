"""Benchmark input for the pager benchmarks: recorded agent sessions as blocks and edges.

The default input is the tau-bench airline sessions (../shared/data/tau-bench-airline, MIT
License, Copyright (c) 2024 Sierra), benchmark input only: read from where they are, never
copied. ``LLM386_BENCH_DATA`` (``bench.common.tau_bench_dir``) points every benchmark at another
folder of the same format. Files are read and converted exactly as ``llm386 import`` reads them
(``runtime.transfer``): what it refuses, the benchmarks refuse with its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import SHARED, tau_bench_dir
from runtime.blocks import Edge, NewBlock
from runtime.storage.interface import DEFAULT_MAX_BLOCK_BYTES
from runtime.transfer.importer import ImportOptions, prepare
from runtime.transfer.transcripts import Transcript, read_tools, read_transcripts

TAU_SESSIONS = tau_bench_dir() / "sessions.json"
TAU_TOOLS = tau_bench_dir() / "tools.json"
LOCOMO = SHARED / "locomo"  # not shipped: pass a folder of the same format to bench_locomo


@dataclass(frozen=True)
class SessionBlocks:
    """One recorded conversation as blocks and edges (CONVENTIONS.md)."""

    name: str
    blocks: tuple[NewBlock, ...]
    edges: tuple[Edge, ...]


def transcripts(path: Path = TAU_SESSIONS) -> list[Transcript]:
    """Return the sessions of a transcript file, checked as ``llm386 import`` checks them."""
    return read_transcripts(path.read_bytes(), path.name)


def tau_sessions(path: Path = TAU_SESSIONS, tools: Path = TAU_TOOLS) -> list[SessionBlocks]:
    """Return every session as blocks: tool schemas, then the messages in order, converted as
    the importer converts them (without its provenance: benchmark blocks carry none)."""
    defs = read_tools(tools.read_bytes(), tools.name)
    opts = ImportOptions(source="bench", prefix="tau")
    out = []
    for t in transcripts(path):
        p = prepare(t, defs, opts, DEFAULT_MAX_BLOCK_BYTES)
        blocks = tuple(NewBlock(b.kind, b.body) for b in p.blocks)
        out.append(SessionBlocks(p.session, blocks, p.edges))
    return out
