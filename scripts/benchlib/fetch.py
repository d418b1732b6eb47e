"""How long a rank waits for work while rank 0 is busy: block-server thread against RMA counter.

Under ``mpiexec -n R`` (``procs/fetch``), rank 0 spends ``--busy`` seconds inside a "kernel"
(sleeping, so it holds no core, as a kernel in C or numba that released the GIL would; or a
pure-Python loop that holds the GIL). Meanwhile every other rank asks for ``--asks`` blocks,
spread evenly over that time, and records how long each answer took. Two ways of handing out
blocks: ``rma``, the ``MPI_Fetch_and_op`` counter of ``mpi4py.util.sync.Counter`` (hpcapp up to
0.1.0), which completes only when rank 0 enters MPI; ``server``, hpcapp's ``BlockServer`` thread
on rank 0. Then the cost of the server thread to a busy rank 0: a CPU-bound numpy loop with and
without the thread running (best of ``--repeat``), and the thread's own CPU time.

    python scripts/bench.py fetch --ranks 2,4 --busy 1 --asks 100
    MPIR_CVAR_NOLOCAL=1 python scripts/bench.py fetch --ranks 2,3   # MPICH's network path
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import BenchError, Runner, bench_line, int_list, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--ranks", type=int_list, default=[3], help="rank counts, 2 or more")
    parser.add_argument("--busy", type=float, default=1.0, help="seconds rank 0 is busy")
    parser.add_argument("--asks", type=int, default=100, help="requests per other rank")
    parser.add_argument("--repeat", type=int, default=5)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Run the measurement at each rank count."""
    if min(options.ranks) < 2:
        raise BenchError("--ranks: 2 or more (rank 0 serves the others)")
    args = ["--busy", str(options.busy), "--asks", str(options.asks)]
    args += ["--repeat", str(options.repeat)]
    runs = [
        bench_line(runner.run(runner.mpi(ranks, *runner.proc("fetch", *args))))
        for ranks in options.ranks
    ]
    return {"runs": runs}


def table(result: dict[str, Any]) -> str:
    """Return answer latencies per rank count, counter and kernel, and the thread's cost."""
    headers = ["ranks", "counter", "rank 0 kernel", "median ms", "p99 ms", "max ms"]
    headers += ["waited ms per rank"]
    cells = []
    for report in result["runs"]:
        for row in report["rows"]:
            cells.append(
                [
                    report["ranks"],
                    row["counter"],
                    row["kernel"],
                    f"{row['median_ms']:.3f}",
                    f"{row['p99_ms']:.3f}",
                    f"{row['max_ms']:.3f}",
                    f"{row['waited_ms_per_rank']:.1f}",
                ]
            )
    lines = [markdown(headers, cells), ""]
    for report in result["runs"]:
        cost = report["thread_cost"]
        change = (cost["with_thread_s"] / cost["alone_s"] - 1) * 100
        lines.append(
            f"{report['ranks']} ranks: rank 0's numpy loop {cost['alone_s']:.3f} s alone, "
            f"{cost['with_thread_s']:.3f} s with the server thread ({change:+.1f}%); the idle "
            f"thread used {cost['thread_cpu_fraction'] * 100:.1f}% of a core"
        )
    return "\n".join(lines)
