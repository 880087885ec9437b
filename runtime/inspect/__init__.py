"""Page models for the web and CLI: turns, diffs, compare, sessions, timelines."""
