"""Inspect an HDF5 dataset once, on rank 0, before it becomes a source.

:func:`inspect_input` refuses, with one :class:`UsageError` naming the file and dataset, any
input that would not give the right numbers: a missing file, link target or virtual-dataset
source (HDF5 would read fill values), a compression filter that is not available, a dtype or
shape the kernels do not take. What it accepts is an :class:`~hpcapp.io.sources.hdf5.Hdf5Source`,
which every rank reads the same way.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from hpcapp.errors import UsageError
from hpcapp.io.names import data_variables, follow, listing, split_spec
from hpcapp.io.sources.hdf5 import Hdf5Source, locking
from hpcapp.io.storage import check_storage

_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
T = TypeVar("T")


def inspect_input(spec: str) -> Hdf5Source:
    """Open the input read-only and check it can be processed; raise UsageError if not."""
    bare = spec[:-1] if spec.endswith(":") else spec
    if ":" not in bare or Path(bare).is_file():  # FILE alone: say which datasets it has
        path, dataset = bare, None
    else:
        path, dataset = split_spec(spec)
    return inspect_dataset(path, dataset)


@overload
def inspect_dataset(
    path: str, dataset: str | None, *, allow_no_rows: bool = ..., describe: None = ...
) -> Hdf5Source: ...


@overload
def inspect_dataset(
    path: str, dataset: str | None, *, allow_no_rows: bool = ..., describe: Callable[[Any], T]
) -> tuple[Hdf5Source, T]: ...


def inspect_dataset(
    path: str,
    dataset: str | None,
    *,
    allow_no_rows: bool = False,
    describe: Callable[[Any], Any] | None = None,
) -> Hdf5Source | tuple[Hdf5Source, Any]:
    """Check ``dataset`` of the file at ``path`` like :func:`inspect_input`; return its source.

    ``allow_no_rows`` accepts a dataset of 0 rows (one file of many may hold no records);
    ``describe(dataset)``, if given, runs while the file is open and its value is returned
    as ``(source, value)`` instead.
    """
    import numpy as np

    file = _check_file(path)
    h5, swmr = _open(file)
    where = f"{path}:{dataset}"
    described = None
    try:
        with h5:
            if dataset is None:
                example = next(iter(data_variables(h5)), "/DATASET")
                raise UsageError(
                    f"input {path!r} names no dataset: add :/DATASET, e.g. "
                    f"{path}:{example}; {listing(h5)}"
                )
            obj = follow(h5, path, dataset)
            shape, dtype, chunks = _check_dataset(obj, where, allow_no_rows)
            plugins = check_storage(obj, where, file, 0)
            if describe is not None:
                described = describe(obj)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:  # a damaged file, most likely
        raise UsageError(f"cannot read {where}: {type(exc).__name__}: {exc}") from None
    stat = file.stat()
    source = Hdf5Source(
        n_rows=int(shape[0]),
        row_shape=tuple(int(n) for n in shape[1:]),
        dtype=np.dtype(dtype).str,
        path=str(file),
        dataset=dataset,
        storage_chunk_rows=int(chunks[0]) if chunks else None,
        file_id=(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns),
        swmr=swmr,
        plugins=plugins,
    )
    return (source, described) if describe is not None else source


def _check_file(path: str) -> Path:
    import h5py

    file = Path(path)
    if not file.exists():
        near = os.listdir(file.parent) if file.parent.is_dir() else []
        close = difflib.get_close_matches(file.name, near, n=1)
        hint = f" (did you mean {str(file.parent / close[0])!r}?)" if close else ""
        raise UsageError(f"input file {path!r} does not exist{hint}")
    if not file.is_file():
        raise UsageError(f"input {path!r} is not a file (a directory?)")
    if not os.access(file, os.R_OK):
        raise UsageError(f"input file {path!r} is not readable (check its permissions)")
    if not h5py.is_hdf5(file):
        with open(file, "rb") as stream:
            magic = stream.read(4)
        if magic in _NETCDF3_MAGIC:
            raise UsageError(
                f"input file {path!r} is a netCDF-3 file, not HDF5: convert it with "
                f"`nccopy -k nc4 {path} out.nc` and use out.nc:/VARIABLE"
            )
        raise UsageError(f"input file {path!r} is not an HDF5 file")
    return file


def _open(file: Path) -> tuple[Any, bool]:
    """Open read-only; a file a writer holds in SWMR mode is opened as a SWMR reader.

    Only here does hpcapp take HDF5's file lock (where the file system has locks): a writer
    that is not in SWMR mode holds it, and its half-written file is refused. The ranks read
    without locking, which some parallel file systems do not support.
    """
    import h5py

    busy = (
        f"input file '{file}' is open for writing by another program: wait until it is closed "
        "(or have the writer use SWMR mode)"
    )
    try:
        return h5py.File(file, "r", locking=locking()), False
    except OSError as exc:
        if "unable to lock" in str(exc):
            raise UsageError(busy) from None
        if "already open for write" not in str(exc):
            raise UsageError(f"cannot read input file '{file}': {exc}") from None
    try:
        return h5py.File(file, "r", locking=locking(), swmr=True), True
    except OSError:
        raise UsageError(
            f"{busy}; if nothing writes it, a writer crashed: `h5clear -s` the file"
        ) from None


def _check_dataset(
    obj: Any, where: str, allow_no_rows: bool = False
) -> tuple[tuple[int, ...], Any, Any]:
    """Return shape, dtype and chunks of a dataset hpcapp can process; raise if it cannot."""
    try:
        dtype = obj.dtype
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where} has an HDF5 type hpcapp cannot read ({exc})") from None
    problem = _dtype_problem(dtype)
    if problem:
        raise UsageError(
            f"{where} has {problem} values (dtype {dtype}): hpcapp processes integer and "
            "float datasets (and bool)"
        )
    shape = obj.shape
    if shape is None:
        raise UsageError(f"{where} has an empty (null) dataspace: it holds no values")
    if shape == ():
        raise UsageError(
            f"{where} is a scalar (shape ()): hpcapp processes datasets of 1 or more dimensions"
        )
    if shape[0] == 0 and not allow_no_rows:
        raise UsageError(f"{where} is empty: 0 rows (shape {shape}), nothing to compute")
    if 0 in shape[1:]:
        raise UsageError(f"{where} is empty: 0 columns (shape {shape}), nothing to compute")
    return shape, dtype, obj.chunks


def _dtype_problem(dtype: Any) -> str | None:
    """Describe why values of ``dtype`` cannot be processed, or return None if they can."""
    import h5py

    if h5py.check_enum_dtype(dtype) is not None:
        return f"enum (of {dtype.base})"
    if dtype.kind in "iufb" and dtype.fields is None and dtype.subdtype is None:
        return None
    if dtype.kind == "c":
        return "complex"
    if dtype.kind in "SU":
        return "fixed-length string"
    if h5py.check_string_dtype(dtype) is not None:
        return "variable-length string"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length sequence"
    if dtype.fields is not None:
        return f"compound (fields {', '.join(list(dtype.fields)[:5])})"
    if dtype.subdtype is not None:
        return f"array ({dtype.subdtype[1]} of {dtype.subdtype[0]} per element)"
    if dtype.kind == "V":
        return "opaque"
    return "object"
