"""The built-in ``stats`` of a chunk whose every group holds one record, in one vectorised call.

A day-of-year climatology cuts each chunk into as many groups as it has records: calling the
kernel once per group costs more in Python than the arithmetic. For one record, every step of
the numpy path of :mod:`hpcapp.kernels.stats` is element by element (a sum, an ``fmin`` or a
product over one row is the element itself), so the records laid side by side as one row of
``groups * cells`` columns give each group's partial bit for bit; tests/test_groups.py checks
it against the per-group calls. Only where that per-group call would take the numpy path
(fewer than ``FUSED_MIN_VALUES`` cells, float data, no histogram) and ``--over`` is the
records alone; anything else returns None and goes group by group. Finishing is element by
element too (float data, no histogram): :func:`finish_in_blocks` finishes blocks of groups into
the result arrays, instead of holding every group's results before stacking them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels import nd
from hpcapp.kernels import stats as column_stats
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.hookspec import Partial
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.stats_select import needed_parts

# Columns per call: each call's temporaries (a dozen arrays) stay below a few MiB, so the
# allocator reuses them instead of faulting in fresh pages for every chunk.
COLUMN_BLOCK = 1 << 15


def by_record(
    kern: Kernel, data: Any, labels: np.ndarray, present: np.ndarray, params: Mapping[str, Any]
) -> Partial | None:
    """Return the per-group partials stacked on a leading axis (groups sorted), or None."""
    if kern.func is not nd.stats.func or len(present) != len(labels) or len(labels) < 2:
        return None
    if tuple(params.get("over", ())) != (0,) or params.get("range") is not None:
        return None
    if not isinstance(data, np.ndarray | Packed):
        return None
    cells = math.prod(data.shape[1:])
    if cells >= column_stats.FUSED_MIN_VALUES:  # each group's call would take the compiled path
        return None
    if isinstance(data, Packed):  # each group's call would decode it with numpy first
        data = data.decoded()
    if data.dtype.kind != "f" or not data.dtype.isnative:
        return None
    if len(labels) > 1 and bool((np.diff(labels) > 0).all()):
        row = np.ascontiguousarray(data).reshape(-1)  # in order already: no copy
    else:
        row = data[np.argsort(labels, kind="stable")].reshape(-1)
    needed = needed_parts(params)
    kinds = {"count": np.int64, "nan_count": np.int64, "min": data.dtype, "max": data.dtype}
    # Arrays of their own (not views of a flat one): a merge may grow them in place.
    partial: Partial = {
        key: np.empty((len(labels), *data.shape[1:]), kinds.get(key, np.float64))
        for key in PARTS
        if needed is None or key in needed
    }
    flat = {key: value.reshape(-1) for key, value in partial.items()}
    for first in range(0, len(row), COLUMN_BLOCK):  # small temporaries, reused by malloc
        stop = first + COLUMN_BLOCK
        for key, value in _one_record(row[first:stop], flat.keys()).items():
            flat[key][first:stop] = value
    return partial


# The parts of a float partial, in the order of the kernel's (column_stats._numpy_chunk_stats).
PARTS = ("count", "nan_count", "sum", "mean", "m2", "min", "max")


def _one_record(values: np.ndarray, keys: Any) -> Partial:
    """Return the partial parts ``keys`` of each value as a chunk of one record.

    The kernel's steps on one record, element by element: its sum over one value is +0.0 plus
    that value in float64 (0 when missing), the mean that sum divided by 1, the deviation that sum
    minus itself (0, or NaN for an infinity), and the extremes the value or the initial
    infinity; the same bits (tests/test_grouped_merge.py).
    """
    valid = ~np.isnan(values)
    count = valid.astype(np.int64)
    out: Partial = {}
    total = np.where(valid, values, 0).astype(np.float64)
    total += 0.0  # numpy's sum starts from +0.0: a sum of -0.0 alone is +0.0
    for key in keys:
        if key == "count":
            out[key] = count
        elif key == "nan_count":
            out[key] = 1 - count
        elif key in ("sum", "mean"):  # the mean: the sum over a count of 1 (0 when missing)
            out[key] = total
        elif key == "m2":
            with np.errstate(invalid="ignore"):  # inf - inf
                deviation = total - total
            out[key] = deviation * deviation
        elif key == "min":
            out[key] = np.where(valid, values, np.inf)
        elif key == "max":
            out[key] = np.where(valid, values, -np.inf)
    return out


# Groups finished per call: the finish's temporaries stay a few blocks' size.
FINISH_BLOCK_BYTES = 16 << 20


def finish_in_blocks(
    kern: Kernel, partial: Partial, params: Mapping[str, Any], n_groups: int
) -> Partial | None:
    """Return the built-in stats' results of every group (leading axis), or None.

    ``partial`` is the grouped partial without its labels. Integer data (an exact sum's dtype
    depends on every group's value) and histograms (shared edges) return None.
    """
    if kern.func is not nd.stats.func or "s1" in partial or "hist" in partial or not n_groups:
        return None
    per_group = sum(np.asarray(value)[:1].nbytes for value in partial.values()) or 1
    step = max(1, FINISH_BLOCK_BYTES // per_group)
    results: Partial = {}
    for first in range(0, n_groups, step):
        block = kern.finish(
            {key: value[first : first + step] for key, value in partial.items()}, params
        )
        for key, value in block.items():
            value = np.asarray(value)
            if key not in results:
                results[key] = np.empty((n_groups, *value.shape[1:]), value.dtype)
            results[key][first : first + len(value)] = value
    return results
