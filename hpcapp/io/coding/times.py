"""CF time coordinates: stored numbers to dates as xarray decodes them, and dates to one unit.

A time variable decodes as xarray's default decoding does: values equal to ``_FillValue`` or
``missing_value`` are masked (compared in the dtype xarray compares them in), packed values are
unpacked (``scale_factor``, ``add_offset``, in the float dtype xarray picks), and the numbers
become ``cftime`` dates from ``units`` and ``calendar``. A masked time is NaN as a number and
``None`` as a date: it has no month, so grouping leaves its record out of every group.

Files of one series may each encode their times their own way: :meth:`TimeEncoding.numbers_in`
re-encodes one file's times in another's units and calendar (the output's time axis).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

CALENDARS = (
    "standard",
    "gregorian",
    "proleptic_gregorian",
    "julian",
    "noleap",
    "365_day",
    "all_leap",
    "366_day",
    "360_day",
)
# Names of one calendar: cftime makes the same dates of them.
_SAME = {"gregorian": "standard", "365_day": "noleap", "366_day": "all_leap"}
# From this day on the standard (mixed Julian/Gregorian) and proleptic Gregorian calendars agree.
_GREGORIAN_START = (1582, 10, 15)
TIME_ATTRS = ("units", "calendar", "_FillValue", "missing_value", "scale_factor", "add_offset")


def is_time_units(units: str | None) -> bool:
    """Return whether ``units`` reads like CF time units (``UNIT since DATE``), as xarray tests."""
    return units is not None and " since " in units


@dataclasses.dataclass(frozen=True)
class TimeEncoding:
    """How one file stores a time variable (small and picklable)."""

    units: str
    calendar: str  # lower case; "standard" when the file gives none
    dtype: str  # as stored
    missing: tuple[float | int, ...] = ()  # _FillValue and missing_value, NaN left out
    scale_factor: float | None = None
    add_offset: float | None = None
    float_dtype: str = "<f8"  # packed values are unpacked in this dtype (xarray's choice)

    @property
    def shared_name(self) -> str:
        """Return the calendar's canonical name (``gregorian`` is ``standard``, and so on)."""
        return _SAME.get(self.calendar, self.calendar)

    @property
    def packed(self) -> bool:
        """Return whether stored values are unpacked before they are times."""
        return self.scale_factor is not None or self.add_offset is not None

    def numbers(self, raw: np.ndarray) -> np.ndarray:
        """Return the stored values as float64 numbers in ``units``: unpacked, masked as NaN."""
        raw = np.asarray(raw)
        if self.packed:
            work = raw.astype(self.float_dtype)
        else:
            work = raw.astype(np.int64 if raw.dtype.kind in "iub" else raw.dtype)
        mask = np.zeros(work.shape, bool)
        for value in self.missing:
            fill = np.float64(value) if isinstance(value, float) else np.int64(value)
            mask |= work == fill
        if self.scale_factor is not None:
            work *= np.asarray(self.scale_factor, work.dtype)
        if self.add_offset is not None:
            work += np.asarray(self.add_offset, work.dtype)
        out = work.astype(np.float64)
        out[mask] = np.nan
        return out

    def dates(self, raw: np.ndarray) -> np.ndarray:
        """Return the stored values as cftime dates (an object array; None where masked)."""
        return self.dates_of(self.numbers(raw))

    def dates_of(self, numbers: np.ndarray) -> np.ndarray:
        """Return numbers in ``units`` as cftime dates (None where NaN)."""
        import cftime

        out = np.full(numbers.shape, None, dtype=object)
        valid = ~np.isnan(numbers)
        if valid.any():
            out[valid] = np.atleast_1d(
                cftime.num2date(
                    numbers[valid], self.units, self.calendar, only_use_cftime_datetimes=True
                )
            )
        return out

    def numbers_in(self, raw: np.ndarray, target: TimeEncoding) -> np.ndarray:
        """Return the stored values as float64 numbers in ``target``'s units and calendar."""
        import cftime

        numbers = self.numbers(raw)
        if self.units == target.units and self.shared_name == target.shared_name:
            return numbers  # no round trip through dates: the numbers stay exactly as stored
        dates = self.dates_of(numbers)
        valid = ~np.isnan(numbers)
        out = np.full(numbers.shape, np.nan)
        if valid.any():
            # Dates of another calendar are the same days here (can_share): cftime counts them.
            out[valid] = cftime.date2num(dates[valid], target.units, target.calendar)
        return out


# (units, calendar) pairs cftime has decoded in this process.
_DECODED: set[tuple[str, str]] = set()


def encoding_of(attrs: Mapping[str, Any], stored: Any) -> TimeEncoding | None:
    """Return how a variable with these attributes stores times, or None if it is no CF time.

    Raises ValueError naming the attribute when its units or calendar cannot be decoded.
    """
    from hpcapp.io.coding.variables import attr_text

    units = attr_text(attrs.get("units"))
    if not is_time_units(units):
        return None
    assert units is not None
    stored = np.dtype(stored)
    if stored.kind not in "iuf":
        raise ValueError(f"units {units!r} but dtype {stored}: times must be numbers")
    calendar = (attr_text(attrs.get("calendar")) or "standard").lower()
    if calendar not in CALENDARS:
        raise ValueError(f"calendar {calendar!r} is not one of {', '.join(CALENDARS)}")
    missing: list[float | int] = []
    for name in ("_FillValue", "missing_value"):
        if name in attrs:
            for value in np.asarray(attrs[name]).ravel():
                number = _number(value)
                if number is not None and not np.isnan(number) and number not in missing:
                    missing.append(number)
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    encoding = TimeEncoding(
        units=units,
        calendar=calendar,
        dtype=stored.str,
        missing=tuple(missing),
        scale_factor=_scalar(scale, "scale_factor"),
        add_offset=_scalar(offset, "add_offset"),
        float_dtype=_float_dtype(stored, scale, offset).str,
    )
    if (units, calendar) not in _DECODED:  # many files share them: cftime parses them once
        try:
            encoding.dates_of(np.zeros(1))
        except Exception as exc:
            raise ValueError(
                f"cannot decode units {units!r} (calendar {calendar!r}): {exc}"
            ) from None
        _DECODED.add((units, calendar))
    return encoding


def _number(value: Any) -> float | int | None:
    """Return an attribute element as a Python number (float stays float), or None."""
    kind = np.asarray(value).dtype.kind
    if kind == "f":
        return float(value)
    if kind in "iub":
        return int(value)
    return None


def _scalar(value: Any, name: str) -> float | None:
    if value is None:
        return None
    array = np.asarray(value).ravel()
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise ValueError(f"{name} {value!r} is not one number")
    return float(array[0])


def _float_dtype(stored: np.dtype, scale: Any, offset: Any) -> np.dtype:
    """Return the float dtype xarray unpacks into (``_choose_float_dtype``)."""
    if scale is None and offset is None:
        return np.dtype(np.float64)
    types = [np.asarray(a).dtype for a in (scale, offset) if a is not None]
    if scale is not None and offset is not None and types[0] == types[1]:
        if types[0].kind == "f" and stored.itemsize == 4 and stored.kind in "iu":
            return np.dtype(np.float64)  # int32 needs float64's precision
        chosen = types[0]
    elif offset is not None:
        chosen = np.dtype(np.float64)
    else:
        chosen = types[0]
    return chosen if chosen.kind == "f" and chosen.itemsize >= 4 else np.dtype(np.float64)


@dataclasses.dataclass(frozen=True)
class Span:
    """The dates a file's time variable spans (None: every time is masked, or no records)."""

    first: Any = None
    last: Any = None
    earliest: Any = None
    latest: Any = None


def span_of(encoding: TimeEncoding, raw: np.ndarray) -> Span:
    """Return the first, last, earliest and latest unmasked dates of ``raw``.

    Decoding the earliest and latest decodes every value in between: it checks them all.
    """
    numbers = encoding.numbers(raw)
    valid = np.flatnonzero(~np.isnan(numbers))
    if not len(valid):
        return Span()
    picked = np.array(
        [numbers[valid[0]], numbers[valid[-1]], np.nanmin(numbers), np.nanmax(numbers)]
    )
    first, last, earliest, latest = encoding.dates_of(picked)
    return Span(first, last, earliest, latest)


def can_share(one: TimeEncoding, other: TimeEncoding, spans: tuple[Span, Span]) -> bool:
    """Return whether dates of two calendars can be written on one axis (the same days).

    The same calendar can; standard and proleptic_gregorian can where both files' dates are all
    from 1582-10-15 on (there the two agree); any other pair cannot.
    """
    names = {one.shared_name, other.shared_name}
    if len(names) == 1:
        return True
    if names != {"standard", "proleptic_gregorian"}:
        return False
    return all(
        s.earliest is None
        or (s.earliest.year, s.earliest.month, s.earliest.day) >= _GREGORIAN_START
        for s in spans
    )


def attrs_for_output(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return a time coordinate's attributes without those its decoded numbers no longer need."""
    return {k: v for k, v in attrs.items() if k not in TIME_ATTRS or k in ("units", "calendar")}


def file_order(
    files: list[tuple[str, TimeEncoding, Span | None]], name: str, sort: bool
) -> list[int]:
    """Return the order to take files in: as given, or (``sort``) by their first time.

    ``files`` holds each file's path, time encoding and span. Refuses (UsageError, naming the
    files) calendars that cannot share one axis, and times that do not increase from file to
    file (a duplicate or an overlap). Files without dates (no records, or every time masked)
    are left out of the check, and sorted last.
    """
    from hpcapp.errors import UsageError

    total = len(files)
    (first_path, reference, reference_span) = files[0]
    for index, (path, encoding, span) in enumerate(files[1:], start=2):
        if not can_share(reference, encoding, (reference_span or Span(), span or Span())):
            gregorian = {reference.shared_name, encoding.shared_name} == {
                "standard", "proleptic_gregorian"
            }  # fmt: skip
            raise UsageError(
                f"file {index} of {total} ({path}:{name}) has calendar {encoding.calendar!r}, "
                f"the first file ({first_path}) {reference.calendar!r}: their dates cannot share "
                f"one time axis{' (they agree from 1582-10-15 on only)' if gregorian else ''}"
            )
    dated = [
        i for i, (_, _, span) in enumerate(files) if span is not None and span.first is not None
    ]

    def first_date(i: int) -> Any:
        return files[i][2].first  # type: ignore[union-attr]

    has_dates = set(dated)
    if sort:
        taken = sorted(dated, key=first_date) + [i for i in range(total) if i not in has_dates]
    else:
        taken = list(range(total))
    clash = _overlap(files, [i for i in taken if i in has_dates])
    if clash is not None:
        before, after = clash
        position = {i: p + 1 for p, i in enumerate(taken)}
        if not sort and _overlap(files, sorted(dated, key=first_date)) is None:
            hint = (
                ": the files' order is not their time order; add --sort-files to take them in "
                "the order of their first time"
            )
        else:
            hint = " (a duplicate or overlapping file?)"
        raise UsageError(
            f"file {position[after]} of {total} ({files[after][0]}:{name}) starts at "
            f"{files[after][2].first}, not after {files[before][2].last}, the last "
            f"time of file {position[before]} ({files[before][0]}): times must increase across "
            f"the files{hint}"
        )
    return taken


def _overlap(files: list[tuple], order: list[int]) -> tuple | None:
    """Return the first two files of ``order`` whose times do not increase, or None.

    cftime compares dates of the standard and proleptic_gregorian calendars (which can_share
    allows together) as the instants they are.
    """
    for before, after in itertools.pairwise(order):
        if files[before][2].last >= files[after][2].first:
            return before, after
    return None
