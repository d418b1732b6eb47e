"""Start-up at scale: per-rank import time and the memory numba adds, at several rank counts.

For each rank count, ``mpiexec -n N`` runs ``procs/startup_child`` in three ways: ``prebuilt``
(imports, then the first ``stats`` chunk big enough for the compiled loop, from the prebuilt
module, no numba), ``numba`` (the same through numba's JIT and its cache: ``HPCAPP_JIT_ONLY=1``)
and ``numpy`` (the same imports and a small ``stats`` chunk that takes the numpy path); the
harness builds the loops first. ``--repeat`` runs each that many times: the medians are over
every rank of every run. "to chunk" is from the process's start (as hpcapp's start-up column)
to the first chunk done, wall and CPU. Every rank times each step (wall and CPU seconds) and,
while all ranks are alive (a barrier on each side), reads ``/proc/self/smaps_rollup``: RSS,
PSS (shared pages divided among the processes that map them, so the PSS of all ranks adds up to
what the node really holds) and USS (private pages only). Rank counts above the core count are
oversubscribed: their wall times measure the scheduler as much as the imports; CPU seconds do
not.

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
    parser.add_argument("--repeat", type=int, default=1)


MODES = ("numpy", "numba", "prebuilt")


def launch(runner: Runner, ranks: int, mode: str) -> dict:
    """Run the child on ``ranks`` ranks; return its per-rank reports and the wall seconds."""
    args = ["--no-numba"] if mode == "numpy" else []
    env = {**runner.env, "HPCAPP_JIT_ONLY": "1" if mode == "numba" else ""}
    done = runner.run(runner.mpi(ranks, *runner.proc("startup_child", *args)), env)
    reports = bench_lines(done.stdout, "BENCH_STARTUP")
    if not reports:
        raise BenchError(f"no BENCH_STARTUP line:\n{done.stdout[-2000:]}")
    return {"ranks": reports[-1], "wall": done.wall}


def summarise(ranks: int, mode: str, runs: list[dict]) -> dict:
    """Reduce the per-rank reports of every run to the figures of the table."""
    reports = [report for got in runs for report in got["ranks"]]
    imports = [
        sum(r["steps"][k][0] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    imports_cpu = [
        sum(r["steps"][k][1] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    numba_steps = ("numba", "first stats chunk")  # numba: 0 s unless through numba's JIT
    extra = [sum(r["steps"][k][0] for k in numba_steps) for r in reports]
    extra_cpu = [sum(r["steps"][k][1] for k in numba_steps) for r in reports]

    def mib(key: str, when: str) -> float:
        return statistics.mean(r[when][key] for r in reports) / 1024

    return {
        "ranks": ranks,
        "mode": mode,
        "launch_wall": statistics.median(got["wall"] for got in runs),
        "to_chunk_wall_median": statistics.median(r["to_chunk"][0] for r in reports),
        "to_chunk_wall_min": min(r["to_chunk"][0] for r in reports),
        "to_chunk_cpu_median": statistics.median(r["to_chunk"][1] for r in reports),
        "imports_wall_median": statistics.median(imports),
        "imports_wall_max": max(imports),
        "imports_cpu_median": statistics.median(imports_cpu),
        "first_chunk_wall_median": statistics.median(extra),
        "first_chunk_wall_max": max(extra),
        "first_chunk_cpu_median": statistics.median(extra_cpu),
        **{f"{k}_mib_{w}": mib(k, w) for k in ("rss", "pss", "uss") for w in ("before", "after")},
        "numba_loaded": any(r["numba_loaded"] for r in reports),
        "node_pss_mib": sum(r["after"]["pss"] for r in reports) / 1024 / len(runs),
    }


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure every rank count in every mode."""
    runner.precompile()
    rows = []
    for ranks in options.ranks:
        for mode in MODES:
            runs = [launch(runner, ranks, mode) for _ in range(options.repeat)]
            rows.append(summarise(ranks, mode, runs))
    return {"cores": os.cpu_count(), "loadavg_at_end": loadavg(), "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: imports, the first stats chunk, and memory per rank."""
    headers = ["ranks", "loops", "to chunk s (median / min)", "CPU s", "imports s (median / max)"]
    headers.append("CPU s")
    headers += ["first stats chunk s (median / max)", "CPU s", "RSS MiB", "PSS MiB", "USS MiB"]
    headers.append("node PSS MiB")
    cells = [
        [
            row["ranks"],
            row.get("mode", "numba" if row.get("numba") else "numpy"),
            f"{row.get('to_chunk_wall_median', float('nan')):.3f} / "
            f"{row.get('to_chunk_wall_min', float('nan')):.3f}",
            f"{row.get('to_chunk_cpu_median', float('nan')):.3f}",
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
