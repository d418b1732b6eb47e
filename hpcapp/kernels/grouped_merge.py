"""Merging grouped partials: union of labels, shared groups merged left-first, in place when it may.

A grouped partial (:mod:`hpcapp.kernels.grouped`) holds ``GROUP_KEY``, the sorted labels
present, and every kernel key stacked on a leading group axis. Merging takes the union of the
labels and merges a label present on both sides with the kernel's own merge (left first), so
every group's partials combine in the fixed chunk-tree order: bitwise the same on any rank
count, schedule or resume. The chunk tree drops both partials it merges, so its merges may
reuse their arrays (:func:`consuming_merge`). Nothing here imports MPI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hpcapp.errors import KernelError
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.hookspec import Partial

GROUP_KEY = "__group__"  # the labels present in a grouped partial
# Runs of groups laid out by slices in a union; more (interleaved labels) take one fancy index.
MAX_RUNS = 8


def group_slice(partial: Mapping[str, Any], index: int) -> Partial:
    """Return group ``index``'s partial: every kernel key's row ``index``, without the labels."""
    return {key: value[index] for key, value in partial.items() if key != GROUP_KEY}


def _merge_grouped(
    kern: Kernel, left: Partial, right: Partial, elementwise: bool, consume: bool = False
) -> Partial:
    """Merge two grouped partials: union of labels, shared labels merged left-first.

    Groups on one side only are copied with one fancy-index per key (no per-group Python
    work: consecutive groups of a time series are mostly disjoint between neighbours). Shared
    groups go through the kernel's merge: in blocks of groups for an element-wise merge (small
    enough to stay in cache), else one group at a time; each block is written straight into
    the result. ``consume`` (the chunk tree, which drops both sides) lets the side holding
    every label of the other take the merged groups in place: no copy of the groups it holds.
    """
    left_labels: np.ndarray = left[GROUP_KEY]  # arrays: searchsorted gives arrays of positions
    right_labels: np.ndarray = right[GROUP_KEY]
    keys = [key for key in left if key != GROUP_KEY]
    shared, left_shared, right_shared = np.intersect1d(
        left_labels, right_labels, assume_unique=True, return_indices=True
    )
    if consume and len(shared) == len(right_labels) and _reusable(left, right, keys):
        out, at_shared = left, left_shared
    elif consume and len(shared) == len(left_labels) and _reusable(right, left, keys):
        out, at_shared = right, right_shared
    else:  # the shared groups merged apart, then laid into the union
        out, at_shared = {}, np.arange(len(shared))
        for key in keys:
            if left[key].shape[1:] != right[key].shape[1:]:
                raise _shape_error(kern, key, [left[key].shape[1:], right[key].shape[1:]])
            dtype = np.result_type(left[key], right[key])
            out[key] = np.empty((len(shared), *left[key].shape[1:]), dtype)
    step = _block(left, keys) if elementwise else 1
    for first in range(0, len(shared), step):
        pick_left = _run(left_shared[first : first + step])
        pick_right = _run(right_shared[first : first + step])
        if elementwise:
            block = kern.merge(
                _rows(left, keys, pick_left, consume), _rows(right, keys, pick_right, consume)
            )
        else:
            one = left_shared[first], right_shared[first]
            block = kern.merge(group_slice(left, one[0]), group_slice(right, one[1]))
            block = {key: np.asarray(value)[np.newaxis] for key, value in block.items()}
        rows = _run(at_shared[first : first + step])
        for key in keys:
            _put(kern, out, key, rows, np.asarray(block[key]))
    if out is left or out is right:
        return out
    return _union(left, right, keys, left_shared, right_shared, out, consume)


def _reusable(into: Partial, other: Partial, keys: list[str]) -> bool:
    """Return whether ``into`` can take the merged groups in place (same shapes, writable)."""
    return all(
        isinstance(into[key], np.ndarray)
        and into[key].flags.writeable
        and into[key].dtype == np.asarray(other[key]).dtype
        and into[key].shape[1:] == np.shape(other[key])[1:]
        for key in keys
    )


def _union(
    left: Partial,
    right: Partial,
    keys: list[str],
    left_shared: np.ndarray,
    right_shared: np.ndarray,
    merged: Partial,
    consume: bool,
) -> Partial:
    """Lay the groups of each side and the ``merged`` shared ones out in the union of labels.

    One key at a time; ``consume`` drops each key of both sides once laid out, so the union
    never needs both sides and itself whole at once.
    """
    left_labels: np.ndarray = left[GROUP_KEY]  # arrays: searchsorted gives arrays of positions
    right_labels: np.ndarray = right[GROUP_KEY]
    labels = np.union1d(left_labels, right_labels)
    left_pos = np.searchsorted(labels, left_labels)
    right_pos = np.searchsorted(labels, right_labels)
    left_only = np.setdiff1d(np.arange(len(left_labels)), left_shared, assume_unique=True)
    right_only = np.setdiff1d(np.arange(len(right_labels)), right_shared, assume_unique=True)
    # Left holding earlier periods than right (sharing at most the boundary one, or wrapping
    # round a year): each side is a few runs of the union, laid out by slices; the shared rows
    # are then overwritten by the merged ones.
    left_runs, right_runs = _runs(left_pos), _runs(right_pos)
    runs = len(left_runs) + len(right_runs) <= MAX_RUNS
    # Left's groups all before right's (sharing at most the boundary one): left can grow.
    ordered = bool(len(left_labels) and len(right_labels) and left_labels[-1] <= right_labels[0])
    out: Partial = {GROUP_KEY: labels.astype(np.int64)}
    for key in keys:
        dtype = np.result_type(left[key], right[key], merged[key])
        if consume and not len(left_labels) and right[key].dtype == dtype:
            array = right[key]  # nothing to add to the right side's groups: no copy
        elif consume and not len(right_labels) and left[key].dtype == dtype:
            array = left[key]
        elif (
            consume
            and ordered
            and (grown := _grown(left, key, dtype, len(labels), len(left_labels))) is not None
        ):
            # In place: realloc remaps a large block instead of copying it; right's follow.
            array = grown
            array[len(left_labels) :] = right[key][len(left_shared) :]
            array[_run(left_pos[left_shared])] = merged.pop(key)
        elif runs:
            array = np.empty((len(labels), *left[key].shape[1:]), dtype)
            for side, side_runs in ((left[key], left_runs), (right[key], right_runs)):
                for into, source in side_runs:
                    array[into] = side[source]
            array[_run(left_pos[left_shared])] = merged.pop(key)
        else:
            array = np.empty((len(labels), *left[key].shape[1:]), dtype)
            array[left_pos[left_only]] = left[key][left_only]
            array[right_pos[right_only]] = right[key][right_only]
            array[left_pos[left_shared]] = merged.pop(key)
        if consume:
            left.pop(key, None)  # taken already if it grew
            del right[key]
        out[key] = array
    return out


def _grown(left: Partial, key: str, dtype: Any, n_union: int, n_left: int) -> np.ndarray | None:
    """Return ``left[key]`` grown in place to ``n_union`` groups (taken from ``left``), or None.

    Only an array no other reference or view holds (numpy's ``refcheck``) can grow.
    """
    array = left[key]
    if not isinstance(array, np.ndarray) or array.dtype != dtype or len(array) != n_left:
        return None
    if not (array.flags.owndata and array.flags.c_contiguous and array.flags.writeable):
        return None
    del left[key]
    try:
        array.resize((n_union, *array.shape[1:]), refcheck=True)
    except ValueError:  # referenced elsewhere: the caller copies instead
        left[key] = array
        return None
    return array


def _run(index: np.ndarray) -> slice | np.ndarray:
    """Return ``index`` as a slice when its positions are one increasing run, else as it is."""
    if not len(index):
        return slice(0, 0)
    first, last = int(index[0]), int(index[-1])
    if last - first + 1 == len(index) and (len(index) < 3 or bool((np.diff(index) == 1).all())):
        return slice(first, last + 1)
    return index


def _runs(positions: np.ndarray) -> list[tuple[slice, slice]]:
    """Split increasing ``positions`` into runs: (where in the union, which rows of the side)."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = [0, *breaks.tolist()]
    stops = [*breaks.tolist(), len(positions)]
    return [
        (slice(int(positions[a]), int(positions[b - 1]) + 1), slice(a, b))
        for a, b in zip(starts, stops, strict=True)
        if b > a
    ]


def _rows(partial: Partial, keys: list[str], at: slice | np.ndarray, consume: bool) -> Partial:
    """Return the groups ``at`` of each key: views when ``partial`` is dropped after, else copies.

    A merge that wrote into its inputs would change the caller's partial through a view.
    """
    if consume or not isinstance(at, slice):  # a fancy index copies already
        return {key: partial[key][at] for key in keys}
    return {key: partial[key][at].copy() for key in keys}


def _put(kern: Kernel, out: Partial, key: str, rows: slice | np.ndarray, value: np.ndarray) -> None:
    """Write merged groups into ``out[key]`` at ``rows`` (promoting its dtype if need be)."""
    array = out[key]
    if value.shape[1:] != array.shape[1:]:
        raise _shape_error(kern, key, [array.shape[1:], value.shape[1:]])
    if value.dtype != array.dtype:  # as numpy.concatenate of the parts would promote
        array = out[key] = array.astype(np.result_type(array, value))
    array[rows] = value


def _shape_error(kern: Kernel, key: str, shapes: list[tuple[int, ...]]) -> KernelError:
    return KernelError(
        f"kernel {kern.name!r}: groups' partials of {key!r} have different shapes "
        f"{sorted(set(shapes))}: grouping needs a partial shaped independently of the rows"
    )


def _block(partial: Partial, keys: list[str]) -> int:
    """Return how many groups to merge per call: about 1 MiB of partial each time."""
    per_group = sum(partial[key][:1].nbytes for key in keys) or 1
    return max(1, (1 << 20) // per_group)


class GroupedCombine:
    """The combine of a grouped kernel; :meth:`consume` may reuse its arguments' arrays."""

    def __init__(self, kern: Kernel, elementwise: bool) -> None:
        self.kern = kern
        self.elementwise = elementwise

    def __call__(self, left: Partial, right: Partial) -> Partial:
        """Merge without touching either side (``Kernel.merge``, the contract checks)."""
        return _merge_grouped(self.kern, left, right, self.elementwise)

    def consume(self, left: Partial, right: Partial) -> Partial:
        """Merge two partials neither of which is used again: the result may be one of them."""
        return _merge_grouped(self.kern, left, right, self.elementwise, consume=True)


def consuming_merge(kern: Kernel) -> Callable[[Partial, Partial], Partial]:
    """Return the merge for a chunk tree, which drops both partials it merges.

    A grouped kernel's merges then work in place (the bits are the same either way); any other
    kernel merges as :meth:`Kernel.merge` does.
    """
    combine = kern.combine
    if not isinstance(combine, GroupedCombine):
        return kern.merge

    def merge(left: Partial, right: Partial) -> Partial:
        if left.keys() != right.keys():
            raise KernelError(f"partials have different keys: {sorted(left)} vs {sorted(right)}")
        return combine.consume(left, right)

    return merge
