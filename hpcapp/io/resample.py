"""Calendar periods of records for ``--resample time=FREQ``: labels, period starts, bounds.

``FREQ`` is ``ND`` (days), ``NM``/``NMS`` (months) or ``NY``/``NYS``/``NA`` (years), ``N``
optional (1). Periods are anchored as xarray's ``resample`` (pandas' rules, ``closed="left"``)
anchors them: months and years at the start of the earliest record's month or year (``1M`` and
``1Y`` mean xarray's ``1MS`` and ``1YS``: labelled by their start), days at midnight of the
earliest record's day (``origin="start_day"``). Each record's label is the int64 index of its
period from that start, so labels are decided on rank 0 once (the anchor) and by every rank for
its own chunks alike: bitwise the same on any rank count. A masked time is in no period.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.times import TimeEncoding, encoding_of
from hpcapp.io.coding.variables import attr_text
from hpcapp.io.frequency import parse_resample
from hpcapp.io.sources.hdf5 import open_input
from hpcapp.kernels.grouped import NO_GROUP
from hpcapp.kernels.partials import with_attrs

_WORDS = {"D": "day", "M": "month", "Y": "year"}
BOUNDS_SUFFIX = "_bnds"  # the periods' bounds variable: ``time_bnds``


@dataclasses.dataclass(frozen=True)
class Periods:
    """Calendar periods of N days, months or years from ``origin`` (small and picklable)."""

    unit: str  # D, M or Y
    n: int
    origin: tuple[int, int, int]  # the first period's start: (year, month, day), at midnight
    calendar: str
    count: int  # periods from the first to the last record's (the empty ones between too)

    @property
    def frequency(self) -> str:
        """Return the frequency as xarray writes it: ``1D``, ``3MS``, ``1YS``."""
        return f"{self.n}{self.unit}" if self.unit == "D" else f"{self.n}{self.unit}S"

    def describe(self) -> str:
        """Return what a period is, in words (``period of 3 months``)."""
        return f"period of {self.n} {_WORDS[self.unit]}{'s' if self.n > 1 else ''}"

    def _origin_units(self) -> str:
        year, month, day = self.origin
        return f"days since {year:04d}-{month:02d}-{day:02d}"

    def codes(self, dates: np.ndarray) -> np.ndarray:
        """Return the int64 period index of each cftime date (NO_GROUP where None)."""
        import cftime

        codes = np.full(len(dates), NO_GROUP, np.int64)
        known = np.array([d is not None for d in dates], bool)
        if not known.any():
            return codes
        valid = dates[known]
        if self.unit == "D":
            # Dates of a calendar that shares these days (standard, proleptic_gregorian) count
            # them the same way: cftime converts.
            days = np.floor(cftime.date2num(valid, self._origin_units(), self.calendar))
            steps = days.astype(np.int64)
        else:
            year, month, _ = self.origin
            months = np.fromiter((d.year * 12 + d.month - 1 for d in valid), np.int64, len(valid))
            steps = months - (year * 12 + month - 1)
            if self.unit == "Y":
                steps = steps // 12
        codes[known] = steps // self.n
        return codes

    def edges(self) -> np.ndarray:
        """Return the ``count + 1`` period edges as cftime dates (the starts, then the end)."""
        import cftime

        k = np.arange(self.count + 1, dtype=np.int64) * self.n
        year, month, _ = self.origin
        if self.unit == "D":
            return np.atleast_1d(
                cftime.num2date(
                    k.astype(np.float64),
                    self._origin_units(),
                    self.calendar,
                    only_use_cftime_datetimes=True,
                )
            )
        months = (year * 12 + month - 1) + (k * 12 if self.unit == "Y" else k)
        return np.array(
            [cftime.datetime(m // 12, m % 12 + 1, 1, calendar=self.calendar) for m in months],
            dtype=object,
        )


def plan_periods(text: str, source: Any) -> tuple[str, TimeEncoding, Periods]:
    """Check ``--resample`` against the input (rank 0): its records need a CF time coordinate.

    Returns the time coordinate's path, its (first file's) encoding, and the periods from the
    earliest to the latest record's, read from the (selected) records of every file.
    """
    name, unit, n = parse_resample(text)
    dims, coords = tuple(source.dims), tuple(getattr(source, "coords", ()))
    if not dims or name != dims[0]:
        records = repr(dims[0]) if dims else "the first one"
        raise UsageError(
            f"--resample {text}: {source.spec} has no record dimension {name!r} (its records run "
            f"along {records}): resample along the first dimension"
        )
    coord = coords[0] if coords else None
    with open_input(source) as h5:
        attrs = dict(h5[coord].attrs) if coord is not None else {}
        dtype = h5[coord].dtype if coord is not None else np.dtype("f8")
    units = attr_text(attrs.get("units"))
    try:
        encoding = encoding_of(attrs, dtype) if coord is not None else None
    except ValueError as exc:
        raise UsageError(f"--resample {text}: cannot decode {source.path}:{coord}: {exc}") from None
    if encoding is None:
        raise UsageError(
            f"--resample {text}: dimension {name!r} of {source.spec} is not a CF time coordinate "
            f"(it needs a coordinate variable with units like 'days since 1850-01-01', got "
            f"{units!r})"
        )
    assert coord is not None
    earliest, latest = _range(source, coord, encoding)
    if earliest is None:
        raise UsageError(f"--resample {text}: every time in {source.spec} ({coord}) is missing")
    first = Periods(unit, n, (earliest.year, earliest.month, earliest.day), encoding.calendar, 1)
    if unit != "D":
        day_one = (earliest.year, earliest.month if unit == "M" else 1, 1)
        first = dataclasses.replace(first, origin=day_one)
    last = int(first.codes(np.array([latest], dtype=object))[0])
    return coord, encoding, dataclasses.replace(first, count=last + 1)


def _range(source: Any, coord: str, first: TimeEncoding) -> tuple[Any, Any]:
    """Return the earliest and latest record times (dates), or (None, None) if all are missing."""
    if not source.n_rows:
        return None, None
    numbers = np.empty(source.n_rows)
    with source.open() as rows:
        for part, start, stop in rows.spans(0, source.n_rows):
            encoding = rows.time_encoding(part, coord) or first
            raw = np.empty(stop - start, np.dtype(encoding.dtype))
            rows.read_rows(coord, raw, start, stop)
            numbers[start:stop] = encoding.numbers_in(raw, first)
    if np.isnan(numbers).all():
        return None, None
    earliest, latest = first.dates_of(np.array([np.nanmin(numbers), np.nanmax(numbers)]))
    return earliest, latest


def period_results(
    results: dict[str, Any], key: str, periods: Periods, encoding: TimeEncoding, shared: tuple
) -> dict[str, Any]:
    """Return grouped results with every period from the first to the last, and their times.

    Periods with no record (between two that have some) get NaN (integers 0, as ``count``).
    ``key`` (``time``) becomes the period starts in the input's units and calendar, and
    ``time_bnds`` the periods' (start, end).
    """
    import cftime

    present = np.asarray(results[key], np.int64)
    out: dict[str, Any] = {}
    for name, value in results.items():
        if name == key or name in shared or len(present) == periods.count:
            out[name] = value
            continue
        array = np.asarray(value)
        filled = np.zeros((periods.count, *array.shape[1:]), array.dtype)
        if array.dtype.kind == "f":
            filled[...] = np.nan
        filled[present] = array
        notes = getattr(value, "attrs", None)
        out[name] = with_attrs(filled, **notes) if notes else filled
    numbers = np.asarray(cftime.date2num(periods.edges(), encoding.units, encoding.calendar))
    numbers = numbers.astype(np.float64)
    attrs = {"units": encoding.units, "calendar": encoding.calendar}
    out[key] = with_attrs(numbers[:-1], **attrs, bounds=key + BOUNDS_SUFFIX)
    out[key + BOUNDS_SUFFIX] = with_attrs(np.stack([numbers[:-1], numbers[1:]], 1), **attrs)
    return out


def period_texts(starts: Any) -> list[str]:
    """Return period starts (as :func:`period_results` gives them) as dates: ``2000-01-01``."""
    import cftime

    attrs = getattr(starts, "attrs", {})
    numbers = np.ravel(np.asarray(starts, np.float64))
    if "units" not in attrs or not len(numbers):  # read back from a file: no attributes
        return [str(value) for value in numbers]
    dates = cftime.num2date(numbers, attrs["units"], attrs.get("calendar", "standard"))
    return [date.strftime("%Y-%m-%d") for date in np.atleast_1d(dates)]
