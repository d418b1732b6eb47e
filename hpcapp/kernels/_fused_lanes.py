"""Compiled single-pass stats loops: all lanes at once, vectorized, with the histogram's bins.

:func:`hpcapp.kernels._fused.fused_stats` reads each group of four segments of lanes three
times (sums, extremes, shifted sums), through helpers that LLVM does not vectorize across lanes.
Without a histogram, this loop does the same arithmetic on every lane in the same order -- so
the bits are the same, which the tests check -- in one pass: the segments are the rows of a
``(segments, lanes)`` view of the chunk, and for each group of four rows one loop over the lanes
updates all six running values of every lane. Taking the rows as 1-D row views lets LLVM
vectorize that loop. Measured on 64 x 64,800 float32 (one lane per column, per-cell statistics
over time): 0.93 ns per value against 1.27 for the three-pass loop, best of 20
(``scripts/bench_stats_pass.py``).

The histogram (numpy's bins: see :mod:`hpcapp.kernels._fused`) is counted in the same pass: each
group of four segments is binned while it is still in L1, after its sums.

``fused_packed`` reads stored integers (CF packing, :mod:`hpcapp.kernels.packed`): each group is
decoded into a small buffer of the decoded dtype -- NaN where masked, else ``T(raw) * scale``
then ``+ offset``, two roundings in ``T`` as numpy's in-place decoding makes them (no fused
multiply-add: no fastmath) -- and the same lane arithmetic runs on that buffer, so the results
are those of the decoded chunk bit for bit, without a decoded copy of the chunk.
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
def _edge(k, step, lo, edges32):
    """Return edge ``k`` as ``numpy.linspace(lo, hi, bins + 1)`` in the edges' dtype makes it."""
    edge = k * step + lo
    return np.float64(np.float32(edge)) if edges32 else edge


@njit(**_JIT)
def _exact_bin(x, top, lo, scale, step, edges32):
    """Return numpy's bin of a kept value: the guess, corrected against its bin's edges."""
    guess = (x - lo) * scale
    k = np.floor(min(max(guess, 0.0), top))
    # One step down below the bin's lower edge, one step up at or above the next edge, except
    # in the last bin, which includes hi.
    k = k - 1.0 if x < _edge(k, step, lo, edges32) else k
    k = k + 1.0 if (x >= _edge(k + 1.0, step, lo, edges32)) & (k < top) else k
    return np.intp(min(max(k, 0.0), top))


@njit(**_JIT)
def _bin_index(xs, ix, offsets, guide, nbins):
    """Write each value's counter slot (copy, column and bin), or ``-1 - offset`` if unsure."""
    # float32 data guesses in float32 (twice the values per vector), the rest in float64.
    zero, lo_cmp, hi_cmp, lo, scale, half, sure, top = guide
    for i in range(xs.size):
        x = xs[i] + zero
        # numpy keeps lo <= x <= hi, compared in the edges' dtype; NaN and inf fail here.
        keep = (x >= lo_cmp) & (x <= hi_cmp)
        # A kept x is >= lo, so the guess is >= 0; a dropped one gets 1/2, which is sure.
        guess = (x - lo) * scale if keep else half
        k = np.floor(guess)
        # Within sure of 1/2, the guess is farther than tol from a whole number and its bin is
        # the edges' bin (see histogram_plan); otherwise _scatter asks _exact_bin.
        unsure = abs((guess - k) - half) > sure
        # Bounds guard: whatever the plan, k is a bin of this column (NaN goes to the top).
        k = k if k <= top else top
        k = k if k >= 0.0 else 0.0
        offset = offsets[i]
        # Dropped values: below lo in slot nbins, above hi (or NaN) in slot nbins + 1.
        dropped = np.int32(nbins) if x < lo_cmp else np.int32(nbins + 1)
        slot = offset + (np.int32(k) if keep else dropped)
        ix[i] = ~offset if unsure else slot


@njit(**_JIT)
def _count_slot(xs, ix, i, counters, top, lo, scale, step, edges32):
    """Count value ``i``'s slot, settling an unsure one with :func:`_exact_bin`."""
    slot = np.intp(ix[i])
    if slot < 0:
        slot = ~slot + _exact_bin(np.float64(xs[i]), top, lo, scale, step, edges32)
    counters[np.uintp(slot)] += 1


@njit(**_JIT)
def _scatter(xs, ix, counters, lo, scale, step, nbins, edges32):
    """Count each value's slot; settle the unsure ones with :func:`_exact_bin`."""
    top = np.float64(nbins - 1)
    n4 = ix.size - ix.size % 4
    for i in range(0, n4, 4):
        # Four loads ahead of four increments (slots of different copies, when not unsure):
        # the increments do not wait on each other.
        a, b, c, d = ix[i], ix[i + 1], ix[i + 2], ix[i + 3]
        if (a | b | c | d) >= 0:
            counters[np.uintp(a)] += 1
            counters[np.uintp(b)] += 1
            counters[np.uintp(c)] += 1
            counters[np.uintp(d)] += 1
        else:
            for t in range(i, i + 4):
                _count_slot(xs, ix, t, counters, top, lo, scale, step, edges32)
    for i in range(n4, ix.size):
        _count_slot(xs, ix, i, counters, top, lo, scale, step, edges32)


@njit(**_JIT)
def formula_edges(step, lo, nbins, edges32):
    """Return the lower edges of all bins as :func:`_bin_index` computes them."""
    out = np.empty(nbins)
    for k in range(nbins):
        out[k] = _edge(np.float64(k), step, lo, edges32)
    return out


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


@njit(inline="always", **_JIT)
def _add_four(a, b, e, f, s, c, old_min, old_max, lmin, lmax, shift, s1, s2, zero):
    """Add four full segments (``a``, ``b``, ``e``, ``f``) into the lanes, one vector loop.

    The running minima and maxima are read from ``old_min``/``old_max`` and written to
    ``lmin``/``lmax``, another buffer: updated in place, ``m = lmin[k]; lmin[k] = x if x < m
    else m`` stores nothing when ``x >= m``, so LLVM makes it a masked store, which costs more
    than the rest of the loop on AMD's cores (0.90 -> 0.65 ns a value, 8 float32 columns).
    """
    for k in range(a.size):
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
        m = old_min[k]
        lmin[k] = lo4 if lo4 < m else m
        m = old_max[k]
        lmax[k] = hi4 if hi4 > m else m
        h = shift[k]
        d0 = np.float64(v0) - h if v0 == v0 else 0.0
        d1 = np.float64(v1) - h if v1 == v1 else 0.0
        d2 = np.float64(v2) - h if v2 == v2 else 0.0
        d3 = np.float64(v3) - h if v3 == v3 else 0.0
        s1[k] += (d0 + d1) + (d2 + d3)
        s2[k] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)


@njit(**_JIT)
def _fold(lanes, s, c, lmin, lmax, s1, s2, count, total, mean, m2, low, high):
    """Add the lanes into their columns and finish mean and m2 (as ``fused_stats``)."""
    n_cols = count.size
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


@njit(**_JIT)
def _fold_hist(counters, nbins, hist, outside):
    """Add the histogram's copies into ``hist`` and the out-of-range counts into ``outside``."""
    n_cols = hist.shape[0]
    width = nbins + 2
    for r in range(counters.size // (n_cols * width)):
        for j in range(n_cols):
            start = (r * n_cols + j) * width
            for k in range(nbins):
                hist[j, k] += counters[start + k]
            outside[j, 0] += counters[start + nbins]
            outside[j, 1] += counters[start + nbins + 1]


@njit(**_JIT)
def fused_lanes(
    chunk, lanes, zero, big, small, hist_on, guide, lo, scale, step, nbins, edges32, offsets,
    counters, count, total, mean, m2, low, high, hist, outside,
):  # fmt: skip
    """Fill the per-column outputs of one C-ordered (rows x columns) chunk, ``lanes`` at once.

    ``lanes`` is a multiple of the column count; lane ``i`` of every segment belongs to column
    ``i % n_cols``, as in :func:`hpcapp.kernels._fused.fused_stats`, whose histogram arguments
    (``hist_on`` to ``counters``, ``hist``, ``outside``) these are.
    """
    flat = chunk.reshape(-1)
    n_full = flat.size // lanes
    segments = flat[: n_full * lanes].reshape(n_full, lanes)
    s = np.full(lanes, zero)
    c = np.zeros(lanes, np.int64)
    s1 = np.zeros(lanes)
    s2 = np.zeros(lanes)
    lmin = np.full(lanes, big)
    lmax = np.full(lanes, small)
    new_min, new_max = np.empty_like(lmin), np.empty_like(lmax)  # see _add_four
    shift = np.empty(lanes)
    _first_valid(chunk, shift)
    ix = np.empty(4 * lanes, np.int32)
    n4 = n_full - n_full % 4
    for i in range(0, n4, 4):
        a, b, e, f = segments[i], segments[i + 1], segments[i + 2], segments[i + 3]
        _add_four(a, b, e, f, s, c, lmin, lmax, new_min, new_max, shift, s1, s2, zero)
        lmin, new_min = new_min, lmin
        lmax, new_max = new_max, lmax
        if hist_on:
            xs = flat[i * lanes : (i + 4) * lanes]
            _bin_index(xs, ix, offsets, guide, nbins)
            _scatter(xs, ix, counters, lo, scale, step, nbins, edges32)
    for base in range(n4 * lanes, flat.size, lanes):
        xs = flat[base : min(base + lanes, flat.size)]
        _add_one(xs, s, c, lmin, lmax, shift, s1, s2, zero)
        if hist_on:
            part = ix[: xs.size]
            _bin_index(xs, part, offsets, guide, nbins)
            _scatter(xs, part, counters, lo, scale, step, nbins, edges32)
    _fold(lanes, s, c, lmin, lmax, s1, s2, count, total, mean, m2, low, high)
    if hist_on:
        _fold_hist(counters, nbins, hist, outside)


@njit(inline="always", **_JIT)
def _unpack(raw, out, fills, n_fills, keep_lo, keep_hi, scale, offset, nan):
    """Decode stored integers into ``out`` (the decoded dtype, as ``nan``): NaN where masked."""
    f0, f1, f2, f3 = fills
    for k in range(raw.size):
        r = raw[k]
        bad = (r < keep_lo) | (r > keep_hi)
        bad |= ((n_fills > 0) & (r == f0)) | ((n_fills > 1) & (r == f1))
        bad |= ((n_fills > 2) & (r == f2)) | ((n_fills > 3) & (r == f3))
        out[k] = r  # the cast numpy's copyto makes; then two roundings in out's dtype
        y = out[k] * scale
        out[k] = nan if bad else y + offset


@njit(**_JIT)
def fused_packed(
    raw, lanes, zero, big, small, fills, n_fills, keep_lo, keep_hi, unscale, unoffset, buf,
    hist_on, guide, lo, scale, step, nbins, edges32, offsets, counters,
    count, total, mean, m2, low, high, hist, outside,
):  # fmt: skip
    """:func:`fused_lanes` of the decoded values of stored integers ``raw`` (rows x columns).

    ``buf`` (``4 * lanes`` values of the decoded dtype, that of ``unscale`` and ``unoffset``)
    holds one decoded group at a time; ``fills`` (``n_fills`` used), ``keep_lo``/``keep_hi``
    say which stored values are masked (see :class:`hpcapp.kernels.packed.LinearUnpack`).
    """
    n_rows, n_cols = raw.shape
    flat = raw.reshape(-1)
    s = np.full(lanes, zero)
    c = np.zeros(lanes, np.int64)
    s1 = np.zeros(lanes)
    s2 = np.zeros(lanes)
    lmin = np.full(lanes, big)
    lmax = np.full(lanes, small)
    new_min, new_max = np.empty_like(lmin), np.empty_like(lmax)  # see _add_four
    shift = np.zeros(lanes)
    nan = big - big  # NaN in the decoded dtype: a float64 one would widen the decoding
    one = buf[:1]
    for j in range(n_cols):
        for i in range(n_rows):
            _unpack(flat[i * n_cols + j : i * n_cols + j + 1], one, fills, n_fills, keep_lo,
                    keep_hi, unscale, unoffset, nan)  # fmt: skip
            if one[0] == one[0]:
                shift[j] = np.float64(one[0])
                break
    for lane in range(n_cols, lanes):
        shift[lane] = shift[lane % n_cols]
    ix = np.empty(4 * lanes, np.int32)
    group = 4 * lanes
    n_grouped = flat.size - flat.size % group
    for base in range(0, n_grouped, group):
        _unpack(flat[base : base + group], buf, fills, n_fills, keep_lo, keep_hi, unscale,
                unoffset, nan)  # fmt: skip
        a, b = buf[:lanes], buf[lanes : 2 * lanes]
        e, f = buf[2 * lanes : 3 * lanes], buf[3 * lanes :]
        _add_four(a, b, e, f, s, c, lmin, lmax, new_min, new_max, shift, s1, s2, zero)
        lmin, new_min = new_min, lmin
        lmax, new_max = new_max, lmax
        if hist_on:
            _bin_index(buf, ix, offsets, guide, nbins)
            _scatter(buf, ix, counters, lo, scale, step, nbins, edges32)
    for base in range(n_grouped, flat.size, lanes):
        xs = buf[: min(lanes, flat.size - base)]
        _unpack(flat[base : base + xs.size], xs, fills, n_fills, keep_lo, keep_hi, unscale,
                unoffset, nan)  # fmt: skip
        _add_one(xs, s, c, lmin, lmax, shift, s1, s2, zero)
        if hist_on:
            part = ix[: xs.size]
            _bin_index(xs, part, offsets, guide, nbins)
            _scatter(xs, part, counters, lo, scale, step, nbins, edges32)
    _fold(lanes, s, c, lmin, lmax, s1, s2, count, total, mean, m2, low, high)
    if hist_on:
        _fold_hist(counters, nbins, hist, outside)
