"""Launch and exit: the wall time of a job outside its ranks' own clocks.

Runs ``hpcapp run stats`` (the compiled loop, per-cell over time) on a small generated field at
each rank count and reports the median wall seconds of the whole ``mpiexec`` job, the slowest
rank's start-up column (process start to the first chunk), and the part no rank's clock covers:
the wall time less the slowest rank's start-up + read + compute + reduce + write (from the
output's timing table). That part is ``mpiexec`` starting the processes and the
processes ending: MPI's finalize and the interpreter's exit.

    python scripts/bench.py exit --ranks 1,2,4 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .harness import Runner, int_list, markdown, rank_seconds, say

PHASES = ("startup", "read", "compute", "reduce", "write")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--ranks", type=int_list, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5)


def job(runner: Runner, ranks: int, spec: str, out: Path) -> tuple[float, float, float]:
    """Run one job; return wall seconds, seconds outside every rank's clock, slowest start-up."""
    args = ["run", "stats", spec, "--over", "0", "-o", str(out), "--overwrite", "-q"]
    wall = runner.timed(runner.hpcapp(ranks, *args))
    return wall, wall - rank_seconds(out, PHASES), rank_seconds(out, ("startup",))


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure each rank count: medians of the wall time and of the part outside the ranks."""
    import h5py

    runner.precompile()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
        field = Path(tmp) / "field.h5"
        with h5py.File(field, "w") as h5:
            data = np.random.default_rng(0).random((128, 90, 180), dtype=np.float32)
            h5.create_dataset("t", data=data)
        for ranks in options.ranks:
            out = Path(tmp) / "out.h5"
            runs = [job(runner, ranks, f"{field}:/t", out) for _ in range(options.repeat)]
            rows.append(
                {
                    "ranks": ranks,
                    "wall": statistics.median(r[0] for r in runs),
                    "outside": statistics.median(r[1] for r in runs),
                    "startup": statistics.median(r[2] for r in runs),
                    "runs": runs,
                }
            )
            row = rows[-1]
            say(
                f"exit: {ranks} ranks: {row['wall']:.3f} s, {row['outside']:.3f} s outside, "
                f"start-up {row['startup']:.3f} s"
            )
    return {"repeat": options.repeat, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return median wall seconds and the part outside the ranks' clocks."""
    cells = [
        [r["ranks"], f"{r['wall']:.3f}", f"{r['outside']:.3f}", f"{r.get('startup', 0):.3f}"]
        for r in result["rows"]
    ]
    headers = ["ranks", "wall s", "outside the ranks' clocks s", "start-up s (slowest rank)"]
    return markdown(headers, cells)
