"""The compiled ``stats`` loop without a histogram: one-pass lanes against the three-pass loop.

Times, in one process on one core (``procs/stats_pass``), ns per value of
``_fused.chunk_partial`` with no histogram (the one-pass lanes) and of the three-pass loop it
replaced (still the reference of the tests), best of ``--repeat``, on chunks shaped like the
jobs they serve, and checks that both give the same bits.

    python scripts/bench.py stats-pass --repeat 20
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Runner, bench_line, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--repeat", type=int, default=10)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time both loops in a fresh process of this checkout's hpcapp."""
    runner.precompile()
    done = runner.run([runner.python, *runner.proc("stats_pass", "--repeat", str(options.repeat))])
    return bench_line(done)


def table(result: dict[str, Any]) -> str:
    """Return ns per value of both loops on every chunk shape, and whether the bits agree."""
    cells = [
        [
            f"{row['rows']} x {row['cols']}",
            row["dtype"],
            f"{row['three_pass_ns']:.2f}",
            f"{row['lanes_ns']:.2f}",
            row["same_bits"],
        ]
        for row in result["rows"]
    ]
    headers = ["chunk", "dtype", "three-pass ns/value", "one-pass lanes ns/value", "same bits"]
    return markdown(headers, cells)
