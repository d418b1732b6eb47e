"""Per-chunk numpy work shared by the hand-written contenders of ``peers`` (MPI and Pool).

Both contenders import this module, so they read the same slabs the same way (``read_direct``
into one reused buffer) and compute exactly the same statistics; only the parallel machinery
around them differs. Plain numpy, one call per statistic: what a competent user writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

Partial = dict[str, np.ndarray]
WORKS = ("read", "sum", "stats", "numba")
# How each key of a partial combines across ranks or workers.
COMBINE = {"rows": "sum", "sum": "sum", "min": "min", "max": "max", "hist": "sum"}


def block(n: int, size: int, part: int) -> tuple[int, int]:
    """Return ``(count, start)`` of part ``part`` of ``n`` items; the remainder goes first."""
    base, extra = divmod(n, size)
    return base + (part < extra), part * base + min(part, extra)


def slab(n_rows: int, chunk_rows: int, size: int, part: int) -> tuple[int, int]:
    """Return the ``(start, stop)`` rows of a contiguous block of whole chunks for ``part``."""
    n_chunks = -(-n_rows // chunk_rows)
    count, first = block(n_chunks, size, part)
    start = min(first * chunk_rows, n_rows)
    return start, min((first + count) * chunk_rows, n_rows)


def read_slab(dataset: Any, start: int, stop: int, buffer: np.ndarray) -> Iterator[np.ndarray]:
    """Yield rows ``start:stop`` of ``dataset`` chunk by chunk, read into ``buffer`` (reused)."""
    chunk_rows = len(buffer)
    for first in range(start, stop, chunk_rows):
        last = min(first + chunk_rows, stop)
        view = buffer[: last - first]
        dataset.read_direct(view, np.s_[first:last])
        yield view


def columns(chunk: np.ndarray) -> list[np.ndarray]:
    """Return the chunk's columns (a 1-D chunk is one column)."""
    return [chunk] if chunk.ndim == 1 else [chunk[:, col] for col in range(chunk.shape[1])]


def new_partial(work: str, n_cols: int, bins: int) -> Partial:
    """Return the identity partial of ``work`` for ``n_cols`` columns."""
    partial: Partial = {"rows": np.zeros(1, np.int64)}
    if work in ("sum", "stats", "numba"):
        partial["sum"] = np.zeros(n_cols)
    if work in ("stats", "numba"):
        partial["min"] = np.full(n_cols, np.inf)
        partial["max"] = np.full(n_cols, -np.inf)
        partial["hist"] = np.zeros((n_cols, bins), np.int64)
    return partial


def update(
    partial: Partial, chunk: np.ndarray, work: str, bins: int, value_range: tuple[float, float]
) -> None:
    """Fold one chunk into ``partial`` in place."""
    partial["rows"] += len(chunk)
    if work == "sum":
        # The same call as the trivial hpcapp kernel: one sum per column in the input dtype.
        partial["sum"] += chunk.sum(axis=0)
    elif work == "numba":
        two = chunk.reshape(len(chunk), -1)
        _numba_fold()(
            two, partial["sum"], partial["min"], partial["max"], partial["hist"], *value_range
        )
    elif work == "stats":
        partial["sum"] += chunk.sum(axis=0, dtype=np.float64)
        np.minimum(partial["min"], chunk.min(axis=0), out=partial["min"])
        np.maximum(partial["max"], chunk.max(axis=0), out=partial["max"])
        for col, values in enumerate(columns(chunk)):
            partial["hist"][col] += np.histogram(values, bins, value_range)[0]


def merge(left: Partial, right: Partial) -> Partial:
    """Combine two partials key by key (for workers that return theirs to a parent)."""
    ufuncs = {"sum": np.add, "min": np.minimum, "max": np.maximum}
    return {key: ufuncs[COMBINE[key]](left[key], right[key]) for key in left}


def summary(partial: Partial) -> dict[str, Any]:
    """Return the partial as JSON-ready lists, for the driver's cross-check of contenders."""
    out: dict[str, Any] = {"rows": int(partial["rows"][0])}
    for key in ("sum", "min", "max"):
        if key in partial:
            out[key] = partial[key].tolist()
    if "hist" in partial:
        out["hist"] = partial["hist"].tolist()
    return out


_FOLD: Any = None


def warm(work: str) -> None:
    """Compile (or load from numba's cache) the hand-tuned loop before any clock starts."""
    if work == "numba":
        one = np.zeros((1, 1))
        _numba_fold()(
            one, np.zeros(1), np.zeros(1), np.zeros(1), np.zeros((1, 1), np.int64), 0.0, 1.0
        )


def _numba_fold() -> Any:
    """Return the hand-tuned one-pass loop: sum, min, max and histogram of every column at once.

    What an experienced numba user writes (row-major, one pass, no temporaries; compiled once
    and cached): the baseline issue 23 sets hpcapp's one-pass ``stats`` against.
    """
    global _FOLD
    if _FOLD is None:
        import numba

        @numba.njit(cache=True, nogil=True, boundscheck=False)
        def fold(chunk, sums, mins, maxs, hist, lo, hi):  # type: ignore[no-untyped-def]
            bins = hist.shape[1]
            scale = bins / (hi - lo)
            for i in range(chunk.shape[0]):
                for j in range(chunk.shape[1]):
                    v = chunk[i, j]
                    if v != v:
                        continue
                    sums[j] += v
                    mins[j] = min(mins[j], v)
                    maxs[j] = max(maxs[j], v)
                    if lo <= v <= hi:
                        b = min(int((v - lo) * scale), bins - 1)
                        hist[j, b] += 1

        _FOLD = fold
    return _FOLD
