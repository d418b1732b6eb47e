"""Hand-written mpi4py + h5py + numpy contender of ``peers``: what a user writes without hpcapp.

    mpiexec -n N python -m scripts.benchlib.procs.mpi_contender FILE.h5:/x --chunk-rows R \
        --work stats --bins 64 --range 0,1

Each rank reads its contiguous slab of whole chunks into one reused buffer, folds every chunk
into its partial (``--work read``: nothing, the I/O limit; ``sum``: per-column sums; ``stats``:
sum, min, max and a histogram per column), and rank 0 gets the totals with ``comm.Reduce``.
Rank 0 prints one line ``BENCH {json}``: per-rank seconds from a barrier (before opening the
file) to the end of the reduction (min/mean/max over ranks), and the results, which the driver
cross-checks.
"""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
from mpi4py import MPI

from .partials import COMBINE, WORKS, new_partial, read_slab, slab, summary, update, warm


def parse() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="FILE.h5:/dataset")
    parser.add_argument("--chunk-rows", type=int, required=True)
    parser.add_argument("--work", choices=WORKS, default="stats")
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--range", default="0,1", help="LO,HI of the histogram")
    return parser.parse_args()


def reduce_partial(comm: MPI.Comm, partial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reduce every array of ``partial`` onto rank 0 (buffer calls, one per key)."""
    ops = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}
    total = {key: np.empty_like(value) for key, value in partial.items()}
    for key, value in partial.items():
        comm.Reduce(value, total[key], op=ops[COMBINE[key]], root=0)
    return total


def main() -> None:
    """Run the contender on every rank of COMM_WORLD; rank 0 prints the BENCH line."""
    args = parse()
    comm = MPI.COMM_WORLD
    path, name = args.input.rsplit(":", 1)
    value_range = tuple(float(v) for v in args.range.split(","))
    warm(args.work)  # its compiled loop ready, as hpcapp's is when its clock starts
    comm.Barrier()  # everyone starts the clock together
    began = MPI.Wtime()  # opening the file counts, as it does in hpcapp's read time
    with h5py.File(path, "r", locking=False) as h5:
        dataset = h5[name]
        n_cols = 1 if dataset.ndim == 1 else dataset.shape[1]
        buffer = np.empty((args.chunk_rows, *dataset.shape[1:]), dataset.dtype)
        start, stop = slab(len(dataset), args.chunk_rows, comm.Get_size(), comm.Get_rank())
        partial = new_partial(args.work, n_cols, args.bins)
        for chunk in read_slab(dataset, start, stop, buffer):
            update(partial, chunk, args.work, args.bins, value_range)
        total = reduce_partial(comm, partial)
        seconds = MPI.Wtime() - began
    times = comm.gather(seconds, root=0)
    if comm.Get_rank() == 0:
        report = {
            "seconds": max(times),
            "rank_seconds": {"min": min(times), "mean": sum(times) / len(times), "max": max(times)},
            "result": summary(total),
        }
        print("BENCH " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
