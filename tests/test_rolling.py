"""``rolling``: moving-window statistics along time, against xarray's ``rolling``."""

import numpy as np
import pytest
import xarray as xr
from helpers import cli_here, refused_here, run_here
from ncdata import write_grid, write_netcdf

from hpcapp.kernels.rolling import STATS


def xarray_rolling(path, name, window, stat, center, min_periods):
    with xr.open_dataset(path) as ds:
        found = ds[name].rolling(time=window, center=center, min_periods=min_periods)
        return getattr(found, stat)().values


@pytest.mark.parametrize("stat", STATS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize(("window", "min_periods"), [(4, None), (5, 2), (1, None), (40, 3)])
def test_rolling_equals_xarray_and_its_bits_do_not_depend_on_chunks(
    tmp_path, stat, center, window, min_periods
):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(23, 3, 4), bounds=False, missing=0.25)
    params = {"window": window, "stat": stat, "center": center}
    if min_periods is not None:
        params["min_periods"] = min_periods
    results = [run_here("rolling", spec, params=params, chunk_rows=rows) for rows in (1, 3, 23)]
    expected = xarray_rolling(path, "tas", window, stat, center, min_periods)
    got = results[0]["rolling"]
    assert got.shape == expected.shape and got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for other in results[1:]:
        assert other["rolling"].tobytes() == got.tobytes()


def test_packed_float32_stays_float32(tmp_path):
    rng = np.random.default_rng(2)
    stored = rng.integers(-3000, 3000, (17, 2, 3)).astype("i2")
    stored[rng.random(stored.shape) < 0.2] = -32767
    attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(280.0)}
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=attrs, fill_value=np.int16(-32767))
    got = run_here("rolling", spec, params={"window": 3, "min_periods": 1}, chunk_rows=4)
    expected = xarray_rolling(tmp_path / "in.nc", "tas", 3, "mean", False, 1)
    assert got["rolling"].dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got["rolling"], expected, rtol=1e-6)


def test_the_output_is_a_series_shaped_like_the_input(tmp_path):
    spec = write_grid(tmp_path / "in.nc", shape=(9, 2, 3), bounds=False, missing=0.1)
    out = tmp_path / "out.nc"
    done = cli_here(["run", "rolling", spec, "-o", str(out), "-p", "window=3", "-p",
                     "stat=max", "-p", "center=true", "--chunk-rows", "2", "-q"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    with xr.open_dataset(out) as ds, xr.open_dataset(tmp_path / "in.nc") as given:
        assert ds.tas_rolling.dims == ("time", "lat", "lon")
        assert ds.tas_rolling.attrs["units"] == given.tas.attrs["units"] == "K"
        expected = given.tas.rolling(time=3, center=True).max()
        np.testing.assert_array_equal(ds.tas_rolling.values, expected.values)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"window": 0}, "-p window must be a positive integer"),
        ({"window": 3, "stat": "median"}, "-p stat must be one of"),
        ({"window": 3, "min_periods": 4}, "-p min_periods must be an integer from 1"),
        ({"window": 3, "min_periods": 0}, "-p min_periods"),
        ({"window": 3, "center": "yes"}, "-p center must be true or false"),
        ({}, "needs parameter(s) window"),
    ],
)
def test_refusals(tmp_path, params, fragment):
    spec = write_grid(tmp_path / "in.nc", shape=(4, 2, 3), bounds=False)
    refused_here("rolling", spec, "rolling", fragment, params=params)


def test_scatter_and_grouping_are_refused(tmp_path):
    spec = write_grid(tmp_path / "in.nc", shape=(4, 2, 3), bounds=False)
    refused_here("rolling", spec, "scatter", params={"window": 2}, distribute="scatter")
    refused_here("rolling", spec, "group", params={"window": 2}, group_by="time.month")


def test_check_says_it_cannot_feed_a_halo_yet(tmp_path):
    """(It gives a kernel its records' dates: tests/test_kernel_coords.py checks trend.)"""
    spec = write_grid(tmp_path / "in.nc", shape=(4, 2, 3), bounds=False)
    done = cli_here(["check", "rolling", spec, "-p", "window=3"])
    assert done.returncode == 2
    assert "hpcapp check cannot give kernel 'rolling' a halo" in done.stderr


def test_a_selection_is_rolled_on_its_own(tmp_path):
    """--isel: the windows reach records of the selection only, as xarray's isel then rolling."""
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(30, 3, 4), bounds=False, missing=0.2)
    params = {"window": 5, "center": True, "min_periods": 1}
    got = run_here("rolling", spec, params=params, isel="time=5:20", chunk_rows=4)
    with xr.open_dataset(path) as ds:
        found = ds.tas.isel(time=slice(5, 20)).rolling(time=5, center=True, min_periods=1)
        expected = found.mean().values
    np.testing.assert_allclose(got["rolling"], expected, rtol=1e-12, atol=1e-12)


def test_a_user_kernel_declaring_a_halo_gets_its_neighbours(tmp_path):
    """halo=: the change since the previous record, one row per record, at any chunking."""
    import hpcapp

    @hpcapp.kernel(per_row="change", halo=lambda params: (1, 0))
    def change(chunk, halo=(0, 0)):
        before, _ = halo
        values = np.asarray(chunk, np.float64)
        first = np.full((1 - before, *values.shape[1:]), np.nan)  # the input's first record
        return {"change": np.diff(np.concatenate([first, values]), axis=0)}

    spec = write_grid(tmp_path / "in.nc", shape=(11, 2, 3), bounds=False)
    with xr.open_dataset(tmp_path / "in.nc") as ds:
        expected = ds.tas.diff("time").values
    for rows in (1, 4, 11):
        got = run_here(change, spec, chunk_rows=rows)["change"]
        assert np.isnan(got[0]).all()
        np.testing.assert_array_equal(got[1:], expected)


def test_the_memory_estimate_counts_the_halo(tmp_path):
    from hpcapp.io.memory import estimate
    from hpcapp.jobs.config import make_job_config
    from hpcapp.jobs.plan import resolve_data
    from hpcapp.kernels.registry import load_kernel

    spec = write_grid(tmp_path / "in.nc", shape=(40, 2, 3), bounds=False)
    chunk = {}
    for window in (1, 9):
        values = {"kernel": "rolling", "input": spec, "params": {"window": window, "stat": "max"}}
        config = make_job_config(values, {}, output_required=False)
        resolved = resolve_data(config, load_kernel("rolling"))
        chunk[window] = estimate(resolved.kernel, resolved.source, resolved.params, 4, 10)["chunk"]
    # 8 records more are read around each chunk of 4: three times the chunk's bytes.
    assert chunk[9] == 3 * chunk[1]


@pytest.mark.parametrize("stat", ["mean", "sum"])
@pytest.mark.parametrize(("window", "center"), [(4, False), (5, True), (12, True)])
def test_running_sums_restart_at_global_anchors_whatever_the_chunks(
    tmp_path, monkeypatch, stat, window, center
):
    """Anchors every 5 records: chunks of 7 and 3 start between them, yet give one result."""
    import hpcapp.kernels.rolling as rolling

    monkeypatch.setattr(rolling, "BLOCK", 5)
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(41, 3, 4), bounds=False, missing=0.25)
    params = {"window": window, "stat": stat, "center": center, "min_periods": 1}
    results = [run_here("rolling", spec, params=params, chunk_rows=rows) for rows in (7, 1, 3, 41)]
    expected = xarray_rolling(path, "tas", window, stat, center, 1)
    np.testing.assert_allclose(results[0]["rolling"], expected, rtol=1e-12, atol=1e-12)
    for other in results[1:]:
        assert other["rolling"].tobytes() == results[0]["rolling"].tobytes()


def test_an_infinity_leaving_the_window_leaves_no_nan(tmp_path):
    """An inf enters and leaves the running sum's windows: theirs are summed directly."""
    stored = np.random.default_rng(4).normal(size=(30, 2, 3))
    stored[3, 0, 0], stored[20, 1, 2], stored[21, 1, 2] = np.inf, np.inf, -np.inf
    spec = write_netcdf(tmp_path / "in.nc", stored)
    for stat in ("sum", "mean"):
        with np.errstate(invalid="ignore"):  # inf - inf in the window holding both
            expected = xarray_rolling(tmp_path / "in.nc", "tas", 4, stat, False, None)
        assert np.isfinite(expected[7:20, 0, 0]).all() and np.isnan(expected[21:24, 1, 2]).all()
        for rows in (1, 7, 30):
            got = run_here("rolling", spec, params={"window": 4, "stat": stat}, chunk_rows=rows)
            np.testing.assert_array_equal(np.isnan(got["rolling"]), np.isnan(expected))
            np.testing.assert_allclose(got["rolling"], expected, rtol=1e-12, atol=1e-12)
