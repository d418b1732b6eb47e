"""Kernels declaring ``coords=True`` get their chunk's coordinates: against xarray on the file."""

import netCDF4
import numpy as np
import pytest
import xarray as xr
from helpers import cli_here, refused_here, run_here, write_dataset
from ncdata import write_grid
from sample_kernels import COORDS_KERNELS

import hpcapp
from hpcapp.kernels.hookspec import ChunkCoords
from hpcapp.testing import run_check

SHAPE = (70, 6, 8)  # daily from 1850-01-01: 31 records in January, the rest later


@pytest.fixture
def kernels(tmp_path):
    """Return the kernel file's spec prefix, ``FILE.py:``."""
    path = tmp_path / "coords_kernels.py"
    path.write_text(COORDS_KERNELS)
    return f"{path}:"


@pytest.fixture
def grid(tmp_path):
    """Return the path of a grid with missing cells and lat/lon bounds."""
    path = tmp_path / "in.nc"
    write_grid(path, shape=SHAPE, missing=0.1)
    return path


def open_cftime(path):
    return xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))


def cos_lat(ds):
    return np.cos(np.deg2rad(ds.lat))


def bounds_area(ds):
    sines = np.sin(np.deg2rad(ds.lat_bnds))
    return abs(sines[:, 1] - sines[:, 0]) * np.deg2rad(abs(ds.lon_bnds[:, 1] - ds.lon_bnds[:, 0]))


def xarray_weighted(path, weights, **sel):
    """Return xarray's weighted sum, sum of weights and mean of ``tas`` over every dimension."""
    with xr.open_dataset(path) as ds:
        found = ds.tas.sel(**sel).weighted(weights(ds.sel(**sel)))
        return found.sum().item(), found.sum_of_weights().item(), found.mean().item()


def assert_weighted(got, expected):
    np.testing.assert_allclose([got["wsum"], got["wts"], got["mean"]], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("chunk_rows", [1, 9, 70])
def test_cos_lat_from_the_coordinates_equals_xarray(grid, kernels, chunk_rows):
    got = run_here(kernels + "coslat", f"{grid}:/tas", chunk_rows=chunk_rows)
    assert_weighted(got, xarray_weighted(grid, cos_lat))


def test_coordinates_are_those_sel_keeps(grid, kernels):
    got = run_here(kernels + "coslat", f"{grid}:/tas", sel="lat=-30:60,lon=0:90", chunk_rows=4)
    expected = xarray_weighted(grid, cos_lat, lat=slice(-30, 60), lon=slice(0, 90))
    assert_weighted(got, expected)
    whole = run_here(kernels + "coslat", f"{grid}:/tas", chunk_rows=4)
    assert abs(whole["mean"] - got["mean"]) > 0.1  # the selection matters


@pytest.mark.parametrize("chunk_rows", [1, 9])
def test_weights_reach_the_kernel(grid, kernels, chunk_rows):
    got = run_here(kernels + "weighted", f"{grid}:/tas", weights="area", chunk_rows=chunk_rows)
    assert_weighted(got, xarray_weighted(grid, bounds_area))


@pytest.mark.parametrize("calendar", ["standard", "noleap", "360_day"])
@pytest.mark.parametrize("chunk_rows", [1, 9, 70])
def test_dates_are_xarrays(grid, kernels, calendar, chunk_rows):
    with netCDF4.Dataset(grid, "a") as ds:  # from mid-December: two Januaries' worth
        ds["time"].units, ds["time"].calendar = "days since 1999-12-15", calendar
    got = run_here(kernels + "january", f"{grid}:/tas", chunk_rows=chunk_rows)
    with open_cftime(grid) as ds:
        months, doy = ds.time.dt.month.values, ds.time.dt.dayofyear.values
    assert got["january"] == (months == 1).sum() >= 30
    np.testing.assert_array_equal(got["doy"], doy)
    np.testing.assert_array_equal(got["row"], np.arange(SHAPE[0]))
    assert (got["first"], got["last"]) == (0, SHAPE[0])


def test_rows_and_dates_of_a_time_selection(grid, kernels):
    got = run_here(kernels + "january", f"{grid}:/tas", sel="time=1850-01-20:1850-02-10")
    with open_cftime(grid) as ds:
        picked = ds.time.sel(time=slice("1850-01-20", "1850-02-10"))
    np.testing.assert_array_equal(got["doy"], picked.dt.dayofyear.values)
    np.testing.assert_array_equal(got["row"], np.arange(len(picked)))  # rows of the selection
    assert got["january"] == 12


def test_many_files_decode_each_files_dates(tmp_path, kernels):
    """Two files, each with its own time units: the dates and rows run on across them."""
    paths = [tmp_path / "part1.nc", tmp_path / "part2.nc"]
    for path, units in zip(paths, ["1849-12-01", "1850-01-05"], strict=True):
        write_grid(path, shape=(35, 6, 8))
        with netCDF4.Dataset(path, "a") as ds:
            ds["time"].units = f"days since {units}"
    got = run_here(kernels + "january", f"{tmp_path}/part*.nc:/tas", chunk_rows=8)
    doy, months = [], []
    for path in paths:
        with open_cftime(path) as ds:
            doy.extend(ds.time.dt.dayofyear.values)
            months.extend(ds.time.dt.month.values)
    np.testing.assert_array_equal(got["doy"], doy)
    np.testing.assert_array_equal(got["row"], np.arange(70))
    assert got["january"] == np.sum(np.asarray(months) == 1) == 4 + 27
    both = run_here(kernels + "coslat", f"{tmp_path}/part*.nc:/tas", chunk_rows=8)
    parts = [xarray_weighted(path, cos_lat) for path in paths]
    np.testing.assert_allclose(both["wsum"], parts[0][0] + parts[1][0], rtol=1e-12)


def test_what_is_missing_is_none(tmp_path, grid, kernels):
    got = run_here(kernels + "described", f"{grid}:/tas", chunk_rows=9)
    assert (got["dated"], got["weighted"], got["bare"], got["dims"]) == (1, 0, 0, 3)
    weighted = run_here(kernels + "described", f"{grid}:/tas", weights="area")
    assert weighted["weighted"] == 1
    bare = write_dataset(tmp_path / "bare.h5", np.ones((6, 3, 2)))  # no coordinate variables
    got = run_here(kernels + "described", bare, chunk_rows=4)
    assert (got["dated"], got["weighted"], got["bare"], got["dims"]) == (0, 0, 2, 3)


def test_check_gives_the_coordinates(grid, kernels):
    spec = f"{grid}:/tas"
    for name in ("coslat", "january"):
        report = run_check(kernels + name, spec)
        assert report.ok, report.text()
        assert any("coords (dates of /time; time, lat, lon)" in note for note in report.notes)
    assert run_check(kernels + "weighted", spec, weights="area").ok
    # The chunks' rows are the cut's: a sum of first rows depends on it, and check says so.
    broken = run_check(kernels + "starts", spec)
    assert not broken.ok
    assert "key 'start'" in broken.failures[0], broken.failures
    done = cli_here(["check", kernels + "january", spec])
    assert done.returncode == 0, done.stderr
    assert "all rules hold" in done.stdout


def test_check_gives_a_times_kernel_its_dates(grid):
    report = run_check("trend", f"{grid}:/tas")
    assert report.ok, report.text()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"group_by": "time.month"}, "takes no --group-every, --group-by or --resample"),
        ({"resample": "time=1M"}, "takes no --group-every, --group-by or --resample"),
        ({"distribute": "scatter"}, "drop --distribute scatter"),
        ({"mask": "mask.nc:/m"}, "--mask works with the built-in stats kernel only"),
    ],
)
def test_refused_where_it_cannot_work(grid, kernels, options, fragment):
    refused_here(kernels + "coslat", f"{grid}:/tas", fragment, **options)


def test_refused_on_the_command_line(tmp_path, grid, kernels):
    done = cli_here(
        ["run", kernels + "coslat", f"{grid}:/tas", "--group-by", "time.month", "-o",
         str(tmp_path / "out.nc")]
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--group-by" in done.stderr
    done = cli_here(["run", kernels + "coslat", "-o", str(tmp_path / "out.nc")])
    assert done.returncode == 2
    assert "needs an INPUT" in done.stderr


def needs_coords(chunk, coords):
    return {"n": np.int64(len(chunk))}


def generates_with_coords(rng, n_rows, n=10, coords=None):
    return {"n": np.int64(n_rows)}


@pytest.mark.parametrize(
    ("declared", "error", "fragment"),
    [
        ({}, ValueError, "a parameter named `coords` is given by the job only"),
        ({"coords": 1}, TypeError, "coords must be True or False"),
        ({"coords": True, "generates": True, "rows_param": "n"}, ValueError, "generating kernel"),
        ({"coords": True, "series": True}, ValueError, "series=True"),
    ],
)
def test_declarations_are_checked(declared, error, fragment):
    func = generates_with_coords if declared.get("generates") else needs_coords
    with pytest.raises(error, match=fragment):
        hpcapp.kernel(**declared)(func)


def test_declared_without_the_parameter():
    with pytest.raises(TypeError, match="takes no parameter `coords`"):
        hpcapp.kernel(coords=True)(lambda chunk: {})


def test_a_coords_kernel_is_a_function_in_a_unit_test():
    k = hpcapp.kernel(coords=True)(needs_coords)
    coords = ChunkCoords(None, ("time",), {}, None, (0, 3))
    assert k(np.zeros(3), coords=coords) == {"n": 3}


def test_memory_estimate_runs_the_kernel_with_its_coordinates(grid, kernels):
    """--memory-per-rank runs the kernel on one row of zeros: it gets the grid's values too."""
    got = run_here(kernels + "coslat", f"{grid}:/tas", memory_per_rank="4GiB")
    assert_weighted(got, xarray_weighted(grid, cos_lat))
