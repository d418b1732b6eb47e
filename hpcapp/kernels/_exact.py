"""Exact integer moments for the ``stats`` kernel: sums of x and x*x as multi-word integers.

An exact integer is held as ``LIMBS`` signed 64-bit words ("limbs") of ``LIMB_BITS`` bits each,
value ``sum(limb[k] << (LIMB_BITS * k))``, along the last axis of an int64 array (so columns
stay vectorised). In the normal form every limb but the last is in ``[0, 2**LIMB_BITS)`` and the
last carries the sign; that form is unique, so equal integers have equal bits whichever path or
merge order produced them. 14 limbs of 16 bits hold 223 bits and a sign: a sum of up to 2**63
squares of 64-bit values needs 191.

A value is cut into 16-bit pieces (one piece for 8/16-bit dtypes, two for 32-bit, four for
64-bit; the top piece is signed for signed dtypes). The square of a value is the sum of products
of pieces, each below 2**32, added into the limb of their position: up to 2**24 rows of int64
sums cannot overflow before the carries are propagated. Nothing here is rounded.
"""

from __future__ import annotations

import math

import numpy as np

LIMB_BITS = 16
LIMBS = 14
_MASK = (1 << LIMB_BITS) - 1
# Rows summed between two carry propagations: 4 products below 2**32 per limb and row, so
# 2**24 rows stay below 2**58.
ROW_BLOCK = 1 << 24


def n_pieces(dtype: np.dtype) -> int:
    """Return how many 16-bit pieces a value of integer ``dtype`` is cut into."""
    return {1: 1, 2: 1, 4: 2, 8: 4}[dtype.itemsize]


def normalize(limbs: np.ndarray) -> np.ndarray:
    """Propagate carries in place so that all limbs but the last are in [0, 2**16)."""
    for k in range(LIMBS - 1):
        carry = limbs[..., k] >> LIMB_BITS  # arithmetic shift: floor division, negatives too
        limbs[..., k] &= _MASK
        limbs[..., k + 1] += carry
    return limbs


def add(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return the exact sum of two limb arrays, in normal form."""
    return normalize(left + right)


def _pieces(block: np.ndarray) -> list[np.ndarray]:
    """Cut a 2-D native integer block into int64 pieces with sum(piece << 16 i) == value."""
    count = n_pieces(block.dtype)
    if count == 1:
        return [block.astype(np.int64)]
    if count == 2:
        wide = block.astype(np.int64)
        return [wide & _MASK, wide >> 16]
    wide = block.view(np.int64) if block.dtype.kind == "u" else block.astype(np.int64)
    top = wide >> 48
    if block.dtype.kind == "u":
        top &= _MASK  # the sign bit of the int64 view is the top bit of the unsigned value
    return [wide & _MASK, (wide >> 16) & _MASK, (wide >> 32) & _MASK, top]


def chunk_moments(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact per-column sums of x and x*x of a 2-D native integer chunk, as limbs."""
    n_cols = chunk.shape[1]
    s1 = np.zeros((n_cols, LIMBS), np.int64)
    s2 = np.zeros((n_cols, LIMBS), np.int64)
    for start in range(0, chunk.shape[0], ROW_BLOCK):
        pieces = _pieces(chunk[start : start + ROW_BLOCK])
        for i, a in enumerate(pieces):
            s1[:, i] += a.sum(axis=0)
            s2[:, 2 * i] += np.einsum("ij,ij->j", a, a)
            for j in range(i + 1, len(pieces)):
                s2[:, i + j] += 2 * np.einsum("ij,ij->j", a, pieces[j])
        normalize(s1)
        normalize(s2)
    return s1, s2


def _midpoint(a: float, b: float) -> tuple[int, int]:
    """Return (a + b) / 2 exactly, as an integer numerator and a power-of-two denominator."""
    pa, qa = a.as_integer_ratio()
    pb, qb = b.as_integer_ratio()
    return pa * qb + pb * qa, 2 * qa * qb


def sqrt_rounded(num: int, den: int) -> float:
    """Return the float64 nearest to sqrt(num / den), for integers num >= 0 and den > 0."""
    if num == 0:
        return 0.0
    y = math.sqrt(num / den)  # int / int is correctly rounded; its sqrt is within an ulp or so
    for _ in range(8):
        # y is right when num / den lies between the squares of the midpoints to its
        # neighbours: compared exactly, in integers.
        low, low_den = _midpoint(y, math.nextafter(y, 0.0))
        high, high_den = _midpoint(y, math.nextafter(y, math.inf))
        if num * low_den * low_den < low * low * den:
            y = math.nextafter(y, 0.0)
        elif num * high_den * high_den > high * high * den:
            y = math.nextafter(y, math.inf)
        else:
            break
    return y


def finalize_moments(
    count: np.ndarray, s1: np.ndarray, s2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return sum (exact integers, as objects), mean, var, std: each correctly rounded."""
    shape = count.shape
    counts = count.reshape(-1)
    # Python ints from the limbs, all columns at once: limb k weighs 2**(16 k).
    weights = [1 << (LIMB_BITS * k) for k in range(LIMBS)]
    rows1 = s1.reshape(-1, LIMBS).astype(object) @ weights
    rows2 = s2.reshape(-1, LIMBS).astype(object) @ weights
    total = np.empty(counts.size, object)
    mean = np.full(counts.size, np.nan)
    var = np.full(counts.size, np.nan)
    std = np.full(counts.size, np.nan)
    for col, n in enumerate(counts.tolist()):
        sum1, sum2 = int(rows1[col]), int(rows2[col])
        total[col] = sum1
        if n == 0:
            continue
        # int / int is correctly rounded in Python, so these are the exact values rounded once.
        spread = n * sum2 - sum1 * sum1
        mean[col] = sum1 / n
        var[col] = spread / (n * n)
        std[col] = sqrt_rounded(spread, n * n)
    return total.reshape(shape), mean.reshape(shape), var.reshape(shape), std.reshape(shape)


def sum_result(total: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return exact integer sums as int64 if all fit, else rounded float64; and if rounded."""
    values = total.reshape(-1).tolist()
    info = np.iinfo(np.int64)
    if all(info.min <= v <= info.max for v in values):
        return np.array(values, np.int64).reshape(total.shape), False
    # int -> float is correctly rounded in Python.
    return np.array([float(v) for v in values], np.float64).reshape(total.shape), True
