"""The fuzz harness: hypothesis profiles, one runner per entry point, and the crash corpus.

A case passes when the entry point returns or raises an ``Llm386Error``; anything else (a
traceback for the user) fails it. In long campaigns (``LLM386_FUZZ=long``, what ``make fuzz``
sets) the crashing input hypothesis reports is saved under ``corpus/<entry>/`` so that
``test_corpus.py`` replays it in every ``make test`` from then on.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis.control import current_build_context
from hypothesis.strategies import SearchStrategy

from runtime.errors import Llm386Error
from tests.fuzz.stores import assert_unchanged, snapshot

if TYPE_CHECKING:
    from tests.fuzz.entries import Targets

CORPUS = Path(__file__).parent / "corpus"
LONG = os.environ.get("LLM386_FUZZ") == "long"
SAVE = LONG or os.environ.get("LLM386_FUZZ_SAVE") == "1"  # save crashes from quick runs too
CASES: Counter[str] = Counter()  # cases run per entry point, for the session summary

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "fuzz-quick", max_examples=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=_QUIET,
)  # fmt: skip
settings.register_profile(
    "fuzz-long", max_examples=int(os.environ.get("LLM386_FUZZ_EXAMPLES", "10000")),
    deadline=None, database=None, suppress_health_check=_QUIET,
)  # fmt: skip
# No example database: stores hold fresh call ids, so an old example would not replay; the
# corpus keeps crashes instead. Applied per test (not loaded globally) so other property tests keep their own settings.
FUZZ = settings.get_profile("fuzz-long" if LONG else "fuzz-quick")


def run_case(entry: str, data: bytes, call: Callable[[bytes], object]) -> None:
    """Run one case: ``Llm386Error`` is a clean refusal; any other exception is a crash."""
    CASES[entry] += 1
    try:
        call(data)
    except Llm386Error:
        pass
    except BaseException:
        if SAVE and _is_final():
            save_crash(entry, data)
        raise


def _is_final() -> bool:
    try:
        return current_build_context().is_final
    except Exception:  # outside a hypothesis test (corpus replay): nothing to save
        return False


def save_crash(entry: str, data: bytes) -> Path:
    """Save a crashing input as a regression case named by its hash."""
    folder = CORPUS / entry
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def fuzz_keeping_sessions(t: Targets, files: SearchStrategy[bytes], entries: Sequence[str]) -> None:
    """Feed each file ``files`` draws to every one of ``entries``: each refuses it cleanly or
    takes it, and the sessions the store held before are unchanged at the end."""
    before = snapshot(t.store, t.traces, t.sessions)

    @FUZZ
    @given(data=files)
    def case(data: bytes) -> None:
        for entry in entries:
            run_case(entry, data, lambda d, entry=entry: t.run(entry, d))

    case()
    assert_unchanged(t.store, t.traces, t.sessions, before)
