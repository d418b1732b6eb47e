"""Whole-series kernels: ``quantile`` and ``median`` of each cell's series, as numpy computes them.

A series kernel (declared ``series=True``) is called with ``(records, cells)``: every record of a
tile of cells, which the transpose (:mod:`hpcapp.parallel.transpose`) assembles from record
chunks. Missing values (NaN) are skipped: the results equal ``numpy.nanquantile(values, q,
axis=0, method=...)`` bit for bit, because each run of cells with the same count of valid values
goes through ``numpy.quantile`` itself, on those values sorted. Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np

from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, InputInfo, Partial

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


def cell_quantiles(series: np.ndarray, q: Any, method: str = "linear") -> np.ndarray:
    """Return ``numpy.nanquantile(series, q, axis=0, method=method)`` of ``(records, cells)``.

    Cells are grouped by their count of valid values, so numpy's quantile runs on each group
    at once instead of once per cell: a group's series (a copy, cells along rows) are
    partitioned so the valid values come first (NaN order last), and numpy's quantile takes
    those. All-NaN cells give NaN.
    """
    probs = levels(q)
    values = np.asarray(series, dtype=np.float64).reshape(len(series), -1)
    n_records = values.shape[0]
    valid = n_records - np.isnan(values).sum(axis=0)
    columns = values.T  # (cells, records), a view: each group gathers its own copy
    out = np.full((len(probs), values.shape[1]), np.nan)
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
    out = out.reshape(len(probs), *np.shape(series)[1:])
    return out if isinstance(q, (list, tuple)) else out[0]


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
    import importlib

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
    series: np.ndarray | OrderStatistics, q: Any, method: str = "linear", over: Any = DEFAULT_OVER
) -> Partial:
    """Quantiles q of each cell's series (-p q=0.1,0.5,0.9), missing values skipped."""
    if isinstance(series, OrderStatistics):  # the whole field, by distributed selection
        return {"quantile": whole_quantiles(series, q, method)}
    _check_over(over, series.ndim)
    values = series.reshape(-1, 1) if len(tuple(over)) > 1 else series
    found = cell_quantiles(values, q, method)
    if len(tuple(over)) > 1:  # the whole field: one value per q
        found = found.reshape(np.shape(found)[:-1])
    return {"quantile": found}


@kernel(validate=check_params, over=True, series=True)
def median(
    series: np.ndarray | OrderStatistics, method: str = "linear", over: Any = DEFAULT_OVER
) -> Partial:
    """Median of each cell's series (quantile q=0.5), missing values skipped."""
    found = quantile.func(series, q=0.5, method=method, over=over)["quantile"]
    return {"median": found}
