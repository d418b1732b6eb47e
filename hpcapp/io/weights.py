"""Weights of ``--weights``: cell areas, lat/lon bounds, cos(lat), or a variable of a file.

``--weights area`` takes, in this order, the variable the input's ``cell_measures`` names
(``area: VAR``), else the cell areas on the unit sphere from the bounds of ``lat`` and ``lon``
(``|sin(lat1) - sin(lat0)| * |lon1 - lon0|``, radians), else ``cos(lat)``; the method is said
in the summary and the output's ``weights`` attribute. ``--weights FILE:/VAR`` takes VAR,
whose dimensions (named as the input's) are broadcast over the others. The weights are built
once on rank 0 as an array broadcastable to one record: ``(1, *row_shape)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.dims import scale_name
from hpcapp.io.sources.hdf5 import Hdf5Source, open_input

# A dimension is latitude (longitude) by its name, or by its coordinate's CF units.
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "longitude")


@dataclasses.dataclass(frozen=True)
class Weights:
    """The weights of one record, ``(1, *row_shape)``, and how they were found."""

    values: np.ndarray
    method: str  # "cell_measures VAR", "area from lat/lon bounds", "cos(lat)", "file SPEC"

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint of a weighted job must match."""
        digest = hashlib.sha256(np.ascontiguousarray(self.values).tobytes()).hexdigest()
        return {"method": self.method, "shape": list(self.values.shape), "sha256": digest}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _axis_of(source: Hdf5Source, names: tuple[str, ...], units: str, h5: Any) -> int | None:
    """Return the axis whose name or coordinate units say latitude (or longitude), or None."""
    for axis, dim in enumerate(source.dims):
        coord = source.coords[axis] if axis < len(source.coords) else None
        if dim.lower() in names:
            return axis
        found = _text(h5[coord].attrs.get("units", "")).lower() if coord is not None else ""
        if found.replace("degrees", "degree").startswith(units):
            return axis
    return None


def _cut(values: np.ndarray, source: Hdf5Source, axis: int) -> np.ndarray:
    """Return the part of a coordinate-shaped array ``--sel``/``--isel`` keeps along ``axis``."""
    return values[source.window.axis(axis)] if source.window is not None else values


def _place(values: np.ndarray, axes: list[int], source: Hdf5Source) -> np.ndarray:
    """Return ``values`` over ``axes`` (in order) as an array broadcastable to a record."""
    ndim = 1 + len(source.row_shape)
    order = np.argsort(axes)
    values = np.transpose(values, order) if values.ndim > 1 else values
    shape = [1] * ndim
    for axis in sorted(axes):
        shape[axis] = (source.n_rows, *source.row_shape)[axis]
    return np.ascontiguousarray(values.reshape(shape), dtype=np.float64)


def _check(values: np.ndarray, where: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise UsageError(f"--weights: {where} holds missing, infinite or negative weights")
    return values


def _bounds(h5: Any, coord: str | None) -> np.ndarray | None:
    if coord is None or "bounds" not in h5[coord].attrs:
        return None
    name = _text(h5[coord].attrs["bounds"])
    found = h5.get(name) if name.startswith("/") else h5[coord].parent.get(name)
    if found is None or found.ndim != 2 or found.shape[1] != 2:
        return None
    return np.asarray(found[()], dtype=np.float64)


def _measures(h5: Any, source: Hdf5Source, where: str) -> Weights | None:
    """Return the weights of the variable ``cell_measures = "area: VAR"`` names, if any."""
    text = _text(h5[source.dataset].attrs.get("cell_measures", ""))
    words = text.replace(":", ": ").split()
    if "area:" not in words or words.index("area:") + 1 >= len(words):
        return None
    name = words[words.index("area:") + 1]
    found = h5.get(name) if name.startswith("/") else h5[source.dataset].parent.get(name)
    if found is None:
        raise UsageError(f"{where}: cell_measures names {name!r}, which the file does not hold")
    return Weights(
        _by_dims(found, source, f"{where} cell_measures {name}"), f"cell_measures {name}"
    )


def input_axes(variable: Any, source: Hdf5Source, where: str, option: str) -> list[int]:
    """Return the input's axes of a variable's dimensions, matched by name (not the record's)."""
    names = [scale_name(variable.dims[i])[0] for i in range(variable.ndim)]
    if not all(n in source.dims for n in names):
        raise UsageError(
            f"{option}: {where} has dimensions {names}, not among the input's {list(source.dims)}"
        )
    axes = [source.dims.index(n) for n in names]
    if 0 in axes:
        raise UsageError(
            f"{option}: {where} runs along {source.dims[0]!r}, the dimension chunks are cut "
            f"along: {option.lstrip('-')} must be over the other dimensions"
        )
    return axes


def on_record(
    values: np.ndarray, axes: list[int], source: Hdf5Source, where: str, option: str
) -> np.ndarray:
    """Return a field over ``axes`` (the selected box of it) broadcastable to a record."""
    if source.window is not None:  # --sel/--isel: the field of the selected box
        values = values[tuple(source.window.axis(axis) for axis in axes)]
    expected = [(source.n_rows, *source.row_shape)[a] for a in axes]
    if list(values.shape) != expected:
        raise UsageError(f"{option}: {where} has shape {values.shape}, the input {expected}")
    return _place(values, axes, source)


def _by_dims(variable: Any, source: Hdf5Source, where: str) -> np.ndarray:
    """Return a variable over some of the input's dimensions, placed to broadcast to a record."""
    axes = input_axes(variable, source, where, "--weights")
    values = np.asarray(variable[()], dtype=np.float64)
    return _check(on_record(values, axes, source, where, "--weights"), where)


def area_weights(source: Hdf5Source, over: tuple[int, ...]) -> Weights:
    """Return the weights of ``--weights area`` (refused without a latitude reduced over)."""
    where = source.spec
    with open_input(source) as h5:
        lat = _axis_of(source, LAT_NAMES, "degree_n", h5)
        if lat is None or lat not in over:
            raise UsageError(
                f"--weights area: {where} has no latitude dimension reduced over "
                f"(dims {', '.join(source.dims)}; --over must include lat)"
            )
        measured = _measures(h5, source, where)
        if measured is not None:
            return measured
        if lat == 0:
            raise UsageError(
                f"--weights area: {where} has latitude {source.dims[0]!r} as its first "
                "dimension, the one chunks are cut along: not supported"
            )
        lon = _axis_of(source, LON_NAMES, "degree_e", h5)
        lat_coord = source.coords[lat]
        if lat_coord is None:
            raise UsageError(
                f"--weights area: {where}: dimension {source.dims[lat]!r} has no "
                "coordinate variable"
            )
        lat_bnds = _bounds(h5, lat_coord)
        lon_bnds = _bounds(h5, source.coords[lon]) if lon not in (None, 0) else None
        if lat_bnds is not None and lon_bnds is not None and lon is not None:
            sines = np.sin(np.deg2rad(_cut(lat_bnds, source, lat)))
            dlat = np.abs(sines[:, 1] - sines[:, 0])
            dlon = np.abs(np.deg2rad(np.diff(_cut(lon_bnds, source, lon), axis=1)[:, 0]))
            cells = np.multiply.outer(dlat, dlon) if lat < lon else np.multiply.outer(dlon, dlat)
            values = _place(cells, sorted([lat, lon]), source)
            return Weights(_check(values, where), "area from lat/lon bounds")
        degrees = _cut(np.asarray(h5[lat_coord][()], dtype=np.float64), source, lat)
        cosines = np.clip(np.cos(np.deg2rad(degrees)), 0.0, None)  # -90/90 to 0, not -6e-17
        return Weights(_check(_place(cosines, [lat], source), where), "cos(lat)")


def file_weights(source: Hdf5Source, spec: str) -> Weights:
    """Return the weights of ``--weights FILE:/VAR``, over dimensions named as the input's."""
    import h5py

    path, _, name = spec.rpartition(":")
    try:
        with h5py.File(path, "r", locking=False) as h5:
            if name not in h5 or not isinstance(h5[name], h5py.Dataset):
                raise UsageError(f"--weights: {path} has no variable {name!r}")
            values = _by_dims(h5[name], source, spec)
    except OSError as exc:
        raise UsageError(f"--weights: cannot read {path}: {exc}") from None
    return Weights(values, f"file {spec}")


def load_weights(source: Any, spec: str, over: tuple[int, ...]) -> Weights:
    """Return the weights ``--weights SPEC`` gives for reducing ``source`` over ``over``."""
    if not isinstance(source, Hdf5Source):
        raise UsageError("--weights needs an input file with coordinates")
    return area_weights(source, over) if spec == "area" else file_weights(source, spec)
