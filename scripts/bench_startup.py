"""Start-up at scale: per-rank import time and the memory numba adds, at several rank counts.

    python scripts/bench_startup.py --ranks 1,2,8,16

For each rank count, ``mpiexec -n N`` runs this script's ``--child`` mode twice: with numba
(imports, then the first ``stats`` chunk big enough for the compiled loop, loaded from numba's
cache: run ``python -m hpcapp.kernels._fused`` once first, this script does) and without (the
same imports and a small ``stats`` chunk that takes the numpy path). Every rank times each step
(wall and CPU seconds) and, while all ranks are alive (a barrier on each side), reads
``/proc/self/smaps_rollup``: RSS, PSS (shared pages divided among the processes that map them,
so the PSS of all ranks adds up to what the node really holds) and USS (private pages only).
Rank counts above the core count are oversubscribed: their wall times measure the scheduler as
much as the imports; CPU seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def memory_kib() -> dict[str, int]:
    """Return RSS, PSS and USS (KiB) of this process from /proc/self/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def child(with_numba: bool) -> None:
    """One rank: time the imports and the first stats chunk; report memory; rank 0 prints."""
    clock, cpu = time.perf_counter(), time.process_time()
    steps: dict[str, tuple[float, float]] = {}

    def step(name: str) -> None:
        nonlocal clock, cpu
        now, now_cpu = time.perf_counter(), time.process_time()
        steps[name] = (now - clock, now_cpu - cpu)
        clock, cpu = now, now_cpu

    import numpy as np

    step("numpy")
    import h5py  # noqa: F401

    step("h5py")
    from mpi4py import MPI

    step("mpi4py.MPI")
    import hpcapp  # noqa: F401
    from hpcapp.kernels.stats import FUSED_MIN_VALUES, stats

    step("hpcapp")
    comm = MPI.COMM_WORLD
    comm.Barrier()
    before = memory_kib()
    comm.Barrier()
    clock, cpu = time.perf_counter(), time.process_time()
    if with_numba:
        import numba  # noqa: F401

        step("numba")
    values = FUSED_MIN_VALUES * 2 if with_numba else 4096
    chunk = np.random.default_rng(comm.Get_rank()).random((values // 8, 8))
    stats(chunk)
    step("first stats chunk")
    comm.Barrier()
    after = memory_kib()
    comm.Barrier()
    report = comm.gather({"steps": steps, "before": before, "after": after}, root=0)
    if comm.Get_rank() == 0:
        print("BENCH_STARTUP " + json.dumps(report))


def run(ranks: int, with_numba: bool) -> dict:
    """Run the child on ``ranks`` ranks; return its per-rank reports and the wall seconds."""
    local = Path(sys.executable).parent / "mpiexec"
    launcher = str(local) if local.exists() else "mpiexec"
    command = [launcher, "-n", str(ranks), sys.executable, __file__, "--child"]
    command += [] if with_numba else ["--no-numba"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_STARTUP "))
    return {"ranks": json.loads(line.split(" ", 1)[1]), "wall": wall}


def summarise(ranks: int, with_numba: bool, got: dict) -> dict:
    """Reduce the per-rank reports to the figures of the table."""
    reports = got["ranks"]
    imports = [
        sum(r["steps"][k][0] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    imports_cpu = [
        sum(r["steps"][k][1] for k in ("numpy", "h5py", "mpi4py.MPI", "hpcapp")) for r in reports
    ]
    numba_steps = ("numba", "first stats chunk") if with_numba else ("first stats chunk",)
    extra = [sum(r["steps"][k][0] for k in numba_steps) for r in reports]
    extra_cpu = [sum(r["steps"][k][1] for k in numba_steps) for r in reports]

    def mib(key: str, when: str) -> float:
        return statistics.mean(r[when][key] for r in reports) / 1024

    return {
        "ranks": ranks,
        "numba": with_numba,
        "launch_wall": got["wall"],
        "imports_wall_median": statistics.median(imports),
        "imports_wall_max": max(imports),
        "imports_cpu_median": statistics.median(imports_cpu),
        "first_chunk_wall_median": statistics.median(extra),
        "first_chunk_wall_max": max(extra),
        "first_chunk_cpu_median": statistics.median(extra_cpu),
        **{f"{k}_mib_{w}": mib(k, w) for k in ("rss", "pss", "uss") for w in ("before", "after")},
        "node_pss_mib": sum(r["after"]["pss"] for r in reports) / 1024,
    }


def main() -> None:
    """Measure every rank count with and without numba; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,8,16")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-numba", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=Path("bench-startup.json"))
    options = parser.parse_args()
    if options.child:
        child(not options.no_numba)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "hpcapp.kernels._fused"], env=env, check=True)
    rows = []
    for ranks in [int(r) for r in options.ranks.split(",")]:
        for with_numba in (False, True):
            rows.append(summarise(ranks, with_numba, run(ranks, with_numba)))
    print(
        f"{os.cpu_count()} cores; load at the end: {Path('/proc/loadavg').read_text().split()[:3]}"
    )
    print(
        "| ranks | numba | imports s (median / max) | CPU s | first stats chunk s (median / "
        "max) | CPU s | RSS MiB | PSS MiB | USS MiB | node PSS MiB |"
    )
    print("| --- " * 10 + "|")
    for row in rows:
        print(
            f"| {row['ranks']} | {'yes' if row['numba'] else 'no'} | "
            f"{row['imports_wall_median']:.2f} / {row['imports_wall_max']:.2f} | "
            f"{row['imports_cpu_median']:.2f} | "
            f"{row['first_chunk_wall_median']:.2f} / {row['first_chunk_wall_max']:.2f} | "
            f"{row['first_chunk_cpu_median']:.2f} | {row['rss_mib_after']:.0f} | "
            f"{row['pss_mib_after']:.0f} | {row['uss_mib_after']:.0f} | {row['node_pss_mib']:.0f} |"
        )
    options.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
