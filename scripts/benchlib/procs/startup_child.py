"""One rank of the ``startup`` benchmark: time the imports and the first stats chunk, and memory.

    mpiexec -n N python -m scripts.benchlib.procs.startup_child [--no-numba]

With numba: the imports, then the first ``stats`` chunk big enough for the compiled loop
(loaded from numba's cache); without: the same imports and a small ``stats`` chunk that takes
the numpy path. Every rank times each step (wall and CPU seconds) and, while all ranks are alive
(a barrier on each side), reads ``/proc/self/smaps_rollup``. Rank 0 prints one line
``BENCH_STARTUP {json}`` with every rank's report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


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


def process_age() -> float:
    """Return the seconds since this process started (Linux's /proc), as hpcapp's column does."""
    from hpcapp.parallel.launch import process_start_time

    return time.time() - process_start_time()


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
    if with_numba and os.environ.get("HPCAPP_JIT_ONLY"):
        import numba  # noqa: F401

    step("numba")  # 0 s where the compiled loops are prebuilt (or not used)
    values = FUSED_MIN_VALUES * 2 if with_numba else 4096
    chunk = np.random.default_rng(comm.Get_rank()).random((values // 8, 8))
    stats(chunk)
    step("first stats chunk")
    chunk_done, chunk_cpu = time.time(), time.process_time()  # CPU counts from the start
    comm.Barrier()
    after = memory_kib()
    comm.Barrier()
    # From the process's start to the first chunk done, as hpcapp's start-up column counts.
    to_chunk = chunk_done - (time.time() - process_age())
    mine = {"steps": steps, "before": before, "after": after, "to_chunk": [to_chunk, chunk_cpu]}
    mine["numba_loaded"] = "numba" in sys.modules
    report = comm.gather(mine, root=0)
    if comm.Get_rank() == 0:
        print("BENCH_STARTUP " + json.dumps(report))


def main() -> None:
    """Run one rank's measurement (``--no-numba``: the numpy path)."""
    child("--no-numba" not in sys.argv[1:])


if __name__ == "__main__":
    main()
