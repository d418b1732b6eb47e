"""Results open as netCDF: named dimensions, coordinates, bin bounds, CF attributes."""

import re

import numpy as np
import pytest
from helpers import cli_here, read_results, result_names, run_here, write_dataset
from ncdata import reference, write_netcdf

import hpcapp

BINS = 4


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A small packed (time, lat, lon) input and its decoded values."""
    tmp = tmp_path_factory.mktemp("nc")
    rng = np.random.default_rng(11)
    stored = rng.integers(-2000, 2000, size=(17, 3, 4)).astype(np.int16)
    stored[rng.random(stored.shape) < 0.1] = -1
    attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(10.0), "units": "K"}
    spec = write_netcdf(tmp / "in.nc", stored, attrs=attrs, fill_value=np.int16(-1))
    values = stored.astype(np.float32) * np.float32(0.01) + np.float32(10.0)
    values[stored == -1] = np.nan
    return tmp, spec, values


def run(tmp, spec, over, name):
    out = tmp / f"{name}.nc"
    argv = ["run", "stats", spec, "-o", str(out), "--over", over, "--chunk-rows", "5", "-q"]
    done = cli_here([*argv, "-p", f"bins={BINS}", "-p", "range=-10,30", "--overwrite"])
    assert done.returncode == 0, done.stderr
    return out


def test_per_cell_result_in_xarray_and_netcdf4(field):
    import netCDF4
    import xarray as xr

    tmp, spec, values = field
    out = run(tmp, spec, "time", "cells")
    expected = reference(values, (0,), BINS, (-10.0, 30.0))
    with xr.open_dataset(out) as ds:  # no group: the results are at the root
        assert ds["tas_mean"].dims == ("lat", "lon")
        assert ds["tas_hist"].dims == ("lat", "lon", "bin")
        np.testing.assert_array_equal(ds["lat"].values, np.linspace(-90, 90, 3))
        assert ds["lat"].attrs["units"] == "degrees_north"
        assert ds["lon"].attrs["long_name"] == "lon coordinate"
        np.testing.assert_allclose(ds["tas_mean"].values, expected["mean"], rtol=1e-12)
        np.testing.assert_array_equal(ds["tas_hist"].values, expected["hist"])
        mean = ds["tas_mean"].attrs
        assert mean["cell_methods"] == "time: mean" and mean["units"] == "K"
        assert mean["hpcapp_result"] == "mean"
        assert ds["tas_max"].attrs["cell_methods"] == "time: maximum"
        assert ds["tas_var"].attrs["units"] == "K^2" and "units" not in ds["tas_count"].attrs
        assert ds["tas_mean"].encoding["_FillValue"] != ds["tas_mean"].encoding["_FillValue"]
        assert "_FillValue" not in ds["tas_count"].encoding
        assert ds["bin"].attrs["bounds"] == "bin_bounds"
        np.testing.assert_array_equal(
            ds["bin_bounds"].values, [[-10, 0], [0, 10], [10, 20], [20, 30]]
        )
        np.testing.assert_array_equal(ds["bin"].values, [-5, 5, 15, 25])
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["kernel"] == "stats"
        assert ds["timing_read"].dims == ("rank",) and ds.sizes["rank"] == 1
    with netCDF4.Dataset(out) as nc:
        assert not nc.groups
        assert nc["tas_hist"].dimensions == ("lat", "lon", "bin")
        assert nc["bin_bounds"].dimensions == ("bin", "nv")
        assert nc["timing_compute"].dimensions == ("rank",)
        np.testing.assert_array_equal(nc["tas_count"][:], expected["count"])
        np.testing.assert_array_equal(nc["lon"][:], np.arange(4) * 1.5)
        assert nc.getncattr("Conventions") == "CF-1.8" and nc.getncattr("n_ranks") == 1
        # Text attributes are netCDF char (classic), booleans bytes: no NC_STRING, no enum.
        assert isinstance(nc.getncattr("kernel"), str) and nc.getncattr("resumed") == 0


def test_series_and_scalar_results_in_xarray(field):
    import xarray as xr

    tmp, spec, values = field
    out = run(tmp, spec, "lat,lon", "series")
    expected = reference(values, (1, 2), BINS, (-10.0, 30.0))
    with xr.open_dataset(out, decode_times=False) as ds:
        assert ds["tas_mean"].dims == ("time",) and ds["tas_hist"].dims == ("time", "bin")
        np.testing.assert_array_equal(ds["time"].values, np.arange(17) * 1.5)
        assert ds["time"].attrs["units"] == "days"
        np.testing.assert_allclose(ds["tas_mean"].values, expected["mean"], rtol=1e-12)
        assert ds["tas_std"].attrs["cell_methods"] == "lat: lon: standard_deviation"
    out = run(tmp, spec, "time,lat,lon", "scalar")
    with xr.open_dataset(out) as ds:
        assert ds["tas_mean"].dims == () and ds["tas_hist"].dims == ("bin",)
        mean = float(ds["tas_mean"])
        np.testing.assert_allclose(mean, np.nanmean(values.astype(float)), rtol=1e-12)


def test_netcdf3_input_is_refused_with_the_conversion_command(tmp_path):
    spec = write_netcdf(tmp_path / "old.nc", np.zeros((4, 2, 3), "f4"), fmt="NETCDF3_CLASSIC")
    done = cli_here(["run", "stats", spec, "-o", f"{tmp_path}/out.nc"])
    assert done.returncode == 2
    assert "netCDF-3" in done.stderr and "nccopy -k nc4" in done.stderr


def test_show_gives_the_job_in_a_few_lines_and_a_digest_of_each_result(tmp_path):
    import json

    data = np.arange(60, dtype=np.float64).reshape(5, 3, 4)
    data[:, 0, 0] = np.nan  # one cell with no values: its statistics are missing
    spec = write_netcdf(tmp_path / "in.nc", data, attrs={"units": "K"})
    out = run(tmp_path, spec, "time", "shown")
    shown = cli_here(["show", str(out)])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{out}: stats on {spec}"
    header = {line.split()[0]: line for line in lines[1:7]}
    assert header.keys() == {"command", "input", "ranks", "wall", "code", "MPI"}
    assert f"{spec} (5 x 3 x 4 <f8, CF decoding xarray-default)" in header["input"]
    assert "1 rank on 1 host, 1 chunk of 5 rows, static schedule" in header["ranks"]
    assert re.search(r"wall time  \d+\.\d\d s \(\S+Z to \S+Z\)", header["wall"])
    assert "hpcapp 0.1.0" in header["code"] and "numpy" in header["code"]
    cells = data.mean(axis=0).ravel()[1:]  # cell (0, 0) is all NaN
    mean = next(line for line in lines if line.startswith("  tas_mean "))
    expected = f"(lat 3, lon 4) float64  {cells.min():.6g} / {cells.mean():.6g} / {cells.max():.6g}"
    assert mean.endswith(f"{expected}; 1 of 12 missing"), mean
    count = next(line for line in lines if line.startswith("  tas_count "))
    assert count.endswith("(lat 3, lon 4) int64  0 / 4.58333 / 5"), count
    assert "timing (1 rank; min / mean / max):" in lines
    assert len(shown.stdout) < 3000  # not the job identity's thousands of characters
    record = json.loads(cli_here(["show", str(out), "--json"]).stdout)
    assert record["attributes"]["job_identity"]["kernel"] == "stats"
    assert record["results"]["mean"]["variable"] == "tas_mean"
    assert record["results"]["mean"]["missing"] == 1 and record["results"]["mean"]["cells"] == 12
    assert record["timing"]["rows"] == [5.0]


@hpcapp.kernel(combine={"big": "max", "n": "sum"}, per_row="norm")
def flags(chunk):
    """A bool result, a count and a per-row output: every kind of result a file holds."""
    return {
        "big": (chunk > 1.5).any(axis=0),
        "n": np.int64(len(chunk)),
        "norm": np.sqrt((chunk * chunk).sum(axis=1)),
    }


def test_results_read_back_under_the_keys_hpcapp_run_returns(tmp_path):
    import netCDF4

    data = np.random.default_rng(2).normal(size=(300, 3))
    spec = write_dataset(tmp_path / "in.h5", data)
    out = tmp_path / "out.nc"
    fresh = run_here(flags, spec, output=str(out), chunk_rows=40)
    assert fresh["big"].dtype == np.bool_
    assert result_names(out) == {"big": "x_big", "n": "x_n", "norm": "x_norm"}
    # A finished job is read back, not run again: the same keys, dtypes and bytes.
    again = run_here(flags, spec, output=str(out), chunk_rows=40, resume=True)
    # (A run returns no per-row outputs; the file, and a job read back from it, have them.)
    assert again.keys() == read_results(out).keys() == {*fresh, "norm"}
    for key, value in fresh.items():
        assert again[key].dtype == value.dtype and again[key].tobytes() == value.tobytes(), key
    with netCDF4.Dataset(out) as nc:  # HDF5 has no bool: bytes with CF flags, not an enum
        assert nc["x_big"].dtype == np.int8 and nc["x_big"].flag_meanings == "false true"
        np.testing.assert_array_equal(nc["x_norm"][:], np.sqrt((data * data).sum(axis=1)))


def test_show_names_a_coordinates_own_dimension(tmp_path):
    import h5py

    from hpcapp.cli.show import digest

    with h5py.File(tmp_path / "c.nc", "w") as h5:
        group = h5.create_dataset("group", data=np.arange(1, 13))
        group.make_scale("group")
        mean = h5.create_dataset("tas_mean", data=np.zeros((12, 2)))
        mean.dims[0].attach_scale(group)
        assert digest("group", group)["dims"] == ["group"]
        assert digest("tas_mean", mean)["dims"] == ["group", "dim_1"]
