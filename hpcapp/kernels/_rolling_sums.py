"""Compiled running window sums behind ``rolling``'s mean and sum (numba; imported on first use).

The sums restart at fixed global anchors: record ``t``'s chain starts at ``a = (t // block) *
block``, whose window is summed directly in window order; each later record of the block adds
the value entering its window and subtracts the one leaving it. Every record is thus computed
by the same operations whatever the chunk it falls in. Only finite values enter the running
sum; a window holding an infinity is summed directly (as the anchor is), so no ``inf - inf``
lingers in a chain.

The cells are done a strip at a time: a strip's series (every record of ``width`` cells) is
copied, or decoded from stored integers (``running_sums_packed``: CF packing, see
:mod:`hpcapp.kernels.packed`), into a small buffer that stays in cache while its records are
summed. That costs about what going across whole records did (0.17-0.2 s of CPU for 837
records of 180 x 360 float32 cells, either way) and lets packed chunks be decoded a strip at a
time, in cache, with no decoded copy of the chunk and none of numpy's passes (another 0.15-0.2
s a chunk). Each cell's operations, and so its bits, are the same either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# nogil: a caller may run chunks on threads; error_model numpy: a window with no values divides
# by zero, and its NaN is then replaced (numba's default would raise there).
_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def running_sums(data, first, skip, reach0, reach1, block, mean, least, out, buf):
    """Fill ``out`` (own rows x cells) with the window sums or means of ``data``'s own records.

    ``data`` (records x cells, float32 or float64) holds records ``first ..`` of the input; its
    own records start at ``data[skip]``; it must hold every record from the anchor of its
    first own record minus ``reach0`` (or from the input's start). Records outside ``data`` are
    past the input's ends. ``buf`` (of ``data``'s dtype) holds one strip of cells' series.
    """
    n, cells = data.shape
    width = max(buf.size // max(n, 1), 1)
    for c0 in range(0, cells, width):
        w = min(width, cells - c0)
        strip = buf[: n * w].reshape(n, w)
        for i in range(n):
            for j in range(w):
                strip[i, j] = data[i, c0 + j]
        _strip_sums(strip, first, first + skip, reach0, reach1, block, mean, least, out, c0)


@njit(**_JIT)
def running_sums_packed(
    raw, first, skip, reach0, reach1, block, mean, least, out, buf,
    fills, n_fills, keep_lo, keep_hi, scale, offset, nan,
):  # fmt: skip
    """:func:`running_sums` of the decoded values of stored integers ``raw``.

    Each strip is decoded into ``buf`` (the decoded dtype, that of ``scale``, ``offset`` and
    ``nan``) as :class:`hpcapp.kernels.packed.LinearUnpack` says: NaN where masked (one of
    ``fills``, ``n_fills`` used, or outside ``[keep_lo, keep_hi]``), else ``T(raw) * scale``
    then ``+ offset``, two roundings in ``T`` as numpy's decoding makes them (no fastmath).
    """
    n, cells = raw.shape
    width = max(buf.size // max(n, 1), 1)
    f0, f1, f2, f3 = fills
    for c0 in range(0, cells, width):
        w = min(width, cells - c0)
        strip = buf[: n * w].reshape(n, w)
        for i in range(n):
            for j in range(w):
                r = raw[i, c0 + j]
                bad = (r < keep_lo) | (r > keep_hi)
                bad |= ((n_fills > 0) & (r == f0)) | ((n_fills > 1) & (r == f1))
                bad |= ((n_fills > 2) & (r == f2)) | ((n_fills > 3) & (r == f3))
                strip[i, j] = r  # the cast numpy's copyto makes; then two roundings
                y = strip[i, j] * scale
                strip[i, j] = nan if bad else y + offset
        _strip_sums(strip, first, first + skip, reach0, reach1, block, mean, least, out, c0)


@njit(**_JIT)
def _strip_sums(data, first, start, reach0, reach1, block, mean, least, out, c0):
    """Fill columns ``c0 ..`` of ``out`` with the sums of a strip (records x its cells).

    Counts are float64 (exact below 2**53), so every loop over the cells vectorises in one
    width; a count divides as the float64 it converts to anyway.
    """
    n, cells = data.shape
    total = np.zeros(cells)
    count = np.zeros(cells)
    wild = np.zeros(cells)  # infinities in the window
    for t in range((start // block) * block, start + out.shape[0]):
        if t % block == 0:  # an anchor: its window summed directly, in window order
            total[:] = 0.0
            count[:] = 0.0
            wild[:] = 0.0
            for g in range(max(t - reach0 - first, 0), min(t + reach1 + 1 - first, n)):
                _add(data[g], total, count, wild)
        else:
            enter, leave = t + reach1 - first, t - reach0 - 1 - first
            if 0 <= enter < n:
                _add(data[enter], total, count, wild)
            if 0 <= leave < n:
                _remove(data[leave], total, count, wild)
        if t >= start:
            row = out[t - start, c0 : c0 + cells]
            _finish(data, first, t, reach0, reach1, total, count, wild, mean, least, row)


@njit(**_JIT)
def _add(row, total, count, wild):
    """Add one record's values: branch-free, so the loop vectorises."""
    for j in range(row.shape[0]):
        value = np.float64(row[j])
        finite = np.abs(value) < np.inf
        count[j] += 1.0 if value == value else 0.0
        wild[j] += 1.0 if np.abs(value) == np.inf else 0.0
        total[j] += value if finite else 0.0


@njit(**_JIT)
def _remove(row, total, count, wild):
    """Take away one record's values (adding their negations: the same roundings)."""
    for j in range(row.shape[0]):
        value = np.float64(row[j])
        finite = np.abs(value) < np.inf
        count[j] -= 1.0 if value == value else 0.0
        wild[j] -= 1.0 if np.abs(value) == np.inf else 0.0
        total[j] += -value if finite else 0.0


@njit(**_JIT)
def _direct(data, first, t, reach0, reach1, j):
    """Return the sum of cell ``j``'s values in record ``t``'s window, in window order."""
    total = 0.0
    for g in range(t - reach0, t + reach1 + 1):
        i = g - first
        if 0 <= i < data.shape[0]:
            value = np.float64(data[i, j])
            if value == value:
                total += value
    return total


@njit(**_JIT)
def _finish(data, first, t, reach0, reach1, total, count, wild, mean, least, row):
    """Write record ``t``'s sums or means (NaN with fewer than ``least`` values).

    One branch-free pass (it vectorises), then the rare windows holding an infinity again.
    """
    if mean:
        for j in range(row.shape[0]):
            row[j] = total[j] / count[j] if count[j] >= least else np.nan
    else:
        for j in range(row.shape[0]):
            row[j] = total[j] if count[j] >= least else np.nan
    wild_any = 0.0
    for j in range(row.shape[0]):
        wild_any += wild[j]
    if wild_any == 0.0:
        return
    for j in range(row.shape[0]):
        if wild[j] != 0.0 and count[j] >= least:
            value = _direct(data, first, t, reach0, reach1, j)
            row[j] = value / count[j] if mean else value
