"""Tracing: trace records of what the model saw and why, and recording model calls."""
