"""An output's coordinates from the input: kept dimensions' values, bounds and record times.

Split from :mod:`hpcapp.io.output` (which decides the layout): here the input's coordinate
variables are copied into the output, sliced by a selection, with their CF ``bounds``; a record
coordinate of a many-file input is read across the files and its times re-encoded in the first
file's units and calendar (:mod:`hpcapp.io.coding.times`).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import numpy as np

from hpcapp.io.ncfile import Dimensions, is_structure, readable_attrs, text
from hpcapp.io.series import FileSeries


def input_coordinate(
    h5: Any, dims: Dimensions, source: Any, name: str, length: int, layout: Any
) -> None:
    """Copy dimension ``name``'s coordinate (and its bounds) from the input, if it has one."""
    if name not in layout.dims:
        return
    axis = layout.dims.index(name)
    coord = layout.coords[axis] if axis < len(layout.coords) else None
    if coord is None or layout.shape[axis] != length:
        return
    original = source[coord]
    attrs = {k: v for k, v in readable_attrs(original).items() if not is_structure(k)}
    box = layout.window.axis(axis) if layout.window is not None else slice(None)
    values, attrs, encoding = _values(layout, axis, coord, original[box], attrs, None, coord)
    bounds = text(attrs.pop("bounds", "")) or None
    dims.coordinate(name, values, attrs)
    found = _bounds_path(source, coord, bounds)
    if bounds is None or found is None or source[found].shape[:1] != original.shape[:1]:
        return  # no bounds, or bounds that are not there: no `bounds` attribute
    stored = source[found]
    bound_values, bound_attrs, _ = _values(
        layout, axis, found, stored[box], readable_attrs(stored), encoding, coord
    )
    bound_attrs = {k: v for k, v in bound_attrs.items() if not is_structure(k)}
    if bounds in h5:
        return  # a result took the name (see Layout.names): leave the bounds out
    variable = h5.create_dataset(bounds, data=bound_values, fillvalue=bound_attrs.get("_FillValue"))
    for attr, value in bound_attrs.items():
        variable.attrs[attr] = value
    vertices = _vertex_dim(stored, variable.shape[1:], dims)
    dims.attach(variable, [name, *vertices])
    h5[name].attrs["bounds"] = np.bytes_(bounds.encode())


def _bounds_path(source: Any, coord: str, bounds: str | None) -> str | None:
    """Return the path of a coordinate's bounds variable (beside it, else at the root)."""
    import h5py

    if bounds is None:
        return None
    for path in (str(PurePosixPath(coord).parent / bounds), f"/{bounds}"):
        if isinstance(source.get(path), h5py.Dataset):
            return path
    return None


def _vertex_dim(stored: Any, shape: tuple[int, ...], dims: Dimensions) -> list[str]:
    """Return the names of a bounds variable's trailing dimensions (the input's, else ``nv``)."""
    from hpcapp.io.dims import scale_name

    names = []
    for j, length in enumerate(shape, start=1):
        found = scale_name(stored.dims[j])[0] if j < stored.ndim else None
        name = found or "nv"
        while name in dims and dims.length(name) != length:
            name = f"{name}_{length}"
        names.append(name)
    return names


def _values(
    layout: Any,
    axis: int,
    name: str,
    stored: np.ndarray,
    attrs: dict[str, Any],
    encoding: Any,
    coord: str,
) -> tuple[np.ndarray, dict[str, Any], Any]:
    """Return a coordinate's (or its bounds') values as written, their attrs, its time encoding.

    Along the record axis, times are decoded to the first file's units (a bounds variable is
    decoded as its coordinate ``coord``: its ``encoding``, in each file that file's), and a
    many-file input's values span every file.
    """
    if axis != 0:
        return stored, attrs, None
    encoding = encoding or _time_encoding(attrs, stored.dtype)
    if encoding is not None:
        values, attrs = _record_times(layout, name, coord, encoding, stored, attrs)
        return values, attrs, encoding
    if layout.many is not None:
        stored = _record_coordinate(layout.many, name, stored.dtype, stored.shape[1:])
    return stored, attrs, None


def _record_coordinate(source: Any, coord: str, dtype: Any, rest: tuple[int, ...]) -> np.ndarray:
    """Read a record variable (a coordinate, its bounds) of every file of a many-file input."""
    values = np.empty((source.n_rows, *rest), dtype=dtype)
    with FileSeries(source) as series:
        series.read_rows(coord, values, 0, source.n_rows)
    return values


def _time_encoding(attrs: dict[str, Any], dtype: Any) -> Any:
    """Return the TimeEncoding of a record coordinate, or None (no CF time, or undecodable)."""
    from hpcapp.io.coding.times import encoding_of

    try:
        return encoding_of(attrs, dtype)
    except ValueError:  # not decodable: written as stored (grouping refused it already)
        return None


def _record_times(
    layout: Any, name: str, coord: str, first: Any, stored: np.ndarray, attrs: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return record times ``name`` in the first file's units and calendar, and their attrs.

    ``coord`` is the time coordinate whose encoding ``name`` follows (itself, or the
    coordinate whose bounds ``name`` holds).

    The stored dtype is kept where it holds every value exactly (and nothing is masked or
    packed); else float64, masked times NaN with ``_FillValue = NaN``.
    """
    from hpcapp.io.coding.times import attrs_for_output

    source = layout.many
    if source is None:
        numbers = first.numbers(stored)
    else:
        numbers = np.empty((source.n_rows, *stored.shape[1:]))
        with FileSeries(source) as series:
            for index, start, stop in series.spans(0, source.n_rows):
                encoding = series.time_encoding(index, coord) or first
                raw = np.empty((stop - start, *stored.shape[1:]), np.dtype(encoding.dtype))
                series.read_rows(name, raw, start, stop)
                numbers[start:stop] = encoding.numbers_in(raw, first)
    attrs = attrs_for_output(attrs)
    masked = bool(np.isnan(numbers).any())
    kept = np.dtype(first.dtype)
    if masked:
        attrs["_FillValue"] = np.float64(np.nan)
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # a value the dtype cannot hold
            fits = np.array_equal(numbers.astype(kept).astype(np.float64), numbers)
        if fits and not first.packed:
            return numbers.astype(kept), attrs
    return numbers, attrs
