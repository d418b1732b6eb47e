"""Grouped reductions: any reduction kernel applied per group of records, combined per group.

A chunk arrives as ``Labelled(data, labels)`` (one int64 label per record; :data:`NO_GROUP` for a
record in no group, such as one whose time is missing). The kernel runs on each label's records
of the chunk (selected in record order), and the *grouped partial* is still
a plain ``dict[str, ndarray]``: ``__group__`` holds the sorted labels present, and every kernel
key holds that key's per-group partials stacked on a new leading axis. So the reduction tree,
MPI packing and checkpoints carry it unchanged. Merging takes the union of labels and merges a
label present on both sides with the kernel's own merge (left first), so every group's partials
combine in the fixed chunk-tree order: bitwise the same on any rank count, schedule or resume.
Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from hpcapp.errors import KernelError
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.declare import DeclarationError, key_problem
from hpcapp.kernels.hookspec import Partial
from hpcapp.kernels.partials import as_partial, with_attrs

# The label of a record in no group (a masked time): left out, as xarray's groupby leaves NaT.
NO_GROUP = int(np.iinfo(np.int64).min)
GROUP_KEY = "__group__"  # the labels present in a grouped partial
RESULT_KEY = "group"  # the labels in the finished results (unless named: month, ...)
# Results that do not depend on the group (the histogram's shared edges): kept once.
_SHARED = ("hist_edges",)


class Labelled(NamedTuple):
    """One chunk's records and the int64 group label of each."""

    data: Any
    labels: np.ndarray


def _slice(partial: Mapping[str, Any], index: int) -> Partial:
    return {key: value[index] for key, value in partial.items() if key != GROUP_KEY}


def _stack(labels: list[int], parts: list[Partial], name: str) -> Partial:
    """Stack per-group partials into one grouped partial (labels sorted by the caller)."""
    keys = parts[0].keys()
    out: Partial = {GROUP_KEY: np.asarray(labels, np.int64)}
    for key in keys:
        values = [np.asarray(part[key]) for part in parts]
        first = values[0]
        if any(v.shape != first.shape or v.dtype != first.dtype for v in values):
            raise KernelError(
                f"kernel {name!r} gave groups partials of different shapes or dtypes for "
                f"{key!r}: grouping needs a partial shaped independently of the rows"
            )
        out[key] = np.stack(values)
    return out


def _merge_grouped(kern: Kernel, left: Partial, right: Partial, elementwise: bool) -> Partial:
    """Merge two grouped partials: union of labels, shared labels merged left-first.

    Groups on one side only are copied with one fancy-index per key (no per-group Python
    work: consecutive groups of a time series are mostly disjoint between neighbours). Shared
    groups go through the kernel's merge: in blocks of groups for an element-wise merge (small
    enough to stay in cache), else one group at a time.
    """
    left_labels: np.ndarray = left[GROUP_KEY]  # arrays: searchsorted gives arrays of positions
    right_labels: np.ndarray = right[GROUP_KEY]
    labels = np.union1d(left_labels, right_labels)
    left_pos = np.searchsorted(labels, left_labels)
    right_pos = np.searchsorted(labels, right_labels)
    shared, left_shared, right_shared = np.intersect1d(
        left_labels, right_labels, assume_unique=True, return_indices=True
    )
    left_only = np.setdiff1d(np.arange(len(left_labels)), left_shared, assume_unique=True)
    right_only = np.setdiff1d(np.arange(len(right_labels)), right_shared, assume_unique=True)
    keys = [key for key in left if key != GROUP_KEY]
    merged: dict[str, list[Any]] = {key: [] for key in keys}
    step = _block(left, keys) if elementwise else 1
    for first in range(0, len(shared), step):
        pick_left = left_shared[first : first + step]
        pick_right = right_shared[first : first + step]
        if elementwise:
            block = kern.merge(
                {key: left[key][pick_left] for key in keys},
                {key: right[key][pick_right] for key in keys},
            )
        else:
            block = kern.merge(_slice(left, pick_left[0]), _slice(right, pick_right[0]))
            block = {key: np.asarray(value)[np.newaxis] for key, value in block.items()}
        for key in keys:
            merged[key].append(np.asarray(block[key]))
    out: Partial = {GROUP_KEY: labels.astype(np.int64)}
    at_shared = np.searchsorted(labels, shared)
    for key in keys:
        parts = merged[key]
        shapes = {left[key].shape[1:], right[key].shape[1:], *(p.shape[1:] for p in parts)}
        if len(shapes) != 1:
            raise KernelError(
                f"kernel {kern.name!r}: groups' partials of {key!r} have different shapes "
                f"{sorted(shapes)}: grouping needs a partial shaped independently of the rows"
            )
        dtype = np.result_type(left[key], right[key], *parts)
        array = np.empty((len(labels), *left[key].shape[1:]), dtype)
        array[left_pos[left_only]] = left[key][left_only]
        array[right_pos[right_only]] = right[key][right_only]
        if parts:
            array[at_shared] = np.concatenate(parts)
        out[key] = array
    return out


def _block(partial: Partial, keys: list[str]) -> int:
    """Return how many groups to merge per call: about 1 MiB of partial each time."""
    per_group = sum(partial[key][:1].nbytes for key in keys) or 1
    return max(1, (1 << 20) // per_group)


def _no_groups(kern: Kernel, row: Any, params: dict[str, Any]) -> Partial:
    """Return a grouped partial of no group, with the keys, shapes and dtypes of ``kern``'s.

    The kernel runs on one row (of a chunk whose records are in no group) only to learn them:
    partials merge only with the same keys.
    """
    part = as_partial(kern.apply(row, params, n_rows=len(row)), kern.name)
    empty = {key: np.asarray(value)[np.newaxis][:0] for key, value in part.items()}
    return {GROUP_KEY: np.empty(0, np.int64), **empty}


def group_kernel(kern: Kernel, labels_key: str = RESULT_KEY) -> Kernel:
    """Return ``kern`` applied per group of records, its labels as ``labels_key`` when finished."""

    # Element-wise combines (sum/min/max, or a combine declared ``elementwise``) merge blocks
    # of shared groups in one call: the same operations on each element, so the same bits.
    elementwise = not callable(kern.combine) or kern.elementwise

    def func(item: Labelled, **params: Any) -> Partial:
        data, labels = item
        grouped = labels != NO_GROUP
        if not grouped.all():
            if not grouped.any():
                return _no_groups(kern, data[:1], params)
            data, labels = data[grouped], labels[grouped]
        present = np.unique(labels)
        parts = []
        for label in present:
            rows = data if len(present) == 1 else data[labels == label]
            part = as_partial(kern.apply(rows, params, n_rows=len(rows)), kern.name)
            problem = key_problem(kern, part)
            if problem:
                raise DeclarationError(problem)
            if GROUP_KEY in part or labels_key in part:
                raise KernelError(
                    f"kernel {kern.name!r} returns a key {labels_key!r} or {GROUP_KEY!r}, "
                    "which grouping reserves for the labels"
                )
            parts.append(part)
        return _stack(present.tolist(), parts, kern.name)

    def combine(left: Partial, right: Partial) -> Partial:
        return _merge_grouped(kern, left, right, elementwise)

    def finalize(partial: Partial, params: Mapping[str, Any]) -> Partial:
        labels = partial[GROUP_KEY]
        if not len(labels):
            raise KernelError(
                "no record is in any group: every record's label is missing (a masked time)"
            )
        finished = [kern.finish(_slice(partial, i), params) for i in range(len(labels))]
        results: Partial = {labels_key: np.asarray(labels, np.int64)}
        for key in finished[0]:
            values = [group[key] for group in finished]
            notes: dict[str, Any] = {}
            for value in values:
                notes.update(getattr(value, "attrs", {}))
            arrays = [np.asarray(value) for value in values]
            if key in _SHARED and all(np.array_equal(a, arrays[0]) for a in arrays):
                stacked = arrays[0]
            else:
                # An exact integer sum too big for int64 in one group makes all float64.
                stacked = np.stack(arrays)
            results[key] = with_attrs(stacked, **notes) if notes else stacked
        return results

    return dataclasses.replace(
        kern,
        func=func,
        combine=combine,
        finalize=finalize,
        accepts_any=True,
        validate=None,
        elementwise=False,
        returns=None,  # the grouped partial's keys: the labels and the kernel's, stacked
        packed=False,  # chunks come Labelled, with their values decoded
    )
