"""The benchmark harness behind ``python scripts/bench.py``: launcher, environment, registry.

One concept per module: :mod:`.launcher` finds ``mpiexec`` and cleans the environment (also used
by ``scripts/run_tests.py``, ``scripts/golden.py`` and ``tests/helpers.py``), :mod:`.harness`
runs and times commands, :mod:`.registry` names every benchmark, :mod:`.cli` is the entry. Each
benchmark is one module here; the processes a benchmark starts live in :mod:`.procs`.
"""
