"""Benchmark scripts for the STEDI lakehouse; run them as ``python -m benchmarks.<name>``."""
