"""netCDF-4 structure written with h5py: dimensions, char variables and attributes netCDF-C reads.

netCDF-4 stores a dimension as an HDF5 dimension scale: a coordinate variable (``lat``) is its
own scale; a dimension with no values is a placeholder scale netCDF recognises by its NAME. Each
scale carries ``_Netcdf4Dimid`` (numbered across the file) and each variable with dimensions
``_Netcdf4Coordinates``. Text is written as netCDF's ``char`` (fixed-length strings), booleans
as bytes: classic-model types that CDO, NCO and ``ncdump`` all read (variable-length strings
and HDF5 enums, h5py's defaults, are netCDF-4-only or unreadable by some of them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hpcapp.io.dims import NETCDF_DIM_ONLY

# Above this, text stays a variable-length string: a fixed-length attribute lives in the
# object header, which HDF5 limits to 64 KiB.
_LONGEST_CHAR_ATTR = 60_000
# Attributes of a variable that describe HDF5 or netCDF structure, never copied.
STRUCTURE_ATTRS = ("CLASS", "NAME", "REFERENCE_LIST", "DIMENSION_LIST", "DIMENSION_LABELS")


def nc_value(value: Any) -> Any:
    """Return ``value`` as an attribute netCDF-C reads as a classic type (text as char)."""
    if isinstance(value, (bool, np.bool_)):
        return np.int8(value)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return np.bytes_(value) if len(value) <= _LONGEST_CHAR_ATTR else value.decode("utf-8")
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return array.astype(np.int8)
    return value


def is_structure(name: str) -> bool:
    """Return True for an attribute that describes HDF5/netCDF structure, not the data."""
    return name in STRUCTURE_ATTRS or name.startswith(("_Netcdf4", "_NCProperties", "_nc3"))


def readable_attrs(obj: Any) -> dict[str, Any]:
    """Return the attributes of an HDF5 object that h5py can read (others are left out)."""
    found = {}
    for name in obj.attrs:
        try:
            found[name] = obj.attrs[name]
        except (OSError, TypeError, ValueError):  # a type h5py cannot read: not ours to copy
            continue
    return found


def set_attrs(obj: Any, attrs: Mapping[str, Any]) -> None:
    """Set ``attrs`` on an HDF5 object as netCDF-C reads them (see :func:`nc_value`)."""
    for name, value in attrs.items():
        obj.attrs[name] = nc_value(value)


def text(value: Any) -> str:
    """Return an attribute read with h5py (str, bytes or a 1-element array) as str."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def char_array(strings: Iterable[str]) -> np.ndarray:
    """Return strings as a netCDF ``char`` array: (n, longest) single bytes, NUL-padded."""
    encoded = [s.encode() for s in strings]
    width = max([1, *(len(s) for s in encoded)])
    return np.array(encoded, dtype=f"S{width}").view("S1").reshape(len(encoded), width)


class Dimensions:
    """The netCDF dimensions of one group, made as scales and numbered when the file is done."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.scales: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.scales

    def length(self, name: str) -> int:
        """Return the length of dimension ``name``."""
        return int(self.scales[name].shape[0])

    def coordinate(self, name: str, values: np.ndarray, attrs: Mapping[str, Any] = {}) -> Any:
        """Make the coordinate variable ``name`` (a dimension with values) and return it."""
        fill = attrs.get("_FillValue")
        scale = self.group.create_dataset(name, data=values, fillvalue=fill, track_order=True)
        for attr, value in attrs.items():
            scale.attrs[attr] = value
        return self.adopt(name, scale)

    def adopt(self, name: str, dataset: Any) -> Any:
        """Make an existing 1-D variable the coordinate of dimension ``name``."""
        dataset.make_scale(name)
        self.scales[name] = dataset
        return dataset

    def placeholder(self, name: str, length: int) -> Any:
        """Make a dimension with no values (netCDF's way: a scale with a marker NAME)."""
        scale = self.group.create_dataset(name, shape=(length,), dtype="f4")
        scale.make_scale(f"{NETCDF_DIM_ONLY}{length:10d}")
        self.scales[name] = scale
        return scale

    def ensure(self, name: str, length: int) -> None:
        """Make dimension ``name`` as a placeholder unless it exists (with this length)."""
        if name not in self.scales:
            self.placeholder(name, length)
        elif self.length(name) != length:
            raise ValueError(f"dimension {name!r} has length {self.length(name)}, not {length}")

    def attach(self, variable: Any, names: Iterable[str]) -> None:
        """Give ``variable`` its dimensions, in order (each made before, or here)."""
        for axis, name in enumerate(names):
            self.ensure(name, variable.shape[axis])
            variable.dims[axis].attach_scale(self.scales[name])

    def finish(self) -> None:
        """Number the dimensions and record each variable's, as netCDF-C does."""
        import h5py

        dimid = {}
        for number, scale in enumerate(self.scales.values()):
            scale.attrs["_Netcdf4Dimid"] = np.int32(number)
            dimid[scale.name] = number
        for variable in self.group.values():
            if not isinstance(variable, h5py.Dataset) or variable.ndim == 0:
                continue
            attached = [dim[0].name if len(dim) else None for dim in variable.dims]
            if variable.name in dimid and variable.ndim == 1:
                continue  # a coordinate variable is its own dimension
            if all(name in dimid for name in attached):
                ids = [dimid[name] for name in attached]
                variable.attrs["_Netcdf4Coordinates"] = np.array(ids, np.int32)
