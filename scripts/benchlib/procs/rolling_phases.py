"""The phases of one ``rolling`` mean chunk, before and after its loop went by strips of cells.

    python -m scripts.benchlib.procs.rolling_phases --repeat 5

On one chunk shaped as the job's (``--records`` records with their halo, of ``--lat x --lon``
cells, packed int16 with a ``_FillValue``), times in this process, best of ``--repeat``, the
phases of the job's per-chunk work: reading the stored records (h5py, page cache), decoding
them with numpy, the running sums across whole records (the loop before, kept here as the A of
this A/B) and by strips of cells, on decoded values and decoding the stored integers
themselves, writing the output rows (``pwrite`` of one chunk's float32 rows to new pages of a
file, as each rank writes its own: as before, and advising their writeback at once, as now) and
a chunk's share of the file's ``fsync``. Checks that every loop gives the same bits. Prints
one line ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from hpcapp.kernels import rolling
from hpcapp.kernels._rolling_sums import _direct, running_sums, running_sums_packed
from hpcapp.kernels.packed import LinearUnpack

BLOCK = rolling.BLOCK


@njit(cache=True)
def rows_sums(data, first, skip, reach0, reach1, block, mean, least, out):
    """The running sums across whole records, as ``rolling`` had them (the A of this A/B)."""
    n, cells = data.shape
    start = first + skip
    total = np.zeros(cells)
    count = np.zeros(cells, np.int64)
    wild = np.zeros(cells, np.int64)
    for t in range((start // block) * block, start + out.shape[0]):
        if t % block == 0:
            total[:] = 0.0
            count[:] = 0
            wild[:] = 0
            for g in range(max(t - reach0 - first, 0), min(t + reach1 + 1 - first, n)):
                _step(data[g], total, count, wild, 1.0)
        else:
            enter, leave = t + reach1 - first, t - reach0 - 1 - first
            if 0 <= enter < n:
                _step(data[enter], total, count, wild, 1.0)
            if 0 <= leave < n:
                _step(data[leave], total, count, wild, -1.0)
        if t >= start:
            _finish(data, first, t, reach0, reach1, total, count, wild, mean, least, out[t - start])


@njit(cache=True)
def _step(row, total, count, wild, sign):
    for j in range(row.shape[0]):
        value = np.float64(row[j])
        present = value == value
        finite = np.abs(value) < np.inf
        count[j] += np.int64(sign) * present
        wild[j] += np.int64(sign) * (np.int64(present) - np.int64(finite))
        total[j] += sign * value if finite else 0.0


@njit(cache=True)
def _finish(data, first, t, reach0, reach1, total, count, wild, mean, least, row):
    for j in range(row.shape[0]):
        if count[j] < least:
            row[j] = np.nan
            continue
        value = total[j] if wild[j] == 0 else _direct(data, first, t, reach0, reach1, j)
        row[j] = value / count[j] if mean else value


def best(run: Callable[[], Any], repeat: int) -> float:
    """Return the best of ``repeat`` timings of ``run()`` (after one untimed call), seconds."""
    run()
    seconds = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds = min(seconds, time.perf_counter() - start)
    return seconds


def write_phase(
    path: str, rows: np.ndarray, advise: bool, options: argparse.Namespace
) -> tuple[float, float]:
    """Return the best seconds of writing ``rows`` to new pages of a file (with the advice to
    write them back at once: ``advise``), and a chunk's share of the file's ``fsync``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    offsets = iter(range(0, (options.repeat + 1) * rows.size, rows.size))

    def write() -> None:
        offset = next(offsets)
        os.pwrite(fd, rows, offset)
        if advise:
            os.posix_fadvise(fd, offset, rows.size, os.POSIX_FADV_DONTNEED)

    try:
        seconds = best(write, options.repeat)
        start = time.perf_counter()
        os.fsync(fd)
        return seconds, (time.perf_counter() - start) / (options.repeat + 1)
    finally:
        os.close(fd)


def main() -> None:
    """Time every phase on one chunk and print the BENCH line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-rows", type=int, default=744, help="a chunk's own records")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--window", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    import h5py

    params = {"window": options.window, "center": True, "stat": "mean"}
    before, after = rolling.window_halo(params)
    reach = rolling.window_reach(params)
    n, cells = options.chunk_rows + before + after, options.lat * options.lon
    first = options.chunk_rows * 3 - before  # a chunk inside the input: its full halo
    rng = np.random.default_rng(5)
    stored = np.clip(rng.normal(0, 500, (n, cells)), -30000, 30000).astype(np.int16)
    stored[:, 0] = -32767  # a missing cell
    unpack = LinearUnpack("<i2", "<f4", (-32767,), -32768, 32767, 0.01, 273.15)
    strip = np.empty(max(rolling.STRIP_BYTES // 4, n), np.float32)
    common = (first, before, reach[0], reach[1], BLOCK, True, options.window)

    def out() -> np.ndarray:
        return np.empty((options.chunk_rows, cells), np.float32)  # fresh, as each chunk's

    decoded = unpack.decode(stored)
    results = {}

    def rows_loop() -> None:
        results["rows"] = out()
        rows_sums(decoded, *common, results["rows"])

    def strips_loop() -> None:
        results["strips"] = out()
        running_sums(decoded, *common, results["strips"], strip)

    def packed_loop() -> None:
        results["packed"] = out()
        nan = np.float32(np.nan)
        running_sums_packed(
            stored, *common, results["packed"], strip, *unpack.loop_arguments(), nan
        )

    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rolling-phases-") as directory:
        source = os.path.join(directory, "in.h5")
        with h5py.File(source, "w") as h5:
            h5["tas"] = stored
        buffer = np.empty_like(stored)
        with h5py.File(source, "r") as h5:
            seconds["read"] = best(lambda: h5["tas"].read_direct(buffer), options.repeat)
        seconds["decode_numpy"] = best(lambda: unpack.decode(stored), options.repeat)
        for name, loop in (("rows", rows_loop), ("strips", strips_loop), ("packed", packed_loop)):
            seconds[f"loop_{name}"] = best(loop, options.repeat)
        rows = results["packed"].reshape(-1).view(np.uint8)
        for name, advise in (("before", False), ("after", True)):
            write, flush = write_phase(os.path.join(directory, f"{name}.h5"), rows, advise, options)
            seconds[f"pwrite_{name}"], seconds[f"fsync_{name}"] = write, flush
    same = {
        name: results[name].tobytes() == results["rows"].tobytes() for name in ("strips", "packed")
    }
    before_s = seconds["read"] + seconds["decode_numpy"] + seconds["loop_rows"]
    before_s += seconds["pwrite_before"] + seconds["fsync_before"]
    after_s = seconds["read"] + seconds["loop_packed"]
    after_s += seconds["pwrite_after"] + seconds["fsync_after"]
    print(
        "BENCH "
        + json.dumps(
            {
                "records": n,
                "own_records": options.chunk_rows,
                "cells": cells,
                "repeat": options.repeat,
                "seconds": seconds,
                "chunk_before": before_s,
                "chunk_after": after_s,
                "same_bits": same,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
