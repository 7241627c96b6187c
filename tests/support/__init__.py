"""Shared test helpers: a real broker per test, real worker processes, waits."""
