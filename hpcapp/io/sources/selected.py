"""Apply ``--sel``/``--isel`` to a described stored source: the box of the dataset it reads.

Rank 0 turns each dimension's selection into an index range (:mod:`hpcapp.io.selection`: the
rules), reading only coordinate variables: the first file's for the dimensions of a row, and for
the record dimension of many files, the times of the files the range starts and ends in (the
others lie wholly inside or outside it by the dates their inspection found). Files wholly
outside the record range are dropped from the source: their data is never opened. The result
is the same source with the selected shape and a :class:`~hpcapp.io.selection.Window`, through
which every rank reads only its hyperslab.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io import selection
from hpcapp.io.coding.times import encoding_of, is_time_units
from hpcapp.io.coding.variables import Decoder, attr_text, decoding_of
from hpcapp.io.selection import Bounds, Window
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.hdf5 import Hdf5Source, open_input
from hpcapp.io.sources.many import FilesSource


def select_source(source: Source, sel: Any, isel: Any) -> Source:
    """Return ``source`` narrowed to ``--sel``/``--isel`` (rank 0; refuses with one line)."""
    by_value, by_index = selection.normalize(sel, "sel"), selection.normalize(isel, "isel")
    if not by_value and not by_index:
        return source
    if not isinstance(source, Hdf5Source):
        raise UsageError("--sel and --isel select from an INPUT: this kernel generates its data")
    for name in [*by_value, *by_index]:
        if name not in source.dims:
            flag = "sel" if name in by_value else "isel"
            raise UsageError(
                f"--{flag} {name}: {source.spec} has no dimension {name!r} (its dimensions: "
                f"{', '.join(source.dims)})"
            )
        if name in by_value and name in by_index:
            raise UsageError(f"--sel and --isel both select {name!r}: give one")
    shape = [source.n_rows, *source.row_shape]
    start = [0] * len(shape)
    for axis, name in enumerate(source.dims):
        if name in by_index:
            first, end = selection.index_range(by_index[name], shape[axis], name)
        elif name in by_value:
            first, end = _by_value(source, axis, name, by_value[name])
        else:
            continue
        start[axis], shape[axis] = first, end - first
    text = selection.describe(by_value, by_index)
    stored = (source.n_rows, *source.row_shape)
    if isinstance(source, FilesSource):
        return _trimmed(source, start, shape, text)
    window = Window(stored, tuple(start), tuple(shape), text)
    return dataclasses.replace(source, n_rows=shape[0], row_shape=tuple(shape[1:]), window=window)


def _trimmed(source: FilesSource, start: list[int], shape: list[int], text: str) -> FilesSource:
    """Keep only the files the selected rows lie in; the window counts rows from the first."""
    kept: list[Any] = []
    offset = row = 0
    for member in source.members:
        end = row + member.n_rows
        if row < start[0] + shape[0] and end > start[0]:
            if not kept:
                offset = start[0] - row
            kept.append(member)
        row = end
    first = kept[0]
    stored = (sum(m.n_rows for m in kept), *source.row_shape)
    before = start[0] - offset
    dropped = (before, source.n_rows - before - stored[0])
    window = Window(stored, (offset, *start[1:]), tuple(shape), text, dropped)
    return dataclasses.replace(
        source,
        n_rows=shape[0],
        row_shape=tuple(shape[1:]),
        window=window,
        members=tuple(kept),
        path=first.path,
        file_id=first.file_id,
        swmr=first.swmr,
    )


def _by_value(source: Hdf5Source, axis: int, name: str, ends: Bounds) -> tuple[int, int]:
    """Return the index range ``--sel NAME=A:B`` selects along ``axis``."""
    coord = source.coords[axis] if axis < len(source.coords) else None
    if coord is None:
        raise UsageError(
            f"--sel {name}={selection.text(ends)}: {source.spec} has no coordinate variable "
            f"for {name}: select by index with --isel {name}=START:END"
        )
    if axis == 0 and isinstance(source, FilesSource):
        return _across_files(source, coord, name, ends)
    with open_input(source) as h5:
        numbers, bounds, shown = _coordinate(h5[coord], f"{source.path}:{coord}", name, ends)
    first, end = selection.value_range(numbers, bounds[0], bounds[1], name, ends)
    if end <= first:
        raise UsageError(_nothing(numbers, bounds, name, ends, shown))
    return first, end


def _coordinate(variable: Any, where: str, name: str, ends: Bounds) -> tuple[Any, Any, Any]:
    """Return a coordinate's values as float64, the two bounds, and its ends as a user reads."""
    raw = variable[()]
    attrs = {key: variable.attrs[key] for key in variable.attrs if not key.isupper()}
    units = attr_text(attrs.get("units"))
    if is_time_units(units):
        try:
            encoding = encoding_of(attrs, raw.dtype)
        except ValueError as exc:
            raise UsageError(f"--sel {name}: cannot decode {where}: {exc}") from None
        assert encoding is not None  # CF time units
        numbers = encoding.numbers(raw)
        bounds = tuple(selection.date_bound(end, name, ends, encoding) for end in ends)
        shown = encoding.dates_of(numbers[[0, -1]]) if len(numbers) else None
        return numbers, bounds, shown
    if raw.dtype.kind not in "iuf":
        raise UsageError(f"--sel {name}: {where} has {raw.dtype} values: select with --isel")
    decoding = decoding_of(attrs, raw.dtype, where=where)
    if decoding.changes_values:  # a packed coordinate: its values as xarray decodes them
        raw = Decoder(decoding, len(raw), ())(raw)
    bounds = tuple(selection.number_bound(end, name, ends) for end in ends)
    return np.asarray(raw, np.float64), bounds, None


def _nothing(numbers: Any, bounds: Any, name: str, ends: Bounds, shown: Any) -> str:
    """Say that a selection is empty, and how to write it if its bounds are the wrong way."""
    shown = (numbers[0], numbers[-1]) if shown is None else shown
    message = selection.nothing_selected(name, ends, shown)
    if len(numbers) > 1 and None not in bounds:
        first, end = selection.value_range(numbers, bounds[1], bounds[0], name, ends)
        if end > first:  # written in the other order, it selects something
            order = "descending" if numbers[-1] < numbers[0] else "ascending"
            message += (
                f" ({order}: write the bounds in that order, {name}={ends[1]}:{ends[0]}, "
                "as for xarray's .sel)"
            )
    return message


def _across_files(source: FilesSource, coord: str, name: str, ends: Bounds) -> tuple[int, int]:
    """Return the rows of the files' records together that ``--sel`` selects.

    A file whose dates (found by inspection) lie wholly inside or outside the range is taken
    or left whole without reading it again; only the files an end falls in are read.
    """
    import h5py

    ranges: list[tuple[int, int]] = []
    row = 0
    for member in source.members:
        local = (0, 0)
        encoding = dict(member.times).get(coord)
        whole = _whole(member, encoding, name, ends) if member.n_rows else False
        if whole is True:
            local = (0, member.n_rows)
        elif whole is None:
            where = f"{member.path}:{coord}"
            with h5py.File(member.path, "r", locking=False, swmr=member.swmr) as h5:
                numbers, bounds, _ = _coordinate(h5[coord], where, name, ends)
            numbers = numbers[: member.n_rows]
            local = selection.value_range(numbers, bounds[0], bounds[1], name, ends)
        if local[1] > local[0]:
            ranges.append((row + local[0], row + local[1]))
        row += member.n_rows
    if not ranges:
        spans = [m.span for m in source.members if m.span is not None and m.span.first is not None]
        shown = (spans[0].first, spans[-1].last) if spans else ("?", "?")
        raise UsageError(selection.nothing_selected(name, ends, shown))
    for (_, end), (first, _) in itertools.pairwise(ranges):
        if first != end:
            raise UsageError(
                f"--sel {name}={selection.text(ends)}: the records of {name} are not in order "
                "across the files, so the range is not one block: select with --isel"
            )
    return ranges[0][0], ranges[-1][1]


def _whole(member: Any, encoding: Any, name: str, ends: Bounds) -> bool | None:
    """Return True (the file lies inside the range), False (outside) or None (read it)."""
    import cftime

    span = member.span
    if encoding is None or span is None or span.earliest is None:
        return None
    low, high = (selection.date_bound(end, name, ends, encoding) for end in ends)
    earliest, latest = cftime.date2num(
        [span.earliest, span.latest], encoding.units, encoding.calendar
    )
    above_low = low is None or earliest >= low.low
    below_high = high is None or latest < high.high
    if above_low and below_high:
        return True
    if (low is not None and latest < low.low) or (high is not None and earliest >= high.high):
        return False
    return None


def cells_slab(source: Source, first: int, end: int) -> Source:
    """Return ``source`` narrowed to indices ``[first, end)`` of its second dimension.

    The transpose reads one batch of cells this way: every record, a slab of cells, through the
    same window (and the same reads and CF decoding) as ``--isel``.
    """
    if not isinstance(source, Hdf5Source) or not source.row_shape:
        return source
    whole = (source.n_rows, *source.row_shape)
    window = source.window or Window(whole, (0,) * len(whole), whole, "")
    start = (window.start[0], window.start[1] + first, *window.start[2:])
    shape = (window.shape[0], end - first, *window.shape[2:])
    narrowed = dataclasses.replace(window, start=start, shape=shape)
    return dataclasses.replace(source, row_shape=shape[1:], window=narrowed)
