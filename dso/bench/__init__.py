"""Benchmarks whose results back every figure in the README (`python scripts/bench.py NAME`)."""
