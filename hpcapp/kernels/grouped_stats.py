"""The built-in ``stats`` of a chunk's groups in a few vectorised calls, not one call a group.

A day-of-year climatology cuts each chunk into hundreds of groups of one to a few records:
calling the kernel once per group costs more in Python than the arithmetic. Every step of the
numpy path of :mod:`hpcapp.kernels.stats` works column by column along the rows (a sum over
axis 0, an ``fmin`` reduction, ``einsum("ij,ij->j")``), so the groups of ``k`` records laid side
by side -- ``k`` rows of ``groups * cells`` columns, each group's records in record order --
give each group's partial bit for bit (:func:`by_size`; for ``k = 1``, :func:`by_record`
computes the few parts asked for directly). tests/test_grouped_merge.py checks both against
the per-group calls. Only where a group's call would take the numpy path (fewer than
``FUSED_MIN_VALUES`` values, float data, no histogram) and ``--over`` is the records alone;
larger groups are still called one by one, and anything else returns None and goes group by
group. Finishing is element by element too (float data, no histogram): :func:`finish_in_blocks`
finishes blocks of groups into the result arrays, instead of holding every group's results
before stacking them.
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
from hpcapp.kernels.partials import as_partial
from hpcapp.kernels.stats_select import needed_parts

# Columns per call: each call's temporaries (a dozen arrays) stay below a few MiB, so the
# allocator reuses them instead of faulting in fresh pages for every chunk.
COLUMN_BLOCK = 1 << 15


def vectorised(
    kern: Kernel,
    data: Any,
    labels: np.ndarray,
    present: np.ndarray,
    params: Mapping[str, Any],
    most: int | None = None,
) -> Partial | None:
    """Return the per-group partials (groups sorted) by :func:`by_record` or :func:`by_size`.

    ``most``: no group can hold more records (the input's): counts are kept in the narrowest
    integer that holds it (:func:`count_dtype`).
    """
    found = by_record(kern, data, labels, present, params, most)
    return found if found is not None else by_size(kern, data, labels, present, params, most)


# The parts that count records: kept as narrow as the input's record count allows.
COUNTS = ("count", "nan_count")


def count_dtype(most: int | None) -> np.dtype:
    """Return the narrowest signed integer holding ``most`` (int64 when unknown).

    A grouped partial's counts (a count per group and cell, as large as the mean) can never
    exceed the input's record count, merged or not: for a climatology of 10 years of days an
    int16 holds them, a quarter of an int64. Results are int64 again (:func:`finish_in_blocks`).
    """
    if most is None:
        return np.dtype(np.int64)
    for dtype in (np.int16, np.int32):
        if most <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def narrow_counts(kern: Kernel, partial: Partial, most: int | None) -> Partial:
    """Return one group's ``partial`` with its counts as a grouped ``kern`` keeps them.

    For the memory estimate: only the built-in stats narrow them (:func:`count_dtype`).
    """
    if kern.func is not nd.stats.func:
        return partial
    dtype = count_dtype(most)
    return {
        key: np.asarray(value).astype(dtype) if key in COUNTS else value
        for key, value in partial.items()
    }


def by_record(
    kern: Kernel,
    data: Any,
    labels: np.ndarray,
    present: np.ndarray,
    params: Mapping[str, Any],
    most: int | None = None,
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
    counts = count_dtype(most)
    kinds = {"count": counts, "nan_count": counts, "min": data.dtype, "max": data.dtype}
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


# Bytes of records laid side by side per numpy call in :func:`by_size` (its temporaries: a
# few times this).
SIDE_BYTES = 4 << 20


def by_size(
    kern: Kernel,
    data: Any,
    labels: np.ndarray,
    present: np.ndarray,
    params: Mapping[str, Any],
    most: int | None = None,
) -> Partial | None:
    """Return the per-group partials of groups of several records, in few calls (or None).

    The groups of ``k`` records whose own call would take the numpy path are laid side by
    side: ``k`` rows of ``groups * cells`` columns, each column one group's cell, its records
    in record order. Every numpy step of that path works column by column along the rows, so
    each column gets the bits its group's call gives it (as :func:`by_record` for ``k = 1``).
    Groups large enough for the compiled pass are called one by one, as without this.
    """
    if kern.func is not nd.stats.func or len(present) < 2:
        return None
    if tuple(params.get("over", ())) != (0,) or params.get("range") is not None:
        return None
    if not isinstance(data, np.ndarray | Packed):
        return None
    stored = data.stored if isinstance(data, Packed) else data
    values = np.dtype(data.unpack.dtype) if isinstance(data, Packed) else stored.dtype
    if values.kind != "f" or not values.isnative or not stored.dtype.isnative:
        return None
    row_shape = stored.shape[1:]
    cells = math.prod(row_shape)
    order = np.argsort(labels, kind="stable")  # each group's records stay in record order
    ordered = labels[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    compiled = column_stats._fused_dtype(values)
    needed = needed_parts(params)
    flat = None
    out: Partial = {}
    for k in np.unique(sizes).tolist():
        groups = np.flatnonzero(sizes == k)
        if compiled and k * cells >= column_stats.FUSED_MIN_VALUES:
            for group in groups.tolist():
                rows = order[starts[group] : starts[group] + k]
                given = data.with_stored(stored[rows]) if isinstance(data, Packed) else data[rows]
                part = as_partial(kern.apply(given, params, n_rows=k), kern.name)
                if not _put(out, part, np.array([group]), len(present), row_shape, True, most):
                    return None
            continue
        if flat is None:
            flat = np.ascontiguousarray(stored).reshape(len(labels), cells)
        step = max(1, SIDE_BYTES // max(1, k * cells * values.itemsize))
        for first in range(0, len(groups), step):
            batch = groups[first : first + step]
            rows = order[starts[batch][np.newaxis, :] + np.arange(k)[:, np.newaxis]]
            side = flat[rows].reshape(k, len(batch) * cells)  # row i: each group's i-th record
            if isinstance(data, Packed):  # decoded here, a batch at a time, as each call would
                side = data.unpack.decode(side)
            part = column_stats._numpy_chunk_stats(side, needed)
            if not _put(out, part, batch, len(present), row_shape, False, most):
                return None
    if any(len(value) != len(present) for value in out.values()):
        return None
    return {key: out[key] for key in (*PARTS, *out) if key in out}


def _put(
    out: Partial,
    part: Partial,
    groups: np.ndarray,
    n_groups: int,
    row_shape: Any,
    one: bool,
    most: int | None,
) -> bool:
    """Write ``part`` (one group's if ``one``, else side by side) into ``out``; False if unlike."""
    if out and part.keys() != out.keys():
        return False
    for key, value in part.items():
        value = np.asarray(value)
        value = value[np.newaxis] if one else value.reshape(len(groups), *row_shape)
        dtype = count_dtype(most) if key in COUNTS and value.dtype == np.int64 else value.dtype
        if key not in out:
            out[key] = np.empty((n_groups, *row_shape), dtype)
        elif out[key].dtype != dtype or out[key].shape[1:] != value.shape[1:]:
            return False
        out[key][groups] = value
    return True


# Groups finished per call: the finish's temporaries stay a few blocks' size.
FINISH_BLOCK_BYTES = 16 << 20


def finish_in_blocks(
    kern: Kernel, partial: Partial, params: Mapping[str, Any], n_groups: int, consume: bool = False
) -> Partial | None:
    """Return the built-in stats' results of every group (leading axis), or None.

    ``partial`` is the grouped partial without its labels. Integer data (an exact sum's dtype
    depends on every group's value) and histograms (shared edges) return None. ``consume``
    (the partial is dropped after): a result is written over a part of the partial of its
    shape and dtype, its own or one that no result is (:func:`_spare`: the sum over the sum,
    the mean over the sum when only the mean is asked). Each block's results are all computed
    before any is written, and a block writes only its own groups, so no result reads a value
    already written over, and a large climatology takes little fresh memory for its results.
    """
    if kern.func is not nd.stats.func or "s1" in partial or "hist" in partial or not n_groups:
        return None
    per_group = sum(np.asarray(value)[:1].nbytes for value in partial.values()) or 1
    step = max(1, FINISH_BLOCK_BYTES // per_group)
    results: Partial = {}
    taken: set[str] = set()  # parts of the partial that results are written over
    for first in range(0, n_groups, step):
        block = kern.finish(
            {key: value[first : first + step] for key, value in partial.items()}, params
        )
        for key, value in block.items():
            value = np.asarray(value)
            if key not in results:
                if value.dtype.kind == "i":  # counts kept narrow (count_dtype): int64 again
                    value = value.astype(np.int64)
                spare = _spare(partial, block, taken, value, n_groups, key) if consume else None
                taken.update([spare] if spare is not None else [])
                shape = (n_groups, *value.shape[1:])
                results[key] = partial[spare] if spare else np.empty(shape, value.dtype)
            results[key][first : first + len(value)] = value
    return results


def _spare(
    partial: Partial, block: Partial, taken: set[str], value: np.ndarray, n_groups: int, key: str
) -> str | None:
    """Return a part of ``partial`` the result ``key`` of every group may be written over.

    Its own part first (the sum over the sum, the minimum over the minimum), else a part that
    no result is: never another result's part, which that result (a view of it, as the sum
    is) may still read. Shaped and typed as ``value``, and not ``taken`` already.
    """
    shape = (n_groups, *value.shape[1:])
    for part in sorted(partial, key=lambda name: name != key):  # its own part first
        array = partial[part]
        if (part in block and part != key) or part in taken or not isinstance(array, np.ndarray):
            continue
        if array.flags.writeable and array.shape == shape and array.dtype == value.dtype:
            return part
    return None


def reused_bytes(kern: Kernel, partial: Partial, results: Partial) -> int:
    """Return the bytes of one group's ``results`` a consuming finish writes over ``partial``.

    As :func:`finish_in_blocks` picks them (for the memory estimate): ``partial`` and
    ``results`` are one group's, without the group axis.
    """
    if kern.func is not nd.stats.func or "s1" in partial or "hist" in partial:
        return 0
    stacked = {key: np.asarray(value)[np.newaxis] for key, value in partial.items()}
    taken: set[str] = set()
    total = 0
    for key, value in results.items():
        value = np.asarray(value)[np.newaxis]
        if value.dtype.kind == "i":  # as finish_in_blocks makes them
            value = value.astype(np.int64)
        spare = _spare(stacked, results, taken, value, 1, key)
        if spare is not None:
            taken.add(spare)
            total += value.nbytes
    return total
