"""The ``trend`` kernel: a least-squares line per cell over the records' times.

Each cell's series ``y(t)`` is fitted with ``y = slope * t + intercept`` over the records where
both the value and the time are present (missing values and masked times are skipped), with
``t`` in years since 1970-01-01 of the data's calendar (days / 365.25; 365, 366 or 360 in the
``noleap``, ``all_leap`` and ``360_day`` calendars): the intercept is the line's value at
1970-01-01, as xarray's ``polyfit`` on a time coordinate puts it. It equals ``numpy.polyfit(t,
y, 1)`` on each cell's series.

A chunk's partial is per cell: the count, the means of ``t`` and ``y``, and the sums of
``(t - mean t)**2`` and ``(t - mean t) * (y - mean y)``; partials merge with the update of
Chan, Golub and LeVeque (as ``stats`` merges its variances), so no sum of large squares
cancels, and the fixed merge tree makes the bits the same on any rank count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import DEFAULT_OVER, InputInfo, Partial

EPOCH = "days since 1970-01-01"
# Days in a year of each calendar's own counting (others: the Julian year, 365.25 days).
DAYS_PER_YEAR = {"noleap": 365.0, "365_day": 365.0, "all_leap": 366.0, "366_day": 366.0}
DAYS_PER_YEAR["360_day"] = 360.0
KEYS = ("count", "mean_t", "mean_y", "ctt", "cty")


def years(times: np.ndarray) -> np.ndarray:
    """Return cftime dates as float64 years since 1970-01-01 of their calendar (NaN: None)."""
    out = np.full(len(times), np.nan)
    known = np.array([t is not None for t in times], dtype=bool)
    if known.any():
        import cftime

        dates = times[known]
        calendar = dates[0].calendar
        days = np.asarray(cftime.date2num(list(dates), EPOCH, calendar), dtype=np.float64)
        out[known] = days / DAYS_PER_YEAR.get(calendar, 365.25)
    return out


def check_trend(params: Mapping[str, Any], data: InputInfo) -> None:
    """Refuse reductions over other dimensions than the records, and non-numeric data."""
    if tuple(params.get("over", DEFAULT_OVER)) != DEFAULT_OVER:
        raise ValueError("a trend runs over the record dimension only (--over time)")
    if data.dtype is not None and np.dtype(data.dtype).kind not in "iuf":
        raise ValueError(f"a trend needs numbers, got dtype {np.dtype(data.dtype)}")


def merge_trend(left: Partial, right: Partial) -> Partial:
    """Merge the fits of two runs of records, cell by cell (left first)."""
    na, nb = left["count"], right["count"]
    n = na + nb
    weight = nb / np.maximum(n, 1)  # 0 or 1 where a side is empty: that side's moments exactly
    dt = right["mean_t"] - left["mean_t"]
    dy = right["mean_y"] - left["mean_y"]
    both = na * weight  # na * nb / n
    return {
        "count": n,
        "mean_t": left["mean_t"] + dt * weight,
        "mean_y": left["mean_y"] + dy * weight,
        "ctt": left["ctt"] + right["ctt"] + dt * dt * both,
        "cty": left["cty"] + right["cty"] + dt * dy * both,
    }


def finish_trend(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Return slope (per year), intercept (at 1970-01-01) and count; NaN below two times."""
    ctt, count = partial["ctt"], partial["count"]
    fitted = (count >= 2) & (ctt > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(fitted, partial["cty"] / np.where(fitted, ctt, 1.0), np.nan)
    intercept = np.where(fitted, partial["mean_y"] - slope * partial["mean_t"], np.nan)
    return {"slope": slope, "intercept": intercept, "count": count}


@kernel(
    combine=merge_trend,
    elementwise=True,
    finalize=finish_trend,
    validate=check_trend,
    returns=KEYS,
    over=True,
    times=True,
)
def trend(chunk: np.ndarray, over: Any = DEFAULT_OVER, times: Any = None) -> Partial:
    """Least-squares slope per year, intercept and count per cell over time (polyfit deg 1)."""
    y = np.asarray(chunk, dtype=np.float64)
    t = years(np.asarray(times, dtype=object)).reshape((-1,) + (1,) * (y.ndim - 1))
    valid = ~np.isnan(y) & ~np.isnan(t)
    count = valid.sum(axis=0, dtype=np.int64)
    divisor = np.maximum(count, 1)
    t_valid = np.where(valid, t, 0.0)
    y_valid = np.where(valid, y, 0.0)
    mean_t = t_valid.sum(axis=0) / divisor
    mean_y = y_valid.sum(axis=0) / divisor
    dt = np.where(valid, t - mean_t, 0.0)
    dy = np.where(valid, y - mean_y, 0.0)
    return {
        "count": count,
        "mean_t": mean_t,
        "mean_y": mean_y,
        "ctt": (dt * dt).sum(axis=0),
        "cty": (dt * dy).sum(axis=0),
    }
