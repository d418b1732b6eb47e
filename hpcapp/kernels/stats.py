"""The ``stats`` kernel: per-column count, NaN count, sum, mean, variance, min, max, histogram.

Means and variances travel as (count, mean, M2) and merge with the pairwise update of Chan,
Golub and LeVeque, so a column with a large offset keeps an accurate variance. A chunk's own
partial comes from one compiled pass over the chunk (:mod:`hpcapp.kernels._fused`, numba,
imported on the first such chunk). Small chunks, float16 and non-native byte orders take the
numpy path below (a two-pass M2 around the chunk mean). Both paths give numpy's histogram
exactly; which one a chunk takes depends only on its size and dtype, never on the rank count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcapp.kernels.api import Partial, kernel


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """Return the accumulator for sums: exact 64-bit integers for integers, float64 otherwise."""
    if dtype.kind == "i":
        return np.dtype(np.int64)
    if dtype.kind == "u":
        return np.dtype(np.uint64)
    return np.dtype(np.float64)


def check_params(bins: int = 64, range: Any = None) -> tuple[float, float] | None:
    """Validate the histogram parameters; return the range, or ``None`` for no histogram."""
    value_range = range
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if value_range is None:
        return None
    if (
        not isinstance(value_range, (list, tuple))
        or len(value_range) != 2
        or not all(isinstance(v, (int, float)) for v in value_range)
        or not float(value_range[0]) < float(value_range[1])
    ):
        raise ValueError(f"range must be LO,HI with LO < HI, got {value_range!r}")
    return float(value_range[0]), float(value_range[1])


# Chunks of fewer values take the numpy path: they come from small inputs (or a small
# --chunk-rows), where importing numba and loading its compiled loops (~0.3 s per process, more
# on a busy node) would cost more than the compiled pass saves.
FUSED_MIN_VALUES = 1 << 17


def _fused_dtype(dtype: np.dtype) -> bool:
    """Return whether the compiled pass handles ``dtype`` (native-order integers, float32/64)."""
    return dtype.isnative and (dtype.kind in "iu" or dtype in (np.float32, np.float64))


def _histograms(
    chunk: np.ndarray, valid: np.ndarray | None, bins: int, value_range: tuple[float, float]
) -> np.ndarray:
    """Return numpy.histogram of each column's non-NaN values, as (columns x bins) int64."""
    hist = np.empty((chunk.shape[1], bins), dtype=np.int64)
    for col in range(chunk.shape[1]):
        column = chunk[:, col] if valid is None else chunk[valid[:, col], col]
        hist[col] = np.histogram(column, bins=bins, range=value_range)[0]
    return hist


def _chunk_stats(chunk: np.ndarray, bins: int, value_range: tuple[float, float] | None) -> Partial:
    """Compute the partial of a 2-D chunk (rows x columns)."""
    if chunk.size < FUSED_MIN_VALUES or not _fused_dtype(chunk.dtype):
        return _numpy_chunk_stats(chunk, bins, value_range)
    from hpcapp.kernels import _fused  # numba: paid by the first chunk, not by `import hpcapp`

    plan = None
    if value_range is not None:
        plan = _fused.histogram_plan(chunk.dtype.str, bins, *value_range)
    fused = _fused.chunk_partial(np.ascontiguousarray(chunk), _sum_dtype(chunk.dtype), bins, plan)
    partial: Partial = {
        "count": fused["count"],
        "nan_count": chunk.shape[0] - fused["count"],
        "sum": fused["sum"],
        "mean": fused["mean"],
        "m2": fused["m2"],
        "min": fused["min"],
        "max": fused["max"],
    }
    if plan is not None:
        partial["hist"] = fused["hist"]
    elif value_range is not None:
        # A range so narrow for its dtype that rounding could move a value by a bin: numpy
        # itself decides, value by value.
        valid = ~np.isnan(chunk) if chunk.dtype.kind == "f" else None
        partial["hist"] = _histograms(chunk, valid, bins, value_range)
    return partial


def _numpy_chunk_stats(
    chunk: np.ndarray, bins: int, value_range: tuple[float, float] | None
) -> Partial:
    """Compute the partial of a 2-D chunk with numpy calls (small chunks, float16)."""
    n_cols = chunk.shape[1]
    acc = _sum_dtype(chunk.dtype)
    if chunk.dtype.kind == "f":
        valid = ~np.isnan(chunk)
        count = valid.sum(axis=0, dtype=np.int64)
        nan_count = chunk.shape[0] - count
        has_nan = bool(nan_count.any())
    else:
        valid = None
        count = np.full(n_cols, chunk.shape[0], dtype=np.int64)
        nan_count = np.zeros(n_cols, dtype=np.int64)
        has_nan = False
    values = np.where(valid, chunk, 0) if has_nan else chunk
    total = values.sum(axis=0, dtype=acc)
    safe_count = np.maximum(count, 1)
    mean = total.astype(np.float64) / safe_count
    deviation = values - mean if not has_nan else np.where(valid, values - mean, 0.0)
    m2 = np.einsum("ij,ij->j", deviation, deviation, dtype=np.float64)
    if chunk.dtype.kind == "f":
        big = np.array(np.inf, dtype=chunk.dtype)
        low = np.where(count > 0, np.fmin.reduce(chunk, axis=0), big)
        high = np.where(count > 0, np.fmax.reduce(chunk, axis=0), -big)
    else:
        low, high = chunk.min(axis=0), chunk.max(axis=0)
    partial: Partial = {
        "count": count,
        "nan_count": nan_count.astype(np.int64),
        "sum": total,
        "mean": np.where(count > 0, mean, 0.0),
        "m2": m2,
        "min": low.astype(chunk.dtype),
        "max": high.astype(chunk.dtype),
    }
    if value_range is not None:
        partial["hist"] = _histograms(chunk, valid if has_nan else None, bins, value_range)
    return partial


def merge_stats(left: Partial, right: Partial) -> Partial:
    """Combine two partials: Chan's update for mean and M2, sums, minima, maxima, counts."""
    count = left["count"] + right["count"]
    safe = np.maximum(count, 1)
    delta = right["mean"] - left["mean"]
    weight = right["count"] / safe
    merged = {
        "count": count,
        "nan_count": left["nan_count"] + right["nan_count"],
        "sum": left["sum"] + right["sum"],
        "mean": np.where(count > 0, left["mean"] + delta * weight, 0.0),
        "m2": left["m2"] + right["m2"] + delta * delta * (left["count"] * weight),
        "min": np.minimum(left["min"], right["min"]),
        "max": np.maximum(left["max"], right["max"]),
    }
    if "hist" in left:
        merged["hist"] = left["hist"] + right["hist"]
    return merged


def finalize_stats(partial: Partial, bins: int = 64, range: Any = None) -> Partial:
    """Turn (count, mean, M2, ...) into mean, var (ddof=0), std; NaN where a column is empty."""
    count = partial["count"]
    empty = count == 0
    var = partial["m2"] / np.maximum(count, 1)
    results: Partial = {
        "count": count,
        "nan_count": partial["nan_count"],
        "sum": partial["sum"],
        "mean": np.where(empty, np.nan, partial["mean"]),
        "var": np.where(empty, np.nan, var),
        "std": np.where(empty, np.nan, np.sqrt(var)),
    }
    for key in ("min", "max"):
        value = partial[key]
        results[key] = np.where(empty, np.nan, value) if value.dtype.kind == "f" else value
    if "hist" in partial:
        dtype = partial["min"].dtype
        lo, hi = float(range[0]), float(range[1])
        results["hist"] = partial["hist"]
        results["hist_edges"] = np.histogram_bin_edges(np.empty(0, dtype), bins, (lo, hi))
    return results


@kernel(combine=merge_stats, finalize=finalize_stats, validate=check_params)
def stats(chunk: np.ndarray, bins: int = 64, range: Any = None) -> Partial:
    """Per-column count, nan_count, sum, mean, var, std, min, max; hist if -p range=LO,HI."""
    value_range = check_params(bins, range)
    if chunk.ndim == 1:
        partial = _chunk_stats(chunk.reshape(-1, 1), bins, value_range)
        return {key: value[0] for key, value in partial.items()}
    return _chunk_stats(chunk, bins, value_range)


from hpcapp.kernels.warmup import prepare_stats  # noqa: E402  (no cycle: it imports late)

stats.prepare = prepare_stats  # type: ignore[attr-defined]
