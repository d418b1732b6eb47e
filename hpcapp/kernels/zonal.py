"""Masks and region (zonal) statistics for the built-in ``stats``: ``--mask``, ``--regions``.

A mask (booleans broadcastable to a record, True: kept) makes every masked cell missing: the
chunk is copied with NaN there (integers become float64) and the kernel runs on that.

Region statistics reduce ``--over`` separately for each region of an integer raster over
reduced dimensions: the job gives each cell its region's position in the sorted ids (``index``,
-1 for none) and, with ``--weights``, the weights. Per (kept cell, region), a chunk's partial is
``count``, ``sum_of_weights`` (the count without weights), ``sum = sum w x``,
``m2 = sum w (x - sum/W)**2``, ``min`` and ``max`` over the cells with a value, summed with
``np.bincount`` in the chunk's order; partials merge as :mod:`hpcapp.kernels.weighted`'s
(Chan et al.) in the fixed tree, so results do not depend on the rank count. Results are
shaped ``(*kept, region)`` (``--over lat,lon``: per-row, ``(time, region)``): ``count``,
``sum``, ``mean``, ``var`` (no ddof; weighted: ``m2 / W`` as xarray's ``weighted``), ``std``,
``min``, ``max`` (float64, NaN for a region with no value), ``sum_of_weights`` when weighted,
and ``region``, the ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import Kernel, kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, Partial
from hpcapp.kernels.nd import as_columns, check_over
from hpcapp.kernels.weighted import finish_columns, merge_columns

REGION_KEY = "region"  # the ids: the coordinate of the results' last axis
RESULTS = ("count", "sum_of_weights", "sum", "mean", "var", "std", "min", "max")


def masked(chunk: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Return ``chunk`` with NaN where ``keep`` (broadcastable to it) is False."""
    fill = chunk if chunk.dtype.kind == "f" else chunk.astype(np.float64)
    return np.where(keep, fill, fill.dtype.type(np.nan))


def region_partial(
    chunk: np.ndarray, index: np.ndarray, weights: np.ndarray | None, n: int, over: Any
) -> Partial:
    """Return the per-(kept cell, region) partial of one chunk, shaped ``(*kept, n)``."""
    axes = check_over(over, chunk.ndim)
    values, kept_shape = as_columns(chunk, axes)
    regions, _ = as_columns(np.broadcast_to(index, chunk.shape), axes)
    columns = values.shape[1]
    valid = regions >= 0
    if values.dtype.kind == "f":
        valid &= ~np.isnan(values)
    cells = (regions.astype(np.int64) * columns + np.arange(columns))[valid]
    x = values[valid].astype(np.float64)
    size = n * columns
    count = np.bincount(cells, minlength=size)
    w: np.ndarray | None = None
    if weights is None:
        sw: np.ndarray = count.astype(np.float64)
    else:
        w = as_columns(np.broadcast_to(weights, chunk.shape), axes)[0][valid]
        sw = np.bincount(cells, w, minlength=size)
    swx = np.bincount(cells, x if w is None else w * x, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sw > 0, swx / sw, 0.0)
    dev = x - mean[cells]
    m2 = np.bincount(cells, dev * dev if w is None else w * dev * dev, minlength=size)
    low, high = np.full(size, np.inf), np.full(size, -np.inf)
    np.minimum.at(low, cells, x)
    np.maximum.at(high, cells, x)
    empty = count == 0
    low[empty] = high[empty] = np.nan

    def shaped(flat: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(flat.reshape(n, columns).T).reshape(*kept_shape, n)

    partial = {"count": count, "sum_of_weights": sw, "sum": swx, "m2": m2, "min": low, "max": high}
    return {key: shaped(value) for key, value in partial.items()}


def merge(left: Partial, right: Partial) -> Partial:
    """Combine two region partials (``left`` covers earlier rows); the ids are the same."""
    merged = merge_columns(left, right)
    merged["min"] = np.fmin(left["min"], right["min"])
    merged["max"] = np.fmax(left["max"], right["max"])
    merged[REGION_KEY] = left[REGION_KEY]
    return merged


def finish(partial: Partial, weighted: bool) -> Partial:
    """Turn a combined region partial into the results (see the module)."""
    results = finish_columns(partial)
    if not weighted:
        del results["sum_of_weights"]  # the count again
    results["min"], results["max"] = partial["min"], partial["max"]
    results[REGION_KEY] = np.asarray(partial[REGION_KEY], dtype=np.int64)
    return results


def finalize(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Finish the combined partial (weighted when it was given weights)."""
    return finish(partial, bool(params.get("weighted", False)))


@kernel(combine=merge, finalize=finalize, over=True)
def region_stats(
    chunk: np.ndarray,
    index: Any = None,
    ids: Any = None,
    weights: Any = None,
    over: Any = DEFAULT_OVER,
) -> Partial:
    """Count, sum, mean, var, std, min, max per region of --regions (see the module)."""
    if index is None or ids is None:
        raise ValueError("region_stats needs the regions' index and ids")
    partial = region_partial(chunk, index, weights, len(ids), over)
    partial[REGION_KEY] = np.asarray(ids, dtype=np.int64)
    if 0 in check_over(over, chunk.ndim):
        return partial
    return finish(partial, weights is not None)  # each record on its own: finished here


def _stats_like(func: Any, name: str, doc: str | None) -> Any:
    func.__name__ = func.__qualname__ = name
    func.__doc__ = doc
    func.weighted = True  # the output describes its results as stats'
    return func


def bind_regions(
    kern: Kernel,
    index: np.ndarray,
    ids: np.ndarray,
    weights: np.ndarray | None,
    params: dict[str, Any],
) -> Kernel:
    """Return the region kernel with the regions (and weights) bound, in ``kern``'s name.

    ``over`` without the record axis: every result but the ids is a per-row output.
    """
    bound_index, bound_ids = np.asarray(index), np.asarray(ids, dtype=np.int64)
    bound_weights = None if weights is None else np.asarray(weights, dtype=np.float64)
    weighted = bound_weights is not None

    def func(chunk: np.ndarray, **given: Any) -> Partial:
        over = given.get("over", DEFAULT_OVER)
        return region_stats.func(chunk, bound_index, bound_ids, bound_weights, over)

    def done(partial: Partial, _: Mapping[str, Any]) -> Partial:
        return finish(partial, weighted)

    func = _stats_like(func, "region_stats", region_stats.__doc__)
    base = dataclasses.replace(region_stats, func=func, name=kern.name, finalize=done)
    if 0 in tuple(params.get("over", DEFAULT_OVER)):
        return base
    keys = tuple(k for k in RESULTS if weighted or k != "sum_of_weights")
    return dataclasses.replace(base, per_row=keys, combine={REGION_KEY: "min"}, finalize=None)


def bind_mask(kern: Kernel, keep: np.ndarray | None) -> Kernel:
    """Return ``kern`` running on chunks whose cells ``keep`` is False are NaN (missing)."""
    if keep is None:
        return kern
    inner, bound = kern.func, np.asarray(keep, dtype=bool)

    def func(chunk: np.ndarray, **given: Any) -> Partial:
        return inner(masked(chunk, bound), **given)

    # packed=False: the mask is applied to decoded values, so the chunks come decoded.
    func = _stats_like(func, inner.__name__, inner.__doc__)
    return dataclasses.replace(kern, func=func, packed=False)
