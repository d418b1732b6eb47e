"""Per-chunk phases of ``stats`` with a histogram against the hand numba fold of ``peers``.

Used by :mod:`scripts.benchlib.procs.stats_pass`. On chunks shaped like the 2-D ``peers``
benchmark's (rows x 8 float32, uniform in [0, 1), 64 bins over [0, 1]), read from an HDF5 file
of 16 such chunks, times in this process, interleaved, each phase of one chunk: the read both
contenders make (``read_direct`` into one reused buffer: hpcapp's reader does the same for an
uncompressed dataset, and the loop takes float32 as read, with no conversion), hpcapp's
compiled loop alone, the kernel call around it (what the engine calls per chunk: parameters,
outputs, the loop), the merge of two partials (once per chunk), and the contender's fold
(``partials.update``: its loop and call). Cold-cache per-chunk costs are what a job sees, so
the phases run in turn on a fresh read, not one phase many times.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.kernels import _fused_call, _loops, nd

from .partials import new_partial, update

BINS, RANGE, COLS, CHUNKS = 64, (0.0, 1.0), 8, 16


def _loop_call(chunk: np.ndarray) -> Callable[[], Any]:
    """Return a call of the compiled lanes loop on ``chunk`` with its outputs made once."""
    plan = _fused_call.histogram_plan(chunk.dtype.str, BINS, *RANGE)
    assert plan is not None
    lanes = COLS * (_fused_call.LANES // COLS)
    guide, lo, scale, step, edges32 = plan
    offsets = _fused_call._offsets(COLS, lanes, BINS)
    counters = np.zeros(_fused_call.HIST_COPIES * COLS * (BINS + 2), np.int64)
    big, small = _fused_call._sentinels(chunk.dtype)
    outputs = (
        np.zeros(COLS, np.int64), np.zeros(COLS), np.zeros(COLS), np.zeros(COLS),
        np.full(COLS, big), np.full(COLS, small), np.zeros((COLS, BINS), np.int64),
        np.zeros((COLS, 2), np.int64),
    )  # fmt: skip
    loop = _loops.loop("lanes", chunk.dtype)
    args = (lanes, 0.0, big, small, True, guide, lo, scale, step, BINS, edges32, offsets)

    def call() -> None:
        counters[:] = 0
        loop(chunk, *args, counters, *outputs)

    return call


def phases(rows: int, repeat: int) -> dict[str, Any]:
    """Return ms per chunk (best and median of ``repeat``) of every phase, and ns per value."""
    import h5py

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phases.h5"
        with h5py.File(path, "w") as h5:
            h5["x"] = rng.random((rows * CHUNKS, COLS)).astype(np.float32)
        with h5py.File(path, "r") as h5:
            return _time_phases(h5["x"], rows, repeat)


def _time_phases(dataset: Any, rows: int, repeat: int) -> dict[str, Any]:
    """Time the phases on ``dataset`` (``CHUNKS`` chunks of ``rows`` rows)."""
    buffer = np.empty((rows, COLS), np.float32)
    kernel = nd.stats
    params = kernel.check_params({"bins": BINS, "range": list(RANGE)})
    dataset.read_direct(buffer, np.s_[0:rows])
    partial = kernel.apply(buffer, params)
    hand = new_partial("numba", COLS, BINS)
    where = iter(range(1 << 62))

    def read() -> None:
        first = next(where) % CHUNKS * rows
        dataset.read_direct(buffer, np.s_[first : first + rows])

    runs: dict[str, Callable[[], Any]] = {
        "read": read,
        "hpcapp_loop": _loop_call(buffer),
        "hpcapp_kernel": lambda: kernel.apply(buffer, params),
        "hpcapp_merge": lambda: kernel.merge(partial, partial),
        "hand_fold": lambda: update(hand, buffer, "numba", BINS, RANGE),
    }
    for run in runs.values():
        run()  # load the compiled code first
    seconds: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeat):
        for key, run in runs.items():
            began = time.perf_counter()
            run()
            seconds[key].append(time.perf_counter() - began)
    best = {key: min(values) for key, values in seconds.items()}
    median = {key: statistics.median(values) for key, values in seconds.items()}
    out: dict[str, Any] = {"rows": rows, "cols": COLS, "bins": BINS, "repeat": repeat}
    for key in runs:
        out[f"{key}_ms"] = best[key] * 1e3
        out[f"{key}_median_ms"] = median[key] * 1e3
        out[f"{key}_ns"] = best[key] / (rows * COLS) * 1e9
    # What the inner clocks add up per chunk (best times): hpcapp reads, calls, merges.
    hpcapp = best["read"] + best["hpcapp_kernel"] + best["hpcapp_merge"]
    out["hpcapp_chunk_ms"] = hpcapp * 1e3
    out["hand_chunk_ms"] = (best["read"] + best["hand_fold"]) * 1e3
    out["kernel_overhead_ms"] = (best["hpcapp_kernel"] - best["hpcapp_loop"]) * 1e3
    out["speedup"] = (best["read"] + best["hand_fold"]) / hpcapp
    return out
