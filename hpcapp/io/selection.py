"""``--sel`` (by coordinate value) and ``--isel`` (by index): parse them, turn them into ranges.

The rules are xarray's. ``--isel lat=10:20`` is ``.isel(lat=slice(10, 20))``: Python's half-open
slice, negative indices from the end, bounds clipped. ``--sel lat=-30:30`` is
``.sel(lat=slice(-30, 30))``: both ends included, written in the coordinate's own order, so a
descending ``lat`` (90 to -90) takes ``lat=30:-30``, and ``lat=-30:30`` there selects nothing
(refused, saying so). Bounds beyond the coordinate are clipped. A CF time coordinate takes
dates (``1992``, ``1992-03``, ``1992-03-01``, ``1992-03-01T06:00``) in its own calendar, each
meaning its whole period as in xarray's partial-date indexing: ``time=1992:1992`` is all of
1992, ``time=1992-01-01:1992-12-31`` too. Either end may be left open (``time=1992-01-01:``).
A selection of nothing, an unknown dimension or a bad bound is refused with one line.

Pure: the values of a coordinate come in as arrays (:mod:`hpcapp.io.sources.window` reads
them); nothing here opens a file.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Literal

from hpcapp.errors import UsageError

if TYPE_CHECKING:  # numpy loads after the BLAS threads are limited (config imports this)
    import numpy as np

# Bounds of one dimension: the text of each end (None: open), as given.
Bounds = tuple[str | None, str | None]
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DATE = re.compile(
    r"(?P<year>\d{1,4})(-(?P<month>\d{1,2})(-(?P<day>\d{1,2})"
    r"([T ](?P<hour>\d{1,2})(:(?P<minute>\d{2})(:(?P<second>\d{2}))?)?)?)?)?"
)
_INDEX = re.compile(r"[+-]?\d+")
_EXAMPLE = {"sel": "time=1992-01-01:1992-12-31,lat=-30:30", "isel": "time=0:365"}


def _is_bound(text: str) -> bool:
    return not text or bool(_NUMBER.fullmatch(text) or _DATE.fullmatch(text))


def _split(text: str, flag: str, item: str) -> Bounds:
    """Split ``START:END`` at its one colon that leaves two valid bounds (dates have colons)."""
    text = text.strip()
    splits = [
        (text[:i].strip(), text[i + 1 :].strip())
        for i, char in enumerate(text)
        if char == ":" and _is_bound(text[:i].strip()) and _is_bound(text[i + 1 :].strip())
    ]
    if len(splits) != 1:
        raise UsageError(
            f"--{flag} {item!r}: expected DIM=START:END (either end may be empty), "
            f"e.g. --{flag} {_EXAMPLE[flag]}"
        )
    start, end = splits[0]
    return (start or None), (end or None)


def parse_items(items: list[str], flag: str) -> dict[str, Bounds]:
    """Parse the command line's ``--sel``/``--isel`` values (``DIM=A:B[,DIM=A:B]``, repeatable)."""
    found: dict[str, Bounds] = {}
    for item in items:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or not name:
                raise UsageError(
                    f"--{flag} {item!r}: expected DIM=START:END, e.g. --{flag} {_EXAMPLE[flag]}"
                )
            if name in found:
                raise UsageError(f"--{flag} names dimension {name!r} twice")
            found[name] = _split(value, flag, part.strip())
    return found


def normalize(value: Any, flag: str) -> dict[str, Bounds]:
    """Return a selection given any way (text, a table of ``"A:B"``, pairs or slices) as bounds.

    ``hpcapp.run(sel="time=1992:1993")``, ``sel={"time": ("1992", "1993")}``, ``{"lat":
    slice(-30, 30)}`` and a TOML table ``sel = {lat = "-30:30"}`` all give the same bounds.
    """
    if value is None:
        return {}
    if isinstance(value, str):
        return parse_items([value], flag)
    found: dict[str, Bounds] = {}
    for name, bounds in dict(value).items():
        where = f"--{flag} {name}={bounds!r}"
        if isinstance(bounds, str):
            found[name] = _split(bounds, flag, f"{name}={bounds}")
            continue
        if isinstance(bounds, slice):
            if bounds.step is not None:
                raise UsageError(f"{where}: a step is not supported")
            bounds = (bounds.start, bounds.stop)
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise UsageError(f"{where}: expected START:END or a pair (START, END)")
        given = [None if end is None else str(end).strip() for end in bounds]
        if not all(end is None or (end and _is_bound(end)) for end in given):
            raise UsageError(f"{where}: each end must be a number, a date or None")
        found[name] = (given[0] or None, given[1] or None)
    if flag == "isel":
        for name, ends in found.items():
            if not all(end is None or _INDEX.fullmatch(end) for end in ends):
                raise UsageError(
                    f"--isel {name}={text(ends)}: indices must be integers (--sel selects by "
                    "coordinate value)"
                )
    return found


def text(bounds: Bounds) -> str:
    """Return bounds as the user writes them: ``A:B``."""
    return f"{bounds[0] or ''}:{bounds[1] or ''}"


def describe(sel: dict[str, Bounds], isel: dict[str, Bounds]) -> str:
    """Return the selection as one canonical line (identity, provenance, summary)."""
    parts = [f"--sel {name}={text(b)}" for name, b in sel.items()]
    parts += [f"--isel {name}={text(b)}" for name, b in isel.items()]
    return " ".join(parts)


def check(value: Any, flag: str) -> str | None:
    """Return the refusal of a malformed selection, or None (JobConfig's check)."""
    try:
        normalize(value, flag)
    except UsageError as exc:
        return str(exc)
    return None


def index_range(bounds: Bounds, length: int, name: str) -> tuple[int, int]:
    """Return ``[start, stop)`` of ``--isel NAME=A:B`` on a dimension of ``length``."""
    start, stop, _ = slice(*(None if b is None else int(b) for b in bounds)).indices(length)
    if stop <= start:
        raise UsageError(
            f"--isel {name}={text(bounds)} selects nothing: {name} has {length} values "
            f"(indices 0 to {length - 1})"
        )
    return start, stop


@dataclasses.dataclass(frozen=True)
class Bound:
    """One end of a ``--sel``: the values from ``low`` up to ``high`` (excluded if a period)."""

    low: float
    high: float
    period: bool = False  # a date: [low, high) is its whole year, month, day, ...


def number_bound(value: str | None, name: str, ends: Bounds) -> Bound | None:
    """Return a bound of a numeric coordinate, or None for an open end."""
    if value is None:
        return None
    if not _NUMBER.fullmatch(value):
        raise UsageError(
            f"--sel {name}={text(ends)}: {value!r} is not a number ({name} has numeric values)"
        )
    return Bound(float(value), float(value))


def date_bound(value: str | None, name: str, ends: Bounds, encoding: Any) -> Bound | None:
    """Return a bound of a CF time coordinate as numbers in its units, or None for open."""
    import datetime

    import cftime

    if value is None:
        return None
    match = _DATE.fullmatch(value)
    calendar = encoding.calendar
    if match is None:
        raise UsageError(
            f"--sel {name}={text(ends)}: {value!r} is not a date (YYYY[-MM[-DD[THH[:MM[:SS]]]]])"
        )
    given = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    fields = (given["year"], given.get("month", 1), given.get("day", 1))
    clock = (given.get("hour", 0), given.get("minute", 0), given.get("second", 0))
    try:
        first = cftime.datetime(*fields, *clock, calendar=calendar)
        resolution = [k for k in ("year", "month", "day", "hour", "minute", "second") if k in given]
        last = resolution[-1]
        if last == "year":
            after = cftime.datetime(fields[0] + 1, 1, 1, calendar=calendar)
        elif last == "month":
            year, month = divmod(fields[1], 12)
            after = cftime.datetime(fields[0] + year, month + 1, 1, calendar=calendar)
        else:
            after = first + datetime.timedelta(**{f"{last}s": 1})
        low, high = cftime.date2num([first, after], encoding.units, calendar)
    except (ValueError, OverflowError) as exc:
        raise UsageError(
            f"--sel {name}={text(ends)}: {value!r} is not a date of the {calendar} calendar ({exc})"
        ) from None
    return Bound(float(low), float(high), period=True)


def value_range(
    values: np.ndarray, start: Bound | None, stop: Bound | None, name: str, ends: Bounds
) -> tuple[int, int]:
    """Return ``[first, end)`` of the values between two bounds, as ``.sel(slice(a, b))`` does.

    ``values`` (float64) must be monotonic; a descending coordinate takes its bounds descending.
    The range may be empty: the caller says what that means (one file of many, or nothing).
    """
    import numpy as np

    if np.isnan(values).any():
        raise UsageError(
            f"--sel {name}={text(ends)}: {name} has missing values: select with --isel instead"
        )
    steps = np.diff(values)
    if (steps >= 0).all():
        first = 0 if start is None else int(np.searchsorted(values, start.low, "left"))
        if stop is None:
            return first, len(values)
        if stop.period:
            return first, int(np.searchsorted(values, stop.high, "left"))
        return first, int(np.searchsorted(values, stop.high, "right"))
    if (steps <= 0).all():  # descending: bounds descending too (xarray, pandas)
        rising = -values
        if start is None:
            first = 0
        else:
            side: Literal["left", "right"] = "right" if start.period else "left"
            first = int(np.searchsorted(rising, -start.high, side))
        end = len(values) if stop is None else int(np.searchsorted(rising, -stop.low, "right"))
        return first, end
    raise UsageError(
        f"--sel {name}={text(ends)}: {name} is neither increasing nor decreasing: select with "
        "--isel instead"
    )


def nothing_selected(name: str, ends: Bounds, shown: tuple[Any, Any]) -> str:
    """Say that ``--sel NAME=A:B`` selects nothing, with the coordinate's first and last values."""
    return f"--sel {name}={text(ends)} selects nothing: {name} runs from {shown[0]} to {shown[1]}"


@dataclasses.dataclass(frozen=True)
class Window:
    """The selected box of a stored dataset, in its indices (decided on rank 0, picklable)."""

    stored_shape: tuple[int, ...]  # the dataset's (many files: the kept files' rows together)
    start: tuple[int, ...]  # first selected index along each axis
    shape: tuple[int, ...]  # selected length along each axis
    text: str  # the selection as given (describe())
    dropped: tuple[int, int] = (0, 0)  # many files: rows of the files left out before, after

    @property
    def input_start(self) -> tuple[int, ...]:
        """Return the first selected index along each axis of the whole input."""
        return (self.start[0] + self.dropped[0], *self.start[1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Return the shape of the whole input, the files left out included."""
        return (self.stored_shape[0] + sum(self.dropped), *self.stored_shape[1:])

    def box(self, first: int, end: int) -> tuple[slice, ...]:
        """Return the stored hyperslab of selected rows ``[first, end)``."""
        rows = slice(self.start[0] + first, self.start[0] + end)
        others = (slice(a, a + n) for a, n in zip(self.start[1:], self.shape[1:], strict=True))
        return (rows, *others)

    def axis(self, axis: int) -> slice:
        """Return the selected indices along ``axis`` of the stored dataset."""
        return slice(self.start[axis], self.start[axis] + self.shape[axis])

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint or finished output of this selection must match."""
        return {"text": self.text, "start": list(self.start), "shape": list(self.shape)}
