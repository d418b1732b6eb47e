"""The netCDF-4 layout of an output: result variables at the root, dimensions, coordinates.

Written with h5py on rank 0 after the results (see :mod:`hpcapp.io.results` for their names):
every axis of every result variable gets a netCDF dimension (:class:`hpcapp.io.ncfile.Dimensions`).
The file has no groups, so CDO, NCO, ``ncdump`` and ``xarray.open_dataset(out)`` read it as is.

Which axes a result has is decided by shape: its leading axes are named after the kept
dimensions (per-row outputs: the record dimension first) when their lengths match, a histogram's
next axis is ``bin`` (centres, with CF bounds ``bin_bounds``), and any other axis gets a name of
its own (``KEY_dimJ``). Kept dimensions get the input's coordinate variables, with their
attributes and their CF ``bounds`` variables (``lat_bnds``). A kept record dimension with a CF
time coordinate gets its times (and bounds) decoded, each file of a many-file input its own way
(:mod:`hpcapp.io.coding.times`), and written in the first file's units and calendar: unpacked,
masked times NaN with ``_FillValue``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from hpcapp.io.cfattrs import describe_result, global_attributes
from hpcapp.io.input_coords import input_coordinate
from hpcapp.io.ncfile import Dimensions, char_array, is_structure, readable_attrs
from hpcapp.io.resample import BOUNDS_SUFFIX
from hpcapp.io.results import FILE_DIM, RANK_DIM, name_results, prefix_of
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.io.sources.many import FilesSource

# Grouped results: the default name of the groups' dimension and coordinate (--group-by
# time.month names them ``month``: Layout.group_key), and results with no group axis.
GROUP_DIM = "group"
REGION_DIM = "region"  # --regions: the ids' key, dimension and coordinate
_UNGROUPED = ("hist_edges",)


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
    n_groups: int = 0  # grouped: the length of the group coordinate (read from the file)
    variable: str | None = None  # the input dataset's path in its file
    group_key: str = GROUP_DIM  # grouped: the labels' key, dimension and coordinate (``month``)
    # --regions: the raster's spec, the ids' count (read from the file), the ids' names if any
    regions: str | None = None
    n_regions: int = 0
    region_names: tuple[str, ...] | None = None
    # A series kernel's leading axis with its coordinate: (``quantile``, the levels q), or None.
    levels: tuple[str, tuple[float, ...]] | None = None
    periods: bool = False  # --resample: the labels are period starts (``time``) with bounds

    def leading(self, key: str) -> list[tuple[str, int]]:
        """Return the (name, length) of the dimensions a result's leading axes may have."""
        kept = [a for a in range(len(self.dims)) if a not in self.over]
        if key in self.per_row and 0 not in kept:
            kept = [0, *kept]
        names = [(self.dims[a], self.shape[a]) for a in kept]
        if self.levels is not None:
            names.insert(0, (self.levels[0], len(self.levels[1])))
        if self.n_groups and key not in _UNGROUPED:
            names.insert(0, (self.group_key, self.n_groups))
        if self.n_regions:
            names.append((REGION_DIM, self.n_regions))
        return names

    def names(self, keys: Iterable[str]) -> dict[str, str]:
        """Return key -> variable name of each result (see :mod:`hpcapp.io.results`)."""
        taken = {*self.dims, *(c for c in self.coords if c), RANK_DIM, FILE_DIM}
        taken |= {self.levels[0]} if self.levels is not None else set()
        labels = [self.group_key, *((REGION_DIM,) if self.regions else ())]
        if self.periods:  # the reduced record dimension's name is the periods' own
            labels.append(self.group_key + BOUNDS_SUFFIX)
            taken -= {*labels, f"/{self.group_key}"}
        return name_results(keys, prefix_of(self.variable), taken, labels)

    def __call__(self, h5: Any, names: dict[str, str], dims: Dimensions) -> None:
        """Lay out the results ``names`` (key -> variable) of an open file."""
        apply_layout(h5, self, names, dims)
        if self.many is not None:
            write_file_table(h5, self.many, dims)


def make_layout(
    source: Source, params: dict[str, Any], kern: Any, grouping: Any = None, zones: Any = None
) -> Layout:
    """Return the layout of a job's output (called by the writer with the open file).

    Grouped (``grouping``, an :class:`hpcapp.io.labels.Grouping`), the labels (``group``, or
    ``month`` etc. for ``--group-by time.month``) become the coordinate of a leading dimension
    of that name in every result. With ``--regions`` (``zones``, an
    :class:`hpcapp.io.regions.Zones`) the ids are the coordinate of a last dimension ``region``.
    """
    from hpcapp.kernels import anomaly, nd, rolling

    # Values in the input's quantity (its units): statistics, quantiles, running windows and
    # plain anomalies (a standardized anomaly is a number of standard deviations: no units).
    same_quantity = kern.func is rolling.rolling.func or (
        kern.func is anomaly.anomaly.func and not params.get("standardize")
    )
    stored = source if isinstance(source, Hdf5Source) else None  # else generated: no input
    cf = stored.decoding if stored is not None else None
    return Layout(
        input_path=stored.path if stored is not None else None,
        input_swmr=stored.swmr if stored is not None else False,
        dims=tuple(source.dims),
        shape=(source.n_rows, *source.row_shape) if stored is not None else (),
        coords=(tuple(stored.coords) if stored is not None else ()) or (None,) * len(source.dims),
        over=tuple(params.get("over", nd.DEFAULT_OVER)) if source.dims else (),
        per_row=tuple(kern.per_row),
        is_stats=kern.func is nd.stats.func
        or getattr(kern.func, "weighted", False)
        or getattr(kern, "series", False)  # quantiles: values of the input's quantity
        or same_quantity,
        units=cf.units if cf is not None else None,
        many=source if isinstance(source, FilesSource) else None,
        group=grouping.describe() if grouping is not None else None,
        window=stored.window if stored is not None else None,
        variable=stored.dataset if stored is not None else None,
        group_key=grouping.key if grouping is not None else GROUP_DIM,
        **_regions_of(zones),
        levels=_levels(kern, params),
        periods=getattr(grouping, "periods", None) is not None,
    )


def _regions_of(zones: Any) -> dict[str, Any]:
    found = zones.regions if zones is not None else None
    return {} if found is None else {"regions": found.spec, "region_names": found.names}


def _levels(kern: Any, params: dict[str, Any]) -> tuple[str, tuple[float, ...]] | None:
    """Return a series kernel's leading ``quantile`` axis (a list of q), as xarray names it."""
    q = params.get("q")
    if not getattr(kern, "series", False) or not isinstance(q, (list, tuple)):
        return None
    return "quantile", tuple(float(x) for x in q)


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


def apply_layout(h5: Any, layout: Layout, names: dict[str, str], dims: Dimensions) -> None:
    """Give the results their dimensions, coordinates and CF attributes; the file its own."""
    variables = {key: h5[name] for key, name in names.items()}
    taken = set(names.values())
    if layout.group is not None and layout.group_key in variables:
        taken.discard(names[layout.group_key])  # the labels are that dimension's coordinate
        labels = variables.pop(layout.group_key)
        name = labels.name.lstrip("/")  # the key, or ``month_result`` if the input took it
        dims.adopt(name, labels)
        labels.attrs["long_name"] = np.bytes_(layout.group.encode())
        layout = dataclasses.replace(layout, n_groups=labels.shape[0], group_key=name)
        if layout.periods:  # --resample: the bounds of the periods, (time, nv)
            bounds = variables.pop(layout.group_key + BOUNDS_SUFFIX)
            taken.discard(bounds.name.lstrip("/"))
            dims.attach(bounds, [name, "nv"])
    if layout.levels is not None:  # before the axes are named: the name is this coordinate's
        name, values = layout.levels
        dims.coordinate(name, np.asarray(values, np.float64), {"long_name": np.bytes_(b"quantile")})
    if layout.regions is not None and REGION_DIM in variables:
        layout = _region_coordinate(h5, layout, variables, names, taken, dims)
    axes = {key: _axis_names(key, var.shape, layout) for key, var in variables.items()}
    lengths: dict[str, int] = {}
    for found in axes.values():
        for j, (name, length) in enumerate(found):
            # A dimension may not share a result's name, nor have two lengths.
            while name in taken or lengths.get(name, length) != length:
                name = f"{name}_{length}" if name in lengths else f"{name}_dim"
            found[j] = (name, length)
            lengths[name] = length
    edges = variables.get("hist_edges")
    inherited: dict[str, Any] = {}
    quantity: dict[str, Any] = {}
    if layout.input_path is not None:
        import h5py

        with h5py.File(layout.input_path, "r", locking=False, swmr=layout.input_swmr) as source:
            inherited = readable_attrs(source)
            if layout.variable is not None:
                quantity = readable_attrs(source[layout.variable])
            periods = layout.periods and layout.group_key in h5 and layout.coords
            if periods and layout.coords[0] is not None:
                _period_attrs(h5[layout.group_key], readable_attrs(source[layout.coords[0]]))
            for name, n in lengths.items():
                if name not in dims:
                    input_coordinate(h5, dims, source, name, n, layout)
    if layout.units is not None:
        quantity["units"] = layout.units
    elif "units" in quantity:
        quantity = {}  # --raw packed values are not in the input's units, nor its quantity
    for name, n in lengths.items():
        if name not in dims:
            _other_dimension(h5, dims, name, n, layout, edges)
    reduced = [layout.dims[a] for a in layout.over if a < len(layout.dims)]
    for key, var in variables.items():
        dims.attach(var, [name for name, _ in axes[key]])
        group = None if layout.periods else layout.group  # periods: time_bnds says it
        if group is None and layout.regions:
            group = f"region of {layout.regions}"
        describe_result(key, var, layout.is_stats, reduced, group, quantity)
    global_attributes(h5, inherited)


def _region_coordinate(
    h5: Any, layout: Layout, variables: dict, names: dict, taken: set, dims: Dimensions
) -> Layout:
    """Make the ids the coordinate ``region``; names from ``flag_meanings`` in ``region_name``."""
    taken.discard(names[REGION_DIM])
    ids = variables.pop(REGION_DIM)
    dims.adopt(REGION_DIM, ids)
    ids.attrs["long_name"] = np.bytes_(f"region id in {layout.regions}".encode())
    if layout.region_names is not None and "region_name" not in h5:
        labels = h5.create_dataset("region_name", data=char_array(layout.region_names))
        dims.attach(labels, [REGION_DIM, "region_name_length"])
        labels.attrs["long_name"] = np.bytes_(b"region name (flag_meanings)")
    return dataclasses.replace(layout, n_regions=ids.shape[0])


def _period_attrs(labels: Any, attrs: dict[str, Any]) -> None:
    """Give the periods' coordinate the input time's attributes (its units, calendar, bounds)."""
    from hpcapp.io.coding.times import attrs_for_output

    for name, value in attrs_for_output(attrs).items():
        if not is_structure(name) and name not in ("units", "calendar", "bounds"):
            labels.attrs[name] = value


def _other_dimension(
    h5: Any, dims: Dimensions, name: str, length: int, layout: Layout, edges: Any
) -> None:
    """Make a dimension the input has no coordinate for: bin centres (and bounds), or none."""
    if name == "bin" and edges is not None and edges.ndim == 1 and edges.shape[0] == length + 1:
        values = edges[()]
        attrs: dict[str, Any] = {"long_name": np.bytes_(b"histogram bin centre")}
        attrs["bounds"] = np.bytes_(b"bin_bounds")
        if layout.units:
            attrs["units"] = np.bytes_(layout.units.encode())
        dims.coordinate(name, (values[:-1] + values[1:]) / 2, attrs)
        bounds = h5.create_dataset("bin_bounds", data=np.stack([values[:-1], values[1:]], 1))
        dims.ensure("nv", 2)
        dims.attach(bounds, [name, "nv"])
        return
    dims.placeholder(name, length)


def write_file_table(h5: Any, source: FilesSource, dims: Dimensions) -> None:
    """Record the files of a many-file input: ``input_file_path`` etc. over dimension ``file``.

    Plain variables netCDF-C reads (``ncdump -v input_file_path``): the path as ``char``,
    rows, size and modification time as 64-bit integers.
    """
    members = source.members
    dims.coordinate(FILE_DIM, np.arange(len(members), dtype=np.int32))
    columns: dict[str, tuple[np.ndarray, str]] = {
        "path": (
            char_array(m.path for m in members),
            "the input files, in the order their rows were concatenated",
        ),
        "rows": (np.array([m.n_rows for m in members], np.int64), "records in the file"),
        "size": (np.array([m.file_id[2] for m in members], np.int64), "file size in bytes"),
        "mtime_ns": (
            np.array([m.file_id[3] for m in members], np.int64),
            "modification time, ns since 1970-01-01 UTC",
        ),
    }
    for name, (values, long_name) in columns.items():
        variable = h5.create_dataset(f"input_file_{name}", data=values)
        dims.attach(variable, [FILE_DIM, "input_file_path_length"][: values.ndim])
        variable.attrs["long_name"] = np.bytes_(long_name.encode())
    h5.attrs["input_pattern"] = np.bytes_(source.spec.encode())
