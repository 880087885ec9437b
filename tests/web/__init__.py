"""pytest-django view tests for llm386web."""
