"""Cost of hpcapp's fixed-tree reduction alone, at each rank count.

Under ``mpiexec -n P`` (``procs/reduce``) every rank folds its contiguous share of ``--chunks``
chunk partials (shaped like a ``stats`` partial of ``--cols`` columns with a ``--bins``
histogram) into its tree, then all ranks meet in ``tree_reduce`` after a barrier: the median
seconds of the reduction (max over ranks), the messages rank 0 receives and their largest size,
and the nodes each rank held.

    python scripts/bench.py reduce --ranks 2,4,8 --chunks 1000000
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Runner, bench_line, int_list, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--ranks", type=int_list, default=[2], help="rank counts")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Run the reduction at each rank count."""
    args = ["--chunks", str(options.chunks), "--cols", str(options.cols)]
    args += ["--bins", str(options.bins), "--repeat", str(options.repeat)]
    rows = [
        bench_line(runner.run(runner.mpi(ranks, *runner.proc("reduce", *args))))
        for ranks in options.ranks
    ]
    return {"rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return one row per rank count."""
    headers = ["ranks", "chunks", "partial bytes", "reduce ms (median)", "rank 0 messages"]
    headers += ["max nodes per rank", "max message bytes"]
    cells = [
        [
            row["ranks"],
            f"{row['chunks']:,}",
            f"{row['partial_bytes']:,}",
            f"{row['reduce_seconds_median'] * 1e3:.2f}",
            row["rank0_messages"],
            row["max_nodes_per_rank"],
            f"{row['max_message_bytes']:,}",
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
