"""Storage: the typed interface every backend implements, and the backends behind it."""

from runtime.storage.open import open_store

__all__ = ["open_store"]
