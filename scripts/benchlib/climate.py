"""Yearly netCDF-4 files of daily packed ``tas``: the climate benchmarks' shared input.

Each file ``tas_YYYY.nc`` holds one year (365 days, no leap days kept simple: the ``noleap``
calendar when asked, else ``standard`` with 365 or 366 days) of a (time, lat, lon) field as CMIP
and ERA5 store it: int16 packed with ``scale_factor``/``add_offset``, ``_FillValue`` on a few
cells, deflate level 4 with shuffle, chunks of one day, ``time`` in ``days since 1990-01-01``
with ``time_bnds``, ``lat``/``lon`` with bounds. The values are a zonal climate, a seasonal cycle
and daily noise of 2 K (at 0.01 K resolution about as incompressible as real data: 10 years of
180 x 360 are ~0.4 GB on disk for 0.47 GB of int16). A file already there is kept, so a second
run reuses the set.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from .harness import say

FILL = -32767
SCALE, OFFSET = 0.01, 273.15
EPOCH = datetime.date(1990, 1, 1)


def add_arguments(parser: argparse.ArgumentParser, years: int = 10) -> None:
    """Add the file set's size and where it is kept."""
    parser.add_argument("--years", type=int, default=years, help=f"yearly files ({years})")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--first-year", type=int, default=1991)
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the files are written and kept (default: a temporary directory, deleted)",
    )


def _days(year: int) -> int:
    return (datetime.date(year + 1, 1, 1) - datetime.date(year, 1, 1)).days


def write_year(path: Path, year: int, lat: int, lon: int) -> None:
    """Write one year's file (see the module)."""
    import netCDF4

    days = _days(year)
    first = (datetime.date(year, 1, 1) - EPOCH).days
    lats = np.linspace(-90 + 90 / lat, 90 - 90 / lat, lat)
    lons = np.arange(lon) * (360 / lon)
    rng = np.random.default_rng(year)
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "hpcapp benchmark: synthetic daily near-surface air temperature"
        ds.Conventions = "CF-1.8"
        for name, size in (("time", None), ("lat", lat), ("lon", lon), ("bnds", 2)):
            ds.createDimension(name, size)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 1990-01-01", "standard"
        time.standard_name, time.bounds, time.axis = "time", "time_bnds", "T"
        time[:] = first + np.arange(days) + 0.5
        bounds = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        bounds[:] = first + np.arange(days)[:, None] + np.array([0.0, 1.0])
        for name, values, step, units, standard in (
            ("lat", lats, 180 / lat, "degrees_north", "latitude"),
            ("lon", lons, 360 / lon, "degrees_east", "longitude"),
        ):
            coord = ds.createVariable(name, "f8", (name,))
            coord[:] = values
            coord.units, coord.standard_name, coord.bounds = units, standard, f"{name}_bnds"
            edges = ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))
            edges[:] = values[:, None] + np.array([-step / 2, step / 2])
        tas = ds.createVariable(
            "tas",
            "i2",
            ("time", "lat", "lon"),
            zlib=True,
            complevel=4,
            shuffle=True,
            chunksizes=(1, lat, lon),
            fill_value=np.int16(FILL),
        )
        tas.set_auto_maskandscale(False)
        tas.scale_factor, tas.add_offset = SCALE, OFFSET
        tas.units, tas.standard_name = "K", "air_temperature"
        tas.long_name = "Near-Surface Air Temperature"
        zonal = 300.0 - 50.0 * np.sin(np.radians(lats)) ** 2
        for start in range(0, days, 73):
            stop = min(days, start + 73)
            day = np.arange(start, stop)
            season = 12.0 * np.cos(2 * np.pi * (day - 200) / 365.0)[:, None, None]
            kelvin = zonal[None, :, None] + season * np.sign(lats)[None, :, None]
            kelvin = kelvin + 2.0 * rng.standard_normal((stop - start, lat, lon))
            packed = np.round((kelvin - OFFSET) / SCALE).astype(np.int16)
            packed[rng.random(packed.shape) < 0.001] = FILL
            tas[start:stop] = packed


def write_years(directory: Path, years: int, lat: int, lon: int, first_year: int) -> list[Path]:
    """Write (or keep) the yearly files in ``directory``; return their paths in time order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for year in range(first_year, first_year + years):
        path = directory / f"tas_{year}_{lat}x{lon}.nc"
        if not path.exists():
            partial = path.with_suffix(".part")
            write_year(partial, year, lat, lon)
            partial.rename(path)
        paths.append(path)
    size = sum(p.stat().st_size for p in paths)
    say(f"{len(paths)} yearly files of {lat} x {lon} in {directory}: {size / 1e6:.0f} MB")
    return paths
