"""Turn diff speed on two 200,000-token Anthropic requests (target: 50 ms or less).

Scenarios, each a pair of request byte strings diffed in full (parse, sectioned text view, line
diff with in-line highlights, cache comparison):
- next-turn: B is A plus one reply and one new user message (the common case);
- system-timestamp: B changes a timestamp at the top of the system prompt (a cache miss);
- sliding-window: B drops the 10 oldest messages and adds 2 (every position shifts);
- unrelated: two different conversations of the same size (worst case, not the target);
- tau-bench: the largest consecutive pair of real GPT-4o requests from the shipped demo data.
The stdlib baseline is difflib.SequenceMatcher(autojunk=False) over the same view lines.
"""

from __future__ import annotations

import difflib
import json
import random
import time
from pathlib import Path
from typing import Any

from bench.common import results_dir, time_calls, write_result
from runtime.blocks import canonical_json
from runtime.inspect.diff import diff_requests
from runtime.inspect.request import view_request
from runtime.tokenizers import get_tokenizer
from runtime.transfer.importer import DEMO_DIR

TARGET_TOKENS = 200_000
VOCABULARY = (
    "reservation flight passenger baggage cabin economy business refund policy change cancel "
    "airport date time customer agent booking payment certificate gift card credit insurance "
    "seat upgrade delay membership gold silver regular origin destination round trip one way "
    "the a to of and for with on is are was you your we our please confirm details number"
)
WORDS = VOCABULARY.split()


def _text(rng: random.Random, words: int) -> str:
    lines, line = [], []
    for i in range(words):
        line.append(rng.choice(WORDS))
        if i % 14 == 13:
            lines.append(" ".join(line).capitalize() + ".")
            line = []
    return "\n".join(lines + [" ".join(line)])


def _message(rng: random.Random, i: int) -> dict[str, Any]:
    if i % 4 == 2:
        return {"role": "assistant", "content": [
            {"type": "text", "text": _text(rng, 60)},
            {"type": "tool_use", "id": f"toolu_{i:05d}", "name": "get_reservation_details",
             "input": {"reservation_id": f"ZX{i:05d}"}}]}  # fmt: skip
    if i % 4 == 3:
        rows = [
            {"flight": f"HAT{rng.randrange(999):03d}", "note": _text(rng, 20)} for _ in range(6)
        ]
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i - 1:05d}",
                "content": json.dumps(rows)}]}  # fmt: skip
    role = "user" if i % 2 == 0 else "assistant"
    return {"role": role, "content": [{"type": "text", "text": _text(rng, 300)}]}


def _request(system: str, messages: list[dict[str, Any]]) -> bytes:
    """Return canonical request bytes with breakpoints on the system prompt and last message."""
    messages = [dict(m) for m in messages]
    last = dict(messages[-1])
    last["content"] = [
        *last["content"][:-1],
        {**last["content"][-1], "cache_control": {"type": "ephemeral"}},
    ]
    messages[-1] = last
    sys_block = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": f"tool_{k}", "description": _text(random.Random(k), 40),
              "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}}}
             for k in range(14)]  # fmt: skip
    return canonical_json({"model": "claude-sonnet-4-6", "max_tokens": 4096,
                           "system": sys_block, "tools": tools, "messages": messages})  # fmt: skip


def _conversation(seed: int) -> tuple[str, list[dict[str, Any]]]:
    """Return a system prompt and enough messages for a request of about TARGET_TOKENS."""
    rng = random.Random(seed)
    system = "Current time: 2024-05-15 15:00:00 EST\n" + _text(rng, 1500)
    messages: list[dict[str, Any]] = []
    count = get_tokenizer("cl100k_base").count
    tokens = count(system)
    while tokens < TARGET_TOKENS:
        messages.append(_message(rng, len(messages)))
        tokens += count(json.dumps(messages[-1]["content"]))
    if messages[-1]["role"] != "user":
        messages.append(_message(rng, len(messages) + (len(messages) % 2)))
    return system, messages


def scenarios() -> dict[str, tuple[bytes, bytes]]:
    system, messages = _conversation(1)
    rng = random.Random(2)
    a = _request(system, messages)
    turn = [
        _message(rng, 1),
        {"role": "user", "content": [{"type": "text", "text": _text(rng, 40)}]},
    ]
    other_system, other = _conversation(3)
    return {
        "next-turn": (a, _request(system, messages + turn)),
        "system-timestamp": (a, _request(system.replace("15:00:00", "15:00:07"), messages)),
        "sliding-window": (a, _request(system, messages[10:] + turn)),
        "unrelated": (a, _request(other_system, other[: len(messages)])),
        "tau-bench": _tau_pair(),
    }


def _tau_pair() -> tuple[bytes, bytes]:
    sessions = json.loads((DEMO_DIR / "sessions.json").read_bytes())
    tools = json.loads((DEMO_DIR / "tools.json").read_bytes())
    traj = max((s["traj"] for s in sessions), key=lambda t: len(json.dumps(t)))
    turns = [i for i, m in enumerate(traj) if m["role"] == "assistant"][-2:]
    return tuple(  # type: ignore[return-value]
        canonical_json({"model": "gpt-4o", "messages": traj[:i], "tools": tools}) for i in turns
    )


def _baseline_ms(a: bytes, b: bytes) -> float:
    lines_a, lines_b = view_request(a).lines, view_request(b).lines
    start = time.perf_counter()
    difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False).get_opcodes()
    return round((time.perf_counter() - start) * 1000, 1)


def measure(repeat: int = 20) -> dict[str, Any]:
    count = get_tokenizer("cl100k_base").count
    out: dict[str, Any] = {}
    for name, (a, b) in scenarios().items():
        text, cache, _, _ = diff_requests(a, b)
        out[name] = {
            "bytes_a": len(a), "bytes_b": len(b),
            "tokens_a_cl100k": count(a.decode()), "tokens_b_cl100k": count(b.decode()),
            "diff": time_calls(lambda a=a, b=b: diff_requests(a, b), repeat),
            "lines_added": text.added, "lines_removed": text.removed, "hunks": len(text.hunks),
            "cache_verdict": cache.verdict.value, "first_divergent_unit": cache.first_divergent_unit,
            "stdlib_difflib_ms": _baseline_ms(a, b) if name == "next-turn" else None,
        }  # fmt: skip
    return out


def main(out_dir: Path) -> dict[str, Any]:
    result = {"target_ms": 50, "scenarios": measure()}
    return write_result(out_dir, "diff", result)


if __name__ == "__main__":
    main(results_dir())
