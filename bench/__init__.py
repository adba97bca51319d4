"""Benchmarks and load generators; `python -m bench.run_all` regenerates docs/PERFORMANCE.md."""
