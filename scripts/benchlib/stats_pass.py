"""The compiled ``stats`` loop: one-pass lanes against the three-pass loop; packed decoding.

Times, in one process on one core (``procs/stats_pass``), ns per value of
``_fused.chunk_partial`` with no histogram (the one-pass lanes) and of the three-pass loop it
replaced (still the reference of the tests), best of ``--repeat``, on chunks shaped like the
jobs they serve, and checks that both give the same bits; the same with a 64-bin histogram, and
CF-packed int16 decoded by numpy first against decoded in the lanes; the hand numba fold of
``peers`` (sum, min, max, 64 bins) on the same chunks; and the per-chunk phases of the 2-D
``peers`` benchmark (read, hpcapp's loop, its kernel call, its merge, the hand fold), ms per
chunk measured in turn in one process (``procs/stats_phases``).

    python scripts/bench.py stats-pass --repeat 20
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Runner, bench_line, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--phase-rows", type=int, default=131_072, help="rows of 8 float32 a chunk")


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time both loops in a fresh process of this checkout's hpcapp."""
    runner.precompile()
    proc = runner.proc("stats_pass", "--repeat", str(options.repeat))
    done = runner.run([runner.python, *proc, "--phase-rows", str(options.phase_rows)])
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
            f"{row['hand_fold_ns']:.2f}",
            f"{row['packed_decode_first_ns']:.2f}",
            f"{row['packed_fused_ns']:.2f}",
            row["packed_same_bits"],
        ]
        for row in result["rows"]
    ]
    headers = [
        "chunk", "dtype", "three-pass ns/value", "one-pass lanes ns/value", "same bits",
        "64 bins: three-pass", "64 bins: lanes", "same bits", "hand fold (sum, min, max, bins)",
        "int16 packed: decode, lanes", "decoded in the lanes", "same bits",
    ]  # fmt: skip
    return markdown(headers, cells) + "\n\n" + phase_table(result["phases"])


def phase_table(split: dict[str, Any]) -> str:
    """Return the per-chunk phases of hpcapp and of the hand fold, ms (best, median)."""
    names = {
        "read": "read (read_direct into the reused buffer; float32, no conversion)",
        "hpcapp_loop": "hpcapp: compiled lanes loop alone",
        "hpcapp_kernel": "hpcapp: kernel call (parameters, outputs, loop)",
        "hpcapp_merge": "hpcapp: merge of two partials",
        "hand_fold": "hand numba fold (partials.update)",
    }
    cells = [
        [
            name,
            f"{split[key + '_ms']:.3f}",
            f"{split[key + '_median_ms']:.3f}",
            f"{split[key + '_ns']:.3f}",
        ]
        for key, name in names.items()
    ]
    cells.append(["hpcapp chunk: read + kernel + merge", f"{split['hpcapp_chunk_ms']:.3f}", "", ""])
    cells.append(["hand chunk: read + fold", f"{split['hand_chunk_ms']:.3f}", "", ""])
    cells.append(["hand / hpcapp", f"{split['speedup']:.3f}", "", ""])
    title = f"{split['rows']} x {split['cols']} float32, {split['bins']} bins"
    title += f", in turn, {split['repeat']} times"
    return title + "\n\n" + markdown(["phase", "ms best", "ms median", "ns/value"], cells)
