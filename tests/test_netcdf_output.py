"""Results open as netCDF: named dimensions, coordinates, bin bounds, CF attributes."""

import numpy as np
import pytest
from helpers import cli_here
from ncdata import reference, write_netcdf

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
    with xr.open_dataset(out, engine="h5netcdf", group="result") as ds:
        assert ds["mean"].dims == ("lat", "lon") and ds["hist"].dims == ("lat", "lon", "bin")
        np.testing.assert_array_equal(ds["lat"].values, np.linspace(-90, 90, 3))
        assert ds["lat"].attrs["units"] == "degrees_north"
        assert ds["lon"].attrs["long_name"] == "lon coordinate"
        np.testing.assert_allclose(ds["mean"].values, expected["mean"], rtol=1e-12)
        np.testing.assert_array_equal(ds["hist"].values, expected["hist"])
        assert ds["mean"].attrs["cell_methods"] == "time: mean" and ds["mean"].attrs["units"] == "K"
        assert ds["max"].attrs["cell_methods"] == "time: maximum"
        assert "units" not in ds["var"].attrs and "units" not in ds["count"].attrs
        assert ds["bin"].attrs["bounds"] == "bin_bounds"
        np.testing.assert_array_equal(
            ds["bin_bounds"].values, [[-10, 0], [0, 10], [10, 20], [20, 30]]
        )
        np.testing.assert_array_equal(ds["bin"].values, [-5, 5, 15, 25])
    with xr.open_dataset(out, engine="h5netcdf") as root:
        assert root.attrs["Conventions"] == "CF-1.8" and root.attrs["kernel"] == "stats"
        assert root["timing"].dims == ("rank", "timing_column") and root.sizes["rank"] == 1
    with netCDF4.Dataset(out) as nc:
        group = nc["result"]
        assert group["hist"].dimensions == ("lat", "lon", "bin")
        assert group["bin_bounds"].dimensions == ("bin", "nv")
        assert nc["timing"].dimensions == ("rank", "timing_column")
        np.testing.assert_array_equal(group["count"][:], expected["count"])
        np.testing.assert_array_equal(group["lon"][:], np.arange(4) * 1.5)
        assert nc.getncattr("Conventions") == "CF-1.8" and nc.getncattr("n_ranks") == 1


def test_series_and_scalar_results_in_xarray(field):
    import xarray as xr

    tmp, spec, values = field
    out = run(tmp, spec, "lat,lon", "series")
    expected = reference(values, (1, 2), BINS, (-10.0, 30.0))
    with xr.open_dataset(out, engine="h5netcdf", group="result", decode_times=False) as ds:
        assert ds["mean"].dims == ("time",) and ds["hist"].dims == ("time", "bin")
        np.testing.assert_array_equal(ds["time"].values, np.arange(17) * 1.5)
        assert ds["time"].attrs["units"] == "days"
        np.testing.assert_allclose(ds["mean"].values, expected["mean"], rtol=1e-12)
        assert ds["std"].attrs["cell_methods"] == "lat: lon: standard_deviation"
    out = run(tmp, spec, "time,lat,lon", "scalar")
    with xr.open_dataset(out, engine="h5netcdf", group="result") as ds:
        assert ds["mean"].dims == () and ds["hist"].dims == ("bin",)
        np.testing.assert_allclose(float(ds["mean"]), np.nanmean(values.astype(float)), rtol=1e-12)


def test_netcdf3_input_is_refused_with_the_conversion_command(tmp_path):
    spec = write_netcdf(tmp_path / "old.nc", np.zeros((4, 2, 3), "f4"), fmt="NETCDF3_CLASSIC")
    done = cli_here(["run", "stats", spec, "-o", f"{tmp_path}/out.nc"])
    assert done.returncode == 2
    assert "netCDF-3" in done.stderr and "nccopy -k nc4" in done.stderr
