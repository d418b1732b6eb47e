"""Compiled single-pass loops behind the ``stats`` kernel (numba; imported on first use only).

Each value of a chunk is read a few times while it is still in the L1 cache, instead of once per
numpy call. Sums run in a fixed set of lanes: lane ``i`` of a segment of ``lanes`` values adds
the values at ``i``, ``i + lanes``, ... (four segments at a time, as ``(a + b) + (c + d)``),
and the lanes are added in lane order at the end. That order is written in the source, not
chosen by the compiler (no fastmath), so the bits are the same on every machine, whatever its
vector width, and whatever the buffer's address. Without a histogram, the same arithmetic runs
in one vectorized pass over the lanes (:mod:`hpcapp.kernels._fused_lanes`, same bits).

M2 uses shifted sums: ``d = x - K`` with ``K`` the column's first non-NaN value in the chunk, and
``M2 = sum(d*d) - sum(d)**2 / n``. As ``(K - mean)**2 <= M2``, the cancellation costs at most a
factor ``n`` of rounding in the worst case and nothing in the usual one (``1e9 + N(0, 1)`` keeps
its variance to ~1e-15).

Histogram bins are exactly those of ``numpy.histogram``, which guesses ``floor((x - lo) / (hi -
lo) * bins)`` and then corrects the guess by one bin down or up by comparing ``x`` with the edges
``linspace(lo, hi, bins + 1)`` in the edges' dtype. With ``M = max(|lo|, |hi|) / (hi - lo)``,
``eps = 2**-53`` and ``eps_e`` the unit roundoff of the edges' dtype, the rounding in bins of
numpy's guess is at most ``bins * (eps_e * (M + 1) + 4 eps)``, that of ours (float32 for float32
data, float64 otherwise) at most ``bins * (eps_e * (M + 3) + 4 eps)`` and that of the edges at
most ``bins * ((eps + eps_e) * M + 3 eps)``. The plan (``histogram_plan``, in
:mod:`hpcapp.kernels._fused_call` with the other numba-free drivers) takes ``tol = bins * (4
(eps_e + eps) (M + 2) + 16 eps)``, over twice either guess's rounding plus the edges', and
accepts the range only if ``tol < 1/4``. Then numpy's guess is within one bin of the bin the
edges define, so that bin is numpy's answer; our guess, if farther than ``tol`` from a whole
number, falls in it too, and if nearer is corrected like numpy's, against edges recomputed as
``linspace`` makes them (checked against numpy's own edges). Ranges that fail (narrow for their
dtype, or far from zero) get ``None``: the caller then uses ``numpy.histogram`` itself.

Bounds: however wrong a plan, no count lands outside the counters: bins are clamped to ``[0,
bins - 1]`` (a NaN guess to the last) and ``chunk_partial`` checks the offsets first; a plan
whose constants overflow their dtype (float32 ``bins / width``) is ``None`` (also refused by the
kernel's parameter check). The clamps cost nothing measurable.

Numba caches the compiled code next to this file (``__pycache__``) or, where that is read-only,
in its user cache; set ``NUMBA_CACHE_DIR`` to choose. Each dtype is compiled on its first use
(2-3 s), then loaded from the cache (about 0.3 s per process with the numba import); cache files
are written to a temporary name and renamed, so ranks compiling at once are safe.
``python -m hpcapp.kernels.precompile`` compiles every dtype ahead of a job, also into an
extension module that loads without numba (:mod:`hpcapp.kernels._loops`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# The histogram's helpers live beside the one-pass loop that jobs run. numba's cache checks only
# the file defining a function, so after an edit there, ``fused_stats`` (a reference now) keeps
# its cached copy until its own cache is cleared (the prebuilt module's digest covers both).
from hpcapp.kernels._fused_lanes import _bin_index, _scatter

_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _sum_count4(xs, lanes, s, c, zero):
    """Add four segments of lanes into ``s`` (non-NaN values) and ``c`` (their count)."""
    for lane in range(lanes):
        v0 = xs[lane]
        v1 = xs[lanes + lane]
        v2 = xs[2 * lanes + lane]
        v3 = xs[3 * lanes + lane]
        t0 = zero + v0 if v0 == v0 else zero
        t1 = zero + v1 if v1 == v1 else zero
        t2 = zero + v2 if v2 == v2 else zero
        t3 = zero + v3 if v3 == v3 else zero
        s[lane] += (t0 + t1) + (t2 + t3)
        c[lane] += (np.int64(v0 == v0) + np.int64(v1 == v1)) + (
            np.int64(v2 == v2) + np.int64(v3 == v3)
        )


@njit(**_JIT)
def _sum_count1(xs, s, c, zero):
    """Add one (possibly short) segment into ``s`` and ``c``."""
    for lane in range(xs.size):
        v = xs[lane]
        s[lane] += zero + v if v == v else zero
        c[lane] += np.int64(v == v)


@njit(**_JIT)
def _lesser(a, b):
    """Return the smaller of two values, ignoring a NaN (NaN only if both are)."""
    return a if (a < b) | (b != b) else b


@njit(**_JIT)
def _greater(a, b):
    """Return the larger of two values, ignoring a NaN (NaN only if both are)."""
    return a if (a > b) | (b != b) else b


@njit(**_JIT)
def _min_max4(xs, lanes, lmin, lmax):
    """Fold four segments of lanes into the running minima and maxima (NaN skipped)."""
    for lane in range(lanes):
        v0 = xs[lane]
        v1 = xs[lanes + lane]
        v2 = xs[2 * lanes + lane]
        v3 = xs[3 * lanes + lane]
        low = _lesser(_lesser(v0, v1), _lesser(v2, v3))
        high = _greater(_greater(v0, v1), _greater(v2, v3))
        lmin[lane] = low if low < lmin[lane] else lmin[lane]
        lmax[lane] = high if high > lmax[lane] else lmax[lane]


@njit(**_JIT)
def _min_max1(xs, lmin, lmax):
    """Fold one (possibly short) segment into the running minima and maxima."""
    for lane in range(xs.size):
        v = xs[lane]
        lmin[lane] = v if v < lmin[lane] else lmin[lane]
        lmax[lane] = v if v > lmax[lane] else lmax[lane]


@njit(**_JIT)
def _shifted4(xs, lanes, shift, s1, s2):
    """Add four segments of ``d = x - shift`` and ``d*d`` (non-NaN values) into the lanes."""
    for lane in range(lanes):
        k = shift[lane]
        v0 = xs[lane]
        v1 = xs[lanes + lane]
        v2 = xs[2 * lanes + lane]
        v3 = xs[3 * lanes + lane]
        d0 = np.float64(v0) - k if v0 == v0 else 0.0
        d1 = np.float64(v1) - k if v1 == v1 else 0.0
        d2 = np.float64(v2) - k if v2 == v2 else 0.0
        d3 = np.float64(v3) - k if v3 == v3 else 0.0
        s1[lane] += (d0 + d1) + (d2 + d3)
        s2[lane] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)


@njit(**_JIT)
def _shifted1(xs, shift, s1, s2):
    """Add one (possibly short) segment of ``d`` and ``d*d`` into the lanes."""
    for lane in range(xs.size):
        v = xs[lane]
        d = np.float64(v) - shift[lane] if v == v else 0.0
        s1[lane] += d
        s2[lane] += d * d


@njit(**_JIT)
def fused_stats(
    flat, n_cols, lanes, zero, big, small, hist_on, guide, lo, scale, step, nbins, edges32,
    offsets, counters, count, total, mean, m2, low, high, hist, outside,
):  # fmt: skip
    """Fill the per-column outputs of one C-ordered (rows x n_cols) chunk, given flat.

    ``counters`` (zeros) holds the histogram's copies, ``(nbins + 2)`` slots per copy and column;
    ``offsets`` (from :func:`hpcapp.kernels._fused_call.chunk_partial`) point into it.
    """
    n = flat.size
    n_rows = n // n_cols
    s = np.full(lanes, zero)
    c = np.zeros(lanes, np.int64)
    s1 = np.zeros(lanes)
    s2 = np.zeros(lanes)
    lmin = np.full(lanes, big)
    lmax = np.full(lanes, small)
    shift = np.zeros(lanes)
    for j in range(n_cols):
        for i in range(n_rows):
            v = flat[i * n_cols + j]
            if v == v:
                shift[j] = np.float64(v)
                break
    for lane in range(n_cols, lanes):
        shift[lane] = shift[lane % n_cols]
    group = 4 * lanes
    ix = np.empty(group, np.int32)
    n_grouped = n - n % group
    for base in range(0, n_grouped, group):
        xs = flat[base : base + group]
        _sum_count4(xs, lanes, s, c, zero)
        _min_max4(xs, lanes, lmin, lmax)
        _shifted4(xs, lanes, shift, s1, s2)
        if hist_on:
            _bin_index(xs, ix, offsets, guide, nbins)
            _scatter(xs, ix, counters, lo, scale, step, nbins, edges32)
    for base in range(n_grouped, n, lanes):
        xs = flat[base : min(base + lanes, n)]
        _sum_count1(xs, s, c, zero)
        _min_max1(xs, lmin, lmax)
        _shifted1(xs, shift, s1, s2)
        if hist_on:
            part = ix[: xs.size]
            _bin_index(xs, part, offsets, guide, nbins)
            _scatter(xs, part, counters, lo, scale, step, nbins, edges32)
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
    if hist_on:
        width = nbins + 2
        for r in range(counters.size // (n_cols * width)):
            for j in range(n_cols):
                start = (r * n_cols + j) * width
                for k in range(nbins):
                    hist[j, k] += counters[start + k]
                outside[j, 0] += counters[start + nbins]
                outside[j, 1] += counters[start + nbins + 1]
