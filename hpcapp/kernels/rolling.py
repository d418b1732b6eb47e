"""The ``rolling`` kernel: a moving-window statistic along the records, one row per record.

``-p window=K -p stat=mean|sum|std|min|max -p center=true|false -p min_periods=N``, as xarray's
``da.rolling(time=K, center=..., min_periods=N).<stat>()``: the window of record ``i`` is
records ``i-K+1 .. i`` (centred: ``i-K//2 .. i+(K-1)//2``), missing values are skipped, a window
with fewer than ``min_periods`` values (default ``K``) gives NaN, windows run past the input's
ends with nothing there, and ``std`` has ddof 0 (xarray's default).

The kernel is declared with a halo: each chunk comes with the records its first and last
windows reach into (:mod:`hpcapp.io.records`). ``std``, ``min`` and ``max`` compute every
output row from its own window alone, adding its records in window order in float64. ``mean``
and ``sum`` keep a running float64 sum (and count) restarted at fixed global anchors, every
``BLOCK`` records of the input: an anchor's window is summed directly in window order, each
later record adds the value entering its window and subtracts the one leaving it
(:mod:`hpcapp.kernels._rolling_sums`), so each costs O(1) instead of O(K); their chunks come
with ``BLOCK - 1`` more records before them, back to their first record's anchor. Either way
every row is computed by the same operations whatever chunk it falls in: the bits do not
depend on how records are cut into chunks, nor on the rank count. A running sum rounds at most
``2 * BLOCK`` times more than a direct one, each rounding at most half an ulp of a partial sum
bounded by ``K`` times the largest value in the block's windows: an absolute error at most
about ``BLOCK * K * 2**-53 * max|x|`` (1e-12 of ``max|x|`` for ``BLOCK`` 64 and K 31; a
value far larger than its neighbours costs them that precision until the next anchor).
Results are float64, or float32 for float32 data (rounded once from float64), as xarray keeps
float32. ``mean`` and ``sum`` take CF-packed chunks as stored (:mod:`hpcapp.kernels.packed`) and
decode them in their compiled loop, to the same values; the others decode them with numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels import _loops
from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import InputInfo, Partial
from hpcapp.kernels.packed import Packed

STATS = ("mean", "sum", "std", "min", "max")
# Running sums restart at every BLOCK-th record of the input (mean, sum): a longer block reads
# fewer anchors' whole windows but more records before each chunk, and rounds more.
BLOCK = 64
# The running sums go a strip of cells at a time: a strip's series (its records x its cells, in
# the values' dtype) take about this many bytes, so they stay in cache while they are summed.
STRIP_BYTES = 1 << 19


def window_reach(params: Mapping[str, Any]) -> tuple[int, int]:
    """Return the records before and after a record that its window takes."""
    size = int(params["window"])
    return (size // 2, (size - 1) // 2) if params.get("center") else (size - 1, 0)


def window_halo(params: Mapping[str, Any]) -> tuple[int, int]:
    """Return the records a chunk needs around it: its windows', back to its anchor's (sums)."""
    before, after = window_reach(params)
    running = params.get("stat", "mean") in ("mean", "sum")
    return (before + BLOCK - 1, after) if running else (before, after)


def check_rolling(params: Mapping[str, Any], data: InputInfo) -> None:
    """Refuse a window, statistic or min_periods xarray would refuse."""
    size, least = params["window"], params.get("min_periods")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"-p window must be a positive integer, got {size!r}")
    if params["stat"] not in STATS:
        raise ValueError(f"-p stat must be one of {', '.join(STATS)}, got {params['stat']!r}")
    if not isinstance(params["center"], bool):
        raise ValueError(f"-p center must be true or false, got {params['center']!r}")
    if least is not None and (
        not isinstance(least, int) or isinstance(least, bool) or not 1 <= least <= size
    ):
        raise ValueError(f"-p min_periods must be an integer from 1 to the window, got {least!r}")
    if data.dtype is not None and np.dtype(data.dtype).kind not in "iuf":
        raise ValueError(f"a rolling window needs numbers, got dtype {np.dtype(data.dtype)}")


def _padded(chunk: np.ndarray, halo: tuple[int, int], reach: tuple[int, int]) -> np.ndarray:
    """Return the chunk in float64 with NaN records where the windows run past the input."""
    missing_before = reach[0] - halo[0]
    own = len(chunk) - halo[0] - halo[1]
    out = np.full((own + reach[0] + reach[1], *chunk.shape[1:]), np.nan)
    out[missing_before : missing_before + len(chunk)] = chunk
    return out


def warm_rolling(params: Mapping[str, Any], data: InputInfo) -> None:
    """Run ``rolling`` once on two zero records, so its compiled loop loads before the clock."""
    if params["stat"] in ("mean", "sum") and data.dtype is not None:
        zeros: Any = np.zeros((2, 1), dtype=data.dtype)
        if data.unpack is not None:  # the chunks come packed: that loop
            zeros = Packed(np.zeros((2, 1), np.dtype(data.unpack.stored)), data.unpack)
        rolling.func(zeros, **params)


@kernel(
    per_row="rolling",
    returns=("rolling",),
    halo=window_halo,
    validate=check_rolling,
    prepare=warm_rolling,
)
def rolling(
    chunk: np.ndarray,
    window: int,
    stat: str = "mean",
    center: bool = False,
    min_periods: Any = None,
    halo: Any = (0, 0),
) -> Partial:
    """Moving mean, sum, std, min or max over -p window=K records (as xarray's rolling)."""
    reach = window_reach({"window": window, "center": center})
    least = window if min_periods is None else min_periods
    if stat in ("mean", "sum"):
        return {"rolling": _running(chunk, halo, reach, stat == "mean", least)}
    if isinstance(chunk, Packed):
        chunk = chunk.decoded()
    values = _padded(np.asarray(chunk), tuple(halo), reach)
    own = len(values) - reach[0] - reach[1]
    count = np.zeros((own, *values.shape[1:]), np.int64)
    total = np.zeros(count.shape)
    extreme = np.full(count.shape, np.nan)
    pick = np.fmin if stat == "min" else np.fmax
    for k in range(window):  # window order, the same for every row whatever the chunk
        part = values[k : k + own]
        present = ~np.isnan(part)
        count += present
        if stat in ("min", "max"):
            extreme = pick(extreme, part)
        else:
            total += np.where(present, part, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if stat in ("min", "max"):
            result = extreme
        elif stat == "sum":
            result = total
        else:
            result = total / count
        if stat == "std":
            mean, squares = result, np.zeros(count.shape)
            for k in range(window):
                part = values[k : k + own]
                squares += np.where(np.isnan(part), 0.0, (part - mean) ** 2)
            result = np.sqrt(squares / count)
    result = np.where(count >= least, result, np.nan)
    dtype = np.float32 if np.asarray(chunk).dtype == np.float32 else np.float64
    return {"rolling": result.astype(dtype, copy=False)}


def _running(chunk: Any, halo: Any, reach: tuple[int, int], mean: bool, least: int) -> np.ndarray:
    """Return the running window means or sums of the chunk's own records (BLOCK anchors).

    ``chunk`` is an array or :class:`Packed` (stored integers, decoded strip by strip).
    """
    before, after = halo
    first = getattr(halo, "start", 0)  # a plain array: the input's first records
    stored = chunk.stored if isinstance(chunk, Packed) else np.asarray(chunk)
    values = np.dtype(chunk.unpack.dtype) if isinstance(chunk, Packed) else stored.dtype
    if values not in (np.float32, np.float64):
        values = np.dtype(np.float64)
    data = stored.reshape(len(stored), -1)
    if not isinstance(chunk, Packed) and data.dtype != values:
        data = data.astype(values)
    out = np.empty((len(stored) - before - after, data.shape[1]), values)
    strip = np.empty(max(STRIP_BYTES // values.itemsize, len(data)), values)
    common = (first, before, reach[0], reach[1], BLOCK, mean, least, out, strip)
    if isinstance(chunk, Packed):
        data = np.ascontiguousarray(data, np.dtype(chunk.unpack.stored))  # native order
        loop = _loops.rolling_packed_loop(data.dtype, values)
        loop(data, *common, *chunk.unpack.loop_arguments(), values.type(np.nan))
    else:
        _loops.rolling_loop(values)(np.ascontiguousarray(data), *common)
    return out.reshape(len(out), *stored.shape[1:])


# Chunks CF-packed as a linear unpack come as stored (Packed): mean and sum decode them in
# their compiled loop; the window statistics decode them with numpy (Packed.decoded).
rolling = dataclasses.replace(rolling, packed=True)
