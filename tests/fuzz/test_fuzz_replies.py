"""Fuzzed model replies over real HTTP: every send is recorded, as ok or as an error with
advice; none ends in a traceback."""

from __future__ import annotations

from hypothesis import given

from tests.fuzz.entries import targets
from tests.fuzz.harness import FUZZ, run_case
from tests.fuzz.strategies import response_bodies


def test_fuzzed_replies_are_recorded_never_crash(tmp_path) -> None:
    with targets(tmp_path, server=True) as t:

        @FUZZ
        @given(data=response_bodies())
        def case(data: bytes) -> None:
            run_case("reply", data, lambda d: t.run("reply", d))

        case()
