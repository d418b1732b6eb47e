"""Smoke tests of the N-D and climate benchmarks at tiny sizes (nd-*, fldmean, quantile, ...)."""

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


def test_fldmean_series_agree(tmp_path):
    result = run_tiny("fldmean", tmp_path)
    names = [row["contender"] for row in result["rows"]]
    assert names[:2] == ["hpcapp, 1 rank(s)", "hpcapp, 2 rank(s)"] and "xarray" in names[2]
    assert ("cdo" in " ".join(names).lower()) != bool(result["notes"])  # run, or said why not
    assert result["steps"] == 20 and all(row["seconds"] > 0 for row in result["rows"])
    for row in result["rows"][:2]:  # hpcapp's phases, the slowest rank's
        assert set(row["phases"]) == {"read", "compute", "reduce", "write", "startup"}


def test_rolling_agrees_with_xarray_and_cdo(tmp_path):
    result = run_tiny("rolling", tmp_path)
    rows = {row["contender"].split(",")[0].split(" (")[0]: row for row in result["rows"]}
    hpcapp_rows = [row for row in result["rows"] if row["contender"].startswith("hpcapp")]
    assert len(hpcapp_rows) == 2 and all(row["bitwise_equal_to_first"] for row in hpcapp_rows)
    others = [row for row in result["rows"] if "max_abs_difference" in row]
    assert len(others) == 1 + result["cdo"]
    assert all(row["max_abs_difference"] < 1e-4 for row in others), rows


def test_rolling_phases_loops_give_the_same_bits(tmp_path):
    result = run_tiny("rolling-phases", tmp_path)
    assert result["same_bits"] == {"strips": True, "packed": True}
    assert (result["records"], result["own_records"], result["cells"]) == (133, 40, 48)
    assert all(seconds > 0 for seconds in result["seconds"].values())


def test_groupmem_reports_peaks_estimate_and_peers(tmp_path):
    result = run_tiny("groupmem", tmp_path)
    tools = [row["tool"] for row in result["rows"]]
    assert tools[:3] == ["hpcapp@1 (stats=mean)", "hpcapp@2 (stats=mean)", "xarray"]
    assert tools[3:] in ([], ["cdo ydaymean"])
    assert result["cells"] == 20 and result["chunks"] >= 1
    for ranks, row in enumerate(result["rows"][:2], 1):
        assert row["estimate_mib"] > 0 and len(row["peaks_mib"]) == ranks
    assert all(row["peak_mib"] is None or row["peak_mib"] > 10 for row in result["rows"])


def test_quantile_times_every_contender_with_its_memory(tmp_path):
    import shutil

    result = run_tiny("quantile", tmp_path)
    best = result["best"]
    expected = {"hpcapp quantile 2 ranks", "hpcapp stats 2 ranks", "xarray+dask 2 threads"}
    assert expected <= set(best)
    assert all(len(best[key]["peak_mib_per_rank"]) == 2 for key in expected if "hpcapp" in key)
    assert result["xarray_max_abs_diff"] < 1e-9
    assert ("cdo_p50_max_abs_diff" in result) == bool(shutil.which("cdo"))


def test_resample_means_agree_with_xarray_and_cdo(tmp_path):
    result = run_tiny("resample", tmp_path)
    assert result["months"] == 12
    hpcapp = [row for row in result["rows"] if "bitwise_equal_to_first" in row]
    assert len(hpcapp) == 2 and all(row["bitwise_equal_to_first"] for row in hpcapp)
    others = [row for row in result["rows"] if "max_relative_difference" in row]
    assert len(others) == 1 + result["cdo"]
    assert all(row["max_relative_difference"] < 1e-6 for row in others)
    assert others[0]["same_months"]


def test_cf_files_times_every_contender_and_checks_them(tmp_path):
    result = run_tiny("cf-files", tmp_path)
    wall = result["wall"]
    assert {"mean hpcapp@1", "mean hpcapp@2", "mean hpcapp@1 HDF5 inflate"} <= wall.keys()
    assert all(seconds > 0 for seconds in wall.values())
    assert all(result["startup"][name] > 0 for name in wall if "hpcapp" in name)
    checks = result["checks"]
    assert all(checks[f"hpcapp {tag} rel"] < 1e-12 for tag in ("mean1", "mean2", "mean1h"))
    for name in ("ncra.nc K", "timmean.nc K"):  # the peers that are installed
        assert name not in checks or checks[name] < 0.006  # half a packing step
