"""The ``rolling`` kernel: a moving-window statistic along the records, one row per record.

``-p window=K -p stat=mean|sum|std|min|max -p center=true|false -p min_periods=N``, as xarray's
``da.rolling(time=K, center=..., min_periods=N).<stat>()``: the window of record ``i`` is
records ``i-K+1 .. i`` (centred: ``i-K//2 .. i+(K-1)//2``), missing values are skipped, a window
with fewer than ``min_periods`` values (default ``K``) gives NaN, windows run past the input's
ends with nothing there, and ``std`` has ddof 0 (xarray's default).

The kernel is declared with a halo: each chunk comes with the records its first and last
windows reach into (:mod:`hpcapp.io.records`). Every output row is computed from its own window
alone, adding its records in window order in float64: no running sum crosses rows, so the bits
do not depend on how records are cut into chunks, nor on the rank count. Results are float64,
or float32 for float32 data (rounded once from float64), as xarray keeps float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import InputInfo, Partial

STATS = ("mean", "sum", "std", "min", "max")


def window_halo(params: Mapping[str, Any]) -> tuple[int, int]:
    """Return the records before and after a record that its window takes."""
    size = int(params["window"])
    return (size // 2, (size - 1) // 2) if params.get("center") else (size - 1, 0)


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


@kernel(per_row="rolling", returns=("rolling",), halo=window_halo, validate=check_rolling)
def rolling(
    chunk: np.ndarray,
    window: int,
    stat: str = "mean",
    center: bool = False,
    min_periods: Any = None,
    halo: Any = (0, 0),
) -> Partial:
    """Moving mean, sum, std, min or max over -p window=K records (as xarray's rolling)."""
    reach = window_halo({"window": window, "center": center})
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
    least = window if min_periods is None else min_periods
    result = np.where(count >= least, result, np.nan)
    dtype = np.float32 if np.asarray(chunk).dtype == np.float32 else np.float64
    return {"rolling": result.astype(dtype, copy=False)}
