"""The phases of one ``rolling`` mean chunk, before and after the strip loop and packed decoding.

Times, in one process on one core (``procs/rolling_phases``), best of ``--repeat``, on one chunk
shaped as the 10-year daily 180 x 360 job's (744 records and their 93 of halo, packed int16):
reading the stored records, numpy's decoding, the running sums across whole records (the loop
before) and by strips of cells (on decoded values, and decoding the stored integers in the
loop), writing the chunk's float32 rows with ``pwrite`` (and advising their writeback at
once, as the job now does) and a chunk's share of the file's ``fsync``; the chunk's total
before and after. Checks that the loops give the same bits.

    python scripts/bench.py rolling-phases --repeat 5
"""

from __future__ import annotations

import argparse
from typing import Any

from .harness import Runner, bench_line, markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--chunk-rows", type=int, default=744, help="a chunk's own records")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--window", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=5)


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time the phases in a fresh process of this checkout's hpcapp."""
    runner.precompile()
    args = ["--chunk-rows", str(options.chunk_rows), "--lat", str(options.lat)]
    args += ["--lon", str(options.lon), "--window", str(options.window)]
    args += ["--repeat", str(options.repeat)]
    return bench_line(runner.run([runner.python, *runner.proc("rolling_phases", *args)]))


def table(result: dict[str, Any]) -> str:
    """Return each phase's seconds on one chunk, and the chunk's total before and after."""
    seconds = result["seconds"]
    names = {
        "read": "read the stored records (h5py, page cache)",
        "decode_numpy": "decode them with numpy (before)",
        "loop_rows": "running sums across whole records (before)",
        "loop_strips": "running sums by strips of cells, decoded values",
        "loop_packed": "running sums by strips, decoding in the loop (after)",
        "pwrite_before": "write the chunk's float32 rows (pwrite, before)",
        "fsync_before": "a chunk's share of the final fsync (before)",
        "pwrite_after": "write them and advise their writeback at once (after)",
        "fsync_after": "a chunk's share of the final fsync (after)",
    }
    rows = [[text, f"{seconds[key]:.3f}"] for key, text in names.items()]
    rows.append(
        ["chunk before: read, decode, rows loop, write, fsync", f"{result['chunk_before']:.3f}"]
    )
    rows.append(
        ["chunk after: read, packed strips, write+advise, fsync", f"{result['chunk_after']:.3f}"]
    )
    same = ", ".join(f"{key}: {value}" for key, value in result["same_bits"].items())
    chunk = f"{result['records']} records ({result['own_records']} own) x {result['cells']} cells"
    return markdown([f"phase, one chunk of {chunk}", "seconds"], rows) + f"\n\nsame bits: {same}"
