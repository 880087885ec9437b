"""The strict miss metric of issue 15 and its Wilson interval."""

from __future__ import annotations

import pytest

from bench.paging_replay import MissTally, Residency, strict_occurrences, wilson
from tests.runtime.paging_builder import SessionBuilder, big_result


def test_wilson_interval_matches_hand_computed_values():
    assert wilson(0, 10) == pytest.approx([0.0, 0.277533], abs=1e-6)
    assert wilson(5, 10) == pytest.approx([0.236593, 0.763407], abs=1e-6)
    assert wilson(0, 0) == [0.0, 1.0]


def test_strict_occurrences_are_the_tool_results_when_any_hold_the_identifier():
    b = SessionBuilder()
    b.system()
    user = b.user("My reservation is ZFA04Y.")
    call = b.call("get_reservation_details", {"reservation_id": "ZFA04Y"})
    result = b.result(call, big_result("ZFA04Y"))
    said = b.assistant("ZFA04Y is booked.")
    call_seq = result.seq - 1
    seqs = (user.seq, call_seq, result.seq, said.seq)
    assert strict_occurrences(seqs, b.entries) == (result.seq,)
    assert strict_occurrences((user.seq, said.seq), b.entries) == (user.seq, said.seq)


def test_an_echoed_id_is_a_hit_for_the_old_metric_and_a_miss_for_the_strict_one():
    b = SessionBuilder()
    b.system()
    user = b.user("Check ZFA04Y.")
    result = b.exchange(
        "get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("ZFA04Y")
    )
    seqs = (user.seq, result.seq)
    res = {user.seq: Residency.FULL, result.seq: Residency.PLACEHOLDER}
    old, strict = MissTally(), MissTally()
    assert old.add([res[q] for q in seqs]) is Residency.FULL
    assert (
        strict.add([res[q] for q in strict_occurrences(seqs, b.entries)]) is Residency.PLACEHOLDER
    )
    data = strict.to_json()
    assert data["soft_misses"] == 1 and data["miss_rate_95ci"] == wilson(1, 1)
