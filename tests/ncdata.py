"""Small netCDF-4 inputs written by the netCDF library itself, and numpy references for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIMS = ("time", "lat", "lon")
EPOCH = "days since 1850-01-01"


def write_netcdf(
    path: Path,
    stored: np.ndarray,
    name: str = "tas",
    dims: tuple[str, ...] = DIMS,
    attrs: dict | None = None,
    fill_value: object = None,
    fmt: str = "NETCDF4",
    zlib: bool = False,
) -> str:
    """Write ``stored`` as variable ``name``, with a coordinate variable per dimension.

    ``zlib``: deflated and shuffled, as netCDF-4 climate files mostly are.
    Returns the ``FILE:/name`` spec."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        for axis, dim in enumerate(dims):
            ds.createDimension(dim, stored.shape[axis])
            coord = ds.createVariable(dim, "f8", (dim,))
            coord[:] = (
                np.linspace(-90.0, 90.0, stored.shape[axis])
                if dim == "lat"
                else (np.arange(stored.shape[axis]) * 1.5)
            )
            coord.units = {"lat": "degrees_north", "lon": "degrees_east"}.get(dim, "days")
            coord.long_name = f"{dim} coordinate"
        var = ds.createVariable(
            name, stored.dtype, dims, fill_value=fill_value, zlib=zlib, shuffle=zlib
        )
        var.set_auto_maskandscale(False)  # write the stored values as they are
        for key, value in (attrs or {}).items():
            var.setncattr(key, value)
        var[:] = stored
    return f"{path}:/{name}"


def reference(values: np.ndarray, axes: tuple[int, ...], bins: int, value_range) -> dict:
    """numpy's statistics of ``values`` (NaN = missing) over ``axes``, float64 throughout."""
    wide = values.astype(np.float64)
    valid = ~np.isnan(wide)
    kept = [a for a in range(values.ndim) if a not in axes]
    moved = np.moveaxis(values, kept, list(range(len(kept))))
    cells = moved.reshape(*moved.shape[: len(kept)], -1)
    hist = np.zeros((*cells.shape[:-1], bins), np.int64)
    for index in np.ndindex(*cells.shape[:-1]):
        cell = cells[index]
        hist[index] = np.histogram(cell[~np.isnan(cell)], bins=bins, range=value_range)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {
                "count": valid.sum(axis=axes),
                "nan_count": (~valid).sum(axis=axes),
                "mean": np.nanmean(wide, axis=axes),
                "var": np.nanvar(wide, axis=axes),
                "min": np.nanmin(values, axis=axes),
                "max": np.nanmax(values, axis=axes),
                "hist": hist,
            }


def check_against(results: dict, expected: dict) -> None:
    """Assert hpcapp's results equal numpy's: counts and extremes exactly, moments to 1e-12."""
    for key in ("count", "nan_count", "hist"):
        np.testing.assert_array_equal(results[key], expected[key], err_msg=key)
    for key in ("min", "max"):
        np.testing.assert_array_equal(results[key], expected[key], err_msg=key)
        assert results[key].dtype == expected[key].dtype, key
    np.testing.assert_allclose(results["mean"], expected["mean"], rtol=1e-12, err_msg="mean")
    np.testing.assert_allclose(results["var"], expected["var"], rtol=1e-10, err_msg="var")


def write_times(path, raw, values, units=EPOCH, calendar=None, dtype="f8", attrs=None, fill=None):
    """Write v(time, lat) and a time coordinate holding ``raw`` as stored (no CF encoding)."""
    import netCDF4

    values = np.asarray(values, np.float64)
    values = values.reshape(len(raw), -1) if values.size else values.reshape(len(raw), 2)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", len(raw))
        ds.createDimension("lat", values.shape[1])
        time = ds.createVariable("time", dtype, ("time",), fill_value=fill)
        time.set_auto_maskandscale(False)
        time.units = units
        if calendar is not None:
            time.calendar = calendar
        for key, value in (attrs or {}).items():
            time.setncattr(key, value)
        time[:] = np.asarray(raw).astype(dtype)
        ds.createVariable("lat", "f8", ("lat",))[:] = np.arange(values.shape[1]) * 10.0
        ds.createVariable("v", "f8", ("time", "lat"))[:] = values
    return f"{path}:/v"


# Inputs of several netCDF files, each encoding its times its own way: tests/test_times.py checks
# hpcapp's numbers against xarray's on them, tests/test_ranks_mpi.py that any rank count agrees.


def write_masked_and_packed_files(folder: Path) -> list[Path]:
    """Two files: a _FillValue-masked float time, then packed int hours with a missing_value."""
    folder.mkdir()
    a, b = folder / "a.nc", folder / "b.nc"
    write_times(a, [0, -1], [[1.0, 2], [3, 4]], fill=-1.0)
    write_times(b, [48, 72, 0], [[5.0, 6], [7, 8], [9, 9]], units="hours since 1850-01-01",
                dtype="i4", attrs={"scale_factor": 0.5, "missing_value": np.int32(0)})  # fmt: skip
    return [a, b]


def write_yearly_files(folder: Path) -> list[Path]:
    """Three noleap years, each with the same day numbers counted from its own 1 January."""
    folder.mkdir()
    rng = np.random.default_rng(4)
    paths = []
    for year in (2001, 2002, 2003):
        path = folder / f"tas_{year}.nc"
        days = np.arange(0, 365, 5.0)
        write_times(path, days, rng.normal(size=(len(days), 2)), calendar="noleap",
                    units=f"days since {year}-01-01")  # fmt: skip
        paths.append(path)
    return paths


def write_stamped_files(folder: Path, with_time: bool) -> list[Path]:
    """Two files with a time label ``stamp`` beside the records, in other units in each."""
    import netCDF4

    folder.mkdir()
    rng = np.random.default_rng(3)
    paths = []
    for index, (epoch, unit, first) in enumerate([("1850-01-01", "days", 0),
                                                 ("1850-02-01", "hours", 24 * 20)]):  # fmt: skip
        path = folder / f"f{index}.nc"
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", 4)
            ds.createDimension("lat", 2)
            if with_time:  # a CF time coordinate of its own, also decoded per file
                time = ds.createVariable("time", "f8", ("time",))
                time.units = "days since 1900-01-01"
                time[:] = np.arange(4) + 4 * index
            stamp = ds.createVariable("stamp", "f8", ("time",))
            stamp.units, stamp.calendar = f"{unit} since {epoch}", "noleap"
            stamp[:] = first + np.arange(4) * (10 if unit == "days" else 240)
            ds.createVariable("v", "f8", ("time", "lat"))[:] = rng.normal(size=(4, 2))
        paths.append(path)
    return paths


# A masked time, three ways: (stored dtype, _FillValue, attributes).
MASKED_TIMES = {
    "fill": (-9999.0, "f8", {}),
    "missing_value": (None, "i4", {"missing_value": np.int32(-9999)}),
    "packed-fill": (np.int16(-9999), "i2", {"scale_factor": np.float32(0.5)}),  # masked first
}


def write_masked_time(path: Path, kind: str) -> str:
    """Six records whose third and fourth times are masked (``kind`` of MASKED_TIMES)."""
    fill, dtype, attrs = MASKED_TIMES[kind]
    scale = attrs.get("scale_factor", 1.0)
    days = np.array([0.0, 10.0, -1, -1, 40.0, 41.0])
    raw = np.where(days < 0, -9999, days / scale)
    return write_times(path, raw, [[1.0], [2], [100], [200], [4], [6]], dtype=dtype, attrs=attrs,
                       fill=fill)  # fmt: skip


def write_grid(
    path: Path,
    shape: tuple[int, int, int] = (7, 18, 36),
    bounds: bool = True,
    measures: bool = False,
    missing: float = 0.0,
    seed: int = 3,
    packed: bool = False,
) -> str:
    """Write a daily-like ``tas(time, lat, lon)`` on a regular grid, CF style; return the spec.

    ``bounds``: ``lat_bnds``/``lon_bnds`` named by the coordinates' ``bounds``; ``measures``:
    an ``areacella`` variable named by ``cell_measures``; ``missing``: the fraction of cells
    written as ``_FillValue``; ``packed``: ``tas`` stored as int16 with ``scale_factor`` and
    ``add_offset`` (float64).
    """
    import netCDF4

    rng = np.random.default_rng(seed)
    n_time, n_lat, n_lon = shape
    # Uneven cells: area from the bounds is then not proportional to cos(lat) of the centres.
    jitter = rng.uniform(-0.3, 0.3, n_lat + 1) * 180.0 / n_lat
    lat_edges = np.linspace(-90.0, 90.0, n_lat + 1) + np.r_[0.0, jitter[1:-1], 0.0]
    lon_edges = np.arange(n_lon + 1) * 360.0 / n_lon - 180.0 / n_lon
    lon_edges = lon_edges + np.r_[0.0, rng.uniform(-0.3, 0.3, n_lon - 1) * 360 / n_lon, 0.0]
    with netCDF4.Dataset(path, "w") as ds:
        for dim, size in (*zip(DIMS, shape, strict=True), ("bnds", 2)):
            ds.createDimension(dim, size)
        ds.createVariable("time", "f8", ("time",))[:] = np.arange(n_time)
        ds["time"].units = EPOCH
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat[:], lat.units = (lat_edges[:-1] + lat_edges[1:]) / 2, "degrees_north"
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon[:], lon.units = (lon_edges[:-1] + lon_edges[1:]) / 2, "degrees_east"
        if bounds:
            lat.bounds, lon.bounds = "lat_bnds", "lon_bnds"
            ds.createVariable("lat_bnds", "f8", ("lat", "bnds"))[:] = np.stack(
                [lat_edges[:-1], lat_edges[1:]], 1
            )
            ds.createVariable("lon_bnds", "f8", ("lon", "bnds"))[:] = np.stack(
                [lon_edges[:-1], lon_edges[1:]], 1
            )
        kind, fill = ("i2", -32768) if packed else ("f8", 1e20)
        tas = ds.createVariable("tas", kind, DIMS, fill_value=fill)
        if packed:  # netCDF4 packs the values written below, in 0.002 K steps
            tas.scale_factor, tas.add_offset = 0.002, 260.0
        tas.units = "K"
        values = 250 + 40 * np.cos(np.deg2rad(lat[:]))[None, :, None]
        values = values + rng.normal(0, 3, shape)
        tas[:] = np.ma.masked_array(values, rng.random(shape) < missing)
        if measures:
            tas.cell_measures = "area: areacella"
            area = ds.createVariable("areacella", "f8", ("lat", "lon"))
            area[:], area.units = rng.uniform(1e10, 2e10, (n_lat, n_lon)), "m2"
    return f"{path}:/tas"


def write_raster(path: Path, grid: Path, values: np.ndarray, name: str = "region", **attrs) -> str:
    """Write ``values`` (masked cells missing) over the lat/lon of input ``grid``; return the spec.

    ``attrs`` become the variable's attributes (``flag_values``, ``flag_meanings``, ...); an
    integer raster gets ``_FillValue = -1``, a float one NaN.
    """
    import netCDF4

    values = np.ma.asarray(values)
    fill = -1 if values.dtype.kind in "iu" else np.nan
    with netCDF4.Dataset(grid) as src, netCDF4.Dataset(path, "w") as ds:
        for dim in ("lat", "lon"):
            ds.createDimension(dim, len(src[dim]))
            ds.createVariable(dim, "f8", (dim,))[:] = src[dim][:]
        var = ds.createVariable(name, values.dtype, ("lat", "lon"), fill_value=fill)
        for key, value in attrs.items():
            var.setncattr(key, value)
        var[:] = values
    return f"{path}:/{name}"
