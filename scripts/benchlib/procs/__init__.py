"""Processes the benchmarks start (under ``mpiexec`` or alone): run as ``python -m``."""
