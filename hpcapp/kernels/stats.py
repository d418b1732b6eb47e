"""The ``stats`` kernel: per-column count, NaN count, sum, mean, variance, min, max, histogram.

What is exact, and what is refused:

- Integer and bool data (bool counts as 0/1, read as uint8): ``sum``, and the sum of squares,
  are exact multi-word integers (:mod:`hpcapp.kernels._exact`) in every chunk and every merge,
  so they never wrap; ``mean``, ``var`` (ddof=0) and ``std`` are the exact values correctly
  rounded to float64 (Python integers at finalize). ``sum`` is int64 when every column's sum
  fits, else float64 correctly rounded, with the attribute ``rounded`` on the dataset.
- Float data: sums in float64 (float16/32 values are exact in it), NaN excluded and counted in
  ``nan_count``, +-inf as numpy's nan-aware functions (mean of [inf, 1] is inf, of [inf, -inf]
  nan; var with an inf is nan). ``mean`` is sum / count, off by at most about
  ``n * 2**-53 * mean(|x|)``. var comes from shifted sums (compiled path) or deviations from
  the chunk mean (numpy path), merged with the update of Chan, Golub and LeVeque; with
  ``eps = 2**-53``, ``A = max|x|`` and ``R = max(x) - min(x)`` its error is below ``8 n**2 eps
  var + 8 n eps A R + 4 (n eps A)**2`` (plus ``8 n`` subnormal units), the bound
  tests/test_stats_exact.py checks: the ``A R`` term is the means' rounding in a merge, so
  ``1e9 + N(0, 1)`` keeps its variance to about 1e-7 relative, not to 1e-16.
- count, nan_count, min, max and the histogram are exact; ``hist`` equals ``numpy.histogram``
  bin for bin; ``hist_below``/``hist_above`` count the non-NaN values outside the range.
- Refused before any work (see :mod:`hpcapp.kernels.stats_params`): histogram parameters that
  numpy would refuse or that do not fit the data's float type.

Results are native-endian and their dtypes depend only on the input dtype, never on the number
of chunks: a non-native input is swapped to native order before anything else. A chunk's partial
comes from one compiled pass (:mod:`hpcapp.kernels._fused_call`) on chunks of ``FUSED_MIN_VALUES``
values or more: the prebuilt loops (:mod:`hpcapp.kernels._loops`, no numba) or numba's JIT, loaded
on the first such chunk; small chunks and float16 take the numpy path below. Both
give the same exact parts bitwise; which one a chunk takes depends only on its size and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels import _exact, _fused_call
from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import InputInfo, Partial
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.partials import with_attrs
from hpcapp.kernels.stats_params import Histogram, check_params, edge_dtype

# Chunks of fewer values take the numpy path: they come from small inputs (or a small
# --chunk-rows), where loading the compiled loops (~1 ms prebuilt; ~0.3 s per process through
# numba's JIT, more on a busy node) would cost more than the compiled pass saves.
FUSED_MIN_VALUES = 1 << 17

ROUNDED_NOTE = "the exact integer sum does not fit int64: stored as float64, correctly rounded"


def native(chunk: np.ndarray) -> np.ndarray:
    """Return ``chunk`` in native byte order, bool as uint8 0/1."""
    if chunk.dtype.kind == "b":
        return chunk.view(np.uint8)
    if not chunk.dtype.isnative:
        return chunk.astype(chunk.dtype.newbyteorder("="))
    return chunk


def _fused_dtype(dtype: np.dtype) -> bool:
    """Return whether the compiled pass handles ``dtype`` (native integers, float32/64)."""
    return dtype.isnative and (dtype.kind in "iu" or dtype in (np.float32, np.float64))


def _outside(chunk: np.ndarray, ranges: list[tuple[float, float]]) -> tuple[np.ndarray, ...]:
    """Count per column the values below LO and above HI, compared as numpy.histogram does."""
    work = edge_dtype(chunk.dtype)
    lo = np.array([r[0] for r in ranges], work)
    hi = np.array([r[1] for r in ranges], work)
    below = (chunk < lo).sum(axis=0, dtype=np.int64)
    above = (chunk > hi).sum(axis=0, dtype=np.int64)
    return below, above


def _histograms(chunk: np.ndarray, bins: int, ranges: list[tuple[float, float]]) -> np.ndarray:
    """Return numpy.histogram of each column's non-NaN values, as (columns x bins) int64."""
    hist = np.empty((chunk.shape[1], bins), dtype=np.int64)
    for col, value_range in enumerate(ranges):
        column = chunk[:, col]
        if chunk.dtype.kind == "f":
            column = column[~np.isnan(column)]
        hist[col] = np.histogram(column, bins=bins, range=value_range)[0]
    return hist


def _add_histogram(partial: Partial, chunk: np.ndarray, spec: Histogram) -> None:
    """Put hist, hist_below and hist_above of ``chunk`` into ``partial``."""
    ranges = spec.column_ranges(chunk.shape[1])
    if "hist" not in partial:  # the compiled loop counts all three when it bins
        partial["hist"] = _histograms(chunk, spec.bins, ranges)
        partial["hist_below"], partial["hist_above"] = _outside(chunk, ranges)


def _chunk_stats(chunk: np.ndarray, spec: Histogram | None, unpack: Any = None) -> Partial:
    """Compute the partial of a 2-D native chunk (rows x columns); stored integers if ``unpack``.

    Packed chunks are decoded in the compiled pass when it runs and bins the histogram (one
    range for all columns, a plan for it); else decoded here first, with numpy.
    """
    values = np.dtype(unpack.dtype) if unpack is not None else chunk.dtype
    fused = chunk.size >= FUSED_MIN_VALUES and _fused_dtype(values)
    plan = None
    if fused and spec is not None and spec.shared:
        plan = _fused_call.histogram_plan(values.str, spec.bins, *spec.ranges[0])
    if unpack is not None and not (fused and (spec is None or plan is not None)):
        chunk, unpack = unpack.decode(chunk), None
    partial = _fused_chunk_stats(chunk, spec, plan, unpack) if fused else _numpy_chunk_stats(chunk)
    if chunk.dtype.kind in "iu" and unpack is None:
        moments = _fused_moments if fused else _exact.chunk_moments
        partial["s1"], partial["s2"] = moments(chunk)
    if spec is not None:
        _add_histogram(partial, chunk, spec)
    return partial


def _fused_moments(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact integer moments from the compiled loop."""
    return _fused_call.chunk_moments(chunk)


def _fused_chunk_stats(
    chunk: np.ndarray, spec: Histogram | None, plan: Any, unpack: Any = None
) -> Partial:
    """Compute the partial of a large chunk in one compiled pass (decoding it if ``unpack``)."""
    values = np.dtype(unpack.dtype) if unpack is not None else chunk.dtype
    acc = np.dtype(np.float64) if values.kind == "f" else np.dtype(np.int64)
    bins = spec.bins if spec is not None else 1
    fused = _fused_call.chunk_partial(np.ascontiguousarray(chunk), acc, bins, plan, unpack)
    partial: Partial = {
        "count": fused["count"],
        "nan_count": chunk.shape[0] - fused["count"],
        "min": fused["min"],
        "max": fused["max"],
    }
    if values.kind == "f":
        partial.update(sum=fused["sum"], mean=fused["mean"], m2=fused["m2"])
    if plan is not None:
        for key in ("hist", "hist_below", "hist_above"):
            partial[key] = fused[key]
    return partial


def _numpy_chunk_stats(chunk: np.ndarray, needed: Any = None) -> Partial:
    """Compute the partial of a 2-D chunk with numpy calls (small chunks, float16).

    ``needed`` (a set of part names, :func:`hpcapp.kernels.stats_select.needed_parts`): only
    those parts of a float chunk, each by the same steps as with all of them.
    """
    n_cols = chunk.shape[1]
    if chunk.dtype.kind != "f":
        return {
            "count": np.full(n_cols, chunk.shape[0], dtype=np.int64),
            "nan_count": np.zeros(n_cols, dtype=np.int64),
            "min": chunk.min(axis=0, initial=np.iinfo(chunk.dtype).max),
            "max": chunk.max(axis=0, initial=np.iinfo(chunk.dtype).min),
        }
    wanted = set(needed) if needed is not None else {"nan_count", "sum", "mean", "m2", "min", "max"}
    valid = ~np.isnan(chunk)
    count = valid.sum(axis=0, dtype=np.int64)
    partial: Partial = {"count": count}
    if "nan_count" in wanted:
        partial["nan_count"] = chunk.shape[0] - count
    if wanted & {"sum", "mean", "m2"}:
        has_nan = bool((count < chunk.shape[0]).any())
        values = np.where(valid, chunk, 0) if has_nan else chunk
        with np.errstate(invalid="ignore"):  # inf - inf: that sum, and the variance, are NaN
            total = values.sum(axis=0, dtype=np.float64)
            if "sum" in wanted:
                partial["sum"] = total
            if wanted & {"mean", "m2"}:
                mean = total / np.maximum(count, 1)
            if "mean" in wanted:
                partial["mean"] = np.where(count > 0, mean, 0.0)
            if "m2" in wanted:
                deviation = values - mean if not has_nan else np.where(valid, values - mean, 0.0)
                partial["m2"] = np.einsum("ij,ij->j", deviation, deviation, dtype=np.float64)
    big = np.array(np.inf, dtype=chunk.dtype)
    if "min" in wanted:
        partial["min"] = np.fmin.reduce(chunk, axis=0, initial=big).astype(chunk.dtype)
    if "max" in wanted:
        partial["max"] = np.fmax.reduce(chunk, axis=0, initial=-big).astype(chunk.dtype)
    return partial


def merge_stats(left: Partial, right: Partial) -> Partial:
    """Combine two partials: exact limbs or Chan's update, sums, minima, maxima, counts.

    A partial trimmed by ``-p stats`` (:mod:`hpcapp.kernels.stats_select`) merges the parts
    it has, each by the same operations as in a full one.
    """
    count = left["count"] + right["count"]
    merged = {"count": count}
    if "nan_count" in left:
        merged["nan_count"] = left["nan_count"] + right["nan_count"]
    if "min" in left:
        merged["min"] = np.minimum(left["min"], right["min"])
    if "max" in left:
        merged["max"] = np.maximum(left["max"], right["max"])
    if "s1" in left:
        merged["s1"] = _exact.add(left["s1"], right["s1"])
        merged["s2"] = _exact.add(left["s2"], right["s2"])
    else:
        safe = np.maximum(count, 1)
        with np.errstate(invalid="ignore"):  # inf - inf between means: the m2 is NaN already
            if "sum" in left:
                merged["sum"] = left["sum"] + right["sum"]
            if "mean" in left:
                delta = right["mean"] - left["mean"]
                weight = right["count"] / safe
                merged["mean"] = np.where(count > 0, left["mean"] + delta * weight, 0.0)
                merged["m2"] = left["m2"] + right["m2"] + delta * delta * (left["count"] * weight)
    for key in ("hist", "hist_below", "hist_above"):
        if key in left:
            merged[key] = left[key] + right[key]
    return merged


def finalize_stats(partial: Partial, bins: int = 64, range: Any = None) -> Partial:
    """Turn the merged partial into count, sum, mean, var (ddof=0), std, min, max, hist."""
    count = partial["count"]
    empty = count == 0
    results: Partial = {"count": count}
    if "nan_count" in partial:
        results["nan_count"] = partial["nan_count"]
    if "s1" in partial:
        total, mean, var, std = _exact.finalize_moments(count, partial["s1"], partial["s2"])
        total, rounded = _exact.sum_result(total)
        results.update(
            sum=with_attrs(total, rounded=ROUNDED_NOTE) if rounded else total,
            mean=mean,
            var=var,
            std=std,
        )
    else:
        safe = np.maximum(count, 1)
        if "sum" in partial:
            results.update(sum=partial["sum"], mean=np.where(empty, np.nan, partial["sum"] / safe))
        if "m2" in partial:
            var = partial["m2"] / safe
            results.update(
                var=np.where(empty, np.nan, var), std=np.where(empty, np.nan, np.sqrt(var))
            )
    for key in ("min", "max"):
        if key not in partial:
            continue
        value = partial[key]
        results[key] = np.where(empty, np.nan, value) if value.dtype.kind == "f" else value
    if "hist" in partial:
        spec = check_params(bins, range)
        assert spec is not None
        dtype = partial["min"].dtype
        results["hist"] = partial["hist"]
        results["hist_below"] = partial["hist_below"]
        results["hist_above"] = partial["hist_above"]
        edges = [np.histogram_bin_edges(np.empty(0, dtype), bins, r) for r in spec.ranges]
        results["hist_edges"] = edges[0] if spec.shared else np.stack(edges)
    return results


def warm_rows(chunk_shape: tuple[int, ...]) -> int:
    """Return the rows of zeros that reach the compiled path: at most a chunk's, no more.

    A warm-up (the kernels' ``prepare``) runs the kernel once on that many rows, so loading
    compiled code (numba's import and its cache, ~0.3 s per process) is timed as start-up, not
    as the first chunk's compute; a 1 GB chunk costs no 1 GB of warm-up.
    """
    rows, columns = chunk_shape[0], int(np.prod(chunk_shape[1:], dtype=np.int64))
    return max(1, min(rows, -(-FUSED_MIN_VALUES // max(columns, 1))))


def finish_stats(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """The finalize hook: :func:`finalize_stats` with the job's ``bins`` and ``range``."""
    return finalize_stats(partial, bins=params["bins"], range=params["range"])


def validate_stats(params: Mapping[str, Any], data: InputInfo) -> None:
    """The validate hook: the histogram parameters against the data (see check_params)."""
    check_params(
        params["bins"],
        params["range"],
        dtype=data.dtype,
        row_shape=data.row_shape,
        given_params=data.given,
    )


def prepare_stats(params: Mapping[str, Any], data: InputInfo) -> None:
    """Run ``stats`` once on zeros shaped like the job's chunks, so the same code path loads."""
    shape = data.chunk_shape
    stats(np.zeros((warm_rows(shape), *shape[1:]), dtype=data.dtype), **params)


def _plain(value: Any) -> bool:
    """Return whether ``value`` is None, a bool, int, float or str, or a list or tuple of such."""
    if type(value) in (list, tuple):
        return all(_plain(item) for item in value)
    return value is None or type(value) in (bool, int, float, str)


# Checked histogram parameters by (bins, range) as written: parsing and checking them cost
# ~13 us a chunk. repr tells 1 from 1.0 and True, and lists from tuples, for these plain types.
_SPECS: dict[tuple[str, str, np.dtype, tuple[int, ...]], Histogram | None] = {}


def _chunk_params(bins: Any, range: Any, dtype: np.dtype, row_shape: Any) -> Histogram | None:
    """Return ``check_params`` for a chunk; accepted plain parameters are remembered."""
    key = (repr(bins), repr(range), dtype, tuple(row_shape)) if _plain([bins, range]) else None
    if key is not None and key in _SPECS:
        return _SPECS[key]
    spec = check_params(bins, range, dtype=dtype, row_shape=row_shape)  # refusals: every time
    if key is not None and len(_SPECS) < 64:
        _SPECS[key] = spec
    return spec


@kernel(combine=merge_stats, finalize=finish_stats, validate=validate_stats, prepare=prepare_stats)
def stats(chunk: np.ndarray | Packed, bins: int = 64, range: Any = None) -> Partial:
    """Per-column count, nan_count, sum, mean, var, std, min, max; hist if -p range=LO,HI."""
    unpack = chunk.unpack if isinstance(chunk, Packed) else None
    # Packed: stored integers, decoded in the compiled pass.
    chunk = native(chunk.stored if isinstance(chunk, Packed) else chunk)
    two_d = chunk.reshape(-1, 1) if chunk.ndim == 1 else chunk
    values = np.dtype(unpack.dtype) if unpack is not None else chunk.dtype
    spec = _chunk_params(bins, range, values, two_d.shape[1:])
    partial = _chunk_stats(two_d, spec, unpack)
    if chunk.ndim == 1:
        return {key: value[0] for key, value in partial.items()}
    return partial
