"""Compiled single-pass stats loop without a histogram: all lanes at once, vectorized.

:func:`hpcapp.kernels._fused.fused_stats` reads each group of four segments of lanes three
times (sums, extremes, shifted sums), through helpers that LLVM does not vectorize across lanes.
Without a histogram, this loop does the same arithmetic on every lane in the same order -- so
the bits are the same, which the tests check -- in one pass: the segments are the rows of a
``(segments, lanes)`` view of the chunk, and for each group of four rows one loop over the lanes
updates all six running values of every lane. Taking the rows as 1-D row views lets LLVM
vectorize that loop. Measured on 64 x 64,800 float32 (one lane per column, per-cell statistics
over time): 0.93 ns per value against 1.27 for the three-pass loop, best of 20
(``scripts/bench_stats_pass.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# The same options as _fused's, written here: numba's cache watches only the defining file, so
# options imported from another module would not invalidate it when edited (and importing
# _fused here closed an import cycle).
_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _first_valid(chunk, shift):
    """Put each column's first non-NaN value (0 if none) into ``shift``'s lanes."""
    n_rows, n_cols = chunk.shape
    for j in range(n_cols):
        first = 0.0
        for i in range(n_rows):
            v = chunk[i, j]
            if v == v:
                first = np.float64(v)
                break
        for lane in range(j, shift.size, n_cols):
            shift[lane] = first


@njit(**_JIT)
def _add_one(row, s, c, lmin, lmax, shift, s1, s2, zero):
    """Add one (possibly short) segment into the first ``row.size`` lanes."""
    for k in range(row.size):
        v = row[k]
        s[k] += zero + v if v == v else zero
        c[k] += np.int64(v == v)
        m = lmin[k]
        lmin[k] = v if v < m else m
        m = lmax[k]
        lmax[k] = v if v > m else m
        d = np.float64(v) - shift[k] if v == v else 0.0
        s1[k] += d
        s2[k] += d * d


@njit(**_JIT)
def fused_lanes(chunk, lanes, zero, big, small, count, total, mean, m2, low, high):
    """Fill the per-column outputs of one C-ordered (rows x columns) chunk, ``lanes`` at once.

    ``lanes`` is a multiple of the column count; lane ``i`` of every segment belongs to column
    ``i % n_cols``, as in :func:`hpcapp.kernels._fused.fused_stats`.
    """
    n_cols = chunk.shape[1]
    flat = chunk.reshape(-1)
    n_full = flat.size // lanes
    segments = flat[: n_full * lanes].reshape(n_full, lanes)
    s = np.full(lanes, zero)
    c = np.zeros(lanes, np.int64)
    s1 = np.zeros(lanes)
    s2 = np.zeros(lanes)
    lmin = np.full(lanes, big)
    lmax = np.full(lanes, small)
    shift = np.empty(lanes)
    _first_valid(chunk, shift)
    n4 = n_full - n_full % 4
    for i in range(0, n4, 4):
        a = segments[i]
        b = segments[i + 1]
        e = segments[i + 2]
        f = segments[i + 3]
        for k in range(lanes):
            v0 = a[k]
            v1 = b[k]
            v2 = e[k]
            v3 = f[k]
            t0 = zero + v0 if v0 == v0 else zero
            t1 = zero + v1 if v1 == v1 else zero
            t2 = zero + v2 if v2 == v2 else zero
            t3 = zero + v3 if v3 == v3 else zero
            s[k] += (t0 + t1) + (t2 + t3)
            c[k] += (np.int64(v0 == v0) + np.int64(v1 == v1)) + (
                np.int64(v2 == v2) + np.int64(v3 == v3)
            )
            # As _fused._lesser / _greater (NaN ignored), written out so the loop vectorizes.
            l01 = v0 if (v0 < v1) | (v1 != v1) else v1
            l23 = v2 if (v2 < v3) | (v3 != v3) else v3
            lo4 = l01 if (l01 < l23) | (l23 != l23) else l23
            g01 = v0 if (v0 > v1) | (v1 != v1) else v1
            g23 = v2 if (v2 > v3) | (v3 != v3) else v3
            hi4 = g01 if (g01 > g23) | (g23 != g23) else g23
            m = lmin[k]
            lmin[k] = lo4 if lo4 < m else m
            m = lmax[k]
            lmax[k] = hi4 if hi4 > m else m
            h = shift[k]
            d0 = np.float64(v0) - h if v0 == v0 else 0.0
            d1 = np.float64(v1) - h if v1 == v1 else 0.0
            d2 = np.float64(v2) - h if v2 == v2 else 0.0
            d3 = np.float64(v3) - h if v3 == v3 else 0.0
            s1[k] += (d0 + d1) + (d2 + d3)
            s2[k] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for i in range(n4, n_full):
        _add_one(segments[i], s, c, lmin, lmax, shift, s1, s2, zero)
    _add_one(flat[n_full * lanes :], s, c, lmin, lmax, shift, s1, s2, zero)
    # The fold below repeats fused_stats's on purpose: numba's cache checks only the file that
    # defines a function, so calling compiled code from _fused.py would let a change there go
    # unseen by this function's cached copy.
    sum1 = np.zeros(n_cols)
    sum2 = np.zeros(n_cols)
    for lane in range(lanes):
        j = lane % n_cols
        total[j] += s[lane]
        count[j] += c[lane]
        sum1[j] += s1[lane]
        sum2[j] += s2[lane]
        low[j] = lmin[lane] if lmin[lane] < low[j] else low[j]
        high[j] = lmax[lane] if lmax[lane] > high[j] else high[j]
    for j in range(n_cols):
        if count[j] > 0:
            mean[j] = np.float64(total[j]) / count[j]
            q = sum2[j] - sum1[j] * (sum1[j] / count[j])
            # Rounding may leave a tiny negative for near-constant columns; NaN stays NaN.
            m2[j] = 0.0 if q < 0.0 else q
