"""N-D reductions: the 2-D column kernel ``stats`` over any dimensions of an N-D chunk.

A chunk is ``(rows, *rest)``; ``over`` is the tuple of axes to reduce (0 is the record axis the
chunks cut). The chunk is laid out as a 2-D ``(reduced values, kept cells)`` array and handed to
:func:`hpcapp.kernels.stats.stats`, used as a black box that returns per-column partials:

- ``0 in over``: a column per kept cell; partials of every chunk combine in the tree as before
  and finish as arrays shaped like the kept dimensions (``--over time`` on (time, lat, lon):
  (lat, lon); histograms (lat, lon, bin); every axis: scalars).
- ``0 not in over``: a column per (record, kept cell); each chunk finishes its own records, which
  become per-row outputs written in input order (``--over lat,lon``: a time series).

Partials are kept shaped like the kept cells (``count`` has exactly that shape) and flattened to
columns only around the calls into ``stats``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpcapp.kernels import stats as column_stats
from hpcapp.kernels.api import Kernel, kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, InputInfo, Partial
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.partials import with_attrs
from hpcapp.kernels.stats_select import parse_stats, trim_partial, trim_results


def check_over(over: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Return ``over`` as sorted, distinct, non-negative axes of an ``ndim``-D chunk."""
    axes = tuple(sorted({int(a) % ndim if -ndim <= int(a) < ndim else -1 for a in over}))
    if not axes or axes[0] < 0 or len(axes) != len(tuple(over)):
        raise ValueError(f"over must name distinct axes of a {ndim}-D chunk, got {tuple(over)}")
    return axes


def as_columns(chunk: np.ndarray, over: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Lay ``chunk`` out as (reduced values, kept cells); return it and the kept cells' shape."""
    axes = check_over(over, chunk.ndim)
    kept = [a for a in range(chunk.ndim) if a not in axes]
    kept_shape = tuple(chunk.shape[a] for a in kept)
    order = [*axes, *kept]
    moved = chunk if order == sorted(order) else chunk.transpose(order)
    return moved.reshape(math.prod(moved.shape[: len(axes)]), math.prod(kept_shape)), kept_shape


def _to_cells(values: Partial, n_cells: int, cells: tuple[int, ...]) -> Partial:
    """Reshape every array whose first axis runs over the columns to lead with ``cells``."""
    out: Partial = {}
    for key, value in values.items():
        notes = getattr(value, "attrs", None)  # e.g. why a sum is rounded (api.with_attrs)
        value = np.asarray(value)
        per_column = value.ndim >= 1 and value.shape[0] == n_cells
        if key == "hist_edges" and value.ndim == 1:
            per_column = False  # the shared edges, however many columns there are
        shaped = value.reshape((*cells, *value.shape[1:])) if per_column else value
        out[key] = with_attrs(shaped, **notes) if notes else shaped
    return out


def _to_columns(values: Partial, cells: tuple[int, ...]) -> Partial:
    """Undo :func:`_to_cells`: lead with one axis of columns (shape taken from ``count``)."""
    n = len(cells)
    return {
        key: value
        if key == "hist_edges" and value.ndim == 1
        else value.reshape(math.prod(cells), *value.shape[n:])
        for key, value in values.items()
    }


def merge(left: Partial, right: Partial) -> Partial:
    """Combine two partials shaped like the kept cells with the column kernel's combine."""
    cells = np.shape(left["count"])
    if len(cells) == 1:  # one kept axis: already columns, and reshaping them changes nothing
        return column_stats.merge_stats(left, right)  # (every chunk: 40 -> 15 us a merge)
    merged = column_stats.merge_stats(_to_columns(left, cells), _to_columns(right, cells))
    return _to_cells(merged, math.prod(cells), cells)


def finalize(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Finish the combined partial: mean, var, std, ... shaped like the kept cells."""
    cells = np.shape(partial["count"])
    results = column_stats.finish_stats(_to_columns(partial, cells), params)
    return _to_cells(trim_results(results, params), math.prod(cells), cells)


def check_params(params: Mapping[str, Any], data: InputInfo) -> None:
    """Validate the histogram parameters against the data's dtype and the kept cells.

    ``over`` itself is checked against the chunk's dimensions by :func:`check_over`. The
    column kernel sees one column per kept cell, so per-column ranges count kept cells.
    """
    kept = None
    if data.row_shape is not None:
        axes = set(params.get("over", DEFAULT_OVER))
        kept = tuple(n for axis, n in enumerate(data.row_shape, start=1) if axis not in axes)
    column_stats.validate_stats(params, dataclasses.replace(data, row_shape=kept))
    parse_stats(params.get("stats"))


def _per_record(
    chunk: np.ndarray, bins: int, value_range: Any, over: Sequence[int], asked: Any = None
) -> Partial:
    """Finish each record of the chunk on its own: results lead with (rows, *kept other axes)."""
    columns, kept_shape = as_columns(chunk, over)
    partial = column_stats.stats(columns, bins=bins, range=value_range)
    results = column_stats.finalize_stats(partial, bins=bins, range=value_range)
    return _to_cells(trim_results(results, {"stats": asked}), columns.shape[1], kept_shape)


def prepare_stats(params: Mapping[str, Any], data: InputInfo) -> None:
    """Run the N-D ``stats`` once on zeros shaped like the job's chunks (see warm_rows)."""
    shape = data.chunk_shape
    warm = (column_stats.warm_rows(shape), *shape[1:])
    if data.unpack is not None:  # the chunks come packed: load the loop that decodes them
        stats(Packed(np.zeros(warm, np.dtype(data.unpack.stored)), data.unpack), **params)
    else:
        stats(np.zeros(warm, dtype=data.dtype), **params)


@kernel(
    combine=merge,
    elementwise=True,  # each cell merges on its own: grouped runs merge many groups at once
    finalize=finalize,
    validate=check_params,
    prepare=prepare_stats,
    over=True,
)
def stats(
    chunk: np.ndarray | Packed,
    bins: int = 64,
    range: Any = None,
    over: Any = DEFAULT_OVER,
    stats: Any = None,
) -> Partial:
    """Count, nan_count, sum, mean, var, std, min, max (hist if -p range=LO,HI) over --over.

    ``stats`` (e.g. ``mean,std``) keeps only those results: see hpcapp.kernels.stats_select.
    """
    packed = chunk if isinstance(chunk, Packed) else None
    stored = packed.stored if packed is not None else chunk
    assert isinstance(stored, np.ndarray)
    axes = check_over(over, stored.ndim)
    asked = {"stats": stats}
    if 0 not in axes:
        decoded = packed.decoded() if packed is not None else stored
        return _per_record(decoded, bins, range, axes, stats)
    if stored.ndim == 2 and axes == (0,):  # the 2-D case as it always was
        return trim_partial(column_stats.stats(chunk, bins=bins, range=range), asked)
    columns, kept_shape = as_columns(stored, axes)
    given = packed.with_stored(columns) if packed is not None else columns
    partial = trim_partial(column_stats.stats(given, bins=bins, range=range), asked)
    return _to_cells(partial, columns.shape[1], kept_shape)


# Packed chunks (CF packing decoded in the compiled pass) are welcome: see above.
stats = dataclasses.replace(stats, packed=True)


def bind_over(kern: Kernel, params: dict[str, Any]) -> Kernel:
    """Return the kernel to run for these params: built-in stats over records gets per-row keys.

    With ``0 not in over`` every result belongs to one record: they become per-row outputs
    (written in input order by rank 0), and only the histogram edges, the same in every chunk,
    are combined (their minimum is themselves).
    """
    if kern.func is not stats.func or 0 in tuple(params.get("over", DEFAULT_OVER)):
        return kern
    probe = _per_record(
        np.zeros((1, 1)), params["bins"], params["range"], (1,), params.get("stats")
    )
    per_row = tuple(key for key in probe if key != "hist_edges")
    # Without a range there are no edges, and nothing left to combine.
    combine = {"hist_edges": "min"} if "hist_edges" in probe else "sum"
    return dataclasses.replace(kern, per_row=per_row, combine=combine, finalize=None)
