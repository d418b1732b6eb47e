"""Grouped reductions: any reduction kernel applied per group of records, combined per group.

A chunk arrives as ``Labelled(data, labels)`` (one int64 label per record; :data:`NO_GROUP` for a
record in no group, such as one whose time is missing). The kernel runs on each label's records
of the chunk (selected in record order), and the *grouped partial* is still
a plain ``dict[str, ndarray]``: ``__group__`` holds the sorted labels present, and every kernel
key holds that key's per-group partials stacked on a new leading axis. So the reduction tree,
MPI packing and checkpoints carry it unchanged. Merging (:mod:`hpcapp.kernels.grouped_merge`)
takes the union of labels and merges a label present on both sides with the kernel's own merge
(left first), so every group's partials combine in the fixed chunk-tree order: bitwise the same
on any rank count, schedule or resume.
A kernel declared ``packed`` (the built-in stats) gets ``Labelled(Packed(stored, unpack), ...)``
and each group's rows as ``Packed`` too: it decodes them in its own compiled pass, as ungrouped.
Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from hpcapp.errors import KernelError
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.declare import DeclarationError, key_problem
from hpcapp.kernels.grouped_merge import GROUP_KEY, GroupedCombine, group_slice
from hpcapp.kernels.grouped_stats import finish_in_blocks, vectorised
from hpcapp.kernels.hookspec import Partial
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.partials import as_partial, with_attrs

# The label of a record in no group (a masked time): left out, as xarray's groupby leaves NaT.
NO_GROUP = int(np.iinfo(np.int64).min)
RESULT_KEY = "group"  # the labels in the finished results (unless named: month, ...)
# Results that do not depend on the group (the histogram's shared edges): kept once.
SHARED = ("hist_edges",)


class Labelled(NamedTuple):
    """One chunk's records and the int64 group label of each."""

    data: Any
    labels: np.ndarray


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


def _repack(packed: Packed | None, stored: np.ndarray) -> Any:
    """Return rows of a chunk's stored values as the kernel takes them: Packed if it came so."""
    return packed.with_stored(stored) if packed is not None else stored


def _rows_of(data: np.ndarray, labels: np.ndarray, label: int) -> np.ndarray:
    """Return the records of group ``label`` in record order: a view when they are one run."""
    where = np.flatnonzero(labels == label)
    if where[-1] - where[0] + 1 == len(where):  # months, years: consecutive records, no copy
        return data[where[0] : where[-1] + 1]
    return data[where]


def _no_groups(kern: Kernel, row: Any, params: dict[str, Any]) -> Partial:
    """Return a grouped partial of no group, with the keys, shapes and dtypes of ``kern``'s.

    The kernel runs on one row (of a chunk whose records are in no group) only to learn them:
    partials merge only with the same keys.
    """
    n_rows = len(row.stored) if isinstance(row, Packed) else len(row)
    part = as_partial(kern.apply(row, params, n_rows=n_rows), kern.name)
    empty = {key: np.asarray(value)[np.newaxis][:0] for key, value in part.items()}
    return {GROUP_KEY: np.empty(0, np.int64), **empty}


class GroupedFinalize:
    """The finalize of a grouped kernel; :meth:`consume` may write results over the partial."""

    def __init__(self, kern: Kernel, labels_key: str) -> None:
        self.kern = kern
        self.labels_key = labels_key

    def __call__(self, partial: Partial, params: Mapping[str, Any]) -> Partial:
        """Finish every group, leaving ``partial`` as it was."""
        return self._finish(partial, params, consume=False)

    def consume(self, partial: Partial, params: Mapping[str, Any]) -> Partial:
        """Finish every group of a partial that is not used again (the engine's last step)."""
        return self._finish(partial, params, consume=True)

    def _finish(self, partial: Partial, params: Mapping[str, Any], consume: bool) -> Partial:
        kern = self.kern
        labels = partial[GROUP_KEY]
        if not len(labels):
            raise KernelError(
                "no record is in any group: every record's label is missing (a masked time)"
            )
        results: Partial = {self.labels_key: np.asarray(labels, np.int64)}
        kept = {key: value for key, value in partial.items() if key != GROUP_KEY}
        blocks = finish_in_blocks(kern, kept, params, len(labels), consume)
        if blocks is not None:  # the built-in stats: finished in blocks of groups
            return {**results, **blocks}
        finished = [kern.finish(group_slice(partial, i), params) for i in range(len(labels))]
        for key in finished[0]:
            values = [group[key] for group in finished]
            notes: dict[str, Any] = {}
            for value in values:
                notes.update(getattr(value, "attrs", {}))
            arrays = [np.asarray(value) for value in values]
            if key in SHARED and all(np.array_equal(a, arrays[0]) for a in arrays):
                stacked = arrays[0]
            else:
                # An exact integer sum too big for int64 in one group makes all float64.
                stacked = np.stack(arrays)
            results[key] = with_attrs(stacked, **notes) if notes else stacked
        return results


def consuming_finish(kern: Kernel) -> Callable[[Partial, Mapping[str, Any]], Partial]:
    """Return the finish for the engine's combined partial, which is dropped after.

    A grouped kernel's results may then be written over parts of the partial (the bits are
    the same either way); any other kernel finishes as :meth:`Kernel.finish` does.
    """
    if not isinstance(kern.finalize, GroupedFinalize):
        return kern.finish
    return dataclasses.replace(kern, finalize=kern.finalize.consume).finish


def group_kernel(kern: Kernel, labels_key: str = RESULT_KEY, most: int | None = None) -> Kernel:
    """Return ``kern`` applied per group of records, its labels as ``labels_key`` when finished.

    ``most``: the input's record count, which no group's count can exceed (the built-in stats
    then keep their counts narrow: :func:`hpcapp.kernels.grouped_stats.count_dtype`).
    """

    # Element-wise combines (sum/min/max, or a combine declared ``elementwise``) merge blocks
    # of shared groups in one call: the same operations on each element, so the same bits.
    elementwise = not callable(kern.combine) or kern.elementwise

    def func(item: Labelled, **params: Any) -> Partial:
        data, labels = item
        # Packed (a kernel declared ``packed``): a group's rows are those of the stored values.
        packed = data if isinstance(data, Packed) else None
        stored = packed.stored if packed is not None else data
        grouped = labels != NO_GROUP
        if not grouped.all():
            if not grouped.any():
                return _no_groups(kern, _repack(packed, stored[:1]), params)
            stored, labels = stored[grouped], labels[grouped]
        present = np.unique(labels)
        fast = vectorised(kern, _repack(packed, stored), labels, present, params, most)
        if fast is not None:  # the built-in stats: a few vectorised calls, not one a group
            return {GROUP_KEY: present.astype(np.int64), **fast}
        parts = []
        for label in present:
            rows = stored if len(present) == 1 else _rows_of(stored, labels, label)
            part = as_partial(
                kern.apply(_repack(packed, rows), params, n_rows=len(rows)), kern.name
            )
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

    combine = GroupedCombine(kern, elementwise)

    finalize = GroupedFinalize(kern, labels_key)
    return dataclasses.replace(
        kern,
        func=func,
        combine=combine,
        finalize=finalize,
        accepts_any=True,
        validate=None,
        elementwise=False,
        returns=None,  # the grouped partial's keys: the labels and the kernel's, stacked
        packed=kern.packed,  # chunks come Labelled; Packed ones only to a kernel taking them
    )
