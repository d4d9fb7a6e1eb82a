"""Benchmarks: `python -m benchmarks <name>` (or `make bench`) prints a table. Never part of the test suite."""
