"""Shared pytest fixtures. Helpers append fixtures here; keep each one small and documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_server import AnthropicServer


@pytest.fixture
def model_server() -> Iterator[AnthropicServer]:
    """A running fake Anthropic Messages API on 127.0.0.1 that records every request."""
    with AnthropicServer(max_lifetime=60.0) as server:
        yield server
