"""Replay and re-page: re-send recorded bytes, rebuild a recorded turn, judge fidelity."""
