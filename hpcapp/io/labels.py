"""Group labels of records: ``--group-every K`` and ``--group-by NAME[.year|.month|...]``.

:func:`plan_grouping` checks the option on rank 0 before any work and returns a small picklable
:class:`Grouping`; every rank then turns the rows of each chunk it computes into int64 group
codes with :func:`labels_for_rows` (one label per record: small, and never gathered on one
rank). Integer labels are read raw (no CF masking); a CF time coordinate is decoded as xarray
decodes it (:mod:`hpcapp.io.coding.times`: fill values, packing, ``units``, ``calendar``), file
by file for a many-file input, and a masked time is :data:`NO_GROUP`: its record is in no group,
as xarray's ``groupby("time.month")`` leaves out NaT. The labels must lie along the records: where
both have netCDF dimensions (HDF5 dimension scales), the label's dimension must be the data's
first one. Season codes 0-3 stand for DJF, JJA, MAM, SON, sorted as xarray sorts ``time.season``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.times import TimeEncoding, encoding_of, is_time_units
from hpcapp.io.coding.variables import attr_text
from hpcapp.io.frequency import parse_resample
from hpcapp.io.group_order import GroupOrder, group_chunk_rows
from hpcapp.io.resample import Periods, period_results, plan_periods
from hpcapp.io.sources.base import Rows
from hpcapp.io.sources.hdf5 import Hdf5Source, open_input
from hpcapp.io.sources.many import FilesSource
from hpcapp.kernels.grouped import NO_GROUP, RESULT_KEY, SHARED

COMPONENTS = ("year", "month", "season", "dayofyear")
SEASONS = ("DJF", "JJA", "MAM", "SON")  # sorted: the codes are these indices
# Month (1-12) -> season code.
_SEASON_OF_MONTH = np.array([-1, 0, 0, 2, 2, 2, 1, 1, 1, 3, 3, 3, 0], np.int64)
# Most groups a partial can hold, per time component (year: unknown in advance).
_COMPONENT_GROUPS = {"month": 12, "season": 4, "dayofyear": 366}


@dataclasses.dataclass(frozen=True)
class Grouping:
    """How records fall into groups (small and picklable; built on rank 0)."""

    every: int | None = None  # --group-every K
    dataset: str | None = None  # --group-by: the label dataset's path in the input file
    component: str | None = None  # year, month, season, dayofyear of a CF time coordinate
    # The time encoding of the (first) file; each file of a many-file input has its own.
    time: TimeEncoding | None = None
    label_dtype: str | None = None
    resample: str | None = None  # --resample DIM=FREQ, as given (hpcapp.io.resample)
    periods: Periods | None = None  # --resample: the periods' anchor and count
    # A climatology read in group order (hpcapp.io.group_order): every record's label.
    order: GroupOrder | None = None

    @property
    def key(self) -> str:
        """Return the name of the labels: the result key, dimension and coordinate (``month``)."""
        if self.resample is not None:
            return parse_resample(self.resample)[0]  # ``time``: one result per period
        return self.component or RESULT_KEY

    @property
    def option(self) -> str:
        """Return the option as a user writes it (for messages and provenance)."""
        if self.every is not None:
            return f"--group-every {self.every}"
        if self.resample is not None:
            return f"--resample {self.resample}"
        name = self.dataset.rsplit("/", 1)[-1] if self.dataset else "?"
        return f"--group-by {name}{'.' + self.component if self.component else ''}"

    def describe(self) -> str:
        """Return what a group is, in words (the labels' long_name: ``month of time``)."""
        if self.every is not None:
            return f"index of the block of {self.every} consecutive records"
        name = (self.dataset or "").rsplit("/", 1)[-1]
        if self.periods is not None:
            return f"{self.periods.describe()} of {name}"
        if self.component == "dayofyear":
            return f"day of year of {name}"
        if self.component is not None:
            return f"{self.component} of {name}"
        return f"label in {self.dataset}"

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint or finished output must match (as JSON reads it back)."""
        plain = dataclasses.asdict(dataclasses.replace(self, order=None))
        found = {key: value for key, value in plain.items() if value is not None}
        if self.order is not None:
            found.update(self.order.identity())
        return json.loads(json.dumps(found))  # lists, not tuples: as a manifest reads back

    def labels(self, rows: Rows, start: int, stop: int) -> np.ndarray:
        """Return the group codes of records ``[start, stop)`` of the input open as ``rows``."""
        return labels_for_rows(self, rows, start, stop)

    @property
    def cycle(self) -> int | None:
        """Return how many labels a cyclic grouping goes round (12 months, ...), else None."""
        if self.resample is None and self.every is None and self.component != "year":
            return _COMPONENT_GROUPS.get(self.component or "")
        return None

    def max_groups(self, n_rows: int) -> int:
        """Return an upper bound on the number of groups (for the memory estimate).

        Integer labels and years are bounded only by the record count (and the label dtype's
        range): reading every label on rank 0 to count them is what grouping must not do.
        """
        if self.every is not None:
            return math.ceil(n_rows / self.every)
        if self.periods is not None:
            return min(n_rows, self.periods.count)
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
    """Check the grouping (``--group-every``, ``--group-by``, ``--resample``) (rank 0)."""
    every, by = getattr(config, "group_every", None), getattr(config, "group_by", None)
    resample = getattr(config, "resample", None)
    if every is None and by is None and resample is None:
        return None
    # The values themselves, and that only one is given, were checked by JobConfig.
    option = f"--group-every {every}" if every is not None else f"--group-by {by}"
    option = f"--resample {resample}" if resample is not None else option
    if kernel.generates or not isinstance(source, Hdf5Source):
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
        return Grouping(every=every)
    if resample is not None:
        coord, encoding, periods = plan_periods(resample, source)
        return Grouping(
            dataset=coord,
            time=encoding,
            label_dtype=encoding.dtype,
            resample=resample,
            periods=periods,
        )
    assert by is not None  # one of the two was given
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
        many = isinstance(source, FilesSource)
        # The records as stored (--sel/--isel read a part of them).
        stored = source.stored_shape[0]
        records = source.members[0].n_rows if isinstance(source, FilesSource) else stored
        if dataset.shape[0] != records:
            raise UsageError(
                f"--group-by {by}: {where} has {dataset.shape[0]} values, but the input has "
                f"{records} records: it needs one label per record"
            )
        check_along(h5[source.dataset], dataset, by, where)
        dtype = dataset.dtype
        units = attr_text(dataset.attrs.get("units"))
        attrs = {key: dataset.attrs[key] for key in dataset.attrs if not key.isupper()}
        # One file: decode its first time now. Many: inspect_many decoded each file's range.
        first = dataset[:1] if not many and dtype.kind in "iuf" else None
    is_time = is_time_units(units)
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
    try:
        time = encoding_of(attrs, dtype)
        if first is not None and time is not None:
            time.dates(first)
    except Exception as exc:
        raise UsageError(f"--group-by {by}: cannot decode {where}: {exc}") from None
    return Grouping(dataset=path, component=component, time=time, label_dtype=dtype.str)


def dimension_of(dataset: Any) -> str | None:
    """Return the path of the netCDF dimension (HDF5 scale) along a dataset's first axis."""
    import h5py

    try:
        if h5py.h5ds.is_scale(dataset.id):
            return str(dataset.name)
        scales = dataset.dims[0]
        return str(scales[0].name) if len(scales) else None
    except (KeyError, ValueError, RuntimeError, OSError):  # a dangling reference: no dimension
        return None


def check_along(variable: Any, labels: Any, by: str, where: str) -> None:
    """Refuse labels that lie along another netCDF dimension than the records of ``variable``.

    Without dimension scales on both (plain HDF5) only the length tells, which the caller checks.
    """
    along, record = dimension_of(labels), dimension_of(variable)
    if along is not None and record is not None and along != record:
        name = variable.name.rsplit("/", 1)[-1]
        raise UsageError(
            f"--group-by {by}: {where} lies along dimension {along.rsplit('/', 1)[-1]!r}, but "
            f"the records of {name} run along its first dimension {record.rsplit('/', 1)[-1]!r}"
            ": labels must lie along the record dimension"
        )


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


def in_group_order(
    grouping: Grouping, source: Any, chunk_rows: int | None
) -> tuple[Grouping, int] | None:
    """Return a climatology's grouping read in group order and its chunk rows, or None (rank 0).

    Decodes the label of every record (a CF time: one value per record, small beside the data)
    to order them (:mod:`hpcapp.io.group_order`); ``chunk_rows`` is ``--chunk-rows`` (None:
    chosen here). None when the storage chunks call for reading in record order, or when the
    labels cannot be read here: then each chunk's read reports it, naming the chunk, as before.
    """
    try:
        with source.open() as rows:
            codes = labels_for_rows(grouping, rows, 0, source.n_rows)
    except Exception:
        return None
    rows_per_chunk = group_chunk_rows(
        codes, source.row_bytes, source.storage_chunk_rows, chunk_rows
    )
    if rows_per_chunk is None:
        return None
    return dataclasses.replace(grouping, order=GroupOrder(codes)), rows_per_chunk


def labels_for_rows(grouping: Grouping, rows: Rows, start: int, stop: int) -> np.ndarray:
    """Return the int64 group code of each record ``[start, stop)`` (NO_GROUP: in none).

    ``rows`` is the input open on this rank: it reads the label dataset beside the data (of
    each file the records span, for a many-file input).
    """
    if grouping.every is not None:
        return np.arange(start, stop, dtype=np.int64) // grouping.every
    assert grouping.dataset is not None
    if grouping.component is not None or grouping.periods is not None:
        return _time_codes(grouping, rows, start, stop)
    raw = np.empty(stop - start, dtype=np.dtype(grouping.label_dtype))
    rows.read_rows(grouping.dataset, raw, start, stop)
    if raw.dtype == np.uint64 and raw.size and raw.max() > np.iinfo(np.int64).max:
        raise ValueError(f"labels in {grouping.dataset} exceed the int64 range")
    codes = raw.astype(np.int64)
    if raw.dtype == np.int64 and np.any(codes == NO_GROUP):
        raise ValueError(f"label {NO_GROUP} in {grouping.dataset} is reserved (no group)")
    return codes


def _time_codes(grouping: Grouping, rows: Rows, start: int, stop: int) -> np.ndarray:
    """Decode the times of records ``[start, stop)`` (each file its own way) into codes."""
    assert grouping.dataset is not None
    codes = np.empty(stop - start, np.int64)
    for part, first, end in rows.spans(start, stop):
        encoding = rows.time_encoding(part, grouping.dataset) or grouping.time
        assert encoding is not None
        raw = np.empty(end - first, np.dtype(encoding.dtype))
        rows.read_rows(grouping.dataset, raw, first, end)
        dates = encoding.dates(raw)
        if grouping.periods is not None:
            codes[first - start : end - start] = grouping.periods.codes(dates)
        else:
            assert grouping.component is not None
            codes[first - start : end - start] = component_codes(grouping.component, dates)
    return codes


def component_codes(component: str, dates: np.ndarray) -> np.ndarray:
    """Return the int64 codes of ``component`` of cftime dates (NO_GROUP where None)."""
    attribute = "month" if component == "season" else component
    attribute = "dayofyr" if attribute == "dayofyear" else attribute
    codes = np.fromiter(
        (NO_GROUP if t is None else getattr(t, attribute) for t in dates), np.int64, len(dates)
    )
    if component == "season":
        known = codes != NO_GROUP
        codes[known] = _SEASON_OF_MONTH[codes[known]]
    return codes


def labels_key(group_by: str | None, resample: str | None = None) -> str:
    """Return the name of the labels of ``--group-by`` (``time.month``: ``month``), else ``group``.

    As xarray names them (``ds.groupby("time.month")`` has dimension ``month``); integer labels
    and ``--group-every`` blocks are ``group``; ``--resample time=1M`` periods are ``time``.
    """
    if resample:
        return parse_resample(resample)[0]
    return (parse_group_by(group_by)[1] if group_by else None) or RESULT_KEY


def with_group_coordinates(results: dict[str, Any], grouping: Grouping) -> dict[str, Any]:
    """Return grouped results with the labels users read (``grouping.key``; seasons as text).

    ``--group-every`` also gets ``group_first_record``, the first record of each block.
    """
    if grouping.periods is not None:  # --resample: every period, its start and bounds
        assert grouping.time is not None
        return period_results(results, grouping.key, grouping.periods, grouping.time, SHARED)
    codes = np.asarray(results[grouping.key], np.int64)
    out = dict(results)
    if grouping.component == "season":
        import h5py

        out[grouping.key] = np.array([SEASONS[c] for c in codes], dtype=h5py.string_dtype())
    elif grouping.every is not None:
        out["group_first_record"] = codes * grouping.every
    return out
