"""Benchmarks and the chaos drill: `make bench`, `make drill`."""
