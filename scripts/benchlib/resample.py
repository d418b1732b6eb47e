"""Monthly means of a daily packed field: hpcapp ``--resample time=1M``, xarray + Dask, CDO.

Writes DIR/daily.nc (netCDF-4, ``tas(time, lat, lon)`` int16 packed with ``scale_factor`` /
``add_offset`` and a ``_FillValue``, ``--years`` of daily records in the standard calendar with
``time_bnds``, 180 x 360 by default: ~0.9 GiB for 10 years), then times the monthly mean:
hpcapp ``stats --over time --resample time=1M -p stats=mean`` under ``mpiexec -n R`` (the mean
only, as xarray's ``mean()`` and CDO's ``monmean`` give; ``--stats all`` times every statistic:
count, nan_count, sum, mean, var, std, min, max: eight arrays of int64/float64); xarray
``open_dataset(chunks={"time": N}).resample(time="1MS").mean()`` on dask's threaded scheduler
(``--workers`` threads); CDO ``monmean`` (float64 output) if ``cdo``
is on PATH. Every contender is a fresh process timed from outside; the best of ``--repeat``
runs is kept, each mean is compared with hpcapp's, and the months with xarray's.

    python scripts/bench.py resample --years 10 --ranks 1,2 --workers 2 --repeat 2
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .files_startup import stats_job
from .harness import Runner, int_list, say, scratch, versus_table

XARRAY = """
import sys
import numpy as np, xarray as xr, dask
path, workers, chunk, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
dask.config.set(scheduler="threads", num_workers=workers)
ds = xr.open_dataset(path, chunks={"time": chunk})
mean = ds["tas"].resample(time="1MS").mean().compute()
np.save(out, mean.values.astype(np.float64))
days = mean["time"].values.astype("datetime64[D]").astype("i8")
np.save(out.replace(".npy", "-months.npy"), days)
"""
SCALE, OFFSET, FILL = 0.01, 280.0, np.int16(-32767)
EPOCH_DAY = 10957  # 2000-01-01 in days since 1970-01-01 (the units of the times written)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument(
        "--dir", type=Path, help="directory of the input and outputs, kept (default: temporary)"
    )
    parser.add_argument("--years", type=int, default=10, help="daily records from 2000-01-01")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--ranks", type=int_list, default=[1, 2])
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--time-chunk", type=int, default=31, help="dask chunk along time")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--stats", default="mean", help="hpcapp's -p stats= (default mean; all: every statistic)"
    )


def write_daily(path: Path, years: int, lat: int, lon: int) -> None:
    """Write the packed daily field (kept if already there), a block of records at a time."""
    import netCDF4

    if path.exists():
        return
    began = time.perf_counter()
    days = int(
        (np.datetime64(f"{2000 + years}-01-01", "D") - np.datetime64("2000-01-01", "D"))
        / np.timedelta64(1, "D")
    )
    rng = np.random.default_rng(5)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", None), ("lat", lat), ("lon", lon), ("bnds", 2)):
            ds.createDimension(name, size)
        times = ds.createVariable("time", "f8", ("time",))
        times.units, times.calendar, times.bounds = "days since 2000-01-01", "standard", "time_bnds"
        times.standard_name, times.axis = "time", "T"
        middle = np.arange(days) + 0.5
        times[:] = middle
        ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
            [middle - 0.5, middle + 0.5], 1
        )
        for name, size, top in (("lat", lat, 90.0), ("lon", lon, 360.0)):
            step = (2 * top if name == "lat" else top) / size
            first = -top + step / 2 if name == "lat" else step / 2
            ds.createVariable(name, "f8", (name,))[:] = first + step * np.arange(size)
        tas = ds.createVariable(
            "tas", "i2", ("time", "lat", "lon"), fill_value=FILL, chunksizes=(1, lat, lon)
        )
        tas.scale_factor, tas.add_offset, tas.units = SCALE, OFFSET, "K"
        tas.standard_name = "air_temperature"
        tas.set_auto_maskandscale(False)
        for start in range(0, days, 64):
            stop = min(start + 64, days)
            block = rng.normal(0.0, 1000.0, (stop - start, lat, lon)).astype(np.int16)
            block[block == FILL] = 0
            block[:, :2, :3] = FILL  # a few cells always missing
            tas[start:stop] = block
    size = path.stat().st_size / 2**30
    say(f"wrote {path} ({days} days, {size:.2f} GiB) in {time.perf_counter() - began:.0f} s")


def difference(mean: np.ndarray, reference: np.ndarray) -> float:
    """Return the largest relative difference of ``mean`` from ``reference`` (NaN where both)."""
    if mean.shape != reference.shape:
        return float("inf")
    both = np.isnan(mean) & np.isnan(reference)
    if not np.array_equal(np.isnan(mean), np.isnan(reference)):
        return float("inf")
    return float(np.max(np.abs(mean[~both] - reference[~both]) / np.abs(reference[~both])))


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time every contender on the same file; compare each monthly mean with hpcapp's."""
    import h5py

    from hpcapp.io.results import read_results

    runner.precompile()
    rows: list[dict[str, Any]] = []
    with scratch(options.dir, "bench-resample-") as directory:
        path = directory / "daily.nc"
        write_daily(path, options.years, options.lat, options.lon)
        reference: np.ndarray | None = None
        months: np.ndarray | None = None
        for ranks in options.ranks:
            out = directory / f"hpcapp{ranks}.nc"
            argv = stats_job(runner, f"{path}:/tas", out, ranks, "--over", "time")
            argv += ["--resample", "time=1M"]
            if options.stats != "all":
                argv += ["-p", f"stats={options.stats}"]
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            found = read_results(str(out))
            mean = np.asarray(found["mean"])
            if reference is None:
                reference, months = mean, np.asarray(found["time"])
            rows.append(
                {
                    "contender": f"hpcapp `stats --over time --resample time=1M -p "
                    f"stats={options.stats}`, {ranks} rank(s)",
                    "seconds": seconds,
                    "bitwise_equal_to_first": bool(mean.tobytes() == reference.tobytes()),
                }
            )
            say(f"resample: {rows[-1]}")
        assert reference is not None and months is not None
        out = directory / "xarray.npy"
        argv = [runner.python, "-c", XARRAY, str(path), str(options.workers)]
        argv += [str(options.time_chunk), str(out)]
        seconds = min(runner.timed(argv) for _ in range(options.repeat))
        # hpcapp's months are days since 2000-01-01 (the input's units): as xarray's dates.
        starts = np.load(directory / "xarray-months.npy") - EPOCH_DAY
        rows.append(
            {
                "contender": f'xarray `resample(time="1MS").mean()`, Dask {options.workers} '
                f"threads, chunks of {options.time_chunk} days",
                "seconds": seconds,
                "max_relative_difference": difference(np.load(out), reference),
                "same_months": bool(np.array_equal(starts, months)),
            }
        )
        say(f"resample: {rows[-1]}")
        cdo = shutil.which("cdo")
        if cdo:
            out = directory / "cdo.nc"
            argv = [cdo, "-s", "-O", "-b", "F64", "monmean", str(path), str(out)]
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            with h5py.File(out, "r") as h5:
                values = h5["tas"][()]
                fill = h5["tas"].attrs.get("_FillValue")
            values = np.where(values == fill, np.nan, values) if fill is not None else values
            rows.append(
                {
                    "contender": "CDO `monmean` (`-b F64`, one process)",
                    "seconds": seconds,
                    "max_relative_difference": difference(values, reference),
                }
            )
            say(f"resample: {rows[-1]}")
        else:
            say("resample: cdo not on PATH, CDO monmean skipped (Debian: apt install cdo)")
    return {
        "years": options.years,
        "grid": [options.lat, options.lon],
        "months": len(months),
        "cdo": bool(cdo),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    """Return the README's table: best seconds of every contender, and how its mean compares."""

    def difference(row: dict[str, Any]) -> str:
        note = f"max relative difference {row['max_relative_difference']:.1e}"
        return note + (", OTHER MONTHS" if row.get("same_months") is False else "")

    return versus_table(result["rows"], "monthly mean", difference)
