"""The ``peers`` benchmark's other measurements: montecarlo scaling, peak RSS, start-up."""

from __future__ import annotations

import re
import statistics
import subprocess
from typing import Any

from .harness import GIB, BenchError, Runner, say, spread
from .peers_jobs import BINS, ONE_D, RANGE, generate, hpcapp_report, warm_cache

TINY_ROWS = 10_000
NO_MPI_COMMANDS = ("--help", "kernels")  # must import none of HEAVY_MODULES
HEAVY_MODULES = ("h5py", "mpi4py", "numba")  # the issue names h5py and mpi4py; numba is as slow


def bench_montecarlo(runner: Runner, max_ranks: int, options: Any) -> dict[str, Any]:
    """Time ``montecarlo`` at 1..max_ranks ranks, round-robin; efficiency = T1 / (n Tn)."""
    out = options.out / "mc.h5"
    runs: list[dict[str, Any]] = []
    for rep in range(options.repeat):
        for n_ranks in range(1, max_ranks + 1):
            command = ["run", "montecarlo", "-o", str(out), "--overwrite"]
            run = runner.run(
                runner.hpcapp(n_ranks, *command, "-p", f"samples={options.mc_samples}")
            )
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
    shape = ONE_D
    sizes = []
    for gib in [float(v) for v in options.rss_gib.split(",")]:
        rows = int(gib * GIB) // shape.row_bytes
        path = options.data_dir / f"bench-rss-{gib:g}.h5"
        say(f"bench: peak RSS: generating {path} ({rows:,} rows)")
        generate(runner, path, shape, rows, n_ranks)
        warm_cache(path)
        command = runner.proc("rss", "run", "stats", f"{path}:/x")
        command += ["-o", str(options.out / "rss.h5"), "--overwrite"]
        command += ["-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
        run = runner.run(runner.mpi(n_ranks, *command))
        found = re.findall(r"BENCH_RSS rank=(\d+) maxrss_kib=(\d+)", run.stderr)
        per_rank = [int(kib) / 1024 for _, kib in sorted(found, key=lambda m: int(m[0]))]
        if len(per_rank) != n_ranks:
            raise BenchError(f"expected {n_ranks} BENCH_RSS lines:\n{run.stderr[-2000:]}")
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
        walls = [runner.timed([runner.python, *args]) for _ in range(options.repeat)]
        heavy = sorted(imported_modules(runner, args) & set(HEAVY_MODULES))
        result[name] = {"wall": spread(walls), "imports_heavy": heavy}
    path = options.data_dir / "bench-tiny.h5"
    generate(runner, path, ONE_D, TINY_ROWS, 1)
    command = ["run", "stats", f"{path}:/x", "-o", str(options.out / "tiny.h5")]
    command += ["--overwrite", "-p", f"bins={BINS}", "-p", f"range={RANGE[0]},{RANGE[1]}"]
    walls = [runner.timed(runner.hpcapp(2, *command)) for _ in range(options.repeat)]
    result["tiny_job"] = {"rows": TINY_ROWS, "ranks": 2, "wall": spread(walls)}
    path.unlink()
    say(
        f"bench: start-up: --help {result['--help']['wall']['median']:.3f} s, kernels "
        f"{result['kernels']['wall']['median']:.3f} s, tiny job {spread(walls)['median']:.3f} s"
    )
    return result
