"""Per-cell statistics over time of a (T, lat, lon) float32 field: hpcapp, xarray + Dask, numpy.

Writes DIR/plain.nc and DIR/gzip.nc (netCDF-4, dims time/lat/lon, ~1 GiB of float32 for 4142
steps of 180 x 360), then times, on each: hpcapp ``stats --over time`` under ``mpiexec -n R``;
xarray + dask (threaded, ``--workers`` threads) computing mean, std, min and max over time
(float64 accumulation) in one ``dask.compute``; and hand numpy (read everything, then the four
reductions). Every contender is a fresh process, timed from outside (start-up included); the
best of ``--repeat`` runs is kept, and hpcapp's and xarray's means are compared with numpy's.
hpcapp and dask use the same chunks: ``--time-chunk`` (64) time steps.

    python scripts/bench.py nd-speed --steps 4142 --ranks 1,2 --workers 2 --repeat 3
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io.results import read_results

from .harness import Runner, loadavg, markdown, say, scratch
from .nd_data import add_grid_arguments, write_field

XARRAY = """
import sys, time, json
import numpy as np, xarray as xr, dask
path, workers, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ds = xr.open_dataset(path, engine="h5netcdf", chunks={"time": chunk})
t = ds["t"]
mean, std, low, high = dask.compute(
    t.mean("time", dtype=np.float64), t.std("time", dtype=np.float64), t.min("time"),
    t.max("time"), scheduler="threads", num_workers=workers)
np.save(sys.argv[4], mean.values)
"""

NUMPY = """
import sys
import h5py, numpy as np
with h5py.File(sys.argv[1], "r") as h5:
    x = h5["t"][()]
mean = x.mean(axis=0, dtype=np.float64)
std = x.std(axis=0, dtype=np.float64)
low, high = x.min(axis=0), x.max(axis=0)
np.save(sys.argv[2], mean)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    add_grid_arguments(parser, steps=4142)
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--time-chunk", type=int, default=64, help="time steps per chunk, for all contenders"
    )


def relative_difference(mean: np.ndarray, reference: np.ndarray) -> float:
    """Return the largest relative difference of ``mean`` from ``reference``."""
    return float(np.max(np.abs(mean - reference) / np.abs(reference)))


def one_file(runner: Runner, options: argparse.Namespace, directory: Path, kind: str) -> dict:
    """Time every contender on the plain or the gzip field; return the best seconds of each."""

    field = directory / f"{kind}.nc"
    write_field(field, options.steps, options.lat, options.lon, kind == "gzip")
    subprocess.run(["sync"], check=False)
    best: dict[str, float] = {}
    for _ in range(options.repeat):
        for ranks in options.ranks:
            out = directory / f"out{ranks}.nc"
            argv = ["run", "stats", f"{field}:/t", "-o", str(out), "--over", "time"]
            argv += ["--overwrite", "-q", "--chunk-rows", str(options.time_chunk)]
            key = f"hpcapp {ranks} rank{'s' * (ranks > 1)}"
            best[key] = min(best.get(key, 1e9), runner.timed(runner.hpcapp(ranks, *argv)))
        argv = [runner.python, "-c", XARRAY, str(field), str(options.workers)]
        argv += [str(options.time_chunk), str(directory / "xarray_mean.npy")]
        key = f"xarray+dask {options.workers} threads"
        best[key] = min(best.get(key, 1e9), runner.timed(argv))
        argv = [runner.python, "-c", NUMPY, str(field), str(directory / "numpy_mean.npy")]
        best["numpy"] = min(best.get("numpy", 1e9), runner.timed(argv))
    reference = np.load(directory / "numpy_mean.npy")
    ours = read_results(str(directory / f"out{options.ranks[-1]}.nc"))["mean"]
    row = {
        "file": kind,
        **best,
        "mean_rel_diff_vs_numpy": relative_difference(ours, reference),
        "xarray_mean_rel_diff_vs_numpy": relative_difference(
            np.load(directory / "xarray_mean.npy"), reference
        ),
    }
    say(f"nd-speed: {row}")
    return row


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time hpcapp, xarray + dask and numpy on the plain and the gzip field."""
    runner.precompile()
    with scratch(options.dir, "bench-nd-") as directory:
        rows = [one_file(runner, options, directory, kind) for kind in ("plain", "gzip")]
    return {
        "steps": options.steps,
        "lat": options.lat,
        "lon": options.lon,
        "rows": rows,
        "loadavg_at_end": loadavg(),
    }


def table(result: dict[str, Any]) -> str:
    """Return the README's table: best seconds per contender, hpcapp's last rank count / xarray."""
    rows = result["rows"]
    keys = [k for k in rows[0] if k != "file" and "rel_diff" not in k]
    hpcapp = [k for k in keys if k.startswith("hpcapp")]
    xarray = next(k for k in keys if k.startswith("xarray"))
    cells = [
        [row["file"], *(f"{row[k]:.2f} s" for k in keys), f"{row[xarray] / row[hpcapp[-1]]:.2f}x"]
        for row in rows
    ]
    return markdown(["file", *keys, f"{hpcapp[-1]} vs xarray"], cells)
