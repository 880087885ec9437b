"""Evidence recall on LoCoMo: how many evidence turns the pager packs for each question.

For every conversation file in the data folder (LoCoMo format: ``speaker_a``, ``speaker_b``,
``session_N`` turn lists with ``dia_id``, ``session_N_date_time``, and ``qa`` with ``evidence``),
each turn is stored as one block, in order (speaker A as user-message, speaker B as
assistant-message, body ``"<speaker>: <text>"``, the session's date as the entry's created_at and
the speaker as its provenance source). Then each question with evidence is paged
as the task with the default retriever stack under an input budget of 2,000 / 4,000 / 8,000
tokens (o200k_base), and recall is the share of evidence turns that end up selected (packed).

Run: ``python -m bench.bench_locomo [DATA_DIR]`` (default ../shared/data/locomo). The data is a
benchmark input only (no license file upstream): it is read in place, never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.taudata import LOCOMO
from runtime import LmdbStore, NewBlock, Provenance, open_store
from runtime.config import RetrieverSettings
from runtime.indexes.snapshot import index_for
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.retrievers import default_stack
from runtime.profiles.catalog import get_profile

BUDGETS = (2000, 4000, 8000)
TOKENIZER = "o200k_base"


def turns_of(conversation: dict[str, Any]) -> list[tuple[str, NewBlock]]:
    """Return (dia_id, block) for every turn, in order."""
    out, n = [], 1
    while f"session_{n}" in conversation:
        when = _ms(conversation.get(f"session_{n}_date_time", ""))
        for turn in conversation[f"session_{n}"]:
            speaker = turn["speaker"]
            kind = "user-message" if speaker == conversation["speaker_a"] else "assistant-message"
            body = f"{speaker}: {turn['text']}"
            out.append((turn["dia_id"], NewBlock(kind, body, 0.5, Provenance(speaker), when)))
        n += 1
    return out


def _ms(date: str) -> int | None:
    """Return "1:56 pm on 8 May, 2023" as ms since the epoch (UTC), None if unreadable."""
    try:
        parsed = datetime.strptime(date, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(parsed.timestamp() * 1000)


def profile_for(budget: int) -> Any:
    """An o200k_base profile whose input budget is exactly ``budget`` tokens."""
    base = get_profile("gpt-4o")
    return replace(
        base, name=f"locomo-{budget}", max_context_tokens=budget + base.reserved_output_tokens,
        safety_margin_tokens=0, tokenizer=TOKENIZER,
    )  # fmt: skip


def run_file(
    path: Path, store: LmdbStore, budgets: Sequence[int], options: PageOptions, stack: Any
) -> dict:
    data = json.loads(path.read_text())
    conversation = data.get("conversation", data)
    turns = turns_of(conversation)
    session = f"locomo-{path.stem}"
    entries = store.put_many(session, [block for _, block in turns])
    seq_of = {dia: e.seq for (dia, _), e in zip(turns, entries, strict=True)}
    found = dict.fromkeys(budgets, 0)
    total, questions, started = 0, 0, time.perf_counter()
    for qa in data["qa"]:
        evidence = [seq_of[e] for e in qa.get("evidence", []) if e in seq_of]
        if not evidence:
            continue
        questions += 1
        total += len(evidence)
        for budget in budgets:
            plan = page(
                store,
                PageRequest(
                    session,
                    str(qa["question"]),
                    profile_for(budget),
                    retrievers=stack,
                    options=options,
                ),
            )
            packed = {s.candidate.seq for s in plan.selected}
            found[budget] += sum(seq in packed for seq in evidence)
    elapsed = time.perf_counter() - started
    return {"file": path.name, "turns": len(turns), "questions": questions,
            "evidence": total, "found": found, "seconds": round(elapsed, 2)}  # fmt: skip


# The first shipped weights (recency 1.0, embedding 0.5), before the LoCoMo tuning made them
# 0.25 each: reported beside the shipped defaults, so a change of defaults shows its effect.
FIRST_DEFAULTS = {"recency": 1.0, "embedding": 0.5}


def first_default_settings() -> RetrieverSettings:
    d = RetrieverSettings()
    return replace(
        d,
        recency=replace(d.recency, weight=FIRST_DEFAULTS["recency"]),
        embedding=replace(d.embedding, weight=FIRST_DEFAULTS["embedding"]),
    )


def recall_of(files: Sequence[Path], options: PageOptions, settings: RetrieverSettings) -> dict:
    """Page every question of every file with ``settings``' stack; return recall and details."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "store")
        index_for(store)
        stack = default_stack(settings)
        per_file = [run_file(path, store, BUDGETS, options, stack) for path in files]
        store.close()
    evidence = sum(f["evidence"] for f in per_file)
    recall = {str(b): round(sum(f["found"][b] for f in per_file) / evidence, 4) for b in BUDGETS}
    weights = {w.name: w.weight for w in default_stack(settings)}
    files_out = [{**f, "found": {str(k): v for k, v in f["found"].items()}} for f in per_file]
    return {"recall": recall, "weights": weights, "evidence_turns": evidence, "files": files_out}


def main(
    out_dir: Path | None = None, data_dir: Path = LOCOMO, options: PageOptions | None = None
) -> dict:
    """Run the benchmark over every ``*.json`` in ``data_dir`` and write locomo.json."""
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        # The data is not shipped (benchmarks only); `make bench` on a clone without it goes on.
        print(f"skipped: no LoCoMo *.json files in {data_dir}; pass a folder of that format")
        return {"skipped": f"no LoCoMo data in {data_dir}"}
    options = options or PageOptions()
    runs = {"defaults": recall_of(files, options, RetrieverSettings())}
    if first_default_settings() != RetrieverSettings():
        runs["first_defaults"] = recall_of(files, options, first_default_settings())
    result = {
        "benchmark": "locomo evidence recall",
        "data": str(data_dir),
        "tokenizer": TOKENIZER,
        "retrievers": "default stack, no model download; 'first_defaults' = the first shipped weights",
        "options": options.to_json(),
        "recall": runs["defaults"]["recall"],
        "runs": runs,
        "target": {"4000": 0.85},
        "baselines_from_data_readme": {"bm25": {"2000": 0.62, "4000": 0.69, "8000": 0.81},
                                       "recent_only": {"2000": 0.11, "4000": 0.21, "8000": 0.43}},
        "questions": sum(f["questions"] for f in runs["defaults"]["files"]),
    }  # fmt: skip
    return write_result(
        Path(out_dir) if out_dir else Path(__file__).parent / "results", "locomo", result
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=str(LOCOMO), help="LoCoMo data folder")
    parser.add_argument("--out", help="results folder (default bench/results)")
    args = parser.parse_args(sys.argv[1:])
    main(Path(args.out) if args.out else None, Path(args.data))
