"""Merging a grouped partial whose groups all follow another's: the later ones appended in place.

Periods of a resample (and days of a year within it) arrive in time order: the chunk tree's
left node holds earlier groups than its right sibling, sharing at most the boundary group (a
month cut by a chunk boundary). Laying both out in a fresh union copied every group the left
node held at every level of the tree. Here the left node's arrays are leading views of a
buffer with spare rows: the right node's groups are copied in after them, and only the
boundary group is merged (in the caller, by the kernel's merge as before: the same bits). A
buffer that is full is replaced by one twice the size (pages never written cost no memory),
so each group is copied a few times in all, not once per tree level.
"""

from __future__ import annotations

import weakref

import numpy as np

from hpcapp.kernels.hookspec import Partial

GROUP_KEY = "__group__"  # as hpcapp.kernels.grouped's
# The buffers made here, by id: only their leading views may grow (another array's spare
# rows may belong to someone else).
_OWNED: dict[int, weakref.ref[np.ndarray]] = {}


def _owned(buffer: np.ndarray) -> bool:
    ref = _OWNED.get(id(buffer))
    return ref is not None and ref() is buffer


def _forget(key: int) -> None:
    _OWNED.pop(key, None)


def _buffer(rows: int, like: np.ndarray) -> np.ndarray:
    buffer = np.empty((rows, *like.shape[1:]), like.dtype)
    key = id(buffer)
    _OWNED[key] = weakref.ref(buffer, lambda _ref, key=key: _forget(key))  # type: ignore[misc]
    return buffer


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    """Return ``array`` extended to ``rows`` rows: in its own buffer when it has room."""
    base = array.base
    if (
        isinstance(base, np.ndarray)
        and _owned(base)
        and base.shape[0] >= rows
        and base.shape[1:] == array.shape[1:]
        and base.dtype == array.dtype
        and array.__array_interface__["data"][0] == base.__array_interface__["data"][0]
        and array.flags.c_contiguous
    ):
        return base[:rows]
    buffer = _buffer(max(rows, 2 * len(array)) if len(array) else rows, array)
    buffer[: len(array)] = array
    return buffer[:rows]


def append_after(left: Partial, right: Partial, keys: list[str], shared: int) -> Partial | None:
    """Return ``left`` with ``right``'s groups after its own, or None when they do not follow.

    ``shared`` groups (0 or 1: the boundary group, left's last and right's first) keep left's
    partial: the caller merges right's into it. Both sides are consumed.
    """
    left_labels: np.ndarray = left[GROUP_KEY]
    right_labels: np.ndarray = right[GROUP_KEY]
    if not len(left_labels) or not len(right_labels) or shared > 1:
        return None
    if left_labels[-1] > right_labels[0] or (left_labels[-1] == right_labels[0]) != bool(shared):
        return None
    for key in keys:
        mine, theirs = left[key], right[key]
        if not (
            isinstance(mine, np.ndarray)
            and isinstance(theirs, np.ndarray)
            and mine.dtype == theirs.dtype
            and mine.shape[1:] == theirs.shape[1:]
        ):
            return None
    rows = len(left_labels) + len(right_labels) - shared
    out: Partial = {GROUP_KEY: np.concatenate([left_labels, right_labels[shared:]])}
    for key in keys:
        grown = _grown(left[key], rows)
        grown[len(left_labels) :] = right[key][shared:]
        out[key] = grown
    return out
