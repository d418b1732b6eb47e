"""Group labels of records: ``--group-every K`` and ``--group-by NAME[.year|.month|...]``.

:func:`plan_grouping` checks the option on rank 0 before any work and returns a small picklable
:class:`Grouping`; every rank then turns the rows of each chunk it computes into int64 group
codes with :func:`labels_for_rows` (one label per record: small, and never gathered on one
rank). Label values are read raw (no CF masking); a CF time coordinate is decoded by ``cftime``
from its own ``units`` and ``calendar``. Season codes 0-3 stand for DJF, JJA, MAM, SON, sorted
as xarray sorts ``time.season``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.cf import attr_text

COMPONENTS = ("year", "month", "season", "dayofyear")
SEASONS = ("DJF", "JJA", "MAM", "SON")  # sorted: the codes are these indices
# Month (1-12) -> season code.
_SEASON_OF_MONTH = np.array([-1, 0, 0, 2, 2, 2, 1, 1, 1, 3, 3, 3, 0], np.int64)
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
# Most groups a partial can hold, per time component (year: unknown in advance).
_COMPONENT_GROUPS = {"month": 12, "season": 4, "dayofyear": 366}


@dataclasses.dataclass(frozen=True)
class Grouping:
    """How records fall into groups (small and picklable; built on rank 0)."""

    every: int | None = None  # --group-every K
    dataset: str | None = None  # --group-by: the label dataset's path in the input file
    component: str | None = None  # year, month, season, dayofyear of a CF time coordinate
    units: str | None = None
    calendar: str | None = None
    label_dtype: str | None = None

    @property
    def option(self) -> str:
        """Return the option as a user writes it (for messages and provenance)."""
        if self.every is not None:
            return f"--group-every {self.every}"
        name = self.dataset.rsplit("/", 1)[-1] if self.dataset else "?"
        return f"--group-by {name}{'.' + self.component if self.component else ''}"

    def describe(self) -> str:
        """Return what a group is, in words (the ``group`` coordinate's long_name)."""
        if self.every is not None:
            return f"index of the block of {self.every} consecutive records"
        name = (self.dataset or "").rsplit("/", 1)[-1]
        if self.component == "dayofyear":
            return f"day of year of {name}"
        if self.component is not None:
            return f"{self.component} of {name}"
        return f"label in {self.dataset}"

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint or finished output must match."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    def max_groups(self, n_rows: int) -> int:
        """Return an upper bound on the number of groups (for the memory estimate).

        Integer labels and years are bounded only by the record count (and the label dtype's
        range): reading every label on rank 0 to count them is what grouping must not do.
        """
        if self.every is not None:
            return math.ceil(n_rows / self.every)
        if self.component in _COMPONENT_GROUPS:
            return min(n_rows, _COMPONENT_GROUPS[self.component])
        if self.component is None and self.label_dtype is not None:
            bits = np.dtype(self.label_dtype).itemsize * 8
            return min(n_rows, 1 << bits) if bits < 63 else n_rows
        return n_rows


def parse_group_by(text: str) -> tuple[str, str | None]:
    """Split ``time.month`` into (``time``, ``month``); a name without a known suffix stays."""
    name, dot, component = text.rpartition(".")
    if dot and name and component in COMPONENTS:
        return name, component
    return text, None


def plan_grouping(config: Any, kernel: Any, source: Any) -> Grouping | None:
    """Check ``--group-every``/``--group-by`` against the kernel and input (rank 0)."""
    every, by = getattr(config, "group_every", None), getattr(config, "group_by", None)
    if every is None and by is None:
        return None
    option = f"--group-every {every}" if every is not None else f"--group-by {by}"
    if every is not None and by is not None:
        raise UsageError("--group-every and --group-by exclude each other: give one")
    if kernel.generates or source.path is None:
        raise UsageError(f"kernel {config.kernel!r} generates its data: {option} needs an INPUT")
    if kernel.per_row:
        raise UsageError(
            f"{option}: kernel {config.kernel!r} has per-row outputs here (the first dimension "
            "is not reduced, e.g. --over without it): grouping needs a reduction over records"
        )
    if config.distribute == "scatter":
        raise UsageError(
            f"{option} needs every rank to read its own chunks' labels: drop --distribute scatter"
        )
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UsageError(f"--group-every must be a positive number of records, got {every}")
        return Grouping(every=every)
    from hpcapp.source import open_input

    name, component = parse_group_by(str(by))
    if not name or name.endswith("."):
        raise UsageError(f"--group-by {by!r} names no dataset")
    with open_input(source) as h5:
        path = _find(h5, source.dataset, name, by)
        dataset = h5[path]
        where = f"{source.path}:{path}"
        if dataset.ndim != 1:
            raise UsageError(f"--group-by {by}: {where} has shape {dataset.shape}, not 1-D")
        # Many files: this is the first; the others were checked alike by inspect_many.
        records = source.members[0].n_rows if source.members else source.n_rows
        if dataset.shape[0] != records:
            raise UsageError(
                f"--group-by {by}: {where} has {dataset.shape[0]} values, but the input has "
                f"{records} records: it needs one label per record"
            )
        dtype = dataset.dtype
        units = attr_text(dataset.attrs.get("units"))
        calendar = attr_text(dataset.attrs.get("calendar"))
        first = dataset[0] if component is not None and dtype.kind in "iuf" else None
    is_time = units is not None and " since " in units
    if component is None:
        if is_time:
            raise UsageError(
                f"--group-by {by}: {where} is a CF time coordinate ({units!r}): group by "
                f"{by}.year, {by}.month, {by}.season or {by}.dayofyear"
            )
        if dtype.kind not in "iu":
            raise UsageError(
                f"--group-by {by}: {where} has dtype {dtype}: labels must be integers "
                "(or a CF time coordinate with .year, .month, .season, .dayofyear)"
            )
        return Grouping(dataset=path, label_dtype=dtype.str)
    if not is_time or dtype.kind not in "iuf":
        raise UsageError(
            f"--group-by {by}: {where} is not a CF time coordinate (it needs numeric values "
            f"and a units attribute like 'hours since 1979-01-01', got {units!r})"
        )
    calendar = (calendar or "standard").lower()
    if calendar not in CALENDARS:
        raise UsageError(
            f"--group-by {by}: {where} has calendar {calendar!r}; known: {', '.join(CALENDARS)}"
        )
    grouping = Grouping(
        dataset=path, component=component, units=units, calendar=calendar, label_dtype=dtype.str
    )
    try:
        decode(grouping, np.asarray([first]))
    except Exception as exc:
        raise UsageError(
            f"--group-by {by}: cannot decode {where} (units {units!r}, calendar {calendar!r}): "
            f"{exc}"
        ) from None
    return grouping


def _find(h5: Any, data_path: str, name: str, by: str) -> str:
    """Return the path of the label dataset: absolute, beside the data, or at the root."""
    import h5py

    if name.startswith("/"):
        candidates = [name]
    else:
        parent = data_path.rsplit("/", 1)[0] or "/"
        candidates = list(dict.fromkeys([f"{parent.rstrip('/')}/{name}", f"/{name}"]))

    def is_dataset(path: str) -> bool:
        try:
            return isinstance(h5.get(path), h5py.Dataset)
        except (KeyError, TypeError, ValueError):  # a path through a dataset
            return False

    for path in candidates:
        if is_dataset(path):
            return path
    _, dot, suffix = name.rpartition(".")
    if dot and any(is_dataset(p[: -len(suffix) - 1]) for p in candidates):
        raise UsageError(
            f"--group-by {by}: unknown component {suffix!r}: use one of {', '.join(COMPONENTS)}"
        )
    raise UsageError(f"--group-by {by}: {h5.filename} has no dataset {' or '.join(candidates)}")


def read_labels(source: Any, dataset: Any, grouping: Grouping, start: int, stop: int) -> np.ndarray:
    """Read the raw label values of records ``[start, stop)`` beside the open input ``dataset``.

    ``dataset`` is the input dataset (h5py), or the :class:`hpcapp.io.files.FileSeries` of a
    many-file input, which reads the label dataset of each file the records span.
    """
    from hpcapp.io.series import FileSeries

    assert grouping.dataset is not None
    if isinstance(dataset, FileSeries):
        labels = np.empty(stop - start, dtype=np.dtype(grouping.label_dtype))
        dataset.read_rows(grouping.dataset, labels, start, stop)
        return labels
    if isinstance(dataset, Exception):  # the input could not be opened: say why
        raise dataset
    return dataset.file[grouping.dataset][start:stop]


def labels_for_rows(
    grouping: Grouping, source: Any, dataset: Any, start: int, stop: int
) -> np.ndarray:
    """Return the int64 group code of each record ``[start, stop)``."""
    if grouping.every is not None:
        return np.arange(start, stop, dtype=np.int64) // grouping.every
    raw = read_labels(source, dataset, grouping, start, stop)
    if grouping.component is not None:
        return decode(grouping, raw)
    if raw.dtype == np.uint64 and raw.size and raw.max() > np.iinfo(np.int64).max:
        raise ValueError(f"labels in {grouping.dataset} exceed the int64 range")
    return raw.astype(np.int64)


def decode(grouping: Grouping, values: np.ndarray) -> np.ndarray:
    """Turn CF time values into the int64 codes of ``grouping.component``."""
    import cftime

    times = cftime.num2date(
        np.asarray(values), grouping.units, grouping.calendar, only_use_cftime_datetimes=True
    )
    times = np.atleast_1d(times)
    if grouping.component == "season":
        months = np.fromiter((t.month for t in times), np.int64, len(times))
        return _SEASON_OF_MONTH[months]
    attribute = "dayofyr" if grouping.component == "dayofyear" else grouping.component
    return np.fromiter((getattr(t, attribute) for t in times), np.int64, len(times))


def with_group_coordinates(results: dict[str, Any], grouping: Grouping) -> dict[str, Any]:
    """Return grouped results with ``group`` as the labels users read (seasons as text).

    ``--group-every`` also gets ``group_first_record``, the first record of each block.
    """
    codes = np.asarray(results["group"], np.int64)
    out = dict(results)
    if grouping.component == "season":
        import h5py

        out["group"] = np.array([SEASONS[c] for c in codes], dtype=h5py.string_dtype())
    elif grouping.every is not None:
        out["group_first_record"] = codes * grouping.every
    return out
