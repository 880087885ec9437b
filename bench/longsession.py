"""Synthesise one long tau-bench-style session of a given size, deterministically.

The shape of the shipped tau-bench airline sessions (runtime/data/tau_bench_airline): a system
policy, then rounds of a user request, two flight searches (an assistant tool call and a large
JSON tool result each) and an assistant answer. Content comes from a seeded random.Random, so
the same size gives the same bytes on every machine. About 33 KB a message, as in the session of
issue 18 (478 messages in 16 MB).
"""

from __future__ import annotations

import json
import random
from typing import Any

from bench.common import SHIPPED_TAU

AIRPORTS = ["JFK", "SEA", "LAX", "ORD", "ATL", "DFW", "DEN", "SFO", "BOS", "MIA", "PHX", "EWR"]
FLIGHTS_PER_RESULT = 260


def _system() -> str:
    sessions = json.loads((SHIPPED_TAU / "sessions.json").read_bytes())
    return str(sessions[0]["traj"][0]["content"])


def _flight(r: random.Random, origin: str, destination: str, day: int) -> dict[str, Any]:
    hour = r.randint(0, 22)
    return {
        "flight_number": f"HAT{r.randint(1, 299):03d}",
        "origin": origin,
        "destination": destination,
        "scheduled_departure_time_est": f"{hour:02d}:{r.choice(['00', '30'])}:00",
        "scheduled_arrival_time_est": f"{(hour + r.randint(1, 6)) % 24:02d}:00:00",
        "status": "available",
        "date": f"2024-05-{day:02d}",
        "available_seats": {c: r.randint(0, 20) for c in ("basic_economy", "economy", "business")},
        "prices": {c: r.randint(50, 2000) for c in ("basic_economy", "economy", "business")},
    }


def _round(r: random.Random, n: int) -> list[dict[str, Any]]:
    origin, destination = r.sample(AIRPORTS, 2)
    day = r.randint(1, 30)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"Could you look for flights from {origin} to "
         f"{destination} on May {day}? I'd like the cheapest economy seat (request {n})."},
    ]  # fmt: skip
    for k, name in enumerate(("search_direct_flight", "search_onestop_flight")):
        call_id = f"call_{n:05d}_{k}_{r.getrandbits(48):012x}"
        args = {"origin": origin, "destination": destination, "date": f"2024-05-{day:02d}"}
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": json.dumps(args)}}]})  # fmt: skip
        flights = [_flight(r, origin, destination, day) for _ in range(FLIGHTS_PER_RESULT)]
        messages.append({"role": "tool", "tool_call_id": call_id, "name": name,
                         "content": json.dumps(flights)})  # fmt: skip
    cheapest = r.randint(50, 400)
    messages.append({"role": "assistant", "content": f"The cheapest economy fare from {origin} "
                     f"to {destination} on May {day} is ${cheapest}. Shall I book it?"})  # fmt: skip
    return messages


def long_session(target_bytes: int, seed: int = 0) -> bytes:
    """Return a transcript file (a JSON list of one session) of about ``target_bytes``."""
    r = random.Random(seed)
    traj: list[dict[str, Any]] = [{"role": "system", "content": _system()}]
    size = len(json.dumps(traj[0]))
    n = 0
    while size < target_bytes:
        for message in _round(r, n):
            traj.append(message)
            size += len(json.dumps(message)) + 2
        n += 1
    item = {"task_id": 900 + seed, "trial": 0, "reward": 1.0, "info": {"synthetic": True},
            "traj": traj}  # fmt: skip
    return json.dumps([item]).encode()


def message_count(transcript: bytes) -> int:
    return len(json.loads(transcript)[0]["traj"])
