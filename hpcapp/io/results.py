"""Where results live in an output file, and reading them back: names, timing, the file table.

The output is a flat netCDF-4 file. Each result of the kernel (its key: ``mean``, ``hist``,
``norm``) is a variable at the root named after the input variable: ``tas_mean`` for the
input ``tas``, ``x_norm`` for ``x`` (a user kernel's keys the same way); a kernel that makes its
own data (``montecarlo``) has no input, and its variables are its keys. Each such variable
carries ``hpcapp_result = KEY``, so the key is read back whatever the variable is called; the
grouping's labels (``month``, ``season``, ``dayofyear``, ``year`` for ``--group-by`` a time
component, else ``group``; ``group_first_record``) are not prefixed. ``hpcapp.run`` returns the
keys (``results["mean"]``). Per-rank timing is one variable per phase over dimension ``rank``
(``timing_read``, ...); older outputs (results in group ``/result``, timing a 2-D ``/timing``)
are read too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from hpcapp.io.ncfile import text

RESULT_ATTR = "hpcapp_result"  # on each result variable: the kernel's key
RANK_DIM = "rank"
FILE_DIM = "file"  # the input-file table of a many-file input
TIMING_PREFIX = "timing_"
TIMING_UNITS = {"rows": "1"}  # the others are seconds
# Results that describe the groups (the grouping's coordinate), named as they are.
UNPREFIXED = ("group", "group_first_record")


def prefix_of(dataset: str | None) -> str:
    """Return the prefix of result names for an input dataset path (``/x/tas`` -> ``tas_``)."""
    if not dataset:
        return ""
    name = PurePosixPath(dataset).name
    return f"{name}_" if name else ""


def name_results(
    keys: Iterable[str], prefix: str, taken: Iterable[str] = (), labels: Iterable[str] = ()
) -> dict[str, str]:
    """Return key -> variable name: ``prefix + key`` (the grouping's ``labels`` as they are).

    A name already ``taken`` (by a coordinate of the input, say) gets ``_result`` appended.
    """
    unprefixed = {*UNPREFIXED, *labels}
    used = set(taken)
    names: dict[str, str] = {}
    for key in keys:
        name = key if key in unprefixed else f"{prefix}{key}"
        while name in used:
            name = f"{name}_result"
        used.add(name)
        names[key] = name
    return names


def result_variables(h5: Any) -> dict[str, Any]:
    """Return key -> dataset of every result of an open output file (either layout)."""
    import h5py

    found = {
        text(dataset.attrs[RESULT_ATTR]): dataset
        for dataset in h5.values()
        if isinstance(dataset, h5py.Dataset) and RESULT_ATTR in dataset.attrs
    }
    if not found and isinstance(h5.get("result"), h5py.Group):  # written before the flat layout
        found = {
            key: dataset
            for key, dataset in h5["result"].items()
            if dataset.attrs.get("CLASS") != b"DIMENSION_SCALE"
        }
    return found


def read_results(path: str) -> dict[str, np.ndarray]:
    """Read every result of an output file, keyed as the kernel returned them."""
    import h5py

    with h5py.File(path, "r", locking=False) as h5:
        return {key: _value(dataset) for key, dataset in result_variables(h5).items()}


def read_within(path: str, keys: Iterable[str], limit: int) -> tuple[dict[str, Any], list[str]]:
    """Read results ``keys`` of an output file if together they take at most ``limit`` bytes.

    Return the values read and the keys left unread (all of them when over the limit).
    """
    import h5py

    with h5py.File(path, "r", locking=False) as h5:
        found = result_variables(h5)
        chosen = [key for key in keys if key in found]
        if sum(found[key].size * found[key].dtype.itemsize for key in chosen) > limit:
            return {}, chosen
        return {key: _value(found[key]) for key in chosen}, []


def _value(dataset: Any) -> np.ndarray:
    """Return a result's values; a bool result (stored as int8 flags) as bool again."""
    value = dataset[()]
    if text(dataset.attrs.get("flag_meanings", "")) == "false true" and value.dtype == np.int8:
        return np.asarray(value).view(np.bool_)
    return value


def names_in(path: str) -> dict[str, str]:
    """Return key -> variable name of every result of an output file."""
    import h5py

    with h5py.File(path, "r", locking=False) as h5:
        return {key: dataset.name.lstrip("/") for key, dataset in result_variables(h5).items()}


def write_timing(h5: Any, dims: Any, timing: np.ndarray, columns: tuple[str, ...]) -> None:
    """Write per-rank timing: ``rank`` and one variable per column, ``timing_<column>(rank)``."""
    h5.attrs["timing_columns"] = np.bytes_(" ".join(columns).encode())
    ranks = np.arange(timing.shape[0], dtype=np.int32)
    dims.coordinate(RANK_DIM, ranks, {"long_name": np.bytes_(b"MPI rank")})
    for index, column in enumerate(columns):
        variable = h5.create_dataset(f"{TIMING_PREFIX}{column}", data=timing[:, index])
        dims.attach(variable, [RANK_DIM])
        variable.attrs["units"] = np.bytes_(TIMING_UNITS.get(column, "s").encode())
        what = "rows processed" if column == "rows" else f"seconds in {column}"
        variable.attrs["long_name"] = np.bytes_(f"per-rank {what}".encode())


def read_timing(h5: Any) -> tuple[np.ndarray, list[str]] | None:
    """Return the per-rank timing (ranks x columns) and the column names, or None."""
    columns = [
        name[len(TIMING_PREFIX) :]
        for name in h5
        if name.startswith(TIMING_PREFIX) and h5[name].ndim == 1
    ]
    if columns:
        order = {name: i for i, name in enumerate(h5.attrs.get("timing_columns", b"").split())}
        columns.sort(key=lambda c: order.get(c.encode(), len(order)))
        table = np.stack([h5[f"{TIMING_PREFIX}{c}"][()] for c in columns], axis=1)
        return table, columns
    if "timing" in h5 and "columns" in h5["timing"].attrs:  # written before the flat layout
        return h5["timing"][()], [text(c) for c in h5["timing"].attrs["columns"]]
    return None
