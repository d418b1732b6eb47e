"""Static vs dynamic schedule on uneven work: ``python scripts/bench_schedule.py``.

The kernel sleeps (so it needs no CPU: oversubscribed ranks measure the schedule, not the
cores). Three cases, each run under ``mpiexec`` with both schedules, alternating, ``--repeat``
times; the table shows the median wall seconds, and the results are checked to be identical:

- skewed: 80 chunks on 4 ranks, chunk cost growing from 1x to 10x ``--unit`` with position
  (floor: dynamic >= 1.35x faster than static);
- uniform: the same chunks all at 1x (dynamic must cost nothing);
- first-slow: 200 chunks on 3 ranks, the first takes 2 s and the others 20 ms (floor: dynamic
  ends within 0.5 s of the ideal, start-up + 2 s; start-up is the wall time of the same job
  with no sleeping at all).
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

def work(chunk, unit=0.01, skew=1, first=0.0):
    position = float(chunk[0])  # the data are the row positions 0..1
    if first and position == 0.0:
        time.sleep(first)
    elif unit:
        time.sleep(unit * (1 + 9 * position if skew else 1))
    return {"s": chunk.sum(), "n": np.int64(len(chunk))}
"""

# name, ranks, chunks, kernel parameters
CASES = (
    ("skewed", 4, 80, {"skew": 1}),
    ("uniform", 4, 80, {"skew": 0}),
    ("first-slow", 3, 200, {"skew": 0, "unit": 0.02, "first": 2.0}),
)


def run(mpiexec: str, ranks: int, args: list[str]) -> float:
    """Run one hpcapp job and return its wall seconds."""
    start = time.perf_counter()
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "hpcapp", *args]
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def job_args(kernel: Path, data: Path, out: Path, schedule: str, params: dict) -> list[str]:
    """Return the ``hpcapp run`` arguments of one job (10 rows per chunk)."""
    args = ["run", f"{kernel}:work", f"{data}:/x", "-o", str(out), "-q", "--overwrite"]
    args += ["--chunk-rows", "10", "--schedule", schedule]
    for key, value in params.items():
        args += ["-p", f"{key}={value}"]
    return args


def main() -> None:
    """Time both schedules on every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", type=float, default=0.02, help="seconds of a 1x chunk")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    # The compiled loops and hpcapp's bytecode, once: no timed run compiles either.
    subprocess.run([sys.executable, "-m", "hpcapp.kernels._fused"], check=True)
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    print(f"1x = {options.unit} s unless the case sets it; median of {options.repeat}")
    print(
        f"{'case':<11} {'ranks':>5} {'chunks':>6} {'start-up s':>10} {'static s':>9} "
        f"{'dynamic s':>10} {'static/dynamic':>15} {'dynamic - ideal s':>18}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        kernel = Path(tmp) / "work.py"
        kernel.write_text(KERNEL)
        for name, ranks, chunks, case_params in CASES:
            data = Path(tmp) / f"{name}.h5"
            with h5py.File(data, "w") as h5:
                h5["x"] = np.linspace(0.0, 1.0, chunks * 10)
            params = {"unit": options.unit, **case_params}
            out = Path(tmp) / "out.h5"
            idle = {**params, "unit": 0.0, "first": 0.0}
            startup = statistics.median(
                run(mpiexec, ranks, job_args(kernel, data, out, "static", idle))
                for _ in range(options.repeat)
            )
            seconds: dict[str, list[float]] = {"static": [], "dynamic": []}
            results = {}
            for _ in range(options.repeat):
                for schedule in seconds:
                    out = Path(tmp) / f"{schedule}.h5"
                    args = job_args(kernel, data, out, schedule, params)
                    seconds[schedule].append(run(mpiexec, ranks, args))
                    with h5py.File(out) as h5:
                        results[schedule] = h5["result/s"][()].tobytes()
            assert results["static"] == results["dynamic"], "schedules gave different bits"
            static = statistics.median(seconds["static"])
            dynamic = statistics.median(seconds["dynamic"])
            cost = np.linspace(0.0, 1.0, chunks * 10)[::10]
            if params.get("first"):
                work = params["first"] + (chunks - 1) * params["unit"]
                ideal = startup + max(params["first"], work / ranks)
            else:
                per_chunk = params["unit"] * (1 + 9 * cost if params["skew"] else np.ones(chunks))
                ideal = startup + max(per_chunk.sum() / ranks, per_chunk.max())
            print(
                f"{name:<11} {ranks:>5} {chunks:>6} {startup:>10.2f} {static:>9.2f} "
                f"{dynamic:>10.2f} {static / dynamic:>15.2f} {dynamic - ideal:>18.2f}"
            )


if __name__ == "__main__":
    main()
