"""Management commands for llm386web."""
