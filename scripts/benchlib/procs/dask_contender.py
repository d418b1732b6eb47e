"""Dask contender of ``peers``: a dask array over the h5py dataset, threaded scheduler.

    python -m scripts.benchlib.procs.dask_contender FILE.h5:/x --chunk-rows R --workers N \
        --bins 64 --range 0,1

Sum, min, max and a histogram per column are built as one graph over the same row chunks as the
other contenders and computed together with ``dask.compute``, so each chunk is read once.
Prints one line ``BENCH {json}`` with the seconds of opening the file, building the graph and
computing it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import dask
import dask.array as da
import h5py
import numpy as np


def parse() -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="FILE.h5:/dataset")
    parser.add_argument("--chunk-rows", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--range", default="0,1", help="LO,HI of the histogram")
    return parser.parse_args()


def statistics(
    dataset: Any, chunk_rows: int, bins: int, value_range: tuple[float, float], workers: int
) -> dict[str, np.ndarray]:
    """Compute sum, min, max and per-column histograms of ``dataset`` in one dask pass."""
    x = da.from_array(dataset, chunks=(chunk_rows, *dataset.shape[1:]))
    columns = [x] if x.ndim == 1 else [x[:, col] for col in range(x.shape[1])]
    hists = [da.histogram(column, bins=bins, range=value_range)[0] for column in columns]
    total, low, high, *counts = dask.compute(
        x.sum(axis=0, dtype=np.float64),
        x.min(axis=0),
        x.max(axis=0),
        *hists,
        scheduler="threads",
        num_workers=workers,
    )
    return {
        "rows": np.array([len(dataset)]),
        "sum": np.atleast_1d(total),
        "min": np.atleast_1d(low).astype(np.float64),
        "max": np.atleast_1d(high).astype(np.float64),
        "hist": np.stack(counts).astype(np.int64),
    }


def main() -> None:
    """Open the file, time the dask computation and print the BENCH line."""
    args = parse()
    path, name = args.input.rsplit(":", 1)
    value_range = tuple(float(v) for v in args.range.split(","))
    began = time.perf_counter()  # opening the file counts, as it does for the others
    with h5py.File(path, "r", locking=False) as h5:
        result = statistics(h5[name], args.chunk_rows, args.bins, value_range, args.workers)
        seconds = time.perf_counter() - began
    summary = {key: value.tolist() for key, value in result.items()}
    summary["rows"] = int(result["rows"][0])
    print("BENCH " + json.dumps({"seconds": seconds, "result": summary}), flush=True)


if __name__ == "__main__":
    main()
