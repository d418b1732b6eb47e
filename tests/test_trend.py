"""``trend``: a least-squares line per cell over time, against numpy.polyfit on each series."""

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr
from helpers import read_results, refused_here, run_here
from ncdata import write_grid, write_masked_time, write_times

DAYS_PER_YEAR = {"noleap": 365.0, "360_day": 360.0, "standard": 365.25}


def set_time(path, units, calendar):
    """Give the grid's time coordinate other units and a calendar: one record a day."""
    with netCDF4.Dataset(path, "a") as ds:
        ds["time"][:] = np.arange(len(ds["time"])) * (24 if units.startswith("hours") else 1)
        ds["time"].units = units
        ds["time"].calendar = calendar


def years_of(path, calendar):
    """Return each record's time in years since 1970-01-01 of the calendar (NaN: masked)."""
    with netCDF4.Dataset(path) as ds:
        time = ds["time"]
        numbers = np.ma.filled(time[:].astype(np.float64), np.nan)
        units = time.units
    out = np.full(len(numbers), np.nan)
    known = ~np.isnan(numbers)
    dates = cftime.num2date(numbers[known], units, calendar)
    days = cftime.date2num(dates, "days since 1970-01-01", calendar)
    out[known] = np.asarray(days, np.float64) / DAYS_PER_YEAR[calendar]
    return out


def polyfit_reference(path, name, t):
    """Return numpy.polyfit's slope, intercept and count on each cell's non-missing series."""
    with xr.open_dataset(path, decode_times=False) as ds:
        values = ds[name].values.astype(np.float64)
    cells = values.reshape(len(values), -1)
    slope, intercept = np.full(cells.shape[1], np.nan), np.full(cells.shape[1], np.nan)
    count = np.zeros(cells.shape[1], np.int64)
    for cell in range(cells.shape[1]):
        ok = ~np.isnan(cells[:, cell]) & ~np.isnan(t)
        count[cell] = ok.sum()
        if count[cell] >= 2:
            slope[cell], intercept[cell] = np.polyfit(t[ok], cells[ok, cell], 1)
    shape = values.shape[1:]
    return slope.reshape(shape), intercept.reshape(shape), count.reshape(shape)


def assert_fit(got, expected):
    slope, intercept, count = expected
    np.testing.assert_array_equal(got["count"], count)
    np.testing.assert_allclose(got["slope"], slope, rtol=1e-10, atol=0)
    np.testing.assert_allclose(got["intercept"], intercept, rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    ("units", "calendar"),
    [
        ("days since 2000-01-01", "noleap"),
        ("days since 1850-01-01", "standard"),
        ("hours since 1990-06-01", "360_day"),
    ],
)
@pytest.mark.parametrize("chunk_rows", [1, 4, 40])
def test_trend_equals_polyfit(tmp_path, units, calendar, chunk_rows):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(40, 3, 4), bounds=False, missing=0.2)
    set_time(path, units, calendar)
    got = run_here("trend", spec, chunk_rows=chunk_rows)
    assert_fit(got, polyfit_reference(path, "tas", years_of(path, calendar)))


def test_trend_over_time_names_the_outputs(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(12, 2, 3), bounds=False, missing=0.1)
    out = tmp_path / "out.nc"
    run_here("trend", spec, over="time", output=str(out), chunk_rows=5)
    with xr.open_dataset(out) as ds:
        assert {"tas_slope", "tas_intercept", "tas_count"} <= set(ds.data_vars)
        assert ds.tas_slope.dims == ("lat", "lon")
    assert set(read_results(out)) >= {"slope", "intercept", "count"}


def test_a_large_offset_keeps_its_digits(tmp_path):
    """Values near 1e6 with a small trend: raw sums of t*y would cancel (~1e-3 relative).

    Both hpcapp and polyfit lose digits to the values' own rounding here (a unit in the last
    place of 1e6 is 1e-10, the trend over a week 4e-4): each is checked against the exact
    least-squares slope of the same float64 values, computed with fractions.
    """
    from fractions import Fraction

    days = np.arange(0.0, 3650.0, 7.0)
    rng = np.random.default_rng(1)
    values = 1e6 + 0.02 * days[:, None] / 365.25 + rng.normal(0, 0.01, (len(days), 3))
    spec = write_times(tmp_path / "in.nc", days, values, units="days since 2001-01-01")
    got = run_here("trend", spec, chunk_rows=13)
    t = years_of(tmp_path / "in.nc", "standard")
    exact_t = [Fraction(v) for v in t]
    mean_t = sum(exact_t) / len(t)
    for cell in range(values.shape[1]):
        exact_y = [Fraction(v) for v in values[:, cell]]
        mean_y = sum(exact_y) / len(t)
        slope = sum((a - mean_t) * (b - mean_y) for a, b in zip(exact_t, exact_y, strict=True))
        slope /= sum((a - mean_t) ** 2 for a in exact_t)
        assert abs(got["slope"][cell] - float(slope)) <= 1e-9 * abs(float(slope))
        intercept = float(mean_y - slope * mean_t)
        assert abs(got["intercept"][cell] - intercept) <= 1e-15 * abs(intercept)
    np.testing.assert_allclose(got["slope"], 0.02, atol=0.005)


@pytest.mark.parametrize("kind", ["fill", "missing_value", "packed-fill"])
def test_masked_times_are_skipped(tmp_path, kind):
    spec = write_masked_time(tmp_path / "in.nc", kind)
    got = run_here("trend", spec, chunk_rows=2)
    # Records 3 and 4 (times masked; values 100 and 200) are left out of the fit.
    t = np.array([0.0, 10.0, 40.0, 41.0]) / 365.25 + (
        cftime.date2num(cftime.datetime(1850, 1, 1), "days since 1970-01-01") / 365.25
    )
    slope, intercept = np.polyfit(t, [1.0, 2, 4, 6], 1)
    assert got["count"].tolist() == [4]
    np.testing.assert_allclose(got["slope"], [slope], rtol=1e-10)
    np.testing.assert_allclose(got["intercept"], [intercept], rtol=1e-10)


def test_fewer_than_two_values_give_nan(tmp_path):
    values = np.array([[1.0, np.nan], [2.0, np.nan], [4.0, 5.0]])
    spec = write_times(tmp_path / "in.nc", [0.0, 365.0, 730.0], values)
    got = run_here("trend", spec, chunk_rows=1)
    assert got["count"].tolist() == [3, 1]
    assert np.isnan(got["slope"][1]) and np.isnan(got["intercept"][1])
    assert np.isfinite(got["slope"][0])


def test_refusals(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(4, 2, 3), bounds=False)
    refused_here("trend", spec, "record dimension only", over="lat")
    refused_here("trend", spec, "--group-by", group_by="time.month")
    with netCDF4.Dataset(path, "a") as ds:
        ds["time"].units = "days"
    refused_here("trend", spec, "/time", "not a CF time coordinate", "'days'")


def test_many_files_each_with_its_own_time_units(tmp_path):
    """Three noleap years, each counting days from its own 1 January: one series of dates."""
    from ncdata import write_yearly_files

    paths = write_yearly_files(tmp_path / "years")
    got = run_here("trend", f"{tmp_path / 'years'}/tas_*.nc:/v", chunk_rows=5)
    t = np.concatenate([years_of(path, "noleap") for path in paths])
    with xr.open_mfdataset(paths, combine="nested", concat_dim="time", decode_times=False) as ds:
        values = ds.v.values
    for cell in range(values.shape[1]):
        slope, intercept = np.polyfit(t, values[:, cell], 1)
        np.testing.assert_allclose(got["slope"][cell], slope, rtol=1e-10)
        np.testing.assert_allclose(got["intercept"][cell], intercept, rtol=1e-10)
    assert got["count"].tolist() == [len(t)] * values.shape[1]
