"""Per core against NCO and CDO: ten yearly packed netCDF files, time mean and monthly climatology.

The input is :mod:`.climate`'s set (by default 10 years of daily 180 x 360 int16 ``tas``,
deflate + shuffle, ``_FillValue``: ~0.4 GB on disk). Every contender is one fresh process (or
one ``mpiexec``), timed from outside, alternating, ``--repeat`` times each, after one warm-up
read puts the files in the page cache:

- the time mean per cell: ``hpcapp run stats 'DIR/*.nc:/tas' --over time`` (count, mean, std,
  min and max) at 1 and 2 ranks; the same at 1 rank with HDF5's own inflate
  (``HPCAPP_HDF5_INFLATE=1``) to show what reading through libdeflate gains; NCO ``ncra``;
  CDO ``timmean -mergetime``;
- the monthly climatology: ``--group-by time.month`` at 2 ranks (every statistic, and
  ``-p stats=mean``: the mean only, what ``ymonmean`` writes), CDO ``ymonmean -mergetime``.

Results are checked once: hpcapp's mean against xarray's (``open_mfdataset`` + Dask,
``mean("time")``, decoded float64) to 1e-12 relative; NCO's and CDO's (which keep the input's
int16 packing or write float32) to half a packing step. hpcapp's own timing table gives its
start-up (slowest rank) and read seconds. ``--floors`` prints issue 23's floors beside the
medians.

    python scripts/bench.py cf-files --repeat 5 --dir /scratch/cf-files
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import climate
from .harness import Runner, loadavg, markdown, rank_seconds, say, timing_table

XARRAY_MEAN = """
import sys, numpy as np, xarray as xr
ds = xr.open_mfdataset(sys.argv[1:-1], combine="by_coords", chunks={"time": 73})
np.save(sys.argv[-1], ds["tas"].mean("time").compute().values.astype(np.float64))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    climate.add_arguments(parser)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-check", action="store_true", help="skip the result checks")


def _contenders(runner: Runner, files: list[Path], out: Path) -> dict[str, tuple[list[str], dict]]:
    """Return name -> (command, extra environment) of every contender that is installed."""
    spec = f"{files[0].parent}/tas_*_{files[0].stem.rsplit('_', 1)[-1]}.nc:/tas"
    names = [str(f) for f in files]

    def hpcapp(ranks: int, tag: str, *extra: str) -> list[str]:
        args = ["run", "stats", spec, "-o", str(out / f"{tag}.h5"), "--overwrite", "-q"]
        return runner.hpcapp(ranks, *args, *extra)

    found: dict[str, tuple[list[str], dict]] = {
        "mean hpcapp@1": (hpcapp(1, "mean1", "--over", "time"), {}),
        "mean hpcapp@2": (hpcapp(2, "mean2", "--over", "time"), {}),
        "mean hpcapp@1 HDF5 inflate": (
            hpcapp(1, "mean1h", "--over", "time"),
            {"HPCAPP_HDF5_INFLATE": "1"},
        ),
        "month hpcapp@2": (hpcapp(2, "month2", "--group-by", "time.month"), {}),
        "month hpcapp@2 stats=mean": (
            hpcapp(2, "month2m", "--group-by", "time.month", "-p", "stats=mean"),
            {},
        ),
    }
    if shutil.which("ncra"):
        found["mean ncra"] = (["ncra", "-O", *names, str(out / "ncra.nc")], {})
    else:
        say("ncra is not on PATH (Debian: apt install nco): no NCO column")
    if shutil.which("cdo"):
        found["mean cdo timmean"] = (
            ["cdo", "-s", "-O", "timmean", "-mergetime", *names, str(out / "timmean.nc")],
            {},
        )
        found["month cdo ymonmean"] = (
            ["cdo", "-s", "-O", "ymonmean", "-mergetime", *names, str(out / "ymonmean.nc")],
            {},
        )
    else:
        say("cdo is not on PATH (Debian: apt install cdo): no CDO columns")
    return found


def _check(runner: Runner, files: list[Path], out: Path) -> dict[str, float]:
    """Return the largest difference of each output from xarray's mean (relative or in K)."""
    import netCDF4

    from hpcapp.io.results import read_results

    reference = out / "xarray.npy"
    runner.run([runner.python, "-c", XARRAY_MEAN, *map(str, files), str(reference)])
    want = np.load(reference)
    found = {}
    for tag in ("mean1", "mean2", "mean1h"):
        got = np.asarray(read_results(str(out / f"{tag}.h5"))["mean"])
        found[f"hpcapp {tag} rel"] = float(np.nanmax(np.abs(got - want) / np.abs(want)))
    for name in ("ncra.nc", "timmean.nc"):
        if (out / name).exists():
            with netCDF4.Dataset(out / name) as ds:
                got = np.asarray(ds["tas"][:], np.float64).reshape(want.shape)
            found[f"{name} K"] = float(np.nanmax(np.abs(got - want)))
    return found


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Build (or reuse) the files, warm the cache, time every contender, check the results."""
    keep = options.dir is not None
    base = options.dir or Path(tempfile.mkdtemp(prefix="hpcapp-cf-files-"))
    try:
        grid = (options.years, options.lat, options.lon, options.first_year)
        files = climate.write_years(base, *grid)
        for path in files:  # into the page cache
            path.read_bytes()
        out = base / "out"
        out.mkdir(exist_ok=True)
        runner.precompile()
        contenders = _contenders(runner, files, out)
        walls: dict[str, list[float]] = {name: [] for name in contenders}
        startup: dict[str, list[float]] = {}
        read: dict[str, list[float]] = {}
        for _ in range(options.repeat):
            for name, (command, env) in contenders.items():
                walls[name].append(runner.timed(command, env={**runner.env, **env}))
                if "hpcapp" in name:
                    tag = Path(command[command.index("-o") + 1])
                    startup.setdefault(name, []).append(float(timing_table(tag)["startup"].max()))
                    read.setdefault(name, []).append(rank_seconds(tag, ["read"]))
        checks = {} if options.no_check else _check(runner, files, out)
        return {
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "shape": [len(files), options.lat, options.lon],
            "wall": {name: statistics.median(v) for name, v in walls.items()},
            "spread": {name: [min(v), max(v)] for name, v in walls.items()},
            "startup": {name: statistics.median(v) for name, v in startup.items()},
            "read": {name: statistics.median(v) for name, v in read.items()},
            "checks": checks,
            "load_average_at_end": loadavg(),
        }
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def table(result: dict[str, Any]) -> str:
    """Return the medians, their spread, hpcapp's start-up and read, and the floor ratios."""
    wall = result["wall"]
    rows = []
    for name, seconds in wall.items():
        low, high = result["spread"][name]
        rows.append(
            [
                name,
                f"{seconds:.2f}",
                f"{low:.2f}-{high:.2f}",
                f"{result['startup'][name]:.2f}" if name in result["startup"] else "",
                f"{result['read'][name]:.2f}" if name in result["read"] else "",
            ]
        )
    text = markdown(["job", "median s", "range s", "start-up s", "read s"], rows)
    ratios = []
    for mine, theirs in (
        ("mean hpcapp@1", "mean ncra"),
        ("mean hpcapp@2", "mean ncra"),
        ("mean hpcapp@2", "mean cdo timmean"),
        ("month hpcapp@2", "month cdo ymonmean"),
        ("month hpcapp@2 stats=mean", "month cdo ymonmean"),
        ("mean hpcapp@1", "mean hpcapp@1 HDF5 inflate"),
    ):
        if mine in wall and theirs in wall:
            ratios.append([f"{theirs} / {mine}", f"{wall[theirs] / wall[mine]:.2f}x"])
    if ratios:
        text += "\n\n" + markdown(["speed-up", "ratio"], ratios)
    if result["checks"]:
        checks = [[name, f"{value:.2g}"] for name, value in result["checks"].items()]
        text += "\n\n" + markdown(["check against xarray", "largest difference"], checks)
    return text
