"""How long a rank waits for work while rank 0 is busy, under ``mpiexec -n 2`` or more.

    mpiexec -n 3 python -m scripts.benchlib.procs.fetch --busy 1 --asks 100

Rank 0 spends ``--busy`` seconds inside a "kernel" (sleeping, so it holds no core, as a kernel
in C or numba that released the GIL would; or ``--spin``: a pure-Python loop that holds the
GIL). Meanwhile every other rank asks for ``--asks`` blocks, spread evenly over that time, and
records how long each answer took (an ask still unanswered when rank 0's kernel ends counts
its whole wait). Two ways of handing out blocks, side by side in one run:

- ``rma``: the ``MPI_Fetch_and_op`` counter of ``mpi4py.util.sync.Counter`` (hpcapp up to
  0.1.0), which completes only when rank 0 enters MPI;
- ``server``: hpcapp's :class:`~hpcapp.parallel.schedule.BlockServer` thread on rank 0.

Then the cost of the server thread to a busy rank 0: the time of a CPU-bound numpy loop with and
without the thread running (others idle), best of ``--repeat``, and the thread's own CPU time.
Rank 0 prints one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from mpi4py import MPI
from mpi4py.util.sync import Counter

from hpcapp.parallel.schedule import BlockServer, ask_for_block


def busy(seconds: float, spin: bool) -> None:
    """Stand in for a kernel: sleep (GIL released) or spin in Python (GIL held)."""
    if not spin:
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(100))


def latencies(comm: MPI.Comm, how: str, asks: int, seconds: float, spin: bool) -> np.ndarray:
    """Return every non-zero rank's answer times (ms) on rank 0; rank 0 is busy meanwhile."""
    private = comm.Dup()
    counter = Counter(typecode="q", comm=private) if how == "rma" else None
    server = BlockServer(private, 1 << 40) if how == "server" and comm.rank == 0 else None
    private.Barrier()
    mine = np.zeros(asks)
    if comm.rank == 0:
        busy(seconds, spin)
    else:
        begin = time.perf_counter()
        for i in range(asks):
            # Spread the asks over rank 0's busy time: the first at 1/asks of it.
            time.sleep(max(0.0, begin + seconds * (i + 1) / (asks + 1) - time.perf_counter()))
            started = time.perf_counter()
            counter.next() if counter is not None else ask_for_block(private)
            mine[i] = (time.perf_counter() - started) * 1e3
        if server is None and how == "server":
            private.Send(np.full(1, -1, np.int64), dest=0, tag=7301)  # leave
    if server is not None:
        server.join()
    if counter is not None:
        counter.free()
    private.Free()
    table = comm.gather(mine, root=0)
    return np.concatenate(table[1:]) if comm.rank == 0 else np.zeros(0)


def thread_cost(comm: MPI.Comm, repeat: int) -> tuple[float, float, float]:
    """Return rank 0's best seconds of a numpy loop without and with the server thread running,
    and the thread's CPU seconds per second of that loop."""
    data = np.random.default_rng(0).random(1 << 20)

    def work() -> float:
        started = time.perf_counter()
        for _ in range(20):
            np.exp(data).sum()
        return time.perf_counter() - started

    plain, served, cpu = [], [], []
    for _ in range(repeat):
        comm.Barrier()
        if comm.rank == 0:
            plain.append(work())
        private = comm.Dup()
        server = BlockServer(private, 1 << 40) if comm.rank == 0 else None
        if comm.rank == 0:
            served.append(work())
        comm.Barrier()  # the others leave only once rank 0's loop is over
        if comm.rank != 0:
            private.Send(np.full(1, -1, np.int64), dest=0, tag=7301)
        if server is not None:
            server.join()
            cpu.append(server.cpu_seconds / served[-1])
        private.Free()
    if comm.rank != 0:
        return 0.0, 0.0, 0.0
    return min(plain), min(served), statistics.median(cpu)


def main() -> None:
    """Measure both ways of handing out blocks, then the thread's cost; rank 0 prints BENCH."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=float, default=1.0, help="seconds rank 0 is busy")
    parser.add_argument("--asks", type=int, default=100, help="requests per other rank")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        raise SystemExit("run under mpiexec -n 2 or more")
    rows = []
    for spin in (False, True):
        for how in ("rma", "server"):
            times = latencies(comm, how, options.asks, options.busy, spin)
            if comm.rank == 0:
                rows.append(
                    {
                        "counter": how,
                        "kernel": "holds GIL" if spin else "releases GIL",
                        "median_ms": float(np.median(times)),
                        "p99_ms": float(np.percentile(times, 99)),
                        "max_ms": float(times.max()),
                        "waited_ms_per_rank": float(times.sum() / (comm.size - 1)),
                    }
                )
    plain, served, cpu = thread_cost(comm, options.repeat)
    if comm.rank == 0:
        cost = {"alone_s": plain, "with_thread_s": served, "thread_cpu_fraction": cpu}
        report = {"ranks": comm.size, "busy": options.busy, "asks": options.asks}
        print("BENCH " + json.dumps({**report, "rows": rows, "thread_cost": cost}), flush=True)


if __name__ == "__main__":
    main()
