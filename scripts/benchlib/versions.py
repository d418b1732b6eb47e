"""This tree against an older checkout on the same jobs, run alternately: is a change free?

A restructuring must change no bit and cost no time. This benchmark runs four representative
jobs (2-D stats with a histogram; a packed CF field reduced ``--over time``; a monthly
climatology over yearly files; montecarlo) with the hpcapp of this tree ("after") and of
``--before DIR`` (a checkout of an older commit: ``git worktree add /tmp/before <commit>``),
alternating before/after so both see the same machine, and reports the median wall seconds of
each and their ratio. Both trees' loops are compiled first; every run's ``/result`` bytes are
compared between the trees (a result that differs fails the benchmark).

    python scripts/bench.py versions --before /tmp/before --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .harness import BenchError, Runner, markdown, say, scratch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument(
        "--before", type=Path, help="a checkout of the older hpcapp (default: none)"
    )
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows of the 2-D job (x 8)")
    parser.add_argument("--steps", type=int, default=730, help="days of the CF field")
    parser.add_argument("--lat", type=int, default=90)
    parser.add_argument("--lon", type=int, default=180)
    parser.add_argument("--samples", type=int, default=50_000_000, help="montecarlo samples")
    parser.add_argument("--dir", type=Path, help="inputs and outputs here (default: temporary)")


def write_inputs(folder: Path, options: argparse.Namespace) -> dict[str, str]:
    """Write the jobs' inputs (kept if there); return name -> INPUT spec."""
    import h5py
    import netCDF4

    rng = np.random.default_rng(11)
    table = folder / "table.h5"
    if not table.exists():
        with h5py.File(table, "w") as h5:
            data = h5.create_dataset(
                "x", (options.rows, 8), "f8", chunks=(min(65536, options.rows), 8)
            )
            for start in range(0, options.rows, 1 << 20):
                stop = min(start + (1 << 20), options.rows)
                data[start:stop] = rng.standard_normal((stop - start, 8))
    years = 2
    per_year = max(1, options.steps // years)
    for year in range(years):
        path = folder / f"tas_{year}.nc"
        if path.exists():
            continue
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("lat", options.lat)
            ds.createDimension("lon", options.lon)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = f"days since {2000 + year}-01-01"
            time.calendar = "noleap"
            time[:] = np.arange(per_year, dtype=np.float64)
            tas = ds.createVariable(
                "tas", "i2", ("time", "lat", "lon"), zlib=True, complevel=1, fill_value=-32767
            )
            tas.set_auto_maskandscale(False)
            tas.scale_factor, tas.add_offset, tas.units = 0.01, 273.15, "K"
            raw = rng.integers(-3000, 3000, (per_year, options.lat, options.lon), dtype=np.int16)
            raw[:, 0, 0] = -32767  # a missing cell
            tas[:] = raw
    return {
        "2-D stats + histogram": f"{table}:/x",
        "CF field --over time": f"{folder / 'tas_0.nc'}:/tas",
        "yearly files, monthly climatology": f"{folder}/tas_*.nc:/tas",
    }


def jobs(inputs: dict[str, str], options: argparse.Namespace) -> dict[str, list[str]]:
    """Return name -> ``hpcapp`` arguments (without the output) of every job."""
    return {
        "2-D stats + histogram": [
            "run", "stats", inputs["2-D stats + histogram"], "-p", "bins=64", "-p", "range=-4,4",
        ],
        "CF field --over time": ["run", "stats", inputs["CF field --over time"], "--over", "time"],
        "yearly files, monthly climatology": [
            "run", "stats", inputs["yearly files, monthly climatology"], "--over", "time",
            "--group-by", "time.month",
        ],
        "montecarlo": ["run", "montecarlo", "-p", f"samples={options.samples}"],
    }  # fmt: skip


def result_bytes(path: Path) -> dict[str, bytes]:
    """Return every result's bytes by key (either tree's layout: ``/result`` or the flat one)."""
    from hpcapp.io.results import read_results

    return {key: value.tobytes() for key, value in read_results(str(path)).items()}


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time every job with each tree, alternately; medians and the after/before ratio."""
    trees = {"after": Path(__file__).resolve().parents[2]}
    if options.before is not None:
        trees = {"before": options.before.resolve(), **trees}
    rows = []
    with scratch(options.dir, "bench-versions-") as folder:
        inputs = write_inputs(folder, options)
        for tree in trees.values():  # each tree's loops, before any timed run
            # Older trees compile with ``python -m hpcapp.kernels._fused``.
            new = (tree / "hpcapp" / "kernels" / "precompile.py").exists()
            runner.run(
                [runner.python, "-m", f"hpcapp.kernels.{'precompile' if new else '_fused'}"],
                {**runner.env, "PYTHONPATH": str(tree)},
            )
        for job, args in jobs(inputs, options).items():
            walls: dict[str, list[float]] = {name: [] for name in trees}
            results: dict[str, dict[str, bytes]] = {}
            for _ in range(options.repeat):
                for name, tree in trees.items():
                    out = folder / f"out-{name}.h5"
                    command = runner.hpcapp(
                        options.ranks, *args, "-o", str(out), "--overwrite", "-q"
                    )
                    walls[name].append(
                        runner.timed(command, env={**runner.env, "PYTHONPATH": str(tree)})
                    )
                    results[name] = result_bytes(out)
            if len(trees) == 2:
                before, after = results["before"], results["after"]
                if before != after:
                    raise BenchError(f"{job}: the trees' results differ")
            row: dict[str, Any] = {"job": job, "runs": walls}
            for name in trees:
                row[name] = statistics.median(walls[name])
            if "before" in trees:
                row["ratio"] = row["after"] / row["before"]
            say(f"{job}: " + ", ".join(f"{name} {row[name]:.2f} s" for name in trees))
            rows.append(row)
    return {"ranks": options.ranks, "repeat": options.repeat, "trees": list(trees), "jobs": rows}


def table(result: dict[str, Any]) -> str:
    """Return the table: median wall seconds of each tree (at ``ranks``), and after/before."""
    trees = result["trees"]
    header = ["job", *(f"{name} (s)" for name in trees)]
    if "before" in trees:
        header.append("after / before")
    cells = []
    for row in result["jobs"]:
        line = [row["job"], *(f"{row[name]:.2f}" for name in trees)]
        if "before" in trees:
            line.append(f"{row['ratio']:.3f}")
        cells.append(line)
    return markdown(header, cells)
