"""``multiprocessing.Pool`` contender of ``peers``: N worker processes over chunk ranges.

    python -m scripts.benchlib.procs.pool_contender FILE.h5:/x --chunk-rows R --procs N \
        --bins 64 --range 0,1

The rows are cut into N contiguous ranges of whole chunks (as the MPI ranks cut them); each
task opens the file itself, reads its chunks into one reused buffer and returns its partial,
which the parent merges. Prints one line ``BENCH {json}`` with the seconds from handing out
the tasks to the merged result (the pool is started before the clock, as ``mpiexec`` is).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from multiprocessing import Pool

import h5py
import numpy as np

from .partials import Partial, merge, new_partial, read_slab, slab, summary, update


def parse() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="FILE.h5:/dataset")
    parser.add_argument("--chunk-rows", type=int, required=True)
    parser.add_argument("--procs", type=int, required=True)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--range", default="0,1", help="LO,HI of the histogram")
    return parser.parse_args()


def stats_of_part(
    part: int, spec: str, chunk_rows: int, procs: int, bins: int, value_range: tuple[float, float]
) -> Partial:
    """Worker task: open the file, fold this part's chunks into a partial, return it."""
    path, name = spec.rsplit(":", 1)
    with h5py.File(path, "r", locking=False) as h5:
        dataset = h5[name]
        n_cols = 1 if dataset.ndim == 1 else dataset.shape[1]
        buffer = np.empty((chunk_rows, *dataset.shape[1:]), dataset.dtype)
        start, stop = slab(len(dataset), chunk_rows, procs, part)
        partial = new_partial("stats", n_cols, bins)
        for chunk in read_slab(dataset, start, stop, buffer):
            update(partial, chunk, "stats", bins, value_range)
    return partial


def main() -> None:
    """Run the tasks on a pool of ``--procs`` workers and print the BENCH line."""
    args = parse()
    value_range = tuple(float(v) for v in args.range.split(","))
    task = functools.partial(
        stats_of_part,
        spec=args.input,
        chunk_rows=args.chunk_rows,
        procs=args.procs,
        bins=args.bins,
        value_range=value_range,
    )
    with Pool(args.procs) as pool:
        began = time.perf_counter()
        total = functools.reduce(merge, pool.map(task, range(args.procs)))
        seconds = time.perf_counter() - began
    print("BENCH " + json.dumps({"seconds": seconds, "result": summary(total)}), flush=True)


if __name__ == "__main__":
    main()
