"""The llm386web Django project."""
