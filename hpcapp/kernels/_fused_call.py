"""The drivers of ``stats``' compiled loops: plain numpy around them, no numba imported here.

Allocates the outputs, plans the histogram (see :mod:`hpcapp.kernels._fused` for why its bins
are numpy's) and calls the loop for the chunk's dtype from :func:`hpcapp.kernels._loops.loop`:
the prebuilt extension module when there is one, else numba's JIT.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from hpcapp.kernels import _loops
from hpcapp.kernels._exact import LIMBS, n_pieces
from hpcapp.kernels.packed import LinearUnpack

# Values per segment of lanes: the lane arrays (a few KiB each) stay in L1 next to the data.
LANES = 256
# Histogram copies, interleaved by row, so runs of equal bins do not stall on one counter.
HIST_COPIES = 4


def _sentinels(dtype: np.dtype) -> tuple[Any, Any]:
    """Return the start values of running minima and maxima for ``dtype``."""
    if dtype.kind == "f":
        return dtype.type(np.inf), dtype.type(-np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.max), dtype.type(info.min)


@functools.lru_cache(maxsize=64)
def histogram_plan(dtype_str: str, bins: int, lo: float, hi: float) -> tuple[Any, ...] | None:
    """Return the compiled loop's histogram constants, or ``None`` to use numpy.histogram."""
    dtype = np.dtype(dtype_str)
    # numpy's own edges, in its dtype (float32 for float32 data, float64 otherwise); raises
    # like numpy.histogram when the bins are too narrow to be distinct.
    edges = np.histogram_bin_edges(np.empty(0, dtype), bins, (lo, hi))
    edge_type = edges.dtype
    if edge_type not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    with np.errstate(over="ignore"):
        lo_cmp, hi_cmp = float(edge_type.type(lo)), float(edge_type.type(hi))
    if not (np.isfinite(lo_cmp) and np.isfinite(hi_cmp)):
        return None  # the range overflows the dtype: numpy's own path warns or raises
    width = hi - lo  # numpy's (hi - lo) in float64: linspace's delta and the bins' denominator
    if not np.isfinite(width):
        return None
    unit = 2.0**-53
    unit_edges = 2.0**-24 if edge_type == np.float32 else unit
    spread = max(abs(lo), abs(hi)) / width
    # Over twice the rounding of either guess plus that of the edges, in bins (see the module
    # note); below 1/4, numpy's guess and ours are within one bin of the edges' answer.
    tolerance = bins * (4.0 * (unit_edges + unit) * (spread + 2.0) + 16.0 * unit)
    if tolerance >= 0.25:
        return None
    step = width / bins
    edges32 = edge_type == np.float32
    if not np.array_equal(
        _loops.formula_edges(step, lo, bins, edges32), edges[:-1].astype(np.float64)
    ):
        return None
    scale = bins / width
    # The guess's own constants, in the dtype it is computed in, rounded to the safe side.
    work = edge_type.type
    tol = np.nextafter(work(tolerance), work(1))
    # frac < tol or frac >= 1 - tol must give |frac - 1/2| > sure, with frac - 1/2 rounded
    # (monotonically): sure stays below both fl(1/2 - tol) and fl(1 - tol) - 1/2.
    half = work(0.5)
    below_one = np.nextafter(work(1) - tol, work(0))
    sure = np.nextafter(min(half - tol, below_one - half), work(0))
    guide = (work(0), work(lo_cmp), work(hi_cmp), work(lo), work(scale), half, sure)
    if not all(np.isfinite(guide)) or not work(scale) > 0:
        return None  # the scale overflows the guess's dtype (refused by the parameter check)
    return (*guide, work(bins - 1)), lo, scale, step, edges32


def _offsets(n_cols: int, lanes: int, bins: int) -> np.ndarray:
    """Return each position's counter offset in a group of four segments: its copy and column."""
    position = np.arange(4 * lanes)
    row, col = position // n_cols, position % n_cols
    return (((row % HIST_COPIES) * n_cols + col) * (bins + 2)).astype(np.int32)


_offsets_cached = functools.lru_cache(maxsize=64)(_offsets)


def chunk_partial(
    chunk: np.ndarray,
    acc: np.dtype,
    bins: int,
    plan: tuple[Any, ...] | None,
    unpack: LinearUnpack | None = None,
) -> dict[str, np.ndarray]:
    """Compute count, sum, mean, m2, min, max (and hist if ``plan``) of a 2-D C-ordered chunk.

    One pass over the lanes (:mod:`hpcapp.kernels._fused_lanes`); with ``unpack``, ``chunk``
    holds stored integers, decoded value by value in that pass.
    """
    chunk = np.ascontiguousarray(chunk)  # the prebuilt loops take C-ordered arrays only
    n_cols = chunk.shape[1]
    lanes = n_cols * max(1, LANES // n_cols)
    values = np.dtype(unpack.dtype) if unpack is not None else chunk.dtype
    big, small = _sentinels(values)
    count = np.zeros(n_cols, np.int64)
    total = np.zeros(n_cols, acc)
    mean = np.zeros(n_cols)
    m2 = np.zeros(n_cols)
    low = np.full(n_cols, big)
    high = np.full(n_cols, small)
    hist = np.zeros((n_cols, bins if plan is not None else 1), np.int64)
    outside = np.zeros((n_cols, 2), np.int64)
    if plan is None:  # no histogram: arguments of the right types that the loop leaves alone
        work = np.float32 if values == np.float32 else np.float64
        guide, lo, scale, step, edges32 = (work(0),) * 8, 0.0, 1.0, 1.0, False
        offsets, counters = np.zeros(1, np.int32), np.zeros(1, np.int64)
    else:
        offsets = _offsets_cached(n_cols, lanes, bins)
        guide, lo, scale, step, edges32 = plan
        counters = np.zeros(HIST_COPIES * n_cols * (bins + 2), np.int64)
        # Bounds guard for the compiled loop: every slot it can form is inside its counters.
        if offsets.size < 4 * lanes or int(offsets.max()) + bins + 1 >= counters.size:
            raise ValueError("histogram plan does not match the chunk's columns and bins")
    histogram = (plan is not None, guide, lo, scale, step, bins, edges32, offsets, counters)
    outputs = (count, total, mean, m2, low, high, hist, outside)
    zero = acc.type(0)
    if unpack is None:
        _loops.loop("lanes", chunk.dtype)(chunk, lanes, zero, big, small, *histogram, *outputs)
    else:
        buf = np.empty(4 * lanes, values)  # one decoded group, in L1: no decoded chunk
        _loops.packed_loop(chunk.dtype, values)(
            chunk, lanes, zero, big, small, *unpack.loop_arguments(), buf, *histogram, *outputs
        )
    partial = {"count": count, "sum": total, "mean": mean, "m2": m2, "min": low, "max": high}
    if plan is not None:
        partial["hist"] = hist
        partial["hist_below"] = outside[:, 0].copy()
        partial["hist_above"] = outside[:, 1] - (chunk.shape[0] - count)  # less the NaNs
    return partial


def three_pass_partial(
    chunk: np.ndarray, bins: int = 1, plan: tuple[Any, ...] | None = None
) -> dict[str, np.ndarray]:
    """Run ``fused_stats``: the partial of a chunk by the three-pass loop (hist if ``plan``).

    ``chunk_partial`` took this path before the one-pass lanes of ``_fused_lanes`` counted the
    histogram too; it stays as their reference, bit for bit (the tests and ``scripts/bench.py
    stats-pass`` compare them).
    """
    chunk = np.ascontiguousarray(chunk)
    n_cols = chunk.shape[1]
    lanes = n_cols * max(1, LANES // n_cols)
    acc = np.dtype(np.float64 if chunk.dtype.kind == "f" else np.int64)
    big, small = _sentinels(chunk.dtype)
    out: dict[str, np.ndarray] = {
        "count": np.zeros(n_cols, np.int64),
        "sum": np.zeros(n_cols, acc),
        "mean": np.zeros(n_cols),
        "m2": np.zeros(n_cols),
        "min": np.full(n_cols, big),
        "max": np.full(n_cols, small),
    }
    hist = np.zeros((n_cols, bins if plan is not None else 1), np.int64)
    outside = np.zeros((n_cols, 2), np.int64)
    if plan is None:
        work = np.float32 if chunk.dtype == np.float32 else np.float64
        guide, lo, scale, step, edges32 = (work(0),) * 8, 0.0, 1.0, 1.0, False
        offsets, bins = np.zeros(1, np.int32), 1
    else:
        guide, lo, scale, step, edges32 = plan
        offsets = _offsets_cached(n_cols, lanes, bins)
    counters = np.zeros(HIST_COPIES * n_cols * (bins + 2), np.int64)
    _loops.loop("stats", chunk.dtype)(
        chunk.reshape(-1), n_cols, lanes, acc.type(0), big, small, plan is not None, guide,
        lo, scale, step, bins, edges32, offsets, counters, *out.values(), hist, outside,
    )  # fmt: skip
    if plan is not None:
        out["hist"] = hist
        out["hist_below"] = outside[:, 0].copy()
        out["hist_above"] = outside[:, 1] - (chunk.shape[0] - out["count"])
    return out


def chunk_moments(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact per-column sums of x and x*x of a 2-D native integer chunk, as limbs."""
    n_cols = chunk.shape[1]
    s1 = np.zeros((n_cols, LIMBS), np.int64)
    s2 = np.zeros((n_cols, LIMBS), np.int64)
    flat = np.ascontiguousarray(chunk).reshape(-1)
    unsigned = chunk.dtype.kind == "u" and chunk.dtype.itemsize == 8
    if unsigned:
        flat = flat.view(np.int64)  # numba would mix uint64 with int64 in floats
    _loops.loop("moments", flat.dtype)(flat, n_cols, n_pieces(chunk.dtype), unsigned, s1, s2)
    return s1, s2
