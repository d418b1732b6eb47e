"""Compiled running window sums behind ``rolling``'s mean and sum (numba; imported on first use).

The sums restart at fixed global anchors: record ``t``'s chain starts at ``a = (t // block) *
block``, whose window is summed directly in window order; each later record of the block adds
the value entering its window and subtracts the one leaving it. Every record is thus computed
by the same operations whatever the chunk it falls in. Only finite values enter the running
sum; a window holding an infinity is summed directly (as the anchor is), so no ``inf - inf``
lingers in a chain.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
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


@njit(cache=True)
def running_sums(data, first, skip, reach0, reach1, block, mean, least, out):
    """Fill ``out`` (own rows x cells) with the window sums or means of ``data``'s own records.

    ``data`` (records x cells) holds records ``first ..`` of the input; its own records start
    at ``data[skip]``; it must hold every record from the anchor of its first own record minus
    ``reach0`` (or from the input's start). Records outside ``data`` are past the input's ends.
    """
    n, cells = data.shape
    start = first + skip
    total = np.zeros(cells)
    count = np.zeros(cells, np.int64)
    wild = np.zeros(cells, np.int64)  # infinities in the window
    for t in range((start // block) * block, start + out.shape[0]):
        if t % block == 0:  # an anchor: its window summed directly, in window order
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
    """Add (sign 1) or take away (-1) one record's values: branch-free, so the loop vectorises."""
    for j in range(row.shape[0]):
        value = np.float64(row[j])
        present = value == value
        finite = np.abs(value) < np.inf
        count[j] += np.int64(sign) * present
        wild[j] += np.int64(sign) * (np.int64(present) - np.int64(finite))
        total[j] += sign * value if finite else 0.0


@njit(cache=True)
def _finish(data, first, t, reach0, reach1, total, count, wild, mean, least, row):
    """Write record ``t``'s sums or means (NaN with fewer than ``least`` values)."""
    for j in range(row.shape[0]):
        if count[j] < least:  # (never a division by no values)
            row[j] = np.nan
            continue
        value = total[j] if wild[j] == 0 else _direct(data, first, t, reach0, reach1, j)
        row[j] = value / count[j] if mean else value
