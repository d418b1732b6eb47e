"""Weighted N-D statistics: the built-in ``stats`` with ``--weights``.

The weights are an array broadcastable to one record, ``(1, *row_shape)`` (the job builds
them from cell areas, lat/lon bounds, cos(lat) or a file), bound into the kernel with
:func:`bind_weights`. Per column (the layout of :func:`hpcapp.kernels.nd.as_columns`), a
chunk's partial is ``count`` (cells with a value), ``sum_of_weights`` ``W = sum w``,
``sum = sum w x`` and ``m2 = sum w (x - sum/W)**2`` over the cells with a value: a missing
(NaN) cell drops its weight, as xarray's ``weighted`` with ``skipna``. Two partials merge with
the weighted update of Chan, Golub and LeVeque (``m2 = m2a + m2b + d**2 Wa Wb / W``, ``d`` the
difference of their means), in the fixed tree, so results do not depend on the rank count.

Results: ``mean = sum / W``, ``var = m2 / W`` (no ddof: xarray's ``.weighted(w).var()``),
``std = sqrt(var)``, ``sum`` (the weighted sum), ``sum_of_weights`` and ``count``; ``mean``,
``var`` and ``std`` are NaN where ``W`` is 0 (no value, or zero weights).

The sums are numpy's, except one result per record with the reduced dims trailing (``--over
lat,lon``): each record is reduced on its own by a compiled loop that takes packed chunks as
stored and sums in a fixed order of its own (:mod:`hpcapp.kernels.weighted_rows`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import Kernel, kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, InputInfo, Partial
from hpcapp.kernels.nd import _to_cells, as_columns, check_over
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.weighted_rows import row_weights, rows_partial

RESULTS = ("count", "sum_of_weights", "sum", "mean", "var", "std")


def column_partial(values: np.ndarray, weights: np.ndarray, axis: int = 0) -> Partial:
    """Return the weighted partial of 2-D ``values`` reduced along ``axis`` (weights broadcast).

    In place on one float64 copy of the values, the weighted sums by ``einsum`` (no product
    array): about 4 ns a value, against 21 with a temporary per operation.
    """
    x = np.array(values, dtype=np.float64)
    valid = x == x  # not NaN
    np.copyto(x, 0.0, where=~valid)
    w = np.where(valid, weights, 0.0)  # a missing value drops its weight, whatever it is
    sums = "ij,ij->j" if axis == 0 else "ij,ij->i"
    sw = w.sum(axis=axis)
    swx = np.einsum(sums, w, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sw > 0, swx / sw, 0.0)
    x -= np.expand_dims(mean, axis)
    x *= x
    count = valid.sum(axis=axis, dtype=np.int64)
    return {"count": count, "sum_of_weights": sw, "sum": swx, "m2": np.einsum(sums, x, w)}


def merge_columns(left: Partial, right: Partial) -> Partial:
    """Combine two weighted partials element by element (``left`` covers earlier rows)."""
    wa, wb = left["sum_of_weights"], right["sum_of_weights"]
    w = wa + wb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(wb > 0, right["sum"] / wb, 0.0) - np.where(wa > 0, left["sum"] / wa, 0.0)
        extra = np.where((wa > 0) & (wb > 0), delta * delta * (wa * wb / w), 0.0)
    return {
        "count": left["count"] + right["count"],
        "sum_of_weights": w,
        "sum": left["sum"] + right["sum"],
        "m2": left["m2"] + right["m2"] + extra,
    }


def finish_columns(partial: Partial) -> Partial:
    """Turn a combined weighted partial into mean, var, std, sum, sum_of_weights, count."""
    w = np.asarray(partial["sum_of_weights"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(w > 0, partial["sum"] / w, np.nan)
        var = np.where(w > 0, partial["m2"] / w, np.nan)
    return {
        "count": np.asarray(partial["count"]),
        "sum_of_weights": w,
        "sum": np.asarray(partial["sum"], dtype=np.float64),
        "mean": mean,
        "var": var,
        "std": np.sqrt(var),
    }


def merge(left: Partial, right: Partial) -> Partial:
    """Combine two partials shaped like the kept cells (element-wise: grouped runs too)."""
    return merge_columns(left, right)


def finalize(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Finish the combined partial: results shaped like the kept cells."""
    return finish_columns(partial)


def weighted_partial(chunk: np.ndarray | Packed, weights: np.ndarray, over: Any) -> Partial:
    """Return the weighted partial of one chunk, its arrays shaped like the kept cells."""
    shape = tuple(chunk.shape)
    axes = check_over(over, len(shape))
    kept = [a for a in range(len(shape)) if a not in axes]
    if kept and kept == list(range(len(kept))):
        # The kept axes lead (--over lat,lon: one result per record): the compiled loop
        # reduces each row on its own, along its contiguous tail, decoding a packed chunk.
        n_kept = len(kept)
        partial = rows_partial(chunk, row_weights(weights, shape, n_kept), n_kept)
        return _to_cells(partial, math.prod(shape[:n_kept]), shape[:n_kept])
    values = chunk.decoded() if isinstance(chunk, Packed) else chunk
    columns, kept_shape = as_columns(values, axes)
    w_columns, _ = as_columns(np.broadcast_to(weights, values.shape), axes)
    partial = column_partial(columns, w_columns)
    return _to_cells(partial, columns.shape[1], kept_shape)


@kernel(combine=merge, elementwise=True, finalize=finalize, over=True)
def weighted_stats(
    chunk: np.ndarray | Packed, weights: Any = None, over: Any = DEFAULT_OVER
) -> Partial:
    """Weighted count, sum_of_weights, sum, mean, var, std over --over (see the module)."""
    if weights is None:
        raise ValueError("weighted_stats needs weights")
    partial = weighted_partial(chunk, np.asarray(weights, dtype=np.float64), over)
    if 0 in check_over(over, len(chunk.shape)):
        return partial
    return finish_columns(partial)  # each record on its own: finished in its chunk


def bind_weights(kern: Kernel, weights: np.ndarray | None, params: Mapping[str, Any]) -> Kernel:
    """Return the weighted kernel with ``weights`` bound, or ``kern`` when there are none.

    ``over`` without the record axis (``--over lat,lon``): every result is a per-row output,
    as :func:`hpcapp.kernels.nd.bind_over` makes the unweighted ones.
    """
    if weights is None:
        return kern
    bound = np.asarray(weights, dtype=np.float64)

    def func(chunk: np.ndarray | Packed, **given: Any) -> Partial:
        # bins and range (histograms) stay in params as stats' defaults: not weighted, unused.
        return weighted_stats.func(chunk, weights=bound, over=given.get("over", DEFAULT_OVER))

    def prepare(params: Mapping[str, Any], data: InputInfo) -> None:
        # Load the compiled loop before the first chunk: start-up, not the first chunk's time.
        unpack = data.unpack
        zeros = np.zeros((1, *(data.row_shape or ())), unpack.stored if unpack else data.dtype)
        func(Packed(zeros, unpack) if unpack else zeros, over=params.get("over", DEFAULT_OVER))

    func.__name__ = func.__qualname__ = "weighted_stats"
    func.__doc__ = weighted_stats.__doc__
    func.weighted = True  # type: ignore[attr-defined]  # the output describes it as stats
    base = dataclasses.replace(weighted_stats, func=func, name=kern.name)
    if 0 in tuple(params.get("over", DEFAULT_OVER)):
        return base
    # One result per record: packed chunks come as stored (see hpcapp.kernels.weighted_rows).
    per_row = dataclasses.replace(base, packed=True, prepare=prepare)
    return dataclasses.replace(per_row, per_row=RESULTS, combine="sum", finalize=None)
