#!/usr/bin/env python3
"""Benchmark hpcapp against its peers on this machine (issue 5): read limit, MPI, Dask, Pool.

    python scripts/bench.py                                   # small: about a minute on 2 cores
    python scripts/bench.py --size-gib 2 --ranks 1,2 --rss-gib 1,4 --mc-samples 400000000

For each data shape (1-D float64, and 2-D rows x 8 float32 of the same bytes) the data are made
with ``hpcapp generate``, read once to put them in the page cache, then every contender runs as
a subprocess, round-robin, ``--repeat`` times, with the same chunks of rows:

- ``read``: raw h5py ``read_direct`` of each rank's slab (``bench_mpi.py --work read``), the
  I/O limit;
- ``stats``: ``hpcapp run stats`` (sum, min, max, 64-bin histogram, and more);
- ``mpi-stats``: the hand-written mpi4py + h5py + numpy script for sum, min, max, histogram;
- ``dask``: a dask array over the h5py dataset, threaded scheduler (``bench_dask.py``);
- ``pool``: ``multiprocessing.Pool(N)`` over chunk ranges (``bench_pool.py``);
- ``trivial``: hpcapp with the user kernel ``{"s": chunk.sum(axis=0)}``, against
- ``mpi-sum``: the hand-written script doing the same reads and sums.

Then ``montecarlo`` at 1..N ranks, peak RSS per rank of ``stats`` at two dataset sizes, and
start-up costs. Two times are kept for every run: *wall*, the subprocess from launch to exit as
seen from outside, and *inner*, the contender's own clock around its read+compute+reduce (the
max over ranks: hpcapp's ``/timing``, barrier + ``MPI.Wtime`` in the MPI scripts): inner time is
throughput, wall minus inner is start-up. All numbers are for page-cache-resident data (as in the
issue's table): dropping the cache needs root. Results go to a table on stdout, ``--json`` and
``--png``; see ``--help`` for the options.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
GIB = 1 << 30
BINS, RANGE = 64, (0.0, 1.0)  # `generate` makes uniform [0, 1) values: every value is counted
TINY_ROWS = 10_000
NO_MPI_COMMANDS = ("--help", "kernels")  # must import none of HEAVY_MODULES
HEAVY_MODULES = ("h5py", "mpi4py", "numba")  # the issue names h5py and mpi4py; numba is as slow

CONTENDERS = {
    "read": "raw h5py read (I/O limit)",
    "stats": "hpcapp stats",
    "mpi-stats": "hand-written mpi4py stats",
    "dask": "dask array (threads)",
    "pool": "multiprocessing.Pool",
    "trivial": "hpcapp trivial kernel",
    "mpi-sum": "hand-written mpi4py sums",
}
HPCAPP_CONTENDERS = ("stats", "trivial")
# The targets for each shape and rank count: (name, contender, reference, op, limit).
# The measured ratio is reference time / contender time (a throughput ratio), except for the
# overhead target, which is contender time / reference time (a cost ratio).
SPEED_TARGETS = (
    ("stats throughput / raw read", "stats", "read", ">=", 0.75),
    ("stats speed-up over dask", "stats", "dask", ">=", 3.0),
    ("stats speed-up over Pool", "stats", "pool", ">=", 3.0),
    ("stats speed-up over hand-written", "stats", "mpi-stats", ">=", 1.0),
)
OVERHEAD_TARGET = ("trivial kernel cost / hand-written", "trivial", "mpi-sum", "<=", 1.05)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One of the benchmarked data shapes: a 1-D dataset, or rows x ``cols``."""

    key: str
    dtype: str
    cols: int | None

    @property
    def label(self) -> str:
        """Return a short description such as ``2-D x8 float32``."""
        return f"1-D {self.dtype}" if self.cols is None else f"2-D x{self.cols} {self.dtype}"

    @property
    def row_bytes(self) -> int:
        """Return the bytes of one row."""
        return (self.cols or 1) * np.dtype(self.dtype).itemsize


@dataclasses.dataclass
class Run:
    """One timed subprocess: its wall seconds and what it printed."""

    wall: float
    stdout: str
    stderr: str


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--size-gib", type=float, default=0.25, help="bytes of each dataset, GiB (default 0.25)")
    add("--shapes", default="1d,2d", help="1d (float64), 2d (rows x --cols float32); default both")
    add("--cols", type=int, default=8, help="columns of the 2-D dataset (default 8)")
    add("--ranks", default="2", help="rank counts to compare at, e.g. 1,2 (default 2)")
    add("--repeat", type=int, default=3, help="repetitions of every contender (default 3)")
    add("--chunk-mib", type=float, default=4.0, help="MiB per chunk, all contenders (default 4)")
    add("--mc-samples", type=int, default=100_000_000, help="montecarlo samples (default 1e8)")
    add("--rss-gib", default="0.25,1", help="two dataset sizes for peak RSS, GiB (default 0.25,1)")
    add("--out", help="results directory (default: a new temporary directory)")
    add("--json", help="JSON results file (default OUT/bench-results.json)")
    add("--png", help="chart file (default OUT/bench-chart.png, if matplotlib is installed)")
    add("--data-dir", help="where the datasets go (default OUT); they are deleted at the end")
    add("--keep-data", action="store_true", help="keep the generated datasets")
    add("--timeout", type=float, default=1800, help="seconds before a run counts as hung")
    return parser.parse_args(argv)


def int_list(text: str) -> list[int]:
    """Parse ``1,2`` into ``[1, 2]``."""
    return [int(part) for part in text.split(",") if part]


def say(text: str) -> None:
    """Print a progress line on stderr (stdout is for the tables)."""
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- running subprocesses


def find_mpiexec() -> str:
    """Return the mpiexec beside this Python (the mpich wheel's), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("bench: no mpiexec: install the `mpich` extra or load your MPI module")
    return found


def bench_env() -> dict[str, str]:
    """Return the environment of every run: no enclosing MPI launch, one BLAS thread per rank."""
    prefixes = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "I_MPI_", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # Ranks x BLAS threads must not exceed the cores; the same for every contender.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class Runner:
    """Runs commands with the benchmark's environment and times them from the outside."""

    def __init__(self, timeout: float) -> None:
        self.mpiexec = find_mpiexec()
        self.python = sys.executable
        self.env = bench_env()
        self.timeout = timeout

    def mpi(self, ranks: int, *args: str) -> list[str]:
        """Return ``mpiexec -n RANKS python ARGS``."""
        return [self.mpiexec, "-n", str(ranks), self.python, *args]

    def run(self, command: list[str]) -> Run:
        """Run ``command``; return its wall time and output, or exit with its error."""
        began = time.perf_counter()
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=self.timeout
        )
        wall = time.perf_counter() - began
        if done.returncode != 0:
            sys.exit(
                f"bench: failed (exit {done.returncode}): {' '.join(command)}\n"
                f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
            )
        return Run(wall, done.stdout, done.stderr)


def bench_line(run: Run) -> dict[str, Any]:
    """Return the JSON a helper script printed after ``BENCH``."""
    for line in reversed(run.stdout.splitlines()):
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH ") :])
    sys.exit(f"bench: no BENCH line in the output:\n{run.stdout[-2000:]}")


# ---------------------------------------------------------------- data


def generate(runner: Runner, path: Path, shape: Shape, rows: int, ranks: int) -> float:
    """Write the dataset ``path:/x`` with ``hpcapp generate``; return the seconds it took."""
    command = ["-m", "hpcapp", "generate", f"{path}:/x", "--rows", str(rows)]
    command += ["--dtype", shape.dtype, "--overwrite"]
    if shape.cols is not None:
        command += ["--cols", str(shape.cols)]
    return runner.run(runner.mpi(ranks, *command)).wall


def warm_cache(path: Path) -> float:
    """Read the whole file once so the timed runs find it in the page cache; return seconds."""
    began = time.perf_counter()
    buffer = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as file:
        while file.readinto(buffer):
            pass
    return time.perf_counter() - began


# ---------------------------------------------------------------- contenders


@dataclasses.dataclass(frozen=True)
class Job:
    """What every contender is given: the dataset, the chunks, the ranks, where to write."""

    spec: str
    chunk_rows: int
    ranks: int
    out: Path


def contender_command(runner: Runner, key: str, job: Job) -> list[str]:
    """Return the command line of contender ``key``."""
    chunks = ["--chunk-rows", str(job.chunk_rows)]
    hist = ["--bins", str(BINS), "--range", f"{RANGE[0]},{RANGE[1]}"]
    mpi_script = str(SCRIPTS / "bench_mpi.py")
    if key == "read":
        return runner.mpi(job.ranks, mpi_script, job.spec, *chunks, "--work", "read")
    if key == "mpi-stats":
        return runner.mpi(job.ranks, mpi_script, job.spec, *chunks, "--work", "stats", *hist)
    if key == "mpi-sum":
        return runner.mpi(job.ranks, mpi_script, job.spec, *chunks, "--work", "sum")
    if key == "dask":
        script = str(SCRIPTS / "bench_dask.py")
        return [runner.python, script, job.spec, *chunks, "--workers", str(job.ranks), *hist]
    if key == "pool":
        script = str(SCRIPTS / "bench_pool.py")
        return [runner.python, script, job.spec, *chunks, "--procs", str(job.ranks), *hist]
    output = ["-o", str(job.out / f"{key}.h5"), "--overwrite", *chunks]
    if key == "stats":
        params = ["-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
        return runner.mpi(job.ranks, "-m", "hpcapp", "run", "stats", job.spec, *output, *params)
    kernel = f"{SCRIPTS / 'bench_trivial.py'}:trivial"
    return runner.mpi(job.ranks, "-m", "hpcapp", "run", kernel, job.spec, *output)


def hpcapp_report(path: Path) -> dict[str, Any]:
    """Return inner seconds (max over ranks of read+compute+reduce) and results of a job."""
    with h5py.File(path, "r") as h5:
        timing = h5["timing"][()]
        names = [
            c.decode() if isinstance(c, bytes) else str(c) for c in h5["timing"].attrs["columns"]
        ]
        busy = sum(timing[:, names.index(c)] for c in ("read", "compute", "reduce"))
        results = {key: np.asarray(value[()]) for key, value in h5["result"].items()}
        mpi_library = str(h5.attrs.get("mpi_library", ""))
        rows = int(timing[:, names.index("rows")].sum())
    summary: dict[str, Any] = {"rows": rows}
    for key, value in results.items():
        if key in ("sum", "min", "max", "s"):
            summary["sum" if key == "s" else key] = np.atleast_1d(value).astype(float).tolist()
        elif key == "hist":
            summary["hist"] = value.reshape(-1, value.shape[-1]).tolist()
    return {
        "seconds": float(busy.max()),
        "rank_seconds": {
            "min": float(busy.min()),
            "mean": float(busy.mean()),
            "max": float(busy.max()),
        },
        "result": summary,
        "mpi_library": mpi_library,
    }


def run_contender(runner: Runner, key: str, job: Job) -> dict[str, Any]:
    """Run contender ``key`` once; return its wall and inner seconds and its results."""
    run = runner.run(contender_command(runner, key, job))
    hpcapp_job = key in HPCAPP_CONTENDERS
    report = hpcapp_report(job.out / f"{key}.h5") if hpcapp_job else bench_line(run)
    return {"wall": run.wall, "inner": report["seconds"], **report}


def compare(result: dict[str, Any], reference: dict[str, Any], rtol: float) -> str | None:
    """Return why ``result`` disagrees with ``reference`` (sums within rtol, rest exact)."""
    for key, value in reference.items():
        if key not in result:
            continue
        got, want = np.asarray(result[key], float), np.asarray(value, float)
        if got.shape != want.shape:
            return f"{key}: shape {got.shape} != {want.shape}"
        close = np.allclose(got, want, rtol=rtol, atol=0) if key == "sum" else (got == want).all()
        if not close:
            return f"{key} differs"
    return None


def bench_shape(runner: Runner, shape: Shape, ranks: list[int], options: Any) -> dict[str, Any]:
    """Generate one dataset, then time every contender round-robin at each rank count."""
    rows = int(options.size_gib * GIB) // shape.row_bytes
    path = options.data_dir / f"bench-{shape.key}.h5"
    say(f"bench: generating {path} ({rows:,} rows, {shape.label}) on {max(ranks)} ranks")
    made = generate(runner, path, shape, rows, max(ranks))
    nbytes = rows * shape.row_bytes
    warm = warm_cache(path)
    chunk_rows = max(1, int(options.chunk_mib * (1 << 20)) // shape.row_bytes)
    keys = [k for k in CONTENDERS if k != "dask" or options.have_dask]
    records: list[dict[str, Any]] = []
    checks: list[str] = []
    for n_ranks in ranks:
        job = Job(f"{path}:/x", chunk_rows, n_ranks, options.out)
        for rep in range(options.repeat):
            # Rotate the order so no contender always runs right after the same neighbour.
            shift = rep % len(keys)
            reference: dict[str, Any] = {}
            for key in keys[shift:] + keys[:shift]:
                record = run_contender(runner, key, job)
                say(
                    f"bench: {shape.label} {n_ranks} ranks rep {rep + 1}/{options.repeat} "
                    f"{key:<9} wall {record['wall']:.3f} s, inner {record['inner']:.3f} s"
                )
                reference[key] = record.pop("result")
                records.append({"ranks": n_ranks, "rep": rep, "contender": key, **record})
            checks += cross_check(reference, f"{shape.label}, {n_ranks} ranks, rep {rep + 1}")
    if not options.keep_data:
        path.unlink()
    return {
        "shape": shape.label,
        "key": shape.key,
        "rows": rows,
        "cols": shape.cols or 1,
        "dtype": shape.dtype,
        "bytes": nbytes,
        "chunk_rows": chunk_rows,
        "generate_seconds": made,
        "warm_read_seconds": warm,
        "runs": records,
        "check_failures": checks,
    }


def cross_check(results: dict[str, dict[str, Any]], where: str) -> list[str]:
    """Check that contenders computing the same things agree; return the disagreements."""
    failures = []
    pairs = [("stats", "mpi-stats", 1e-6), ("dask", "mpi-stats", 1e-6), ("pool", "mpi-stats", 1e-6)]
    pairs.append(("trivial", "mpi-sum", 1e-4))  # float32 chunk sums, added in another order
    for key, reference, rtol in pairs:
        if key in results and reference in results:
            problem = compare(results[key], results[reference], rtol)
            if problem:
                failures.append(f"{where}: {key} vs {reference}: {problem}")
                say(f"bench: WARNING: {failures[-1]}")
    return failures


# ---------------------------------------------------------------- montecarlo, memory, start-up


def bench_montecarlo(runner: Runner, max_ranks: int, options: Any) -> dict[str, Any]:
    """Time ``montecarlo`` at 1..max_ranks ranks, round-robin; efficiency = T1 / (n Tn)."""
    out = options.out / "mc.h5"
    runs: list[dict[str, Any]] = []
    for rep in range(options.repeat):
        for n_ranks in range(1, max_ranks + 1):
            command = ["-m", "hpcapp", "run", "montecarlo", "-o", str(out), "--overwrite"]
            run = runner.run(runner.mpi(n_ranks, *command, "-p", f"samples={options.mc_samples}"))
            report = hpcapp_report(out)
            runs.append(
                {"ranks": n_ranks, "rep": rep, "wall": run.wall, "inner": report["seconds"]}
            )
            say(
                f"bench: montecarlo {n_ranks} ranks rep {rep + 1}: wall {run.wall:.3f} s, "
                f"inner {report['seconds']:.3f} s"
            )
    rows = []
    medians: dict[int, dict[str, float]] = {}
    for n_ranks in range(1, max_ranks + 1):
        mine = [r for r in runs if r["ranks"] == n_ranks]
        medians[n_ranks] = {k: statistics.median(r[k] for r in mine) for k in ("wall", "inner")}
        rows.append(
            {
                "ranks": n_ranks,
                **{k: spread([r[k] for r in mine]) for k in ("wall", "inner")},
                **{
                    f"efficiency_{k}": medians[1][k] / (n_ranks * medians[n_ranks][k])
                    for k in ("wall", "inner")
                },
            }
        )
    return {"samples": options.mc_samples, "runs": runs, "by_ranks": rows}


def bench_rss(runner: Runner, n_ranks: int, options: Any) -> dict[str, Any]:
    """Peak RSS per rank of ``hpcapp run stats`` (its default chunks) at two dataset sizes."""
    shape = Shape("1d", "float64", None)
    sizes = []
    for gib in [float(v) for v in options.rss_gib.split(",")]:
        rows = int(gib * GIB) // shape.row_bytes
        path = options.data_dir / f"bench-rss-{gib:g}.h5"
        say(f"bench: peak RSS: generating {path} ({rows:,} rows)")
        generate(runner, path, shape, rows, n_ranks)
        warm_cache(path)
        command = [str(SCRIPTS / "bench_rss.py"), "run", "stats", f"{path}:/x"]
        command += ["-o", str(options.out / "rss.h5"), "--overwrite"]
        command += ["-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
        run = runner.run(runner.mpi(n_ranks, *command))
        found = re.findall(r"BENCH_RSS rank=(\d+) maxrss_kib=(\d+)", run.stderr)
        per_rank = [int(kib) / 1024 for _, kib in sorted(found, key=lambda m: int(m[0]))]
        if len(per_rank) != n_ranks:
            sys.exit(f"bench: expected {n_ranks} BENCH_RSS lines:\n{run.stderr[-2000:]}")
        say(f"bench: peak RSS at {gib:g} GiB: {', '.join(f'{m:.1f}' for m in per_rank)} MiB")
        sizes.append({"gib": gib, "bytes": rows * shape.row_bytes, "rss_mib": per_rank})
        if not options.keep_data:
            path.unlink()
    small, large = (max(s["rss_mib"]) for s in (sizes[0], sizes[-1]))
    return {"ranks": n_ranks, "sizes": sizes, "growth": large / small - 1.0}


def imported_modules(runner: Runner, args: list[str]) -> set[str]:
    """Return the top-level packages ``python ARGS`` imports (from ``-X importtime``)."""
    done = subprocess.run(
        [runner.python, "-X", "importtime", *args],
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=runner.timeout,
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def bench_startup(runner: Runner, options: Any) -> dict[str, Any]:
    """Time ``--help``, ``kernels`` (no MPI) and a 10^4-row stats job at 2 ranks, end to end."""
    result: dict[str, Any] = {}
    for name in NO_MPI_COMMANDS:
        args = ["-m", "hpcapp", name]
        walls = [runner.run([runner.python, *args]).wall for _ in range(options.repeat)]
        heavy = sorted(imported_modules(runner, args) & set(HEAVY_MODULES))
        result[name] = {"wall": spread(walls), "imports_heavy": heavy}
    path = options.data_dir / "bench-tiny.h5"
    generate(runner, path, Shape("1d", "float64", None), TINY_ROWS, 1)
    command = ["-m", "hpcapp", "run", "stats", f"{path}:/x", "-o", str(options.out / "tiny.h5")]
    command += ["--overwrite", "-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
    walls = [runner.run(runner.mpi(2, *command)).wall for _ in range(options.repeat)]
    result["tiny_job"] = {"rows": TINY_ROWS, "ranks": 2, "wall": spread(walls)}
    path.unlink()
    say(
        f"bench: start-up: --help {result['--help']['wall']['median']:.3f} s, kernels "
        f"{result['kernels']['wall']['median']:.3f} s, tiny job {spread(walls)['median']:.3f} s"
    )
    return result


# ---------------------------------------------------------------- summaries and targets


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(shape: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per (rank count, contender): medians, spreads, GB/s, ratio to the read."""
    rows = []
    for n_ranks in sorted({r["ranks"] for r in shape["runs"]}):
        runs = [r for r in shape["runs"] if r["ranks"] == n_ranks]
        read = {
            k: statistics.median(r[k] for r in runs if r["contender"] == "read")
            for k in ("wall", "inner")
        }
        for key in CONTENDERS:
            mine = [r for r in runs if r["contender"] == key]
            if not mine:
                continue
            wall, inner = spread([r["wall"] for r in mine]), spread([r["inner"] for r in mine])
            middle = sorted(mine, key=lambda r: r["inner"])[(len(mine) - 1) // 2]
            rows.append(
                {
                    "shape": shape["shape"],
                    "ranks": n_ranks,
                    "contender": key,
                    "label": CONTENDERS[key],
                    "wall": wall,
                    "inner": inner,
                    "rank_seconds": middle.get("rank_seconds"),  # of the median repetition
                    "gbps_inner": shape["bytes"] / inner["median"] / 1e9,
                    "gbps_wall": shape["bytes"] / wall["median"] / 1e9,
                    "read_ratio_inner": read["inner"] / inner["median"],
                    "read_ratio_wall": read["wall"] / wall["median"],
                }
            )
    return rows


def verdict(value: float | None, op: str, limit: float) -> str | None:
    """Return PASS or FAIL for ``value op limit`` (None when not measured)."""
    if value is None:
        return None
    return "PASS" if (value >= limit if op == ">=" else value <= limit) else "FAIL"


def target(
    name: str, where: str, op: str, limit: float, inner: float | None, wall: float | None
) -> dict[str, Any]:
    """Return one target row with its verdicts on inner and on wall time."""
    return {
        "target": name,
        "where": where,
        "op": op,
        "limit": limit,
        "inner": inner,
        "wall": wall,
        "verdict_inner": verdict(inner, op, limit),
        "verdict_wall": verdict(wall, op, limit),
    }


def speed_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate the issue's per-shape targets at every rank count measured."""
    found = {(r["shape"], r["ranks"], r["contender"]): r for r in rows}
    targets = []
    for shape, n_ranks in dict.fromkeys((r["shape"], r["ranks"]) for r in rows):
        where = f"{shape}, {n_ranks} ranks"
        for name, key, reference, op, limit in (*SPEED_TARGETS, OVERHEAD_TARGET):
            mine, theirs = found.get((shape, n_ranks, key)), found.get((shape, n_ranks, reference))
            if mine is None or theirs is None:
                continue
            if key == "trivial":  # a cost ratio: lower is better
                ratios = [mine[t]["median"] / theirs[t]["median"] for t in ("inner", "wall")]
            else:  # a throughput ratio: higher is better
                ratios = [theirs[t]["median"] / mine[t]["median"] for t in ("inner", "wall")]
            targets.append(target(name, where, op, limit, *ratios))
    return targets


def other_targets(mc: dict[str, Any], rss: dict[str, Any], startup: dict[str, Any]) -> list:
    """Evaluate montecarlo efficiency, memory growth and start-up against the issue."""
    targets = []
    two = next((r for r in mc["by_ranks"] if r["ranks"] == 2), None)
    if two:
        name = "montecarlo efficiency 1 -> 2 ranks"
        targets.append(
            target(name, "", ">=", 0.95, two["efficiency_inner"], two["efficiency_wall"])
        )
    sizes = " -> ".join(f"{s['gib']:g}" for s in rss["sizes"])
    where = f"{sizes} GiB, {rss['ranks']} ranks"
    targets.append(target("peak RSS growth (max rank)", where, "<=", 0.10, None, rss["growth"]))
    for name in NO_MPI_COMMANDS:
        seconds = startup[name]["wall"]["median"]
        targets.append(target(f"`hpcapp {name}` seconds", "", "<=", 0.2, None, seconds))
        heavy = startup[name]["imports_heavy"]
        row = target(f"`hpcapp {name}` heavy imports", "", "<=", 0, None, len(heavy))
        row["where"] = ", ".join(heavy) or f"none of {', '.join(HEAVY_MODULES)}"
        targets.append(row)
    seconds = startup["tiny_job"]["wall"]["median"]
    targets.append(target("10^4-row job wall seconds", "2 ranks", "<=", 1.5, None, seconds))
    return targets


# ---------------------------------------------------------------- printing and drawing


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Return a plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def seconds_cell(value: dict[str, float]) -> str:
    """Format ``median (min-max)`` seconds."""
    return f"{value['median']:.3f} ({value['min']:.3f}-{value['max']:.3f})"


def contender_table(shape: dict[str, Any], rows: list[dict[str, Any]], n_ranks: int) -> str:
    """Return the table of one shape at one rank count."""
    title = (
        f"{shape['shape']}: {shape['rows']:,} rows, {shape['bytes'] / GIB:.3g} GiB, {n_ranks} "
        f"ranks/workers, chunks of {shape['chunk_rows']:,} rows; page-cache resident"
    )
    cells = []
    for r in rows:
        if r["shape"] != shape["shape"] or r["ranks"] != n_ranks:
            continue
        per_rank = r["rank_seconds"]
        cells.append(
            [
                r["label"],
                seconds_cell(r["wall"]),
                seconds_cell(r["inner"]),
                f"{per_rank['min']:.3f}/{per_rank['mean']:.3f}/{per_rank['max']:.3f}"
                if per_rank
                else "-",
                f"{r['gbps_inner']:.2f}",
                f"{r['gbps_wall']:.2f}",
                f"{r['read_ratio_inner']:.2f}",
                f"{r['read_ratio_wall']:.2f}",
            ]
        )
    headers = ["contender", "wall s: median (min-max)", "inner s: median (min-max)"]
    headers += ["per-rank s min/mean/max", "GB/s inner", "GB/s wall", "x read inner"]
    headers += ["x read wall"]
    return f"{title}\n{table(headers, cells)}"


def ratio_cell(value: float | None) -> str:
    """Format a measured ratio or value."""
    return "-" if value is None else f"{value:.3g}"


def targets_table(targets: list[dict[str, Any]]) -> str:
    """Return the table of the issue's targets with PASS/FAIL on inner and on wall time."""
    cells = [
        [
            t["target"],
            t["where"],
            ratio_cell(t["inner"]),
            ratio_cell(t["wall"]),
            f"{t['op']} {t['limit']:g}",
            t["verdict_inner"] or "-",
            t["verdict_wall"] or "-",
        ]
        for t in targets
    ]
    headers = ["target (issue 5)", "where", "inner", "wall", "needs", "inner", "wall"]
    return "Targets: measured on inner time (throughput) and on wall time (whole job)\n" + table(
        headers, cells
    )


def extras_table(mc: dict[str, Any], rss: dict[str, Any], startup: dict[str, Any]) -> str:
    """Return the tables of montecarlo scaling, peak RSS and start-up."""
    mc_cells = [
        [
            str(r["ranks"]),
            seconds_cell(r["wall"]),
            seconds_cell(r["inner"]),
            f"{r['efficiency_inner']:.3f}",
            f"{r['efficiency_wall']:.3f}",
        ]
        for r in mc["by_ranks"]
    ]
    headers = ["ranks", "wall s", "inner s", "efficiency inner", "efficiency wall"]
    parts = [f"montecarlo, {mc['samples']:,} samples\n{table(headers, mc_cells)}"]
    rss_cells = [
        [f"{s['gib']:g}", " / ".join(f"{m:.1f}" for m in s["rss_mib"]), f"{max(s['rss_mib']):.1f}"]
        for s in rss["sizes"]
    ]
    headers = ["dataset GiB", "peak RSS per rank, MiB", "max"]
    parts.append(f"hpcapp stats peak RSS, {rss['ranks']} ranks\n{table(headers, rss_cells)}")
    start_cells = [
        [
            f"hpcapp {name}",
            seconds_cell(startup[name]["wall"]),
            ", ".join(startup[name]["imports_heavy"]) or "none",
        ]
        for name in NO_MPI_COMMANDS
    ]
    start_cells.append(
        ["10^4-row stats job, 2 ranks", seconds_cell(startup["tiny_job"]["wall"]), ""]
    )
    headers = ["start-up", "wall s", f"imports {'/'.join(HEAVY_MODULES)}"]
    parts.append(table(headers, start_cells))
    return "\n\n".join(parts)


def error_bar(row: dict[str, Any]) -> tuple[float, float]:
    """Return how far the slowest and fastest repetitions fall below and above the median GB/s."""
    gbps, inner = row["gbps_inner"], row["inner"]
    slowest, fastest = gbps * inner["median"] / inner["max"], gbps * inner["median"] / inner["min"]
    return max(0.0, gbps - slowest), max(0.0, fastest - gbps)


def draw(path: Path, rows: list[dict[str, Any]], mc: dict[str, Any]) -> None:
    """Draw GB/s per contender (one panel per shape and rank count) and montecarlo efficiency."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["shape"], r["ranks"]) for r in rows))
    n_cols = min(3, len(panels) + 1)
    n_rows = -(-(len(panels) + 1) // n_cols)
    fig, grid = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 4 * n_rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels) + 1 :]:
        ax.set_visible(False)
    for ax, (shape, n_ranks) in zip(axes, panels, strict=False):
        mine = [r for r in rows if r["shape"] == shape and r["ranks"] == n_ranks]
        labels = [r["label"] for r in mine]
        bars = list(zip(*(error_bar(r) for r in mine), strict=True))
        inner = [r["gbps_inner"] for r in mine]
        ax.barh(labels, inner, xerr=bars, color="tab:blue", alpha=0.8, label="inner")
        ax.barh(labels, [r["gbps_wall"] for r in mine], color="tab:orange", alpha=0.7, label="wall")
        ax.axvline(inner[labels.index(CONTENDERS["read"])], color="grey", linestyle=":")
        ax.invert_yaxis()
        ax.set_title(f"{shape}, {n_ranks} ranks")
        ax.set_xlabel("GB/s (dotted: raw read, inner)")
        ax.legend(loc="lower right")
    ax = axes[len(panels)]
    ranks = [r["ranks"] for r in mc["by_ranks"]]
    ax.plot(ranks, [r["efficiency_inner"] for r in mc["by_ranks"]], "o-", label="inner")
    ax.plot(ranks, [r["efficiency_wall"] for r in mc["by_ranks"]], "s--", label="wall")
    ax.axhline(0.95, color="grey", linestyle=":", label="target 0.95")
    ax.set_xticks(ranks)
    ax.set_ylim(0, 1.1)
    ax.set_title("montecarlo parallel efficiency")
    ax.set_xlabel("ranks")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- main


def cpu_model() -> str:
    """Return the CPU's model name (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def source_fingerprint() -> str:
    """Return a short hash of hpcapp's Python sources, to tell versions apart in a dirty tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "hpcapp").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine(runner: Runner) -> dict[str, Any]:
    """Return what the numbers depend on: CPU, cores, memory, load, versions, git commit."""
    versions = {}
    for name in ("numpy", "h5py", "mpi4py", "mpich", "dask", "matplotlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    git = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "mpiexec": runner.mpiexec,
        "git": git,
        "hpcapp_sources": source_fingerprint(),
    }


def prepare(options: argparse.Namespace) -> None:
    """Fill in the default paths and which optional contenders can run."""
    options.out = Path(options.out or tempfile.mkdtemp(prefix="hpcapp-bench-")).resolve()
    options.out.mkdir(parents=True, exist_ok=True)
    options.data_dir = Path(options.data_dir or options.out).resolve()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    options.json = Path(options.json or options.out / "bench-results.json")
    options.have_dask = importlib.util.find_spec("dask") is not None
    options.have_matplotlib = importlib.util.find_spec("matplotlib") is not None
    options.png = Path(options.png or options.out / "bench-chart.png")


def run_all(options: argparse.Namespace, arguments: list[str]) -> dict[str, Any]:
    """Run every measurement and return the results document (what ``--json`` holds)."""
    ranks = int_list(options.ranks)
    runner = Runner(options.timeout)
    notes = [
        "Data are page-cache resident (read once before timing); dropping the cache needs root.",
        "inner: the contender's own clock around open+read+compute+reduce (max over ranks); "
        "wall: the whole subprocess as seen from outside, start-up included.",
    ]
    if not options.have_dask:
        notes.append("dask is not installed: its contender was skipped (pip install -e .[bench])")
    if max(ranks) > (os.cpu_count() or 1):
        notes.append(f"{max(ranks)} ranks on {os.cpu_count()} cores: oversubscribed")
    began = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info = machine(runner)
    load = info["load_average_at_start"][0]
    if load > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"the machine was busy when the run started (load {load:.1f} on {os.cpu_count()} "
            "cores): expect noisy numbers"
        )
    shapes = {"1d": Shape("1d", "float64", None), "2d": Shape("2d", "float32", options.cols)}
    startup = bench_startup(runner, options)
    results = [bench_shape(runner, shapes[k], ranks, options) for k in options.shapes.split(",")]
    mc = bench_montecarlo(runner, max(ranks), options)
    rss = bench_rss(runner, max(ranks), options)
    info["load_average_at_end"] = os.getloadavg()
    if source_fingerprint() != info["hpcapp_sources"]:
        # Someone edited hpcapp while we measured: say so rather than mix versions silently.
        notes.append(
            f"WARNING: hpcapp's sources changed during the run ({info['hpcapp_sources']} -> "
            f"{source_fingerprint()}): its numbers mix versions; run again"
        )
    rows = [row for shape in results for row in summarise(shape)]
    checks = [c for shape in results for c in shape["check_failures"]]
    notes += checks or ["cross-check: all contenders got the same sums, minima, maxima, histograms"]
    return {
        "machine": info,
        "command": ["python", "scripts/bench.py", *arguments],
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "started": started,
        "elapsed_seconds": time.perf_counter() - began,
        "ranks": ranks,
        "shapes": results,
        "contenders": rows,
        "montecarlo": mc,
        "rss": rss,
        "startup": startup,
        "targets": speed_targets(rows) + other_targets(mc, rss, startup),
        "notes": notes,
    }


def print_report(document: dict[str, Any]) -> None:
    """Print the tables of a results document on stdout."""
    info = document["machine"]
    loads = zip(info["load_average_at_start"], info["load_average_at_end"], strict=True)
    print(
        f"hpcapp benchmark: {info['cpu']}, {info['cores']} cores, git {info['git']}, "
        f"hpcapp sources {info['hpcapp_sources']}"
    )
    print(f"command: {' '.join(document['command'])}  ({document['elapsed_seconds']:.0f} s)")
    print(
        f"load average 1/5/15 min, start->end: {', '.join(f'{a:.2f}->{b:.2f}' for a, b in loads)}"
    )
    for shape in document["shapes"]:
        for n_ranks in document["ranks"]:
            print()
            print(contender_table(shape, document["contenders"], n_ranks))
    print()
    print(extras_table(document["montecarlo"], document["rss"], document["startup"]))
    print()
    print(targets_table(document["targets"]))
    print()
    for note in document["notes"]:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark, print the tables, write the JSON and the chart."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(arguments)
    prepare(options)
    document = run_all(options, arguments)
    if options.have_matplotlib:
        draw(options.png, document["contenders"], document["montecarlo"])
        document["chart"] = str(options.png)
    else:
        document["notes"].append("matplotlib is not installed: no chart (pip install -e .[bench])")
    print_report(document)
    options.json.write_text(json.dumps(document, indent=1))
    print(f"chart: {document.get('chart', 'none')}\njson: {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
