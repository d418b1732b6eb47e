"""Grouped reductions: any reduction kernel applied per group of records, combined per group.

A chunk arrives as ``Labelled(data, labels)`` (one int64 label per record). The kernel runs on
each label's records of the chunk (selected in record order), and the *grouped partial* is still
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
from hpcapp.kernels.api import Kernel, Partial, as_partial, with_attrs

GROUP_KEY = "__group__"  # the labels present in a grouped partial
RESULT_KEY = "group"  # the labels in the finished results
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


def group_kernel(kern: Kernel) -> Kernel:
    """Return ``kern`` applied per group of records (see the module docstring)."""

    def func(item: Labelled, **params: Any) -> Partial:
        data, labels = item
        present = np.unique(labels)
        parts = []
        for label in present:
            rows = data if len(present) == 1 else data[labels == label]
            part = as_partial(kern.apply(rows, params, n_rows=len(rows)), kern.name)
            if GROUP_KEY in part or RESULT_KEY in part:
                raise KernelError(
                    f"kernel {kern.name!r} returns a key {RESULT_KEY!r} or {GROUP_KEY!r}, "
                    "which grouping reserves for the labels"
                )
            parts.append(part)
        return _stack(present.tolist(), parts, kern.name)

    def combine(left: Partial, right: Partial) -> Partial:
        left_labels, right_labels = left[GROUP_KEY].tolist(), right[GROUP_KEY].tolist()
        right_at = {label: i for i, label in enumerate(right_labels)}
        left_at = {label: i for i, label in enumerate(left_labels)}
        labels = sorted(set(left_labels) | set(right_labels))
        parts = []
        for label in labels:
            if label in left_at and label in right_at:
                merged = kern.merge(_slice(left, left_at[label]), _slice(right, right_at[label]))
                parts.append(merged)
            elif label in left_at:
                parts.append(_slice(left, left_at[label]))
            else:
                parts.append(_slice(right, right_at[label]))
        return _stack(labels, parts, kern.name)

    def finalize(partial: Partial, **params: Any) -> Partial:
        labels = partial[GROUP_KEY]
        finished = [kern.finish(_slice(partial, i), params) for i in range(len(labels))]
        results: Partial = {RESULT_KEY: np.asarray(labels, np.int64)}
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
    )
