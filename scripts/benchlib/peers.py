"""hpcapp against its peers on this machine (issue 5): read limit, MPI, Dask, Pool.

For each data shape (1-D float64, and 2-D rows x 8 float32 of the same bytes) the data are made
with ``hpcapp generate``, read once to put them in the page cache, then every contender runs as
a subprocess, round-robin, ``--repeat`` times, with the same chunks of rows:

- ``read``: raw h5py ``read_direct`` of each rank's slab (``procs/mpi_contender --work read``),
  the I/O limit;
- ``stats``: ``hpcapp run stats`` (sum, min, max, 64-bin histogram, and more);
- ``mpi-stats``: the hand-written mpi4py + h5py + numpy script for sum, min, max, histogram;
- ``dask``: a dask array over the h5py dataset, threaded scheduler (``procs/dask_contender``);
- ``pool``: ``multiprocessing.Pool(N)`` over chunk ranges (``procs/pool_contender``);
- ``trivial``: hpcapp with the user kernel ``{"s": chunk.sum(axis=0)}``, against
- ``mpi-sum``: the hand-written script doing the same reads and sums.

Then ``montecarlo`` at 1..N ranks, peak RSS per rank of ``stats`` at two dataset sizes, and
start-up costs. Two times are kept for every run: *wall*, the subprocess from launch to exit as
seen from outside, and *inner*, the contender's own clock around its read+compute+reduce (the
max over ranks: hpcapp's ``/timing``, barrier + ``MPI.Wtime`` in the MPI scripts): inner time is
throughput, wall minus inner is start-up. All numbers are for page-cache-resident data (as in the
issue's table): dropping the cache needs root. The run prints the detailed tables on stdout,
then the README's table; ``--png`` draws a chart.

    python scripts/bench.py peers --size-gib 2 --ranks 1,2 --rss-gib 1,4 --mc-samples 400000000
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import peers_extra, peers_report
from .harness import GIB, BenchError, Runner, bench_line, int_list, say
from .peers_jobs import BINS, ONE_D, RANGE, Shape, generate, hpcapp_report, warm_cache

TRIVIAL_KERNEL = Path(__file__).resolve().parent / "procs" / "trivial.py"
CONTENDERS = peers_report.CONTENDERS
HPCAPP_CONTENDERS = ("stats", "trivial")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
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
    add("--png", help="chart file (default OUT/bench-chart.png, if matplotlib is installed)")
    add("--data-dir", help="where the datasets go (default OUT); they are deleted at the end")
    add("--keep-data", action="store_true", help="keep the generated datasets")


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
    mpi_script = runner.proc("mpi_contender", job.spec, *chunks)
    if key == "read":
        return runner.mpi(job.ranks, *mpi_script, "--work", "read")
    if key == "mpi-stats":
        return runner.mpi(job.ranks, *mpi_script, "--work", "stats", *hist)
    if key == "mpi-numba":
        return runner.mpi(job.ranks, *mpi_script, "--work", "numba", *hist)
    if key == "mpi-sum":
        return runner.mpi(job.ranks, *mpi_script, "--work", "sum")
    if key == "dask":
        script = runner.proc("dask_contender", job.spec, *chunks)
        return [runner.python, *script, "--workers", str(job.ranks), *hist]
    if key == "pool":
        script = runner.proc("pool_contender", job.spec, *chunks)
        return [runner.python, *script, "--procs", str(job.ranks), *hist]
    output = ["-o", str(job.out / f"{key}.h5"), "--overwrite", *chunks]
    if key == "stats":
        params = ["-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
        return runner.hpcapp(job.ranks, "run", "stats", job.spec, *output, *params)
    return runner.hpcapp(job.ranks, "run", f"{TRIVIAL_KERNEL}:trivial", job.spec, *output)


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
    pairs.append(("mpi-numba", "mpi-stats", 1e-6))
    pairs.append(("trivial", "mpi-sum", 1e-4))  # float32 chunk sums, added in another order
    for key, reference, rtol in pairs:
        if key in results and reference in results:
            problem = compare(results[key], results[reference], rtol)
            if problem:
                failures.append(f"{where}: {key} vs {reference}: {problem}")
                say(f"bench: WARNING: {failures[-1]}")
    return failures


# ---------------------------------------------------------------- the whole run


def prepare(options: argparse.Namespace) -> None:
    """Fill in the default paths and which optional contenders can run."""
    options.out = Path(options.out or tempfile.mkdtemp(prefix="hpcapp-bench-")).resolve()
    options.out.mkdir(parents=True, exist_ok=True)
    options.data_dir = Path(options.data_dir or options.out).resolve()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    options.have_dask = importlib.util.find_spec("dask") is not None
    options.have_matplotlib = importlib.util.find_spec("matplotlib") is not None
    options.png = Path(options.png or options.out / "bench-chart.png")


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Run every measurement, print the detailed tables and return the results."""
    prepare(options)
    ranks = int_list(options.ranks)
    if len(options.rss_gib.split(",")) < 2:
        raise BenchError("--rss-gib needs two sizes, e.g. 0.25,1")
    notes = [
        "Data are page-cache resident (read once before timing); dropping the cache needs root.",
        "inner: the contender's own clock around open+read+compute+reduce (max over ranks); "
        "wall: the whole subprocess as seen from outside, start-up included.",
    ]
    if not options.have_dask:
        notes.append("dask is not installed: its contender was skipped (pip install -e .[bench])")
    if max(ranks) > (os.cpu_count() or 1):
        notes.append(f"{max(ranks)} ranks on {os.cpu_count()} cores: oversubscribed")
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"the machine was busy when the run started (load {load:.1f} on {os.cpu_count()} "
            "cores): expect noisy numbers"
        )
    runner.precompile()
    shapes = {"1d": ONE_D, "2d": Shape("2d", "float32", options.cols)}
    startup = peers_extra.bench_startup(runner, options)
    results = [bench_shape(runner, shapes[k], ranks, options) for k in options.shapes.split(",")]
    mc = peers_extra.bench_montecarlo(runner, max(ranks), options)
    rss = peers_extra.bench_rss(runner, max(ranks), options)
    rows = [row for shape in results for row in peers_report.summarise(shape)]
    checks = [c for shape in results for c in shape["check_failures"]]
    notes += checks or ["cross-check: all contenders got the same sums, minima, maxima, histograms"]
    result = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "ranks": ranks,
        "shapes": results,
        "contenders": rows,
        "montecarlo": mc,
        "rss": rss,
        "startup": startup,
        "targets": peers_report.speed_targets(rows) + peers_report.other_targets(mc, rss, startup),
        "notes": notes,
    }
    if options.have_matplotlib:
        peers_report.draw(options.png, rows, mc)
        result["chart"] = str(options.png)
    else:
        notes.append("matplotlib is not installed: no chart (pip install -e .[bench])")
    print(peers_report.report(result))
    print(f"chart: {result.get('chart', 'none')}\n")
    return result


table = peers_report.table
