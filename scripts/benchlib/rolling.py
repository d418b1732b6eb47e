"""A centred running mean along time: hpcapp ``rolling``, xarray + Dask, CDO ``runmean``.

Writes DIR/packed.nc (netCDF-4, ``tas(time, lat, lon)`` int16 packed with ``scale_factor`` and
``add_offset``, a ``_FillValue`` cell, a daily ``noleap`` time coordinate; by default 10 years of
180 x 360: 0.47 GB stored, 0.95 GB decoded to float32), then times the ``--window``-day running
mean, each contender writing its result to a file: hpcapp ``run rolling -p window=K -p
center=true`` under ``mpiexec -n R``; xarray ``open_dataset(chunks={"time": --time-chunk})``,
``.rolling(time=K, center=True).mean()`` and ``to_netcdf`` on Dask's threaded scheduler
(``--workers`` threads); and CDO's ``runmean,K`` (``-b F32``; only full windows) if ``cdo`` is
on PATH (Debian: apt install cdo). Each is a fresh process timed from outside; the best of
``--repeat`` runs is kept and each result is compared with hpcapp's on the full windows.

    python scripts/bench.py rolling --ranks 2 --workers 2 --repeat 1
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .harness import Runner, int_list, say, scratch, versus_table

XARRAY = """
import sys
import xarray as xr, dask
path, out = sys.argv[1], sys.argv[5]
window, chunk, workers = (int(value) for value in sys.argv[2:5])
dask.config.set(scheduler="threads", num_workers=workers)
with xr.open_dataset(path, engine="h5netcdf", chunks={"time": chunk}) as ds:
    mean = ds["tas"].rolling(time=window, center=True).mean()
    mean.to_dataset(name="tas_rolling").to_netcdf(out, engine="h5netcdf")
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--dir", type=Path, help="directory of the input, kept (default: temp)")
    parser.add_argument("--steps", type=int, default=3650, help="daily records (default 3650)")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--window", type=int, default=31)
    parser.add_argument("--ranks", type=int_list, default=[2])
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--time-chunk", type=int, default=365, help="dask chunks along time")
    parser.add_argument("--repeat", type=int, default=1)


def write_packed(path: Path, steps: int, lat: int, lon: int) -> None:
    """Write the packed daily field (kept if already there), a year of records at a time."""
    import netCDF4

    if path.exists():
        return
    rng = np.random.default_rng(5)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", steps), ("lat", lat), ("lon", lon)):
            ds.createDimension(name, size)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 2000-01-01", "noleap"
        time[:] = np.arange(steps, dtype=np.float64)
        ds.createVariable("lat", "f8", ("lat",))[:] = np.linspace(-89.5, 89.5, lat)
        ds.createVariable("lon", "f8", ("lon",))[:] = np.linspace(0.5, 359.5, lon)
        tas = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=np.int16(-32767))
        tas.set_auto_maskandscale(False)
        tas.scale_factor, tas.add_offset, tas.units = np.float32(0.01), np.float32(273.15), "K"
        season = 1500 * np.sin(2 * np.pi * np.arange(steps) / 365.0)
        for start in range(0, steps, 365):
            stop = min(start + 365, steps)
            noise = rng.normal(0, 500, (stop - start, lat, lon))
            raw = np.clip(season[start:stop, None, None] + noise, -30000, 30000).astype(np.int16)
            raw[:, 0, 0] = -32767  # a missing cell
            tas[start:stop] = raw
    say(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB)")


def full_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Return the records whose centred window lies inside the input (what CDO writes)."""
    return values[window // 2 : len(values) - (window - 1) // 2]


def difference(got: np.ndarray, reference: np.ndarray) -> float:
    """Return the largest absolute difference where both have a value."""
    both = ~np.isnan(got) & ~np.isnan(reference)
    return float(np.max(np.abs(got[both] - reference[both]), initial=0.0))


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time every contender on the same file; compare each running mean with hpcapp's."""
    import h5py

    window = options.window
    rows: list[dict[str, Any]] = []
    runner.precompile()  # rolling's loops built (or cached) before the clock, as an install does
    with scratch(options.dir, "bench-rolling-") as directory:
        path = directory / "packed.nc"
        write_packed(path, options.steps, options.lat, options.lon)
        reference = None
        for ranks in options.ranks:
            out = directory / f"hpcapp{ranks}.nc"
            argv = runner.hpcapp(ranks, "run", "rolling", f"{path}:/tas", "-o", str(out),
                                 "-p", f"window={window}", "-p", "center=true", "--overwrite",
                                 "-q")  # fmt: skip
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            with h5py.File(out, "r") as h5:
                got = full_windows(h5["tas_rolling"][()], window)
            reference = got if reference is None else reference
            same = bool(np.array_equal(got, reference, equal_nan=True))
            rows.append({"contender": f"hpcapp `rolling`, {ranks} rank(s)", "seconds": seconds,
                         "bitwise_equal_to_first": same})  # fmt: skip
            say(f"rolling: {rows[-1]}")
        assert reference is not None
        out = directory / "xarray.nc"
        argv = [runner.python, "-c", XARRAY, str(path), str(window), str(options.time_chunk)]
        argv += [str(options.workers), str(out)]
        seconds = min(runner.timed(argv) for _ in range(options.repeat))
        with h5py.File(out, "r") as h5:
            got = full_windows(h5["tas_rolling"][()].astype(np.float64), window)
        rows.append({"contender": f"xarray + Dask {options.workers} threads "
                     f"(time chunks of {options.time_chunk})", "seconds": seconds,
                     "max_abs_difference": difference(got, reference)})  # fmt: skip
        say(f"rolling: {rows[-1]}")
        cdo = shutil.which("cdo")
        if cdo:
            out = directory / "cdo.nc"
            argv = [cdo, "-O", "-s", "-b", "F32", f"runmean,{window}", str(path), str(out)]
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            import netCDF4

            with netCDF4.Dataset(out) as ds:
                got = np.ma.filled(ds["tas"][:].astype(np.float64), np.nan)
            rows.append({"contender": f"CDO `runmean,{window}` (one process)",
                         "seconds": seconds,
                         "max_abs_difference": difference(got, reference)})  # fmt: skip
            say(f"rolling: {rows[-1]}")
        else:
            say("cdo not found: apt install cdo to compare with it")
    shape = [options.steps, options.lat, options.lon]
    return {"shape": shape, "window": window, "cdo": bool(cdo), "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: seconds, against the fastest hpcapp, and the differences."""
    return versus_table(
        result["rows"],
        "running mean",
        lambda row: f"max |difference| {row['max_abs_difference']:.1e} K",
    )
