"""Warm-up hooks: pay a kernel's one-off costs before its first chunk, where they are timed.

Loading compiled code (numba's import and its cache, ~0.3 s per process) would otherwise land
in the first chunk's compute time and make a small job look several times slower per byte
than it is. The engine times these hooks as start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def prepare_stats(dtype: Any, chunk_shape: tuple[int, ...], params: Mapping[str, Any]) -> None:
    """Run ``stats`` once on zeros shaped like the job's chunks, so the same code path loads.

    The zeros have the job's dtype and columns and at most as many rows as a chunk, but no more
    than it takes to reach the compiled path: a 1 GB chunk costs no 1 GB of warm-up.
    """
    import numpy as np

    from hpcapp.kernels import nd, stats

    rows, columns = chunk_shape[0], int(np.prod(chunk_shape[1:], dtype=np.int64))
    threshold = int(getattr(stats, "FUSED_MIN_VALUES", 1 << 17))
    rows = max(1, min(rows, -(-threshold // max(columns, 1))))
    # The N-D stats (the built-in "stats"): it lays the chunk out for --over, then runs stats.
    nd.stats(np.zeros((rows, *chunk_shape[1:]), dtype=dtype), **params)
