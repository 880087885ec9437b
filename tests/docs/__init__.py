"""Tests that keep the README and docs/ true: every sample runs, every figure is bench's."""
