"""Weighted statistics of each record by the compiled loop: packed chunks decoded in it.

With ``--over`` the trailing dimensions (``--over lat,lon``: one result per record), every row
of the chunk laid out as ``(kept cells, reduced cells)`` is reduced on its own. The loop of
:mod:`hpcapp.kernels._weighted_loops` (prebuilt, or numba's JIT: see
:mod:`hpcapp.kernels._loops`) takes the stored integers of a packed chunk and decodes them row
by row, so there is no decoded chunk, and sums each row in one fixed order that depends on the
row alone: the same bits at any rank count, chunk size or schedule.
"""

from __future__ import annotations

import math

import numpy as np

from hpcapp.kernels import _loops
from hpcapp.kernels.hookspec import Partial
from hpcapp.kernels.packed import Packed

FLOATS = ("f4", "f8")


def row_weights(weights: np.ndarray, shape: tuple[int, ...], n_kept: int) -> np.ndarray:
    """Return the weights of a chunk's rows, ``(m, reduced cells)``: row ``i`` takes ``i % m``.

    ``weights`` is broadcastable to one record; ``shape`` is the chunk's and its first
    ``n_kept`` axes are kept (``m`` runs over the kept axes after the record axis).
    """
    record = np.broadcast_to(weights, (1, *shape[1:]))
    m = math.prod(shape[1:n_kept])
    return np.ascontiguousarray(record.reshape(m, -1), dtype=np.float64)


def rows_partial(chunk: np.ndarray | Packed, weights: np.ndarray, n_kept: int) -> Partial:
    """Return count, sum_of_weights, sum and m2 of each kept cell, from the leading axes.

    ``weights`` are :func:`row_weights`' for this chunk's shape. A packed chunk is decoded in
    the loop; others are reduced as float64 (float32 values as they are).
    """
    packed = chunk if isinstance(chunk, Packed) else None
    stored = np.asarray(packed.stored if packed is not None else chunk)
    n_rows, n_cells = math.prod(stored.shape[:n_kept]), math.prod(stored.shape[n_kept:])
    if packed is None and stored.dtype.str[1:] not in FLOATS:
        stored = stored.astype(np.float64)  # as column_partial makes it: same values
    native = stored.dtype.newbyteorder("=")
    rows = np.ascontiguousarray(stored.reshape(n_rows, n_cells), dtype=native)
    if rows.shape[1] != weights.shape[1] or (n_rows and n_rows % weights.shape[0]):
        raise ValueError(f"weights {weights.shape} do not fit rows {rows.shape}")
    count = np.zeros(n_rows, np.int64)
    sums = np.zeros(n_rows), np.zeros(n_rows), np.zeros(n_rows)
    if packed is None:
        _loops.weighted_loop(native)(rows, weights, count, *sums)
    else:
        unpack = packed.unpack
        values = np.dtype(unpack.dtype)
        buf = np.empty(max(n_cells, 1), values)  # one decoded row, reused
        loop = _loops.weighted_loop(native, values)
        loop(rows, weights, *unpack.loop_arguments(), buf, count, *sums)
    return {"count": count, "sum_of_weights": sums[0], "sum": sums[1], "m2": sums[2]}
