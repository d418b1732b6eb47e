"""Developer scripts: the benchmarks (``bench.py``), the test runner, golden outputs, a SLURM."""
