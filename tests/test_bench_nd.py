"""Smoke tests of the N-D benchmarks (``nd-memory``, ``nd-speed``) at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_tiny

# Its own CI step (scripts/run_tests.py), beside the others: the time limit is a hang guard.
pytestmark = [pytest.mark.bench, pytest.mark.usefixtures("compiled_loops")]


def test_nd_memory_reports_peak_and_estimate(tmp_path):
    result = run_tiny("nd-memory", tmp_path)
    rows = result["rows"]
    assert [row["ranks"] for row in rows] == [1, 2]
    for row in rows:
        assert row["cells"] == 35 and row["chunks"] == 3
        # The partial of 35 cells, as the kernel itself makes it on one record.
        assert row["partial_mib"] * 2**20 == partial_bytes((1, 5, 7), bins=4)
        assert len(row["peak_rss_mib_per_rank"]) == row["ranks"]
        assert all(peak > 10 for peak in row["peak_rss_mib_per_rank"])


def partial_bytes(shape, bins):
    """Return the bytes of one stats partial over time of a float32 field of ``shape``."""
    from hpcapp.kernels.nd import stats

    one = stats(np.zeros(shape, np.float32), bins=bins, range=[250.0, 310.0], over=(0,))
    return sum(np.asarray(value).nbytes for value in one.values())


def test_nd_speed_means_agree_with_numpy(tmp_path):
    result = run_tiny("nd-speed", tmp_path)
    assert [row["file"] for row in result["rows"]] == ["plain", "gzip"]
    for row in result["rows"]:
        assert {"hpcapp 1 rank", "hpcapp 2 ranks", "numpy"} <= set(row)
        assert row["mean_rel_diff_vs_numpy"] < 1e-6
        assert row["xarray_mean_rel_diff_vs_numpy"] < 1e-6


def test_resample_means_agree_with_xarray_and_cdo(tmp_path):
    result = run_tiny("resample", tmp_path)
    assert result["months"] == 12
    hpcapp = [row for row in result["rows"] if "bitwise_equal_to_first" in row]
    assert len(hpcapp) == 2 and all(row["bitwise_equal_to_first"] for row in hpcapp)
    others = [row for row in result["rows"] if "max_relative_difference" in row]
    assert len(others) == 1 + result["cdo"]
    assert all(row["max_relative_difference"] < 1e-6 for row in others)
    assert others[0]["same_months"]
