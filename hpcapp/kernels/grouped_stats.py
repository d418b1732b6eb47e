"""The built-in ``stats`` of a chunk whose every group holds one record, in one vectorised call.

A day-of-year climatology cuts each chunk into as many groups as it has records: calling the
kernel once per group costs more in Python than the arithmetic. For one record, every step of
the numpy path of :mod:`hpcapp.kernels.stats` is element by element (a sum, an ``fmin`` or a
product over one row is the element itself), so the records laid side by side as one row of
``groups * cells`` columns give each group's partial bit for bit; tests/test_groups.py checks
it against the per-group calls. Only where that per-group call would take the numpy path
(fewer than ``FUSED_MIN_VALUES`` cells, float data, no histogram) and ``--over`` is the
records alone; anything else returns None and goes group by group.
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


def by_record(
    kern: Kernel, data: Any, labels: np.ndarray, present: np.ndarray, params: Mapping[str, Any]
) -> Partial | None:
    """Return the per-group partials stacked on a leading axis (groups sorted), or None."""
    if kern.func is not nd.stats.func or len(present) != len(labels) or len(labels) < 2:
        return None
    if tuple(params.get("over", ())) != (0,) or params.get("range") is not None:
        return None
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f" or not data.dtype.isnative:
        return None
    cells = math.prod(data.shape[1:])
    if cells >= column_stats.FUSED_MIN_VALUES:  # each group's call would take the compiled path
        return None
    row = data[np.argsort(labels, kind="stable")].reshape(1, len(labels) * cells)
    partial = column_stats._numpy_chunk_stats(row)
    return {key: value.reshape(len(labels), *data.shape[1:]) for key, value in partial.items()}
