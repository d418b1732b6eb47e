"""Whole-series kernels: ``quantile`` and ``median`` of each cell's series, as numpy computes them.

A series kernel (declared ``series=True``) is called with ``(records, cells)``: every record of a
tile of cells, which the transpose (:mod:`hpcapp.parallel.transpose`) assembles from record
chunks. Missing values (NaN) are skipped: the results equal ``numpy.nanquantile(values, q,
axis=0, method=...)`` bit for bit. Decoded values: each run of cells with the same count of
valid values goes through ``numpy.quantile`` itself. CF-packed 8- and 16-bit integers (declared
``packed``: the transpose hands them over as stored, a :class:`Packed` tile) are selected as
stored when their decoding is monotone: numpy's ranks, gamma and lerp on the few order
statistics each cell needs (:func:`order_plan`, :mod:`hpcapp.kernels._select`), ~8x faster on
one core than numpy on the decoded float64 (``scripts/bench.py quantile-cells``). Nothing here
imports MPI.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np

from hpcapp.kernels import _loops
from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, InputInfo, Partial
from hpcapp.kernels.packed import MAX_FILLS, LinearUnpack, Packed

# numpy's quantile methods (numpy.quantile's ``method``), the default first.
METHODS = (
    "linear",
    "inverted_cdf",
    "averaged_inverted_cdf",
    "closest_observation",
    "interpolated_inverted_cdf",
    "hazen",
    "weibull",
    "median_unbiased",
    "normal_unbiased",
    "lower",
    "higher",
    "midpoint",
    "nearest",
)


def levels(q: Any) -> np.ndarray:
    """Return ``-p q`` as float64 probabilities in [0, 1] (a list, or one number); ValueError."""
    items = q if isinstance(q, (list, tuple)) else [q]
    if not items or not all(isinstance(x, Real) and not isinstance(x, bool) for x in items):
        raise ValueError(f"-p q must be numbers in [0, 1], comma-separated, got {q!r}")
    found = np.asarray(items, dtype=np.float64)
    if not np.all((found >= 0) & (found <= 1)):
        raise ValueError(f"-p q must lie in [0, 1], got {q!r}")
    return found


def cell_quantiles(series: np.ndarray | Packed, q: Any, method: str = "linear") -> np.ndarray:
    """Return ``numpy.nanquantile(series, q, axis=0, method=method)`` of ``(records, cells)``.

    ``Packed`` 8- and 16-bit integers whose decoding is monotone are selected as stored by
    compiled loops (:mod:`hpcapp.kernels._select`), and only the chosen values are decoded;
    other ``Packed`` series are decoded a block of cells at a time. Decoded values go to
    numpy's quantile, grouped by their count of valid values. All-NaN cells give NaN.
    """
    probs = levels(q)
    stored = series.stored if isinstance(series, Packed) else np.asarray(series)
    flat = stored.reshape(len(stored), -1)
    out = np.empty((len(probs), flat.shape[1]))
    if not isinstance(series, Packed):
        _numpy_cells(flat, probs, method, out)
    elif flat.dtype.itemsize <= 2 and monotone(series.unpack) is not None:
        _packed_cells(Packed(flat, series.unpack), probs, method, out)
    else:  # decoded a block at a time: float64 and numpy's copies stay within the tile's bytes
        step = max(1, flat.shape[1] * flat.dtype.itemsize // 32)
        for first in range(0, flat.shape[1], step):
            block = series.unpack.decode(flat[:, first : first + step])
            _numpy_cells(block, probs, method, out[:, first : first + step])
    out = out.reshape(len(probs), *stored.shape[1:])
    return out if isinstance(q, (list, tuple)) else out[0]


def _numpy_cells(series: np.ndarray, probs: np.ndarray, method: str, out: np.ndarray) -> None:
    """Write numpy's quantiles of each cell of decoded ``(records, cells)`` into ``out``.

    Cells are grouped by their count of valid values, so numpy's quantile runs on each group
    at once instead of once per cell: a group's series (a copy, cells along rows) are
    partitioned so the valid values come first (NaN order last), and numpy's quantile takes
    those.
    """
    values = np.asarray(series, dtype=np.float64)
    n_records = values.shape[0]
    valid = n_records - np.isnan(values).sum(axis=0)
    columns = values.T  # (cells, records), a view: each group gathers its own copy
    out[...] = np.nan
    chosen: Any = method  # one of METHODS (check_params)
    for count in np.unique(valid):
        if count == 0:
            continue
        cells = np.flatnonzero(valid == count)
        group = np.ascontiguousarray(columns[cells])  # its own copy: partitioned in place
        if count < n_records:
            group.partition(count - 1, axis=1)  # the valid values first, NaN after them
        found = np.quantile(group[:, :count], probs, axis=1, method=chosen, overwrite_input=True)
        out[:, cells] = found


def monotone(unpack: LinearUnpack) -> tuple[Any, Any] | None:
    """Return ``(scale, offset)`` in the decoded dtype if decoding keeps or reverses the order.

    ``T(raw) * scale + offset`` rounded in ``T`` is non-decreasing in ``raw`` for a finite
    ``scale > 0`` (non-increasing for ``scale < 0``) and a finite ``offset``. A zero scale
    makes zeros of both signs, which numpy orders as it meets them: None, decode first.
    """
    kind = np.dtype(unpack.dtype).type
    with np.errstate(over="ignore"):
        scale, offset = kind(unpack.scale), kind(unpack.offset)
    if not (np.isfinite(scale) and np.isfinite(offset) and scale != 0):
        return None
    return scale, offset


def _packed_cells(series: Packed, probs: np.ndarray, method: str, out: np.ndarray) -> None:
    """Write the quantiles of each cell of stored ``(records, cells)`` integers into ``out``."""
    unpack = series.unpack
    stored = np.ascontiguousarray(series.stored)
    code = stored.dtype.type
    decoding = monotone(unpack)
    assert decoding is not None  # cell_quantiles' check
    scale, offset = decoding
    lo, hi = code(unpack.keep_lo), code(unpack.keep_hi)
    fills = tuple(code(f) for f in (*unpack.fills, *(0,) * (MAX_FILLS - len(unpack.fills))))
    n_fills = len(unpack.fills)
    # numpy's plan for every count a cell can have: row n for n valid values.
    prev, nxt, gamma, interpolate = order_plan(np.arange(len(stored) + 1), probs, method)
    compiled = _loops.select_loop(stored.dtype, np.dtype(type(scale)))
    base = int(np.iinfo(stored.dtype).min)
    target = out if out.flags.c_contiguous else np.empty(out.shape)
    compiled(stored, lo, hi, fills, n_fills, base, scale, offset, bool(scale < 0), prev, nxt,
             gamma, interpolate, target)  # fmt: skip
    if target is not out:
        out[...] = target


def order_plan(
    counts: np.ndarray, probs: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Return numpy's ranks and gamma for each count of valid values (rows) and level (columns).

    ``(prev, next, gamma, interpolate)``: 0-based ranks of the sorted valid values; with
    ``interpolate`` the quantile is numpy's lerp of the two values by gamma, else the value at
    ``prev``. numpy's own private steps (as ``numpy.quantile`` takes them), on every count at
    once: each is elementwise, so the same bits as numpy's per-series call (the tests compare
    every method with ``numpy.nanquantile``).
    """
    impl: Any = importlib.import_module("numpy.lib._function_base_impl")  # numpy's private steps

    n = np.maximum(np.asarray(counts, np.int64), 1).reshape(-1, 1)  # a count of 0: never used
    shape = (len(n), len(probs))
    props = impl._QuantileMethods[method]
    virtual = np.asanyarray(props["get_virtual_index"](n, probs))
    integral = np.issubdtype(virtual.dtype, np.integer)
    if props["fix_gamma"] is None or (method == "linear" and integral):
        taken = np.array(np.broadcast_to(virtual, shape) % n, np.int64)
        return taken, taken, np.zeros(shape), False
    prev, nxt = impl._get_indexes(np.empty(0), virtual, n)
    gamma = np.array(np.broadcast_to(impl._get_gamma(virtual, prev, props), shape), np.float64)
    ranks = [np.array(np.broadcast_to(i, shape) % n, np.int64) for i in (prev, nxt)]
    return ranks[0], ranks[1], gamma, True


@dataclasses.dataclass(frozen=True)
class OrderStatistics:
    """The whole field, as its count of valid values and a way to fetch values by rank.

    ``fetch(ranks)`` returns the values at those 0-based ranks of the sorted valid values; the
    transpose passes it (a collective selection) instead of the field, which no rank holds.
    """

    count: int
    fetch: Callable[[np.ndarray], np.ndarray]


def whole_quantiles(field: OrderStatistics, q: Any, method: str = "linear") -> np.ndarray:
    """Return ``numpy.nanquantile`` of the whole field from the few order statistics it needs.

    numpy's own steps (its private method table, neighbour indexes, gamma and lerp, as in
    ``numpy.quantile``) on the values at the ranks they name: the same bits as numpy on the
    whole array, without it. The tests compare every method with numpy.
    """
    impl: Any = importlib.import_module("numpy.lib._function_base_impl")  # numpy's private steps

    probs = levels(q)
    n = field.count
    if n == 0:
        found = np.full(len(probs), np.nan)
        return found if isinstance(q, (list, tuple)) else found[0]
    props = impl._QuantileMethods[method]
    virtual = np.asanyarray(props["get_virtual_index"](n, probs))
    integral = np.issubdtype(virtual.dtype, np.integer)
    if props["fix_gamma"] is None or (method == "linear" and integral):
        wanted = [np.asarray(virtual, np.intp)]
    else:
        wanted = list(impl._get_indexes(np.empty(0), virtual, n))
    ranks = np.unique(np.concatenate([w.ravel() % n for w in wanted]))
    values = np.asarray(field.fetch(ranks), np.float64)
    picked = [values[np.searchsorted(ranks, w % n)] for w in wanted]
    if len(picked) == 1:
        found = picked[0]
    else:
        gamma = impl._get_gamma(virtual, wanted[0], props)
        found = np.asarray(impl._lerp(picked[0], picked[1], gamma))
    return found if isinstance(q, (list, tuple)) else found[0]


def check_params(params: Mapping[str, Any], data: InputInfo) -> None:
    """Refuse q outside [0, 1], a method numpy does not have, and --over other than time or all."""
    if "q" in params:
        levels(params["q"])
    if params.get("method") not in METHODS:
        raise ValueError(f"-p method must be one of numpy's: {', '.join(METHODS)}")
    over = tuple(params.get("over", DEFAULT_OVER))
    if data.row_shape is not None:
        every = tuple(range(1 + len(data.row_shape)))
        if over not in (DEFAULT_OVER, every):
            raise ValueError(
                "reduces each cell over the record dimension (--over with the first dimension "
                "only) or the whole field (--over every dimension), nothing in between"
            )


def _check_over(over: Sequence[int], ndim: int) -> None:
    if tuple(over) not in (DEFAULT_OVER, tuple(range(ndim))):
        raise ValueError(f"over must be (0,) or every axis, got {tuple(over)}")


@kernel(validate=check_params, over=True, series=True)
def quantile(
    series: np.ndarray | Packed | OrderStatistics,
    q: Any,
    method: str = "linear",
    over: Any = DEFAULT_OVER,
) -> Partial:
    """Quantiles q of each cell's series (-p q=0.1,0.5,0.9), missing values skipped."""
    if isinstance(series, OrderStatistics):  # the whole field, by distributed selection
        return {"quantile": whole_quantiles(series, q, method)}
    _check_over(over, len(series.shape))
    whole = len(tuple(over)) > 1
    values = series
    if whole:
        values = (
            series.with_stored(series.stored.reshape(-1, 1))
            if isinstance(series, Packed)
            else np.reshape(series, (-1, 1))
        )
    found = cell_quantiles(values, q, method)
    if whole:  # the whole field: one value per q
        found = found.reshape(np.shape(found)[:-1])
    return {"quantile": found}


@kernel(validate=check_params, over=True, series=True)
def median(
    series: np.ndarray | Packed | OrderStatistics, method: str = "linear", over: Any = DEFAULT_OVER
) -> Partial:
    """Median of each cell's series (quantile q=0.5), missing values skipped."""
    found = quantile.func(series, q=0.5, method=method, over=over)["quantile"]
    return {"median": found}


# packed: the transpose hands CF-packed tiles over as stored (int16: a quarter of the bytes of
# float64) with their unpacking; only the selected values are decoded.
quantile = dataclasses.replace(quantile, packed=True)
median = dataclasses.replace(median, packed=True)
