"""Peak RSS per rank of a per-cell ``stats`` result, next to hpcapp's memory estimate.

Writes DIR/grid.nc (a (time, lat, lon) float32 field) and runs ``hpcapp run stats --over time``
through ``procs/rss`` to get each rank's peak RSS, next to the estimate ``--memory-per-rank``
checks against (the partial of one chunk and the total).

    python scripts/bench.py nd-memory --steps 24 --lat 721 --lon 1440 --bins 64 --chunk-rows 2
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from .harness import BenchError, Runner, markdown, scratch
from .nd_data import add_grid_arguments, write_field


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    add_grid_arguments(parser, steps=4142)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=4, help="hpcapp's chunk rows")


def estimate(field: str, bins: int, chunk_rows: int) -> tuple[int, dict[str, Any]]:
    """Return the number of chunks and hpcapp's memory estimate of the job (its own code)."""
    from hpcapp.io.memory import estimate
    from hpcapp.io.sources.checks import inspect_input
    from hpcapp.kernels.nd import bind_over
    from hpcapp.kernels.registry import load_kernel
    from hpcapp.partition import count_chunks

    source = inspect_input(field).describe(None, False, False)
    params = {"bins": bins, "range": [250.0, 310.0], "over": (0,)}
    kernel = bind_over(load_kernel("stats"), params)
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    return n_chunks, estimate(kernel, source, params, chunk_rows, n_chunks)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure each rank's peak RSS for a per-cell result, next to the estimate."""
    runner.precompile()
    rows = []
    with scratch(options.dir, "bench-nd-memory-") as directory:
        field = directory / "grid.nc"
        write_field(field, options.steps, options.lat, options.lon, False)
        n_chunks, parts = estimate(f"{field}:/t", options.bins, options.chunk_rows)
        for ranks in options.ranks:
            argv = runner.proc(
                "rss", "run", "stats", f"{field}:/t", "-o", str(directory / "out.nc")
            )
            argv += ["--overwrite", "-q", "--chunk-rows", str(options.chunk_rows)]
            argv += ["-p", f"bins={options.bins}", "-p", "range=250,310", "--over", "time"]
            done = runner.run(runner.mpi(ranks, *argv))
            # Ranks write to one pipe: their lines may run together, so match, do not split.
            found = re.findall(r"BENCH_RSS rank=(\d+) maxrss_kib=(\d+)", done.stderr)
            peaks = [int(kib) / 1024 for _, kib in sorted(found, key=lambda f: int(f[0]))]
            if len(peaks) != ranks:
                raise BenchError(f"expected {ranks} BENCH_RSS lines:\n{done.stderr[-2000:]}")
            rows.append(
                {
                    "ranks": ranks,
                    "cells": options.lat * options.lon,
                    "bins": options.bins,
                    "chunks": n_chunks,
                    "partial_mib": parts["partial"] / 2**20,
                    "estimate_mib": parts["total"] / 2**20,
                    "peak_rss_mib_per_rank": peaks,
                }
            )
    return {"steps": options.steps, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return one row per rank count: cells, chunks, the estimate and the measured peaks."""
    headers = ["ranks", "cells", "bins", "chunks", "partial MiB", "estimate MiB"]
    headers.append("peak RSS MiB per rank")
    cells = [
        [
            row["ranks"],
            f"{row['cells']:,}",
            row["bins"],
            row["chunks"],
            f"{row['partial_mib']:.2f}",
            f"{row['estimate_mib']:.1f}",
            " / ".join(f"{peak:.0f}" for peak in row["peak_rss_mib_per_rank"]),
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
