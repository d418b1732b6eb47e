"""Day-of-year climatology: peak RSS and time of ``--group-by time.dayofyear`` (issue 21, item 8).

Writes DIR/tas.nc: YEARS years of daily ``tas`` on a LAT x LON grid, packed int16 with
``scale_factor``/``add_offset`` and ``_FillValue``, ``time`` in days since 2000-01-01 (standard
calendar: leap days, so 366 groups). Then, each in its own process with its peak RSS:

- ``hpcapp run stats --group-by time.dayofyear -p stats=mean`` at each rank count
  (``procs/rss``), next to the estimate ``--memory-per-rank`` checks against (hpcapp's own
  code, as ``hpcapp slurm``). ``-p stats=mean`` asks for the mean only, as xarray and CDO
  compute it (``--stats all``: every statistic, five float64 partial parts per group and cell
  instead of two);
- xarray: ``open_dataset(...).groupby("time.dayofyear").mean()`` (``procs/groupmem_xarray``);
- CDO ``ydaymean`` when ``cdo`` is on PATH (peak RSS from ``/usr/bin/time -v`` when present).

    python scripts/bench.py groupmem --years 10 --lat 180 --lon 360 --ranks 1,2
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .harness import BenchError, Runner, int_list, markdown, say, scratch

TIME_V = "/usr/bin/time"
FILL = np.int16(-32767)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--dir", type=Path, help="directory of the input and outputs (kept)")
    parser.add_argument("--years", type=int, default=3, help="years of daily data (default 3)")
    parser.add_argument("--lat", type=int, default=90)
    parser.add_argument("--lon", type=int, default=180)
    parser.add_argument("--ranks", default="1,2", type=int_list, help="rank counts (default 1,2)")
    parser.add_argument("--chunk-rows", type=int, help="hpcapp's chunk rows (default: its own)")
    parser.add_argument(
        "--stats", default="mean", help="hpcapp's -p stats= (default mean; all: every statistic)"
    )


def write_tas(path: Path, years: int, lat: int, lon: int) -> None:
    """Write daily packed ``tas`` (int16, scale/offset, _FillValue) from 2000-01-01."""
    import netCDF4

    if path.exists():
        return
    days = int(
        (np.datetime64(f"{2000 + years}-01-01", "D") - np.datetime64("2000-01-01", "D")).astype(int)
    )
    rng = np.random.default_rng(3)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        for name, size, span in (("lat", lat, (-89.0, 89.0)), ("lon", lon, (0.0, 358.0))):
            ds.createDimension(name, size)
            ds.createVariable(name, "f8", (name,))[:] = np.linspace(*span, size)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 2000-01-01", "standard"
        tas = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=FILL)
        tas.scale_factor, tas.add_offset, tas.units = np.float32(0.01), np.float32(273.15), "K"
        tas.set_auto_maskandscale(False)  # packed here: the values are exactly what is written
        for start in range(0, days, 64):
            stop = min(start + 64, days)
            packed = np.round(1500 * rng.standard_normal((stop - start, lat, lon))).astype("i2")
            packed[:, 0, :3] = FILL  # a few missing cells
            tas[start:stop] = packed
            time[start:stop] = np.arange(start, stop, dtype=np.float64)
    say(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB)")


def estimate(spec: str, chunk_rows: int | None, ranks: int, stats: str) -> dict[str, Any]:
    """Return hpcapp's memory estimate of the job on ``ranks`` and its chunking (its own code)."""
    from hpcapp.jobs.config import JobConfig
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code
    from hpcapp.partition import count_chunks

    params = {} if stats == "all" else {"stats": stats}
    config = JobConfig(
        kernel="stats", input=spec, group_by="time.dayofyear", chunk_rows=chunk_rows, params=params
    )
    plan = plan_job(config, *load_with_code("stats"), estimate_memory=True, ranks=ranks)
    assert plan.memory is not None
    n_chunks = count_chunks(plan.source.n_rows, plan.chunk_rows)
    return {"chunk_rows": plan.chunk_rows, "chunks": n_chunks, "mib": plan.memory["total"] / 2**20}


def peaks_of(stderr: str, ranks: int) -> list[float]:
    """Return each rank's peak RSS (MiB) from the ``BENCH_RSS`` lines."""
    found = re.findall(r"BENCH_RSS rank=(\d+) maxrss_kib=(\d+)", stderr)
    peaks = [int(kib) / 1024 for _, kib in sorted(found, key=lambda f: int(f[0]))]
    if len(peaks) != ranks:
        raise BenchError(f"expected {ranks} BENCH_RSS lines:\n{stderr[-2000:]}")
    return peaks


def with_time_v(command: list[str]) -> list[str]:
    """Prefix ``/usr/bin/time -v`` when it is installed (its peak RSS line is read back)."""
    return [TIME_V, "-v", *command] if Path(TIME_V).exists() else command


def time_v_peak(stderr: str) -> float | None:
    """Return the peak RSS (MiB) ``/usr/bin/time -v`` printed, or None."""
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(found.group(1)) / 1024 if found else None


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure hpcapp at each rank count, xarray and CDO on the same file."""
    runner.precompile()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with scratch(options.dir, "bench-groupmem-") as directory:
        field = directory / "tas.nc"
        write_tas(field, options.years, options.lat, options.lon)
        spec = f"{field}:/tas"
        planned = estimate(spec, options.chunk_rows, 1, options.stats)
        asked = [] if options.stats == "all" else ["-p", f"stats={options.stats}"]
        for ranks in options.ranks:
            argv = runner.proc("rss", "run", "stats", spec, "-o", str(directory / "out.nc"))
            argv += ["--overwrite", "-q", "--group-by", "time.dayofyear", *asked]
            if options.chunk_rows:
                argv += ["--chunk-rows", str(options.chunk_rows)]
            done = runner.run(runner.mpi(ranks, *argv))
            peaks = peaks_of(done.stderr, ranks)
            tool = f"hpcapp@{ranks} (stats={options.stats})"
            row = {"tool": tool, "seconds": done.wall, "peak_mib": max(peaks)}
            guess = estimate(spec, options.chunk_rows, ranks, options.stats)["mib"]
            rows.append({**row, "estimate_mib": guess, "peaks_mib": peaks})
        xr_out = directory / "xarray.nc"
        done = runner.run([runner.python, *runner.proc("groupmem_xarray", spec, str(xr_out))])
        rows.append(
            {"tool": "xarray", "seconds": done.wall, "peak_mib": peaks_of(done.stderr, 1)[0]}
        )
        if shutil.which("cdo"):
            command = ["cdo", "-s", "-O", "ydaymean", str(field), str(directory / "cdo.nc")]
            done = runner.run(with_time_v(command))
            rows.append(
                {"tool": "cdo ydaymean", "seconds": done.wall, "peak_mib": time_v_peak(done.stderr)}
            )
        else:
            notes.append("cdo is not on PATH: no CDO row")
    cells = options.lat * options.lon
    return {
        "years": options.years,
        "cells": cells,
        "chunk_rows": planned["chunk_rows"],
        "chunks": planned["chunks"],
        "rows": rows,
        "notes": notes,
    }


def table(result: dict[str, Any]) -> str:
    """Return one row per tool: seconds, peak RSS (hpcapp: its largest rank's), the estimate."""
    headers = ["tool", "seconds", "peak RSS MiB", "estimate MiB", "estimate / peak"]
    cells = []
    for row in result["rows"]:
        peak, guess = row.get("peak_mib"), row.get("estimate_mib")
        cells.append(
            [
                row["tool"],
                f"{row['seconds']:.2f}",
                f"{peak:.0f}" if peak else "-",
                f"{guess:.0f}" if guess else "-",
                f"{guess / peak:.2f}" if guess and peak else "-",
            ]
        )
    caption = (
        f"{result['years']} years of daily data, {result['cells']:,} cells; hpcapp: "
        f"{result['chunks']} chunks of {result['chunk_rows']} rows"
    )
    return (
        markdown(headers, cells)
        + "\n\n"
        + caption
        + "".join(f"; {note}" for note in result["notes"])
    )
