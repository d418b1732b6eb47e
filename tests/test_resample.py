"""--resample time=FREQ against xarray's resample, on netCDF files written by netCDF4-python."""

import numpy as np
import pytest
from helpers import cli_here, read_results, refused_here

import hpcapp

xr = pytest.importorskip("xarray")

STATS = ("mean", "std", "var", "min", "max", "sum")


def write_daily(path, calendar="noleap", n=430, first=40.5, units="days since 2000-01-01",
                missing=(), hole=None, grid=(2, 3), seed=0, step=1.0):  # fmt: skip
    """Write tas(time, lat, lon), float64 with a _FillValue, daily times with time_bnds.

    ``first``: the first time (day 40.5 is 10 February, noon); ``missing``: records whose time
    is the time's _FillValue; ``hole``: (start, stop) records left out (a gap in the times).
    """
    import netCDF4

    rng = np.random.default_rng(seed)
    times = first + np.arange(n) * step
    if hole is not None:
        times = np.delete(times, np.s_[hole[0] : hole[1]])
    data = rng.normal(280.0, 5.0, size=(len(times), *grid))
    cells = rng.random(data.shape) < 0.05
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "resample test"
        for name, size in (("time", None), ("lat", grid[0]), ("lon", grid[1]), ("bnds", 2)):
            ds.createDimension(name, size)
        time = ds.createVariable("time", "f8", ("time",), fill_value=-9999.0)
        time.set_auto_maskandscale(False)
        time.units, time.calendar, time.bounds = units, calendar, "time_bnds"
        time.standard_name, time.axis = "time", "T"
        bounds = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        bounds[:] = np.stack([times - step / 2, times + step / 2], 1)
        stored = times.copy()
        stored[list(missing)] = -9999.0
        time[:] = stored
        ds.createVariable("lat", "f8", ("lat",))[:] = np.linspace(-45, 45, grid[0])
        ds.createVariable("lon", "f8", ("lon",))[:] = np.arange(grid[1]) * 120.0
        tas = ds.createVariable("tas", "f8", ("time", "lat", "lon"), fill_value=1e20)
        tas.units, tas.standard_name = "K", "air_temperature"
        tas[:] = np.ma.masked_array(data, cells)
    return f"{path}:/tas"


def xarray_resample(ds, frequency, missing=()):
    """xarray's resample of tas (it refuses a missing time: those records are dropped first)."""
    kept = [i for i in range(ds.sizes["time"]) if i not in set(missing)]
    return ds["tas"].isel(time=kept).resample(time=frequency)


def open_cf(path):
    return xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))


def compare(results, resampled):
    """Assert hpcapp's stats per period equal xarray's resample, to 1e-12 relative."""
    for key in STATS:
        expected = getattr(resampled, key)().values
        np.testing.assert_allclose(results[key], expected, rtol=1e-12, err_msg=key)
    count = resampled.count().values  # NaN in a period with no record: count 0 here
    empty = np.isnan(count) if count.dtype.kind == "f" else np.zeros(count.shape, bool)
    np.testing.assert_array_equal(results["count"], np.where(empty, 0, count))


@pytest.mark.parametrize("calendar", ["noleap", "standard"])
@pytest.mark.parametrize(
    "given,frequency",
    [
        ("1M", "1MS"),
        ("MS", "1MS"),
        ("1D", "1D"),
        ("5D", "5D"),
        ("YS", "YS"),
        ("1A", "YS"),
        ("3MS", "3MS"),
        ("2Y", "2YS"),
    ],
)
def test_resample_equals_xarray(tmp_path, calendar, given, frequency):
    path = tmp_path / "in.nc"
    missing = (3, 200)
    spec = write_daily(path, calendar, missing=missing)
    results = hpcapp.run("stats", spec, over="time", resample=f"time={given}", chunk_rows=17)
    with open_cf(path) as ds:
        resampled = xarray_resample(ds, frequency, missing)
        compare(results, resampled)
        starts = resampled.mean().time.values
    # The periods' starts and bounds, in the input's units and calendar.
    import cftime

    assert results["time"].attrs["units"] == "days since 2000-01-01"
    got = cftime.num2date(results["time"], "days since 2000-01-01", calendar)
    assert [str(d) for d in got] == [str(d) for d in starts]
    np.testing.assert_array_equal(results["time_bnds"][:, 0], results["time"])
    np.testing.assert_array_equal(results["time_bnds"][1:, 0], results["time_bnds"][:-1, 1])


def test_the_output_opens_in_xarray_with_time_and_its_bounds(tmp_path):
    path, out = tmp_path / "in.nc", tmp_path / "out.nc"
    spec = write_daily(path, "noleap", n=200, missing=(0,))
    done = cli_here(["run", "stats", spec, "--over", "time", "--resample", "time=1M",
                     "-o", str(out)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "7 periods (--resample time=1M): 2000-02-01, 2000-03-01, 2000-04-01" in done.stdout
    with open_cf(path) as ds, open_cf(out) as got:
        expected = xarray_resample(ds, "1MS", (0,)).mean()
        assert got["tas_mean"].dims == ("time", "lat", "lon")
        assert list(got["time"].values) == list(expected.time.values)
        assert got["time"].attrs["bounds"] == "time_bnds"
        assert got["time"].attrs["standard_name"] == "time"
        assert got["time"].encoding["calendar"] == "noleap"
        bounds = got["time_bnds"].values
        assert list(bounds[:, 0]) == list(expected.time.values)
        assert str(bounds[-1, 1]) == "2000-09-01 00:00:00"
        assert got["tas_mean"].attrs["cell_methods"] == "time: mean"
        xr.testing.assert_allclose(
            got["tas_mean"].drop_attrs(), expected.rename("tas_mean").drop_attrs(), rtol=1e-12
        )


def test_periods_with_no_record_are_nan_with_count_0(tmp_path):
    # No record from 1 April to 20 May: April is empty, as in xarray's resample (NaN).
    path = tmp_path / "in.nc"
    spec = write_daily(path, "noleap", n=200, hole=(50, 100))
    results = hpcapp.run("stats", spec, over="time", resample="time=1M", chunk_rows=10)
    with open_cf(path) as ds:
        resampled = xarray_resample(ds, "1MS")
        compare(results, resampled)
        assert len(results["time"]) == resampled.mean().sizes["time"] == 7
    assert np.isnan(results["mean"][2]).all() and (results["count"][2] == 0).all()


def test_three_yearly_files_equal_open_mfdataset(tmp_path):
    # Each file counts its days from its own 1 January (the output: in the first file's units).
    paths = []
    for index, year in enumerate((2001, 2002, 2003)):
        path = tmp_path / f"tas_{year}.nc"
        write_daily(path, "noleap", n=365, first=0.25, units=f"days since {year}-01-01",
                    seed=index, missing=(40,) if index == 1 else ())  # fmt: skip
        paths.append(path)
    spec = f"{tmp_path}/tas_*.nc:/tas"
    out = tmp_path / "out.nc"
    results = hpcapp.run("stats", spec, over="time", resample="time=1M", output=str(out))
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_mfdataset(paths, decode_times=coder, combine="nested", concat_dim="time") as ds:
        resampled = xarray_resample(ds.load(), "1MS", (365 + 40,))
        compare(results, resampled)
        with open_cf(out) as got:
            assert list(got["time"].values) == list(resampled.mean().time.values)
            assert got["time"].encoding["units"] == "days since 2001-01-01"
    np.testing.assert_array_equal(read_results(out)["mean"], results["mean"])


def test_over_every_dimension_gives_one_value_per_period(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_daily(path, "standard", n=100)
    results = hpcapp.run("stats", spec, over="time,lat,lon", resample="time=1M")
    with open_cf(path) as ds:
        expected = ds["tas"].resample(time="1MS").mean(...).values
    np.testing.assert_allclose(results["mean"], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "options,fragments",
    [
        ({"resample": "time=2W"}, ("unknown frequency '2W'",)),
        ({"resample": "lat=1D"}, ("no record dimension 'lat'", "along 'time'")),
        ({"resample": "time=1M", "over": "lat,lon"}, ("--resample time=1M", "per-row outputs")),
        ({"resample": "time=1M", "group_by": "time.month"}, ("exclude each other",)),
    ],
)
def test_refusals(tmp_path, options, fragments):
    spec = write_daily(tmp_path / "in.nc", n=20)
    refused_here("stats", spec, *fragments, **options)


def test_a_record_dimension_without_cf_times_is_refused(tmp_path):
    import netCDF4

    path = tmp_path / "plain.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 4)
        ds.createVariable("time", "f8", ("time",))[:] = np.arange(4)
        ds["time"].units = "days"
        ds.createVariable("v", "f8", ("time",))[:] = np.arange(4)
    refused_here("stats", f"{path}:/v", "dimension 'time'", "not a CF time coordinate",
                 "'days'", resample="time=1D")  # fmt: skip


def test_refusals_from_the_command_line_exit_2_with_one_line(tmp_path):
    spec = write_daily(tmp_path / "in.nc", n=20)
    for extra in (["--resample", "time=7Q"], ["--resample", "time=1M", "--group-every", "2"]):
        done = cli_here(["run", "stats", spec, "-o", str(tmp_path / "o.nc"), *extra])
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert not (tmp_path / "o.nc").exists()


def test_the_periods_pickle_with_their_units(tmp_path):
    # hpcapp.run(root=None) broadcasts the results: the times keep their units and calendar.
    import pickle

    spec = write_daily(tmp_path / "in.nc", n=40)
    results = hpcapp.run("stats", spec, over="time", resample="time=1M")
    again = pickle.loads(pickle.dumps(results))
    assert again["time"].attrs == results["time"].attrs
    assert again["time"].attrs["calendar"] == "noleap"
    assert again["time_bnds"].tobytes() == results["time_bnds"].tobytes()


def test_a_time_selection_anchors_the_periods_at_its_first_record(tmp_path):
    # 5-day periods start at midnight of the first selected day, as xarray on the selection.
    path = tmp_path / "in.nc"
    spec = write_daily(path, "standard", n=120)
    options = {"over": "time", "resample": "time=5D", "sel": "time=2000-03-03:2000-05-20"}
    results = hpcapp.run("stats", spec, **options)
    with open_cf(path) as ds:
        resampled = ds["tas"].sel(time=slice("2000-03-03", "2000-05-20")).resample(time="5D")
        compare(results, resampled)
        assert str(resampled.mean().time.values[0]) == "2000-03-03 00:00:00"
    assert results["time"][0] == 62.0  # 2000-03-03 in days since 2000-01-01
