"""Small netCDF-4 inputs written by the netCDF library itself, and numpy references for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIMS = ("time", "lat", "lon")


def write_netcdf(
    path: Path,
    stored: np.ndarray,
    name: str = "tas",
    dims: tuple[str, ...] = DIMS,
    attrs: dict | None = None,
    fill_value: object = None,
    fmt: str = "NETCDF4",
) -> str:
    """Write ``stored`` as variable ``name``, with a coordinate variable per dimension.

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
        var = ds.createVariable(name, stored.dtype, dims, fill_value=fill_value)
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
