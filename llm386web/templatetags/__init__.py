"""Template tags and filters for llm386web (loaded as a builtin)."""
