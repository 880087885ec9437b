"""The offline provider: a deterministic model that needs no key or network."""
