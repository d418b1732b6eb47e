"""--weights: weighted stats over lat/lon against xarray's ``weighted`` and CDO's ``fldmean``."""

import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr
from helpers import cli_here, read_results, refused_here, root_attrs, run_here, write_dataset
from ncdata import write_grid

OPS = ("mean", "var", "std", "sum", "sum_of_weights")


def xarray_weighted(path, weights, dims):
    """Return xarray's weighted results of ``tas`` over ``dims`` with ``weights``."""
    with xr.open_dataset(path) as ds:
        found = ds.tas.weighted(weights(ds))
        return {op: getattr(found, op)(dims).values for op in OPS}


def cos_lat(ds):
    return np.cos(np.deg2rad(ds.lat))


def bounds_area(ds):
    sines = np.sin(np.deg2rad(ds.lat_bnds))
    return abs(sines[:, 1] - sines[:, 0]) * np.deg2rad(abs(ds.lon_bnds[:, 1] - ds.lon_bnds[:, 0]))


def assert_close(got, expected):
    for op in OPS:
        np.testing.assert_allclose(got[op], expected[op], rtol=1e-12, atol=0, err_msg=op)


def weighted_run(tmp_path, spec, over, weights="area", **options):
    out = tmp_path / "out.nc"
    run_here("stats", spec, over=over, weights=weights, output=str(out), **options)
    return read_results(out), root_attrs(out)


@pytest.mark.parametrize("over", [("lat", "lon"), ("time", "lat", "lon"), ("lat",)])
@pytest.mark.parametrize(
    ("bounds", "method", "weights"),
    [(False, "cos(lat)", cos_lat), (True, "area from lat/lon bounds", bounds_area)],
)
def test_area_weights_equal_xarray(tmp_path, over, bounds, method, weights):
    path = tmp_path / "in.nc"
    spec = write_grid(path, bounds=bounds, missing=0.1)
    got, attrs = weighted_run(tmp_path, spec, ",".join(over), chunk_rows=3)
    assert attrs["weights"] == method
    assert_close(got, xarray_weighted(path, weights, over))
    # The weights matter: the unweighted mean of this grid is a few kelvin off.
    plain = run_here("stats", spec, over=",".join(over))
    assert np.max(np.abs(plain["mean"] - got["mean"])) > 0.1


def test_cell_measures_with_missing_cells(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_grid(path, measures=True, missing=0.3)
    got, attrs = weighted_run(tmp_path, spec, "lat,lon", chunk_rows=2)
    assert attrs["weights"] == "cell_measures areacella"
    assert_close(got, xarray_weighted(path, lambda ds: ds.areacella, ("lat", "lon")))
    with xr.open_dataset(path) as ds:
        np.testing.assert_array_equal(got["count"], ds.tas.count(("lat", "lon")).values)


def test_explicit_weights_file(tmp_path):
    path, wpath = tmp_path / "in.nc", tmp_path / "w.nc"
    spec = write_grid(path, missing=0.1)
    rng = np.random.default_rng(9)
    with xr.open_dataset(path) as ds:
        w = xr.DataArray(rng.uniform(0, 2, (ds.sizes["lat"], ds.sizes["lon"])), dims=("lat", "lon"))
        xr.Dataset({"w": w}, coords={"lat": ds.lat, "lon": ds.lon}).to_netcdf(wpath)
    got, attrs = weighted_run(tmp_path, spec, "time,lat,lon", weights=f"{wpath}:/w")
    assert attrs["weights"] == f"file {wpath}:/w"
    assert_close(got, xarray_weighted(path, lambda ds: w, ("time", "lat", "lon")))


def test_all_missing_record_is_nan(tmp_path):
    path = tmp_path / "in.nc"
    write_grid(path, shape=(3, 4, 6))
    with xr.open_dataset(path) as ds:
        data = ds.tas.values.copy()
    import netCDF4

    with netCDF4.Dataset(path, "a") as ds:
        data[1] = np.nan
        ds["tas"][:] = np.ma.masked_invalid(data)
    got, _ = weighted_run(tmp_path, f"{path}:/tas", "lat,lon")
    assert np.isnan(got["mean"][1]) and np.isnan(got["var"][1])
    assert got["sum_of_weights"][1] == 0 and got["count"][1] == 0
    assert np.all(np.isfinite(got["mean"][[0, 2]]))


def total(chunk):
    return {"s": np.asarray(chunk.sum())}


def test_refusals(tmp_path):
    spec = write_grid(tmp_path / "in.nc", shape=(3, 4, 6))
    refused_here("stats", spec, "--weights area", "latitude", over="time", weights="area")
    unnamed = write_dataset(tmp_path / "x.h5", np.ones((3, 4, 6)))
    refused_here("stats", unnamed, "latitude", over="1,2", weights="area")
    refused_here(total, spec, "built-in stats kernel only", over="lat,lon", weights="area")
    refused_here("stats", spec, "-p range", over="lat,lon", weights="area", params={"range": "0,1"})
    refused_here("stats", spec, "no variable", over="lat,lon", weights=f"{tmp_path}/in.nc:/nope")


@pytest.mark.skipif(shutil.which("cdo") is None, reason="cdo not installed")
@pytest.mark.parametrize("explicit", [False, True])
def test_equal_to_cdo_fldmean(tmp_path, explicit):
    path = tmp_path / "in.nc"
    spec = write_grid(path, measures=not explicit, missing=0.2)
    cdo = ["cdo", "-s", "outputf,%.10g", "-fldmean", str(path)]
    weights = "area"
    if explicit:
        wpath = tmp_path / "w.nc"
        with xr.open_dataset(path) as ds:
            area = xr.DataArray(
                np.random.default_rng(4).uniform(1, 3, (ds.sizes["lat"], ds.sizes["lon"])),
                dims=("lat", "lon"),
                coords={"lat": ds.lat, "lon": ds.lon},
            )
            xr.Dataset({"w": area}).to_netcdf(wpath)
        cdo[3:] = ["-fldmean", f"-setgridarea,{wpath}", str(path)]
        weights = f"{wpath}:/w"
    printed = subprocess.run(cdo, capture_output=True, text=True, timeout=60, check=True).stdout
    got, _ = weighted_run(tmp_path, spec, "lat,lon", weights=weights)
    assert [f"{x:.10g}" for x in got["mean"]] == printed.split()


def test_cli_refusals_exit_2_with_one_line(tmp_path):
    spec = write_grid(tmp_path / "in.nc", shape=(3, 4, 6))
    kernels = tmp_path / "k.py"
    kernels.write_text("def total(chunk):\n    return {'s': chunk.sum()}\n")
    out = tmp_path / "out.nc"
    for kernel, over, fragment in [
        ("stats", "time", "no latitude dimension reduced over"),
        (f"{kernels}:total", "lat,lon", "built-in stats kernel only"),
    ]:
        done = cli_here(["run", kernel, spec, "--over", over, "--weights", "area", "-o", str(out)])
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and fragment in done.stderr, done.stderr
        assert not out.exists()


@pytest.mark.parametrize("measures", [False, True])
def test_weights_follow_a_selection(tmp_path, measures):
    path = tmp_path / "in.nc"
    spec = write_grid(path, measures=measures, missing=0.1)
    got, _ = weighted_run(
        tmp_path, spec, "lat,lon", sel={"lat": (-45, 60), "lon": (30, 200)}, isel="time=1:5"
    )
    with xr.open_dataset(path) as ds:
        box = ds.sel(lat=slice(-45, 60), lon=slice(30, 200)).isel(time=slice(1, 5))
        weights = box.areacella if measures else bounds_area(box)
        found = box.tas.weighted(weights)
        expected = {op: getattr(found, op)(("lat", "lon")).values for op in OPS}
    assert_close(got, expected)
