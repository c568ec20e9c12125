"""Reproducible speed and memory measurements; `make bench` runs them all (benchmarks/run.py)."""
