"""Hypothesis settings shared by the property tests (the profile itself is loaded in conftest.py).

``WITH_FIXTURES`` is for a ``@given`` test that also takes a function-scoped fixture (a store in
tmp_path, say) and resets what it needs per example itself; a test adds its own ``max_examples``:
``@settings(WITH_FIXTURES, max_examples=60)``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# A per-test suppress_health_check replaces the profile's list, so too_slow is named again here.
WITH_FIXTURES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
