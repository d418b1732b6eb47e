"""Cost of hpcapp's fixed-tree reduction, alone, under ``mpiexec -n P``.

    mpiexec -n 2 python -m scripts.benchlib.procs.reduce --chunks 1000000

Every rank folds its contiguous share of ``--chunks`` chunk partials (shaped like a ``stats``
partial of ``--cols`` columns with a ``--bins`` histogram) into its tree, then all ranks meet in
``tree_reduce`` after a barrier. Rank 0 prints one line ``BENCH {json}``: the reduction's
seconds (max over ranks), how many messages rank 0 received and their bytes, and the nodes each
rank held.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from mpi4py import MPI

from hpcapp.kernels.stats import merge_stats
from hpcapp.parallel.reduce import FragmentTree, pack, tree_reduce
from hpcapp.partition import rank_chunks


def partial(cols: int, bins: int, seed: int) -> dict[str, np.ndarray]:
    """Return a stats-shaped partial with arbitrary values."""
    rng = np.random.default_rng(seed)
    return {
        "count": np.full(cols, 1000, np.int64),
        "nan_count": np.zeros(cols, np.int64),
        "sum": rng.random(cols),
        "mean": rng.random(cols),
        "m2": rng.random(cols),
        "min": rng.random(cols),
        "max": rng.random(cols) + 1,
        "hist": rng.integers(0, 100, (cols, bins)),
    }


def main() -> None:
    """Build each rank's tree, then time the reduction."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    template = partial(args.cols, args.bins, comm.rank)
    timings = []
    for _ in range(args.repeat):
        tree = FragmentTree(merge_stats)
        for chunk in rank_chunks(args.chunks, comm.size, comm.rank):
            tree.add((0, chunk), template)
        held = len(tree.nodes)
        sent_bytes = pack(tree.nodes)[1].nbytes
        comm.Barrier()
        start = MPI.Wtime()
        tree_reduce(comm, tree)
        timings.append(comm.allreduce(MPI.Wtime() - start, op=MPI.MAX))
    most_held = comm.allreduce(held, op=MPI.MAX)
    most_bytes = comm.allreduce(sent_bytes, op=MPI.MAX)
    if comm.rank == 0:
        messages = max(0, (comm.size - 1).bit_length())
        print(
            "BENCH "
            + json.dumps(
                {
                    "ranks": comm.size,
                    "chunks": args.chunks,
                    "partial_bytes": pack({(0, 0): template})[1].nbytes,
                    "reduce_seconds_median": float(np.median(timings)),
                    "rank0_messages": messages,
                    "max_nodes_per_rank": most_held,
                    "max_message_bytes": most_bytes,
                }
            )
        )


if __name__ == "__main__":
    main()
