"""The mean over time of many netCDF files: hpcapp, xarray ``open_mfdataset`` + Dask, NCO ``ncra``.

Writes DIR/day/f-NNNN.nc (netCDF-4, dims time/lat/lon with a CF time coordinate, 16 steps of
90 x 180 float32 each, ~1 MiB a file, ~1 GiB in all), then times the mean over time per cell:
hpcapp ``stats --over time`` (which also computes std, min, max, counts) under ``mpiexec -n R``;
xarray ``open_mfdataset`` (``parallel`` False and True) with its fastest combine options and
``.mean("time")`` on dask's threaded scheduler (``--workers`` threads); and NCO's ``ncra``
reading the file list on stdin, if it is installed (Debian: apt install nco). Every contender is
a fresh process timed from outside; the best of ``--repeat`` runs is kept and each mean is
compared with hpcapp's.

    python scripts/bench.py files-speed --files 1000 --ranks 1,2 --workers 2 --repeat 2
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io.results import read_results

from .files_startup import stats_job
from .harness import Runner, int_list, say, scratch, versus_table

XARRAY = """
import sys
import numpy as np, xarray as xr, dask
pattern, workers, out, parallel = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
dask.config.set(scheduler="threads", num_workers=workers)  # opening the files too (parallel)
ds = xr.open_mfdataset(pattern, engine="h5netcdf", combine="nested", concat_dim="time",
                       parallel=parallel, data_vars="minimal", coords="minimal", compat="override")
mean = ds["t"].mean("time", dtype=np.float64)
np.save(out, mean.compute(scheduler="threads", num_workers=workers).values)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument(
        "--dir", type=Path, help="directory of the files, kept (default: a temporary one)"
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--lat", type=int, default=90)
    parser.add_argument("--lon", type=int, default=180)
    parser.add_argument("--ranks", type=int_list, default=[1, 2])
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--repeat", type=int, default=1)


def write_days(folder: Path, files: int, steps: int, lat: int, lon: int) -> None:
    """Write the daily files (kept if already there)."""
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("f-*.nc"))) == files:
        return
    rng = np.random.default_rng(11)
    began = time.perf_counter()
    for index in range(files):
        with netCDF4.Dataset(folder / f"f-{index:04d}.nc", "w") as ds:
            for name, size in (("time", None), ("lat", lat), ("lon", lon)):
                ds.createDimension(name, size)
            time_var = ds.createVariable("time", "f8", ("time",))
            time_var.units, time_var.calendar = "hours since 2000-01-01", "standard"
            time_var[:] = np.arange(index * steps, (index + 1) * steps, dtype=np.float64)
            for name, size in (("lat", lat), ("lon", lon)):
                ds.createVariable(name, "f8", (name,))[:] = np.linspace(-90, 90, size)
            var = ds.createVariable("t", "f4", ("time", "lat", "lon"), chunksizes=(steps, lat, lon))
            var.units = "K"
            block = 280 + 10 * rng.standard_normal((steps, lat, lon), dtype=np.float32)
            var[:] = np.round(block, 2)
    total = sum(p.stat().st_size for p in folder.glob("f-*.nc"))
    say(f"wrote {files} files, {total / 2**30:.2f} GiB, in {time.perf_counter() - began:.0f} s")


def difference(mean: np.ndarray, reference: np.ndarray) -> float:
    """Return the largest relative difference of ``mean`` from ``reference``."""
    return float(np.max(np.abs(mean - reference) / np.abs(reference)))


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time every contender on the same files; compare each mean with hpcapp's."""
    import h5py

    runner.precompile()
    rows: list[dict[str, Any]] = []
    with scratch(options.dir, "bench-files-") as directory:
        folder = directory / "day"
        write_days(folder, options.files, options.steps, options.lat, options.lon)
        reference = None
        for ranks in options.ranks:
            out = directory / f"hpcapp{ranks}.h5"
            argv = stats_job(runner, f"{folder}/f-*.nc:/t", out, ranks, "--over", "time")
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            mean = read_results(str(out))["mean"]
            reference = mean if reference is None else reference
            rows.append(
                {
                    "contender": f"hpcapp `stats --over time`, {ranks} rank(s)",
                    "seconds": seconds,
                    "bitwise_equal_to_first": bool(np.array_equal(mean, reference)),
                }
            )
            say(f"files-speed: {rows[-1]}")
        for parallel in (False, True):
            out = directory / "xarray.npy"
            argv = [runner.python, "-c", XARRAY, f"{folder}/f-*.nc", str(options.workers)]
            argv += [str(out), str(int(parallel))]
            seconds = min(runner.timed(argv) for _ in range(options.repeat))
            name = f'xarray `open_mfdataset(parallel={parallel})` + `.mean("time")`'
            rows.append(
                {
                    "contender": f"{name}, Dask {options.workers} threads",
                    "seconds": seconds,
                    "max_relative_difference": difference(np.load(out), reference),
                }
            )
            say(f"files-speed: {rows[-1]}")
        ncra = shutil.which("ncra")
        if ncra:
            listing = "\n".join(str(p) for p in sorted(folder.glob("f-*.nc")))
            out = directory / "ncra.nc"
            argv = [ncra, "-O", "-v", "t", "-o", str(out)]
            seconds = min(runner.timed(argv, stdin=listing) for _ in range(options.repeat))
            with h5py.File(out, "r") as h5:
                rows.append(
                    {
                        "contender": "NCO `ncra` (file list on stdin, one process)",
                        "seconds": seconds,
                        "max_relative_difference": difference(h5["t"][0], reference),
                    }
                )
        else:
            say("ncra not found: apt install nco to compare with it")
    return {"files": options.files, "ncra": bool(ncra), "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: best seconds of every contender, and how its mean compares."""
    return versus_table(
        result["rows"],
        "mean",
        lambda row: f"max relative difference {row['max_relative_difference']:.1e}",
    )
