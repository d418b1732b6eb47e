"""Start-up at scale: per-rank import time and the memory numba adds, at several rank counts.

For each rank count, ``mpiexec -n N`` runs ``procs/startup_child`` twice: with numba (imports,
then the first ``stats`` chunk big enough for the compiled loop, loaded from numba's cache, which
the harness fills first) and without (the same imports and a small ``stats`` chunk that takes the
numpy path). Every rank times each step (wall and CPU seconds) and, while all ranks are alive (a
barrier on each side), reads ``/proc/self/smaps_rollup``: RSS, PSS (shared pages divided among
the processes that map them, so the PSS of all ranks adds up to what the node really holds) and
USS (private pages only). Rank counts above the core count are oversubscribed: their wall times
measure the scheduler as much as the imports; CPU seconds do not.

    python scripts/bench.py startup --ranks 1,2,8,16
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from .harness import BenchError, Runner, bench_lines, int_list, loadavg, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--ranks", type=int_list, default=[1, 2, 8, 16])


def launch(runner: Runner, ranks: int, with_numba: bool) -> dict:
    """Run the child on ``ranks`` ranks; return its per-rank reports and the wall seconds."""
    args = [] if with_numba else ["--no-numba"]
    done = runner.run(runner.mpi(ranks, *runner.proc("startup_child", *args)))
    reports = bench_lines(done.stdout, "BENCH_STARTUP")
    if not reports:
        raise BenchError(f"no BENCH_STARTUP line:\n{done.stdout[-2000:]}")
    return {"ranks": reports[-1], "wall": done.wall}


def summarise(ranks: int, with_numba: bool, got: dict) -> dict:
    """Reduce the per-rank reports to the figures of the table."""
    reports = got["ranks"]
    imports = [
        sum(r["steps"][k][0] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    imports_cpu = [
        sum(r["steps"][k][1] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    numba_steps = ("numba", "first stats chunk") if with_numba else ("first stats chunk",)
    extra = [sum(r["steps"][k][0] for k in numba_steps) for r in reports]
    extra_cpu = [sum(r["steps"][k][1] for k in numba_steps) for r in reports]

    def mib(key: str, when: str) -> float:
        return statistics.mean(r[when][key] for r in reports) / 1024

    return {
        "ranks": ranks,
        "numba": with_numba,
        "launch_wall": got["wall"],
        "imports_wall_median": statistics.median(imports),
        "imports_wall_max": max(imports),
        "imports_cpu_median": statistics.median(imports_cpu),
        "first_chunk_wall_median": statistics.median(extra),
        "first_chunk_wall_max": max(extra),
        "first_chunk_cpu_median": statistics.median(extra_cpu),
        **{f"{k}_mib_{w}": mib(k, w) for k in ("rss", "pss", "uss") for w in ("before", "after")},
        "node_pss_mib": sum(r["after"]["pss"] for r in reports) / 1024,
    }


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure every rank count with and without numba."""
    runner.precompile()
    rows = []
    for ranks in options.ranks:
        for with_numba in (False, True):
            rows.append(summarise(ranks, with_numba, launch(runner, ranks, with_numba)))
    return {"cores": os.cpu_count(), "loadavg_at_end": loadavg(), "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: imports, the first stats chunk, and memory per rank."""
    headers = ["ranks", "numba", "imports s (median / max)", "CPU s"]
    headers += ["first stats chunk s (median / max)", "CPU s", "RSS MiB", "PSS MiB", "USS MiB"]
    headers.append("node PSS MiB")
    cells = [
        [
            row["ranks"],
            "yes" if row["numba"] else "no",
            f"{row['imports_wall_median']:.2f} / {row['imports_wall_max']:.2f}",
            f"{row['imports_cpu_median']:.2f}",
            f"{row['first_chunk_wall_median']:.2f} / {row['first_chunk_wall_max']:.2f}",
            f"{row['first_chunk_cpu_median']:.2f}",
            f"{row['rss_mib_after']:.0f}",
            f"{row['pss_mib_after']:.0f}",
            f"{row['uss_mib_after']:.0f}",
            f"{row['node_pss_mib']:.0f}",
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
