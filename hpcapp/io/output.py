"""The netCDF-4 layout of ``/result``: named dimensions, coordinates, CF attributes.

Written with h5py on rank 0 after the results: every axis of every result variable gets an HDF5
dimension scale, the way netCDF-4 stores dimensions (a coordinate variable such as ``lat`` is
its own scale; a dimension with no values is a placeholder scale netCDF recognises by its NAME),
plus the ``_Netcdf4Dimid`` / ``_Netcdf4Coordinates`` attributes netCDF-C reads. xarray (h5netcdf)
and the netCDF4 library then open ``group="result"`` with the input's dimension names.

Which axes a result has is decided by shape: its leading axes are named after the kept
dimensions (per-row outputs: the record dimension first) when their lengths match, a histogram's
next axis is ``bin`` (centres, with CF bounds ``bin_bounds``), and any other axis gets a name of
its own (``KEY_dimJ``). A kept record dimension with a CF time coordinate gets its times decoded
(each file of a many-file input its own way: :mod:`hpcapp.io.coding.times`) and written in one unit,
the first file's units and calendar: unpacked, masked times NaN with ``_FillValue``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from hpcapp.io.dims import NETCDF_DIM_ONLY
from hpcapp.io.series import FileSeries
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.io.sources.many import FilesSource, write_file_table

CONVENTIONS = "CF-1.8"
# Stats results that keep the input's units, and the CF cell method each one is.
_KEEPS_UNITS = ("mean", "min", "max", "std")
_CELL_METHODS = {
    "mean": "mean",
    "min": "minimum",
    "max": "maximum",
    "std": "standard_deviation",
    "var": "variance",
    "sum": "sum",
}
_LONG_NAMES = {
    "count": "number of values used (not NaN, not missing)",
    "nan_count": "number of NaN or missing (_FillValue, missing_value; out of valid range with "
    "--mask-valid-range) values",
    "hist": "histogram counts",
    "hist_edges": "histogram bin edges",
    "group_first_record": "index of the group's first record",
}
# Grouped results: the dimension and coordinate of the groups, and results with no group axis.
GROUP_DIM = "group"
_UNGROUPED = ("hist_edges",)
# Attributes of an input coordinate that describe HDF5 structure, not the coordinate.
_STRUCTURE_ATTRS = ("CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST", "DIMENSION_LABELS")


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the output needs to know about the input's dimensions (built on rank 0)."""

    input_path: str | None
    input_swmr: bool  # the input is being written in SWMR mode: open it as a SWMR reader
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: tuple[str | None, ...]
    over: tuple[int, ...]
    per_row: tuple[str, ...]
    is_stats: bool
    units: str | None
    many: FilesSource | None = None  # a many-file input: its record coordinate spans the files
    group: str | None = None  # grouped: what a group is (the coordinate's long_name)
    window: Any = None  # --sel/--isel (hpcapp.io.selection.Window): coordinates are sliced
    n_groups: int = 0  # grouped: the length of /result/group (read from the file)

    def leading(self, key: str) -> list[tuple[str, int]]:
        """Return the (name, length) of the dimensions a result's leading axes may have."""
        kept = [a for a in range(len(self.dims)) if a not in self.over]
        if key in self.per_row and 0 not in kept:
            kept = [0, *kept]
        names = [(self.dims[a], self.shape[a]) for a in kept]
        if self.n_groups and key not in _UNGROUPED:
            names.insert(0, (GROUP_DIM, self.n_groups))
        return names


def make_layout(
    source: Source, params: dict[str, Any], kern: Any, grouping: Any = None
) -> Callable[[Any], None]:
    """Return the hook that lays out ``/result`` (called by the writer with that group).

    Grouped (``grouping``, an :class:`hpcapp.io.labels.Grouping`), ``/result/group`` becomes
    the coordinate of a leading ``group`` dimension of every result.
    """
    from hpcapp.kernels import nd

    stored = source if isinstance(source, Hdf5Source) else None  # else generated: no input
    cf = stored.decoding if stored is not None else None
    layout = Layout(
        input_path=stored.path if stored is not None else None,
        input_swmr=stored.swmr if stored is not None else False,
        dims=tuple(source.dims),
        shape=(source.n_rows, *source.row_shape) if stored is not None else (),
        coords=(tuple(stored.coords) if stored is not None else ()) or (None,) * len(source.dims),
        over=tuple(params.get("over", nd.DEFAULT_OVER)) if source.dims else (),
        per_row=tuple(kern.per_row),
        is_stats=kern.func is nd.stats.func,
        units=cf.units if cf is not None else None,
        many=source if isinstance(source, FilesSource) else None,
        group=grouping.describe() if grouping is not None else None,
        window=stored.window if stored is not None else None,
    )

    def lay_out(h5: Any) -> None:
        apply_layout(h5, layout)
        if layout.many is not None:
            write_file_table(h5, layout.many)

    return lay_out


def _axis_names(key: str, shape: tuple[int, ...], layout: Layout) -> list[tuple[str, int]]:
    names: list[tuple[str, int]] = []
    for (name, length), size in zip(layout.leading(key), shape, strict=False):
        if length != size:
            break
        names.append((name, length))
    for j in range(len(names), len(shape)):
        if key == "hist" and j == len(shape) - 1:
            names.append(("bin", shape[j]))
        elif key == "hist_edges" and j == len(shape) - 1:
            names.append(("bin_edge", shape[j]))
        else:
            names.append((f"{key}_dim{j}", shape[j]))
    return names


def apply_layout(h5: Any, layout: Layout) -> None:
    """Attach named dimension scales and CF attributes to ``/result`` and ``/timing``."""
    import h5py

    h5.attrs["Conventions"] = CONVENTIONS
    # netCDF-C numbers dimensions across the whole file: /timing's take ids 0 and 1.
    first_id = 0
    if "timing" in h5:
        _name_timing(h5)
        first_id = 2
    group = h5.require_group("result")
    group.attrs["Conventions"] = CONVENTIONS
    variables = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}
    if layout.group is not None and GROUP_DIM in variables:
        labels = variables.pop(GROUP_DIM)
        labels.make_scale(GROUP_DIM)
        labels.attrs["long_name"] = layout.group
        layout = dataclasses.replace(layout, n_groups=labels.shape[0])
    axes = {key: _axis_names(key, var.shape, layout) for key, var in variables.items()}
    lengths: dict[str, int] = {}
    for names in axes.values():
        for j, (name, length) in enumerate(names):
            # A dimension may not share a result's name, nor have two lengths.
            while name in variables or lengths.get(name, length) != length:
                name = f"{name}_{length}" if name in lengths else f"{name}_dim"
            names[j] = (name, length)
            lengths[name] = length
    edges = variables.get("hist_edges")
    bins = lengths.get("bin")
    if edges is not None and edges.ndim == 1 and bins == edges.shape[0] - 1:
        lengths["nv"] = 2  # bin_bounds is (bin, nv)
    scales = {name: _make_scale(group, name, n, layout, edges) for name, n in lengths.items()}
    if "nv" in lengths and edges is not None:
        values = edges[()]
        bounds = group.create_dataset("bin_bounds", data=np.stack([values[:-1], values[1:]], 1))
        axes["bin_bounds"] = [("bin", lengths["bin"]), ("nv", 2)]
        variables["bin_bounds"] = bounds
    dimid = {name: first_id + i for i, name in enumerate(scales)}
    for name, scale in scales.items():
        scale.attrs["_Netcdf4Dimid"] = np.int32(dimid[name])
    for key, var in variables.items():
        dims = [name for name, _ in axes[key]]
        for j, name in enumerate(dims):
            var.dims[j].attach_scale(scales[name])
        if dims:
            var.attrs["_Netcdf4Coordinates"] = np.array([dimid[n] for n in dims], np.int32)
        _describe(key, var, layout)


def _name_timing(h5: Any) -> None:
    """Give the per-rank timing table the dimensions (rank, timing_column)."""
    timing = h5["timing"]
    for j, name in enumerate(("rank", "timing_column")):
        scale = h5.create_dataset(name, data=np.arange(timing.shape[j], dtype=np.int32))
        scale.make_scale(name)
        scale.attrs["_Netcdf4Dimid"] = np.int32(j)
        timing.dims[j].attach_scale(scale)
    timing.attrs["_Netcdf4Coordinates"] = np.array([0, 1], np.int32)


def _make_scale(group: Any, name: str, length: int, layout: Layout, edges: Any) -> Any:
    """Create the scale ``name``: the input's coordinate, bin centres, or a placeholder."""
    import h5py

    if name == GROUP_DIM and layout.n_groups == length:
        return group[GROUP_DIM]  # the labels, made a scale by apply_layout
    if name in layout.dims and layout.input_path is not None:
        axis = layout.dims.index(name)
        coord = layout.coords[axis] if axis < len(layout.coords) else None
        if coord is not None and layout.shape[axis] == length:
            with h5py.File(layout.input_path, "r", locking=False, swmr=layout.input_swmr) as source:
                original = source[coord]
                window = layout.window
                values = original[window.axis(axis)] if window is not None else original[()]
                attrs = {
                    attr: value
                    for attr, value in original.attrs.items()
                    if attr not in _STRUCTURE_ATTRS and not attr.startswith("_Netcdf4")
                }
                encoding = _time_encoding(attrs, values.dtype) if axis == 0 else None
                if encoding is not None:
                    values, attrs = _record_times(layout, coord, encoding, values, attrs)
                elif axis == 0 and layout.many is not None:
                    values = _record_coordinate(layout.many, coord, values.dtype)
                fill = attrs.get("_FillValue") if encoding is not None else None
                scale = group.create_dataset(name, data=values, fillvalue=fill)
                for attr, value in attrs.items():
                    scale.attrs[attr] = value
            scale.make_scale(name)
            return scale
    if name == "bin" and edges is not None and edges.ndim == 1 and edges.shape[0] == length + 1:
        values = edges[()]
        scale = group.create_dataset(name, data=(values[:-1] + values[1:]) / 2)
        scale.attrs["long_name"] = "histogram bin centre"
        scale.attrs["bounds"] = "bin_bounds"
        if layout.units:
            scale.attrs["units"] = layout.units
        scale.make_scale(name)
        return scale
    scale = group.create_dataset(name, shape=(length,), dtype="f4")
    scale.make_scale(f"{NETCDF_DIM_ONLY}{length:10d}")
    return scale


def _describe(key: str, var: Any, layout: Layout) -> None:
    """Give a stats result its CF attributes: units, cell_methods, long_name."""
    if not layout.is_stats:
        return
    if key in _KEEPS_UNITS and layout.units:
        var.attrs["units"] = layout.units
    reduced = [layout.dims[a] for a in layout.over if a < len(layout.dims)]
    if key in _CELL_METHODS and reduced:
        method = " ".join(f"{n}:" for n in reduced) + f" {_CELL_METHODS[key]}"
        if layout.group is not None:
            method += f" (separately for each group: {layout.group})"
        var.attrs["cell_methods"] = method
    if key in _LONG_NAMES:
        var.attrs["long_name"] = _LONG_NAMES[key]


def _record_coordinate(source: Any, coord: str, dtype: Any) -> np.ndarray:
    """Read the record dimension's coordinate of every file of a many-file input, in order."""
    values = np.empty(source.n_rows, dtype=dtype)
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
    layout: Layout, coord: str, first: Any, stored: np.ndarray, attrs: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return the record coordinate's times in the first file's units and calendar, and attrs.

    The stored dtype is kept where it holds every value exactly (and nothing is masked or
    packed); else float64, masked times NaN with ``_FillValue = NaN``.
    """
    from hpcapp.io.coding.times import attrs_for_output

    source = layout.many
    if source is None:
        numbers = first.numbers(stored)
    else:
        numbers = np.empty(source.n_rows)
        with FileSeries(source) as series:
            for index, start, stop in series.spans(0, source.n_rows):
                encoding = series.time_encoding(index, coord) or first
                raw = np.empty(stop - start, np.dtype(encoding.dtype))
                series.read_rows(coord, raw, start, stop)
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
