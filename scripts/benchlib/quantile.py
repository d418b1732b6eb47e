"""Per-cell p10/p50/p90 over time of a packed daily field: hpcapp, its own stats, xarray, CDO.

Writes DIR/packed.nc (netCDF-4, int16 packed with scale_factor/add_offset and _FillValue, 5 %
missing, zlib level 1, storage chunks of 16 days; 3650 days of 180 x 360 by default: 0.47 GB
as stored, 0.95 GB of float32 or 1.9 GB of float64 decoded), then times, each a fresh process
timed from outside (start-up included), best of ``--repeat``:

- hpcapp ``quantile --over time -p q=0.1,0.5,0.9`` under ``mpiexec -n R`` (the transpose),
  with ``--memory-per-rank`` (default 2GiB);
- hpcapp's own ``stats --over time`` on the same ranks (one pass of partials, no transpose);
- xarray + Dask (``--workers`` threads): open with time chunks, rechunk to whole series
  (``time: -1``), ``quantile([0.1, 0.5, 0.9], dim="time")``;
- CDO ``timmin`` + ``timmax`` + one ``timpctl,P`` per level, when ``cdo`` is on PATH (its
  percentiles are histogram-based: compared as a max abs difference, not bits).

Peak RSS per rank (hpcapp: every rank's ``ru_maxrss``; xarray: its process's) is printed, and
hpcapp's quantiles are compared with xarray's and CDO's p50 (max abs differences; that they
equal numpy's nanquantile bit for bit is what tests/test_quantile.py checks).

    python scripts/bench.py quantile --steps 3650 --ranks 2 --workers 2 --repeat 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io.results import read_results

from .harness import BenchError, Runner, loadavg, markdown, say, scratch
from .nd_data import add_grid_arguments

LEVELS = (0.1, 0.5, 0.9)

XARRAY = """
import sys, resource
import numpy as np, xarray as xr, dask
path, workers, chunk, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ds = xr.open_dataset(path, engine="h5netcdf", chunks={"time": chunk})
t = ds["tas"].astype("float64").chunk({"time": -1, "lat": 10})  # quantile needs whole series
q = t.quantile([0.1, 0.5, 0.9], dim="time").compute(scheduler="threads", num_workers=workers)
np.save(out, q.values)
print(f"BENCH_RSS rank=0 maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}",
      file=sys.stderr)
"""


def write_packed(path: Path, steps: int, lat: int, lon: int) -> None:
    """Write the packed int16 (time, lat, lon) field, one block of days at a time (kept)."""
    import netCDF4

    if path.exists():
        return
    rng = np.random.default_rng(11)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", steps), ("lat", lat), ("lon", lon)):
            ds.createDimension(name, size)
            coord = ds.createVariable(name, "f8", (name,))
            coord[:] = np.arange(size, dtype=np.float64)
        ds["time"].units, ds["time"].calendar = "days since 2000-01-01", "noleap"
        var = ds.createVariable(
            "tas", "i2", ("time", "lat", "lon"), zlib=True, complevel=1, fill_value=-32767,
            chunksizes=(min(16, steps), lat, lon),
        )  # fmt: skip
        var.set_auto_maskandscale(False)
        var.scale_factor, var.add_offset, var.units = 0.01, 273.15, "K"
        for start in range(0, steps, 64):
            stop = min(start + 64, steps)
            raw = rng.integers(-3000, 3000, (stop - start, lat, lon), dtype=np.int16)
            raw[rng.random(raw.shape) < 0.05] = -32767
            var[start:stop] = raw
    say(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    add_grid_arguments(parser, steps=3650)
    parser.set_defaults(ranks=[2])
    parser.add_argument("--workers", type=int, default=2, help="dask threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-chunk", type=int, default=64, help="time steps per read chunk")
    parser.add_argument("--memory-per-rank", default="2GiB", help="hpcapp's budget per rank")


def _peaks(stderr: str) -> list[float]:
    """Return each rank's peak RSS in MiB from the BENCH_RSS lines."""
    found = re.findall(r"BENCH_RSS rank=(\d+) maxrss_kib=(\d+)", stderr)
    if not found:
        raise BenchError(f"no BENCH_RSS line:\n{stderr[-2000:]}")
    return [int(kib) / 1024 for _, kib in sorted(found, key=lambda item: int(item[0]))]


def _best(best: dict[str, Any], key: str, wall: float, peaks: list[float] | None) -> None:
    if key not in best or wall < best[key]["seconds"]:
        best[key] = {"seconds": wall, "peak_mib_per_rank": peaks}


def _cdo(runner: Runner, directory: Path, field: Path) -> float:
    """Time CDO's three-pass percentiles: timmin, timmax, then timpctl per level."""
    cdo = shutil.which("cdo")
    assert cdo is not None
    wall = runner.timed([cdo, "-s", "-O", "timmin", str(field), str(directory / "min.nc")])
    wall += runner.timed([cdo, "-s", "-O", "timmax", str(field), str(directory / "max.nc")])
    for level in LEVELS:
        extremes = [str(directory / "min.nc"), str(directory / "max.nc")]
        out = str(directory / f"cdo_p{round(level * 100)}.nc")
        wall += runner.timed(
            [cdo, "-s", "-O", f"timpctl,{level * 100:g}", str(field), *extremes, out]
        )
    return wall


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time the contenders on the packed field; compare the medians."""
    runner.precompile()
    best: dict[str, Any] = {}
    with scratch(options.dir, "bench-quantile-") as directory:
        field = directory / "packed.nc"
        write_packed(field, options.steps, options.lat, options.lon)
        subprocess.run(["sync"], check=False)
        spec = f"{field}:/tas"
        common = ["--over", "time", "--overwrite", "-q", "--chunk-rows", str(options.time_chunk)]
        for _ in range(options.repeat):
            for ranks in options.ranks:
                out = directory / f"quantile{ranks}.nc"
                argv = ["run", "quantile", spec, "-p", "q=0.1,0.5,0.9", "-o", str(out), *common]
                argv += ["--memory-per-rank", options.memory_per_rank]
                done = runner.run(runner.mpi(ranks, *runner.proc("rss"), *argv))
                _best(best, f"hpcapp quantile {ranks} ranks", done.wall, _peaks(done.stderr))
                argv = ["run", "stats", spec, "-o", str(directory / "stats.nc"), *common]
                done = runner.run(runner.mpi(ranks, *runner.proc("rss"), *argv))
                _best(best, f"hpcapp stats {ranks} ranks", done.wall, _peaks(done.stderr))
            argv = [runner.python, "-c", XARRAY, str(field), str(options.workers)]
            argv += [str(options.time_chunk), str(directory / "xarray.npy")]
            done = runner.run(argv)
            _best(best, f"xarray+dask {options.workers} threads", done.wall, _peaks(done.stderr))
            if shutil.which("cdo"):
                _best(best, "CDO timmin+timmax+timpctl x3", _cdo(runner, directory, field), None)
        if not shutil.which("cdo"):
            say("cdo not found: apt install cdo to compare with timpctl")
        ours = read_results(str(directory / f"quantile{options.ranks[-1]}.nc"))["quantile"]
        theirs = np.load(directory / "xarray.npy")
        # xarray's dask quantile rounds its own way (~1e-14); numpy's bits are the tests' job.
        checks = {"xarray_max_abs_diff": float(np.nanmax(np.abs(ours - theirs)))}
        cdo_p50 = directory / "cdo_p50.nc"
        if cdo_p50.exists():
            import netCDF4

            with netCDF4.Dataset(cdo_p50) as ds:
                found = np.asarray(ds["tas"][0], np.float64)
            checks["cdo_p50_max_abs_diff"] = float(np.nanmax(np.abs(found - ours[1])))
    say(f"quantile: {best} {checks}")
    return {
        "steps": options.steps,
        "lat": options.lat,
        "lon": options.lon,
        "memory_per_rank": options.memory_per_rank,
        "best": best,
        **checks,
        "loadavg_at_end": loadavg(),
    }


def table(result: dict[str, Any]) -> str:
    """Return the README's table: best seconds, peak memory per rank, and hpcapp's ratios."""
    best = result["best"]
    ours = next(key for key in best if key.startswith("hpcapp quantile"))
    rows = []
    for key, found in best.items():
        peaks = found["peak_mib_per_rank"]
        memory = ", ".join(f"{p:,.0f}" for p in peaks) if peaks else "-"
        ratio = found["seconds"] / best[ours]["seconds"]
        rows.append([key, f"{found['seconds']:.2f} s", memory, f"{ratio:.2f}x"])
    return markdown(["contender", "best wall", "peak MiB per rank", f"vs {ours}"], rows)
