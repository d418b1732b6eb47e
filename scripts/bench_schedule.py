"""Static vs dynamic schedule on skewed and on uniform work: ``python scripts/bench_schedule.py``.

The kernel sleeps (so it needs no CPU: oversubscribed ranks measure the schedule, not the
cores) for ``unit * cost(chunk)`` seconds, where the cost grows linearly from 1x on the first
chunk to 10x on the last (skewed) or is 1x everywhere (uniform). Each case runs under
``mpiexec -n RANKS`` with both schedules, alternating, ``--repeat`` times; the table shows the
median wall seconds and the static/dynamic ratio, and the results are checked to be identical.
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

KERNEL = """
import time
import numpy as np

def work(chunk, unit=0.01, skew=1):
    position = float(chunk[0])  # the data are the row positions 0..1
    time.sleep(unit * (1 + 9 * position if skew else 1))
    return {"s": chunk.sum(), "n": np.int64(len(chunk))}
"""


def run(mpiexec: str, ranks: int, args: list[str]) -> float:
    """Run one hpcapp job and return its wall seconds."""
    start = time.perf_counter()
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcapp", *args]
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    """Time both schedules on both workloads and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=256)
    parser.add_argument("--unit", type=float, default=0.01, help="seconds of a 1x chunk")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "in.h5"
        with h5py.File(data, "w") as h5:
            h5["x"] = np.linspace(0.0, 1.0, options.chunks * 10)
        kernel = Path(tmp) / "work.py"
        kernel.write_text(KERNEL)
        print(f"{options.ranks} ranks, {options.chunks} chunks, 1x = {options.unit} s")
        print(f"{'work':<8} {'static s':>9} {'dynamic s':>10} {'static/dynamic':>15}")
        for skew in (1, 0):
            seconds: dict[str, list[float]] = {"static": [], "dynamic": []}
            results = {}
            for _ in range(options.repeat):
                for schedule in seconds:
                    out = Path(tmp) / f"{schedule}.h5"
                    args = [
                        "run",
                        f"{kernel}:work",
                        f"{data}:/x",
                        "-o",
                        str(out),
                        "-q",
                        "--overwrite",
                        "--chunk-rows",
                        "10",
                        "--schedule",
                        schedule,
                        "-p",
                        f"unit={options.unit}",
                        "-p",
                        f"skew={skew}",
                    ]
                    seconds[schedule].append(run(mpiexec, options.ranks, args))
                    with h5py.File(out) as h5:
                        results[schedule] = h5["result/s"][()].tobytes()
            assert results["static"] == results["dynamic"], "schedules gave different bits"
            static = statistics.median(seconds["static"])
            dynamic = statistics.median(seconds["dynamic"])
            name = "skewed" if skew else "uniform"
            print(f"{name:<8} {static:>9.2f} {dynamic:>10.2f} {static / dynamic:>15.2f}")


if __name__ == "__main__":
    main()
