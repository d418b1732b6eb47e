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
most ``bins * ((eps + eps_e) * M + 3 eps)``. :func:`histogram_plan` takes ``tol = bins * (4
(eps_e + eps) (M + 2) + 16 eps)``, over twice either guess's rounding plus the edges', and
accepts the range only if ``tol < 1/4``. Then numpy's guess is within one bin of the bin the
edges define, so that bin is numpy's answer; our guess, if farther than ``tol`` from a whole
number, falls in it too, and if nearer is corrected like numpy's, against edges recomputed as
``linspace`` makes them (checked against numpy's own edges). Ranges that fail (narrow for their
dtype, or far from zero) get ``None``: the caller then uses ``numpy.histogram`` itself.

Bounds: however wrong a plan, no count lands outside the counters: bins are clamped to ``[0,
bins - 1]`` (a NaN guess to the last) and :func:`chunk_partial` checks the offsets first; a plan
whose constants overflow their dtype (float32 ``bins / width``) is ``None`` (also refused by the
kernel's parameter check). The clamps cost nothing measurable.

Numba caches the compiled code next to this file (``__pycache__``) or, where that is read-only,
in its user cache; set ``NUMBA_CACHE_DIR`` to choose. Each dtype is compiled on its first use
(2-3 s), then loaded from the cache (about 0.3 s per process with the numba import); cache files
are written to a temporary name and renamed, so ranks compiling at once are safe.
``python -m hpcapp.kernels._fused`` compiles every dtype ahead of a job, and writes hpcapp's
bytecode.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import njit

# Values per segment of lanes: the lane arrays (a few KiB each) stay in L1 next to the data.
LANES = 256
# Histogram copies, interleaved by row, so runs of equal bins do not stall on one counter.
HIST_COPIES = 4

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
def fused_stats(
    flat, n_cols, lanes, zero, big, small, hist_on, guide, lo, scale, step, nbins, edges32,
    offsets, count, total, mean, m2, low, high, hist, outside,
):  # fmt: skip
    """Fill the per-column outputs of one C-ordered (rows x n_cols) chunk, given flat."""
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
    counters = np.zeros(HIST_COPIES * n_cols * (nbins + 2), np.int64)
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
        for r in range(HIST_COPIES):
            for j in range(n_cols):
                start = (r * n_cols + j) * width
                for k in range(nbins):
                    hist[j, k] += counters[start + k]
                outside[j, 0] += counters[start + nbins]
                outside[j, 1] += counters[start + nbins + 1]


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
    if not np.array_equal(formula_edges(step, lo, bins, edges32), edges[:-1].astype(np.float64)):
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
    chunk: np.ndarray, acc: np.dtype, bins: int, plan: tuple[Any, ...] | None
) -> dict[str, np.ndarray]:
    """Compute count, sum, mean, m2, min, max (and hist if ``plan``) of a 2-D C-ordered chunk."""
    n_cols = chunk.shape[1]
    lanes = n_cols * max(1, LANES // n_cols)
    big, small = _sentinels(chunk.dtype)
    count = np.zeros(n_cols, np.int64)
    total = np.zeros(n_cols, acc)
    mean = np.zeros(n_cols)
    m2 = np.zeros(n_cols)
    low = np.full(n_cols, big)
    high = np.full(n_cols, small)
    if plan is None:
        # No histogram: the same sums in one vectorized pass over the lanes.
        from hpcapp.kernels._fused_lanes import fused_lanes

        zero = acc.type(0)
        fused_lanes(chunk, lanes, zero, big, small, count, total, mean, m2, low, high)
        return {"count": count, "sum": total, "mean": mean, "m2": m2, "min": low, "max": high}
    hist = np.zeros((n_cols, bins), np.int64)
    outside = np.zeros((n_cols, 2), np.int64)
    offsets = _offsets_cached(n_cols, lanes, bins)
    guide, lo, scale, step, edges32 = plan
    # Bounds guard for the compiled loop: every slot it can form is inside its counters.
    slots = HIST_COPIES * n_cols * (bins + 2)
    if offsets.size < 4 * lanes or int(offsets.max()) + bins + 1 >= slots:
        raise ValueError("histogram plan does not match the chunk's columns and bins")
    fused_stats(
        chunk.reshape(-1), n_cols, lanes, acc.type(0), big, small, True,
        guide, lo, scale, step, bins, edges32, offsets,
        count, total, mean, m2, low, high, hist, outside,
    )  # fmt: skip
    partial = {"count": count, "sum": total, "mean": mean, "m2": m2, "min": low, "max": high}
    partial["hist"] = hist
    partial["hist_below"] = outside[:, 0].copy()
    partial["hist_above"] = outside[:, 1] - (chunk.shape[0] - count)  # less the NaNs
    return partial


def three_pass_partial(chunk: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``fused_stats`` without a histogram: the moments of a chunk by the three-pass loop.

    ``chunk_partial`` took this path before the one-pass lanes of ``_fused_lanes``; it stays as
    their reference, bit for bit (the tests and ``scripts/bench_stats_pass.py`` compare them).
    """
    n_cols = chunk.shape[1]
    lanes = n_cols * max(1, LANES // n_cols)
    acc = np.dtype(np.float64 if chunk.dtype.kind == "f" else np.int64)
    big, small = _sentinels(chunk.dtype)
    out = {
        "count": np.zeros(n_cols, np.int64),
        "sum": np.zeros(n_cols, acc),
        "mean": np.zeros(n_cols),
        "m2": np.zeros(n_cols),
        "min": np.full(n_cols, big),
        "max": np.full(n_cols, small),
    }
    work = np.float32 if chunk.dtype == np.float32 else np.float64
    fused_stats(
        chunk.reshape(-1), n_cols, lanes, acc.type(0), big, small, False, (work(0),) * 8,
        0.0, 1.0, 1.0, 1, False, np.zeros(1, np.int32), *out.values(),
        np.zeros((n_cols, 1), np.int64), np.zeros((n_cols, 2), np.int64),
    )  # fmt: skip
    return out


PARTS = ("histogram", "lanes")


def precompile(parts: tuple[str, ...] = PARTS) -> str:
    """Compile (or load from the cache) the loops for every dtype; return the cache directory.

    ``parts`` picks the loop families: ``histogram`` (``fused_stats``) and ``lanes`` (the
    one-pass lanes and the exact integer moments). They share no cached function, so two
    processes can compile one part each at once without racing on numba's cache index.
    """
    for code in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8"):
        dtype = np.dtype(code)
        acc = np.dtype(np.float64 if dtype.kind == "f" else np.int64)
        if "histogram" in parts:
            chunk_partial(np.zeros((8, 1), dtype), acc, 4, histogram_plan(dtype.str, 4, 0.0, 1.0))
        if "lanes" in parts:
            chunk_partial(np.zeros((8, 1), dtype), acc, 1, None)  # no histogram: the lane pass
            if dtype.kind in "iu":
                from hpcapp.kernels import _fused_exact

                _fused_exact.chunk_moments(np.zeros((8, 1), dtype))
    cache = getattr(fused_stats, "_cache", None)
    return str(getattr(cache, "_cache_path", "numba's default cache directory"))


def compile_bytecode() -> bool:
    """Write the bytecode of every hpcapp module; return False if some could not be written.

    Python writes it on first import anyway, but not under ``PYTHONDONTWRITEBYTECODE=1`` or in
    a read-only tree: then every rank compiles hpcapp's modules from source (~0.1 s a rank).
    """
    import compileall
    from pathlib import Path

    return bool(compileall.compile_dir(Path(__file__).resolve().parent.parent, quiet=1))


if __name__ == "__main__":
    import sys

    # ``python -m hpcapp.kernels._fused [histogram|lanes ...]``: every part when none is named.
    chosen = tuple(sys.argv[1:]) or PARTS
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        sys.exit(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    print(f"stats loops ({', '.join(chosen)}) compiled and cached in {precompile(chosen)}")
    if not compile_bytecode():
        print("some hpcapp bytecode could not be written (read-only install?)")
