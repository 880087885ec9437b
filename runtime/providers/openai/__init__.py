"""The OpenAI provider (Chat Completions format): see ``provider``."""
