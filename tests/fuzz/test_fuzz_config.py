"""Fuzzed llm386.toml files load or raise ConfigError; none ends in a traceback."""

from __future__ import annotations

from hypothesis import given

from tests.fuzz.entries import targets
from tests.fuzz.harness import FUZZ, run_case
from tests.fuzz.strategies import toml_files


def test_fuzzed_config_files_load_or_are_refused_with_an_error(tmp_path) -> None:
    with targets(tmp_path) as t:

        @FUZZ
        @given(data=toml_files())
        def case(data: bytes) -> None:
            run_case("config", data, lambda d: t.run("config", d))

        case()
