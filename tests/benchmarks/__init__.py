"""Measurement scripts (run with ``python -m tests.benchmarks.NAME``); not collected by pytest."""
