"""Static against dynamic schedule on uneven work (sleeping chunks).

The kernel sleeps (so it needs no CPU: oversubscribed ranks measure the schedule, not the
cores). Three cases, each run under ``mpiexec`` with both schedules, alternating, ``--repeat``
times; the table shows the median wall seconds, and the results are checked to be identical:

- skewed: 80 chunks on 4 ranks, chunk cost growing from 1x to 10x ``--unit`` with position
  (floor: dynamic >= 1.35x faster than static);
- uniform: the same chunks all at 1x (dynamic must cost nothing);
- first-slow: 200 chunks on 3 ranks, the first takes 2 s and the others 20 ms (floor: dynamic
  ends within 0.5 s of the ideal, start-up + 2 s; start-up is the wall time of the same job
  with no sleeping at all).

    python scripts/bench.py schedule --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io.results import read_results

from .harness import BenchError, Runner, markdown, say

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--unit", type=float, default=0.02, help="seconds of a 1x chunk")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cases",
        default=",".join(name for name, *_ in CASES),
        help="which cases, comma-separated (default all)",
    )


def job_args(kernel: Path, data: Path, out: Path, schedule: str, params: dict) -> list[str]:
    """Return the ``hpcapp run`` arguments of one job (10 rows per chunk)."""
    args = ["run", f"{kernel}:work", f"{data}:/x", "-o", str(out), "-q", "--overwrite"]
    args += ["--chunk-rows", "10", "--schedule", schedule]
    for key, value in params.items():
        args += ["-p", f"{key}={value}"]
    return args


def ideal_seconds(params: dict, chunks: int, ranks: int, startup: float) -> float:
    """Return the wall time of a perfect schedule: start-up plus the busiest rank's share."""
    cost = np.linspace(0.0, 1.0, chunks * 10)[::10]
    if params.get("first"):
        work = params["first"] + (chunks - 1) * params["unit"]
        return startup + max(params["first"], work / ranks)
    per_chunk = params["unit"] * (1 + 9 * cost if params["skew"] else np.ones(chunks))
    return startup + max(per_chunk.sum() / ranks, per_chunk.max())


def one_case(runner: Runner, tmp: Path, case: tuple, options: argparse.Namespace) -> dict:
    """Time both schedules on one case; check they give the same bits."""
    import h5py

    name, ranks, chunks, case_params = case
    kernel = tmp / "work.py"
    data = tmp / f"{name}.h5"
    with h5py.File(data, "w") as h5:
        h5["x"] = np.linspace(0.0, 1.0, chunks * 10)
    params = {"unit": options.unit, **case_params}
    out = tmp / "out.h5"
    idle = {**params, "unit": 0.0, "first": 0.0}
    startup = statistics.median(
        runner.timed(runner.hpcapp(ranks, *job_args(kernel, data, out, "static", idle)))
        for _ in range(options.repeat)
    )
    seconds: dict[str, list[float]] = {"static": [], "dynamic": []}
    results = {}
    for _ in range(options.repeat):
        for schedule in seconds:
            out = tmp / f"{schedule}.h5"
            args = job_args(kernel, data, out, schedule, params)
            seconds[schedule].append(runner.timed(runner.hpcapp(ranks, *args)))
            results[schedule] = read_results(str(out))["s"].tobytes()
    if results["static"] != results["dynamic"]:
        raise BenchError(f"{name}: the schedules gave different bits")
    static = statistics.median(seconds["static"])
    dynamic = statistics.median(seconds["dynamic"])
    row = {
        "case": name,
        "ranks": ranks,
        "chunks": chunks,
        "startup": startup,
        "static": static,
        "dynamic": dynamic,
        "static_over_dynamic": static / dynamic,
        "dynamic_minus_ideal": float(dynamic - ideal_seconds(params, chunks, ranks, startup)),
        "same_bits": True,
    }
    say(f"schedule: {row}")
    return row


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time both schedules on every case chosen."""
    chosen = options.cases.split(",")
    unknown = set(chosen) - {name for name, *_ in CASES}
    if unknown:
        raise BenchError(f"no case {', '.join(sorted(unknown))}")
    runner.precompile()
    with tempfile.TemporaryDirectory(prefix="bench-schedule-") as name:
        tmp = Path(name)
        (tmp / "work.py").write_text(KERNEL)
        rows = [one_case(runner, tmp, case, options) for case in CASES if case[0] in chosen]
    return {"unit": options.unit, "repeat": options.repeat, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return median wall seconds of both schedules, their ratio and dynamic's distance to ideal."""
    headers = ["case", "ranks", "chunks", "start-up s", "static s", "dynamic s"]
    headers += ["static/dynamic", "dynamic - ideal s"]
    cells = [
        [
            row["case"],
            row["ranks"],
            row["chunks"],
            f"{row['startup']:.2f}",
            f"{row['static']:.2f}",
            f"{row['dynamic']:.2f}",
            f"{row['static_over_dynamic']:.2f}",
            f"{row['dynamic_minus_ideal']:.2f}",
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
