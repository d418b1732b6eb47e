"""The compiled ``stats`` loop: one-pass lanes against the three-pass loop; packed decoding.

Times, in one process on one core (``procs/stats_pass``), ns per value of
``_fused.chunk_partial`` with no histogram (the one-pass lanes) and of the three-pass loop it
replaced (still the reference of the tests), best of ``--repeat``, on chunks shaped like the
jobs they serve, and checks that both give the same bits; the same with a 64-bin histogram, and
CF-packed int16 decoded by numpy first against decoded in the lanes.

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
            f"{row['hist_three_pass_ns']:.2f}",
            f"{row['hist_lanes_ns']:.2f}",
            row["hist_same_bits"],
            f"{row['packed_decode_first_ns']:.2f}",
            f"{row['packed_fused_ns']:.2f}",
            row["packed_same_bits"],
        ]
        for row in result["rows"]
    ]
    headers = [
        "chunk", "dtype", "three-pass ns/value", "one-pass lanes ns/value", "same bits",
        "64 bins: three-pass", "64 bins: lanes", "same bits",
        "int16 packed: decode, lanes", "decoded in the lanes", "same bits",
    ]  # fmt: skip
    return markdown(headers, cells)
