"""The area-weighted global-mean series of a packed daily field: hpcapp, xarray + Dask, CDO.

Writes DIR/tas.nc (netCDF-4, CF: a daily ``time`` with ``time_bnds``, ``lat``/``lon`` with
bounds, ``tas(time, lat, lon)`` packed as int16 with float64 ``scale_factor``/``add_offset``
and a ``_FillValue`` on a few cells, ``cell_measures = "area: areacella"``; by default 10 years
of 365 days on 180 x 360, ~0.45 GiB), then times one value per day, the area-weighted mean
over lat and lon: hpcapp ``stats --over lat,lon --weights area`` (which takes ``areacella``)
under ``mpiexec -n R``; xarray ``ds.tas.weighted(ds.areacella).mean(("lat", "lon"))`` on Dask's
threaded scheduler (``--workers`` threads, ``--time-chunk`` days per chunk); and CDO's
``fldmean`` (``-b F64``, which weights by the same ``cell_measures``) when ``cdo`` is on PATH
(else skipped, with the reason printed). Every contender is a fresh process timed from outside,
start-up included; the best of ``--repeat`` runs is kept, with hpcapp's phases (read, compute,
reduce, write, startup: the slowest rank's, from the output's timing table) beside it. Checks
(the run fails if one does not hold): hpcapp's series is the same bits at every rank count,
xarray's within 1e-12 relative and CDO's within 1e-9.

    python scripts/bench.py fldmean --ranks 1,2 --workers 2 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io.results import read_results

from .harness import BenchError, Runner, int_list, loadavg, markdown, say, scratch, timing_table

SCALE, OFFSET, FILL = 0.002, 260.0, -32768  # int16 packing of 190..330 K in 0.002 K steps
LIMITS = {"xarray": 1e-12, "cdo": 1e-9}  # largest relative difference from hpcapp's series

XARRAY = """
import sys
import numpy as np, xarray as xr, dask
path, workers, chunk, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ds = xr.open_dataset(path, chunks={"time": chunk})
series = ds.tas.weighted(ds.areacella).mean(("lat", "lon"))
np.save(out, series.compute(scheduler="threads", num_workers=workers).values)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument(
        "--dir", type=Path, help="directory of the input and outputs, kept (default: temporary)"
    )
    parser.add_argument("--years", type=int, default=10, help="years of 365 days (default 10)")
    parser.add_argument("--steps", type=int, help="days instead of --years")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--ranks", type=int_list, default=[1, 2], help="rank counts (1,2)")
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--time-chunk", type=int, default=64, help="days per Dask chunk")
    parser.add_argument("--repeat", type=int, default=3)


def write_packed(path: Path, steps: int, lat: int, lon: int) -> None:
    """Write the packed daily field with CF bounds and cell areas (kept if already there)."""
    import netCDF4

    if path.exists():
        return
    began = time.perf_counter()
    rng = np.random.default_rng(21)
    lat_edges = np.linspace(-90.0, 90.0, lat + 1)
    lon_edges = np.linspace(0.0, 360.0, lon + 1)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", None), ("lat", lat), ("lon", lon), ("bnds", 2)):
            ds.createDimension(name, size)
        times = ds.createVariable("time", "f8", ("time",))
        times.units, times.calendar, times.bounds = "days since 2000-01-01", "noleap", "time_bnds"
        times[:] = np.arange(steps) + 0.5
        ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
            [np.arange(steps), np.arange(steps) + 1.0], 1
        )
        for name, edges, units in (("lat", lat_edges, "degrees_north"),
                                   ("lon", lon_edges, "degrees_east")):  # fmt: skip
            coord = ds.createVariable(name, "f8", (name,))
            coord[:], coord.units, coord.bounds = (
                (edges[:-1] + edges[1:]) / 2,
                units,
                f"{name}_bnds",
            )
            ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = np.stack(
                [edges[:-1], edges[1:]], 1
            )
        area = ds.createVariable("areacella", "f8", ("lat", "lon"))
        sines = np.diff(np.sin(np.deg2rad(lat_edges)))
        area[:] = 6371e3**2 * np.multiply.outer(sines, np.deg2rad(np.diff(lon_edges)))
        area.units = "m2"
        tas = ds.createVariable(
            "tas", "i2", ("time", "lat", "lon"), fill_value=np.int16(FILL),
            chunksizes=(min(32, steps), lat, lon),
        )  # fmt: skip
        tas.set_auto_maskandscale(False)  # the packed integers are written as they are
        tas.scale_factor, tas.add_offset = np.float64(SCALE), np.float64(OFFSET)
        tas.units, tas.standard_name, tas.cell_measures = "K", "air_temperature", "area: areacella"
        climate = 250 + 40 * np.cos(np.deg2rad(ds["lat"][:]))[:, None] + np.zeros((1, lon))
        for start in range(0, steps, 64):
            stop = min(start + 64, steps)
            season = 10 * np.sin(2 * np.pi * np.arange(start, stop) / 365.0)[:, None, None]
            kelvin = climate + season + rng.normal(0, 3, (stop - start, lat, lon))
            packed = np.round((kelvin - OFFSET) / SCALE).astype(np.int16)
            packed[rng.random(packed.shape) < 0.001] = FILL  # a few missing cells
            tas[start:stop] = packed
    size = path.stat().st_size / 2**30
    say(f"wrote {path} ({size:.2f} GiB) in {time.perf_counter() - began:.0f} s")


def slowest_phases(out: Path) -> dict[str, float]:
    """Return the slowest rank's seconds in each phase of a job output's timing table."""
    columns = timing_table(out)
    return {name: round(float(np.max(col)), 3) for name, col in columns.items() if name != "rows"}


def difference(series: np.ndarray, reference: np.ndarray) -> float:
    """Return the largest relative difference of ``series`` from ``reference``."""
    series = np.asarray(series, dtype=np.float64).reshape(reference.shape)
    return float(np.max(np.abs(series - reference) / np.abs(reference)))


def cdo_series(runner: Runner, path: Path, out: Path, repeat: int) -> tuple[float, np.ndarray]:
    """Time ``cdo -b F64 fldmean``; return the best seconds and its series."""
    import h5py

    argv = ["cdo", "-s", "-O", "-b", "F64", "fldmean", str(path), str(out)]
    seconds = min(runner.timed(argv) for _ in range(repeat))
    with h5py.File(out, "r") as h5:
        return seconds, np.asarray(h5["tas"][()], dtype=np.float64).reshape(-1)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time every contender on the same file; check each series against hpcapp's."""
    runner.precompile()
    steps = options.steps or 365 * options.years
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with scratch(options.dir, "bench-fldmean-") as directory:
        path = directory / "tas.nc"
        write_packed(path, steps, options.lat, options.lon)
        subprocess.run(["sync"], check=False)
        reference = None
        for ranks in options.ranks:
            out = directory / f"hpcapp{ranks}.nc"
            argv = ["run", "stats", f"{path}:/tas", "--over", "lat,lon", "--weights", "area"]
            argv += ["-o", str(out), "--overwrite", "-q"]
            best: tuple[float, dict[str, float]] | None = None
            for _ in range(options.repeat):
                seconds = runner.timed(runner.hpcapp(ranks, *argv))
                if best is None or seconds < best[0]:
                    best = seconds, slowest_phases(out)
            assert best is not None
            seconds = best[0]
            series = np.asarray(read_results(str(out))["mean"], dtype=np.float64)
            reference = series if reference is None else reference
            same = bool(series.tobytes() == reference.tobytes())
            if not same:
                raise BenchError(f"hpcapp at {ranks} ranks gave other bits than at the first")
            rows.append({"contender": f"hpcapp, {ranks} rank(s)", "seconds": seconds,
                         "check": "bitwise = first", "phases": best[1]})  # fmt: skip
            say(f"fldmean: {rows[-1]}")
        assert reference is not None
        out = directory / "xarray.npy"
        argv = [runner.python, "-c", XARRAY, str(path), str(options.workers)]
        argv += [str(options.time_chunk), str(out)]
        seconds = min(runner.timed(argv) for _ in range(options.repeat))
        found = {"xarray": (seconds, np.load(out))}
        if shutil.which("cdo"):
            found["cdo"] = cdo_series(runner, path, directory / "cdo.nc", options.repeat)
        else:
            notes.append("cdo not on PATH: CDO fldmean skipped (Debian: apt install cdo)")
            say(f"fldmean: {notes[-1]}")
        names = {
            "xarray": f"xarray `weighted(areacella).mean` + Dask {options.workers} threads",
            "cdo": "CDO `-b F64 fldmean` (one process)",
        }
        for key, (seconds, series) in found.items():
            diff = difference(series, reference)
            if not diff <= LIMITS[key]:
                raise BenchError(f"{key}'s series differs from hpcapp's by {diff:.1e} relative")
            rows.append({"contender": names[key], "seconds": seconds,
                         "check": f"max relative difference {diff:.1e}"})  # fmt: skip
            say(f"fldmean: {rows[-1]}")
    return {
        "steps": steps,
        "lat": options.lat,
        "lon": options.lon,
        "rows": rows,
        "notes": notes,
        "loadavg_at_end": loadavg(),
    }


def table(result: dict[str, Any]) -> str:
    """Return the README's table: best seconds of each contender, against the best hpcapp."""
    best = min(r["seconds"] for r in result["rows"] if r["contender"].startswith("hpcapp"))
    cells = [
        [row["contender"], f"{row['seconds']:.2f}", f"{row['seconds'] / best:.2f}x", row["check"]]
        for row in result["rows"]
    ]
    return markdown(["contender", "seconds", "vs best hpcapp", "series"], cells)
