#!/usr/bin/env python3
"""Run hpcapp's benchmarks: ``python scripts/bench.py list``, then ``... NAME [options]``.

    python scripts/bench.py list                   # every benchmark, one line each
    python scripts/bench.py peers --json peers.json
    python scripts/bench.py nd-speed --help        # a benchmark's own options
    python scripts/bench.py NAME --tiny            # a smoke run at tiny sizes
    python scripts/bench.py table peers.json       # its markdown table, as in the README

The harness (``scripts/benchlib/``) finds ``mpiexec`` (``$MPIEXEC``, then PATH, then the mpich
wheel beside this Python), runs every process with this checkout on ``PYTHONPATH`` and one
thread per rank, and builds hpcapp's compiled loops once before any timed run.
"""

import sys
from pathlib import Path

if not __package__:
    # Run as a file: Python put scripts/ first on the path; the harness is scripts.benchlib, and
    # hpcapp this checkout's, as in every process the benchmarks start.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from scripts.benchlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
