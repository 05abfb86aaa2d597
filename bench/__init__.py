"""Benchmarks with recorded results: `python -m bench [--quick]` runs them all (see README.md)."""
