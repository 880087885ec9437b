"""Model profiles: context windows, tokenizers, abilities, and each model's lifecycle."""
