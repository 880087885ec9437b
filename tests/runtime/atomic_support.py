"""Shared pieces of the atomic-write tests: a small transcript file and a store to import it into."""

from __future__ import annotations

import json
from typing import Any


def transcript(task_id: int, *, reward: float = 1.0, turns: int = 3) -> dict[str, Any]:
    """One tau-bench style session: a tool call and its result, then ``turns`` answers."""
    traj: list[dict[str, Any]] = [
        {"role": "system", "content": "You are an airline agent."},
        {"role": "user", "content": f"Cancel reservation ZX{task_id}"},
        {"role": "assistant", "content": "Looking it up.", "tool_calls": [
            {"id": f"call-{task_id}", "type": "function",
             "function": {"name": "get_reservation", "arguments": '{"id": "ZX1"}'}}]},
        {"role": "tool", "tool_call_id": f"call-{task_id}", "content": '{"status": "ok"}'},
    ]  # fmt: skip
    for i in range(turns):
        traj += [
            {"role": "assistant", "content": f"Answer {i} for task {task_id}."},
            {"role": "user", "content": f"Follow-up {i}"},
        ]
    traj.append({"role": "assistant", "content": "Goodbye."})
    return {"task_id": task_id, "trial": 0, "reward": reward, "info": {"n": task_id}, "traj": traj}


def transcript_file(*task_ids: int, reward: float = 1.0) -> bytes:
    return json.dumps([transcript(t, reward=reward) for t in task_ids]).encode()
