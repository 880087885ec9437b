"""The Anthropic provider: the only package that imports ``anthropic``."""
