"""Compiled exact integer moments for large ``stats`` chunks (numba; imported on first use).

Driven by :func:`hpcapp.kernels._fused_call.chunk_moments`.

The same sums as :func:`hpcapp.kernels._exact.chunk_moments` (see there for the limb format),
in one pass over the chunk: each value is cut into 16-bit pieces and the products of pieces are
added into int64 limbs, carries propagated every ``ROW_BLOCK`` rows and at the end. The result
is the unique normal form of exact integers, so it is bitwise the numpy path's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from hpcapp.kernels._exact import LIMB_BITS, LIMBS, ROW_BLOCK

_JIT: dict[str, Any] = {"nogil": True, "cache": True, "error_model": "numpy"}
_MASK = (1 << LIMB_BITS) - 1


@njit(**_JIT)
def _normalize(limbs):
    """Propagate carries so that all limbs but the last are in [0, 2**16)."""
    for j in range(limbs.shape[0]):
        for k in range(LIMBS - 1):
            carry = limbs[j, k] >> LIMB_BITS
            limbs[j, k] &= _MASK
            limbs[j, k + 1] += carry


@njit(inline="always", **_JIT)
def _add_value(x, j, pieces, unsigned, s1, s2):
    """Add one value's pieces and the products of its pieces into column ``j``'s limbs."""
    if pieces == 1:
        s1[j, 0] += x
        s2[j, 0] += x * x
    elif pieces == 2:
        a0, a1 = x & _MASK, x >> 16
        s1[j, 0] += a0
        s1[j, 1] += a1
        s2[j, 0] += a0 * a0
        s2[j, 1] += 2 * a0 * a1
        s2[j, 2] += a1 * a1
    else:
        a0, a1, a2 = x & _MASK, (x >> 16) & _MASK, (x >> 32) & _MASK
        a3 = (x >> 48) & _MASK if unsigned else x >> 48
        s1[j, 0] += a0
        s1[j, 1] += a1
        s1[j, 2] += a2
        s1[j, 3] += a3
        s2[j, 0] += a0 * a0
        s2[j, 1] += 2 * a0 * a1
        s2[j, 2] += 2 * a0 * a2 + a1 * a1
        s2[j, 3] += 2 * (a0 * a3 + a1 * a2)
        s2[j, 4] += 2 * a1 * a3 + a2 * a2
        s2[j, 5] += 2 * a2 * a3
        s2[j, 6] += a3 * a3


@njit(**_JIT)
def moments(flat, n_cols, pieces, unsigned, s1, s2):
    """Add the pieces of each value and their pairwise products into the limbs ``s1``, ``s2``."""
    n_rows = flat.size // n_cols
    for start in range(0, n_rows, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n_rows)
        for i in range(start, stop):
            for j in range(n_cols):
                _add_value(np.int64(flat[i * n_cols + j]), j, pieces, unsigned, s1, s2)
        _normalize(s1)
        _normalize(s2)
