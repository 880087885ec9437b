"""The sample agent and its tools."""
