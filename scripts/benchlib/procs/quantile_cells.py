"""quantile's per-cell selection: packed int16 selected as stored against numpy on float64.

    python -m scripts.benchlib.procs.quantile_cells --records 1825 --cells 16000 --repeat 5

Times, in this process on one core, ns per value (CPU time, best of ``--repeat``) of the two
ways :func:`hpcapp.kernels.quantile.cell_quantiles` takes a ``(records, cells)`` tile of
int16 packed like the benchmark's field (0.01 K steps around 273.15 K, 5 % filled): the tile
decoded to float64 and given to numpy's quantile grouped by count of valid values (the path of
float inputs, and of packed ones before), and the stored tile selected as stored
(:mod:`hpcapp.kernels._select`); checks both give the bits of ``numpy.nanquantile``. Prints one
line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from hpcapp.kernels.packed import LinearUnpack, Packed
from hpcapp.kernels.quantile import cell_quantiles

LEVELS = [0.1, 0.5, 0.9]


def ns_per_value(run, size: int, repeat: int) -> float:
    """Return the best of ``repeat`` CPU timings of ``run()``, in ns per value."""
    run()  # compile or load first
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / size * 1e9


def main() -> None:
    """Time both paths and print the BENCH line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1825)
    parser.add_argument("--cells", type=int, default=16000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = (options.records, options.cells)
    stored = rng.integers(-3000, 3000, size=shape, dtype=np.int16)
    stored[rng.random(shape) < 0.05] = -32767
    unpack = LinearUnpack("<i2", "<f8", (-32767,), -32768, 32767, 0.01, 273.15)
    decoded = unpack.decode(stored)
    packed = cell_quantiles(Packed(stored, unpack), LEVELS)
    grouped = cell_quantiles(decoded, LEVELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanquantile(decoded, LEVELS, axis=0)
    result = {
        "records": options.records,
        "cells": options.cells,
        "repeat": options.repeat,
        "float64_numpy_ns": ns_per_value(
            lambda: cell_quantiles(decoded, LEVELS), stored.size, options.repeat
        ),
        "packed_selected_ns": ns_per_value(
            lambda: cell_quantiles(Packed(stored, unpack), LEVELS), stored.size, options.repeat
        ),
        "same_bits": packed.tobytes() == grouped.tobytes() == want.tobytes(),
    }
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
