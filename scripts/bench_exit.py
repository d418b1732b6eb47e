"""Launch and exit: the wall time of a job outside its ranks' own clocks.

    python scripts/bench_exit.py --ranks 1,2 --repeat 5

Runs ``hpcapp run stats`` (numba's loop, per-cell over time) on a small generated field at each
rank count and prints the median wall seconds of the whole ``mpiexec`` job, and of the part no
rank's clock covers: the wall time less the slowest rank's start-up + read + compute + reduce +
write (from the output's timing table). That part is ``mpiexec`` starting the processes and the
processes ending: MPI's finalize and the interpreter's exit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def job(mpiexec: str, ranks: int, spec: str, out: Path) -> tuple[float, float]:
    """Run one job; return (wall seconds, seconds outside every rank's clock)."""
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcapp", "run", "stats", spec]
    command += ["--over", "0", "-o", str(out), "--overwrite", "-q"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - start
    with h5py.File(out, "r") as h5:
        table = h5["timing"][()]
        columns = list(h5["timing"].attrs["columns"])
    keep = [columns.index(name) for name in ("startup", "read", "compute", "reduce", "write")]
    return wall, wall - float(table[:, keep].sum(axis=1).max())


def main() -> None:
    """Measure each rank count and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    # The compiled loops and hpcapp's bytecode, once: no timed run compiles either.
    subprocess.run([sys.executable, "-m", "hpcapp.kernels._fused"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        field = Path(tmp) / "field.h5"
        with h5py.File(field, "w") as h5:
            data = np.random.default_rng(0).random((128, 90, 180), dtype=np.float32)
            h5.create_dataset("t", data=data)
        print(f"median of {options.repeat}: | ranks | wall s | outside the ranks' clocks s |")
        for ranks in (int(r) for r in options.ranks.split(",")):
            out = Path(tmp) / "out.h5"
            runs = [job(mpiexec, ranks, f"{field}:/t", out) for _ in range(options.repeat)]
            wall = statistics.median(r[0] for r in runs)
            outside = statistics.median(r[1] for r in runs)
            print(f"| {ranks} | {wall:.3f} | {outside:.3f} |")


if __name__ == "__main__":
    main()
