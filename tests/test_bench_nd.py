"""Smoke test of ``scripts/bench_nd.py memory``: tiny grid, both rank counts, estimate printed."""

import json
import subprocess
import sys

import pytest
from helpers import REPO, clean_env

# Its own CI step (scripts/run_tests.py), beside the others: the time limit is a hang guard.
pytestmark = pytest.mark.bench


def test_bench_nd_memory_reports_peak_and_estimate(tmp_path):
    # The script first compiles stats' loops for every dtype: on a cold numba cache that alone
    # could outlast the script's time limit below. Compile (or load) them here, without one.
    from hpcapp.kernels import _fused

    _fused.precompile()
    command = [sys.executable, str(REPO / "scripts" / "bench_nd.py"), "memory", str(tmp_path)]
    command += ["--steps", "6", "--lat", "5", "--lon", "7", "--bins", "4", "--chunk-rows", "2"]
    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    assert [row["ranks"] for row in rows] == [1, 2]
    for row in rows:
        assert row["cells"] == 35 and row["chunks"] == 3
        # The partial of 35 cells, as the kernel itself makes it on one record.
        assert row["partial_mib"] * 2**20 == partial_bytes((1, 5, 7), bins=4)
        assert len(row["peak_rss_mib_per_rank"]) == row["ranks"]
        assert all(peak > 10 for peak in row["peak_rss_mib_per_rank"])


def partial_bytes(shape, bins):
    """Return the bytes of one stats partial over time of a float32 field of ``shape``."""
    import numpy as np

    from hpcapp.kernels.nd import stats

    one = stats(np.zeros(shape, np.float32), bins=bins, range=[250.0, 310.0], over=(0,))
    return sum(np.asarray(value).nbytes for value in one.values())
