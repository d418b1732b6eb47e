"""Where chunks come from: an HDF5 dataset (checked once, on rank 0) or a seeded generator.

:func:`inspect_input` refuses, with one :class:`UsageError` naming the file and dataset, any
input that would not give the right numbers: a missing file, link target or virtual-dataset
source (HDF5 would read fill values), a compression filter that is not available, a dtype or
shape the kernels do not take. What it accepts, every rank reads the same way
(:func:`open_input`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from hpcapp.errors import UsageError
from hpcapp.io.names import datasets, follow, listing
from hpcapp.io.storage import check_storage, import_hdf5plugin

_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Member:
    """One file of a many-file input: its rows of the dataset, and what it was when inspected."""

    path: str
    n_rows: int
    file_id: tuple[int, int, int, int]  # (device, inode, size, mtime_ns)
    swmr: bool = False


@dataclasses.dataclass(frozen=True)
class Source:
    """The shape of the rows to process and where they come from (picklable, small)."""

    n_rows: int
    row_shape: tuple[int, ...]
    dtype: str
    path: str | None = None  # None: a generating kernel makes its own rows
    dataset: str | None = None
    storage_chunk_rows: int | None = None
    file_id: tuple[int, int, int, int] | None = None  # (device, inode, size, mtime_ns)
    swmr: bool = False  # a writer had it open in SWMR mode: read in SWMR mode, n_rows rows only
    plugins: bool = False  # a filter comes from hdf5plugin: import it before reading
    # N-D inputs, filled in by hpcapp.io.dims.describe: one name per dimension, the input
    # dataset holding each dimension's coordinate values (or None), and the CF decoding
    # (an hpcapp.io.cf.CFDecoding, or None: the kernel sees the values as stored).
    dims: tuple[str, ...] = ()
    coords: tuple[str | None, ...] = ()
    cf: Any = None
    # Many files as one dataset (hpcapp.io.files): the files in order, and the glob or @list
    # that named them. ``path`` is then the first file, whose attributes describe them all.
    members: tuple[Member, ...] = ()
    pattern: str | None = None

    @property
    def spec(self) -> str:
        """Return ``FILE:DATASET`` (or ``PATTERN:DATASET``) for provenance, or ``none``."""
        if self.pattern is not None:
            return f"{self.pattern}:{self.dataset}"
        return f"{self.path}:{self.dataset}" if self.path else "none"

    @property
    def row_bytes(self) -> int:
        """Return the size of one row in bytes."""
        import numpy as np

        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.row_shape, dtype=np.int64)))


def split_spec(spec: str) -> tuple[str, str]:
    """Split ``FILE.h5:/path/to/dataset`` at the last colon that precedes a slash."""
    path, sep, dataset = spec.rpartition(":")
    if not sep or not path or not dataset:
        raise UsageError(
            f"input {spec!r} must be FILE.h5:/path/to/dataset (e.g. data.h5:/temperature)"
        )
    return path, dataset if dataset.startswith("/") else "/" + dataset


def open_input(source: Source) -> Any:
    """Open the input file of ``source`` read-only, the way :func:`inspect_input` did."""
    import h5py

    if source.plugins:
        import_hdf5plugin()
    try:
        return h5py.File(source.path, "r", locking=False, swmr=source.swmr)
    except OSError as exc:
        # The file is already open in this process (hpcapp.run given an h5py.Dataset), with
        # locking: HDF5 opens it again only with the same locking flags.
        if "locking flag" not in str(exc):
            raise
        return h5py.File(source.path, "r", locking=_locking(), swmr=source.swmr)


def inspect_input(spec: str) -> Source:
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
) -> Source: ...


@overload
def inspect_dataset(
    path: str, dataset: str | None, *, allow_no_rows: bool = ..., describe: Callable[[Any], T]
) -> tuple[Source, T]: ...


def inspect_dataset(
    path: str,
    dataset: str | None,
    *,
    allow_no_rows: bool = False,
    describe: Callable[[Any], Any] | None = None,
) -> Source | tuple[Source, Any]:
    """Check ``dataset`` of the file at ``path`` like :func:`inspect_input`; return its Source.

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
                example = next((name for name, _, _ in datasets(h5, limit=1)), "/DATASET")
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
    source = Source(
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
        return h5py.File(file, "r", locking=_locking()), False
    except OSError as exc:
        if "unable to lock" in str(exc):
            raise UsageError(busy) from None
        if "already open for write" not in str(exc):
            raise UsageError(f"cannot read input file '{file}': {exc}") from None
    try:
        return h5py.File(file, "r", locking=_locking(), swmr=True), True
    except OSError:
        raise UsageError(
            f"{busy}; if nothing writes it, a writer crashed: `h5clear -s` the file"
        ) from None


def _locking() -> str | bool:
    """Return HDF5's best-effort locking (no error where the file system has no locks).

    HDF5 before 1.10.7 and 1.12.1 does not have it: there, no lock, as the ranks read.
    """
    import h5py

    version = h5py.version.hdf5_version_tuple
    return "best-effort" if version >= (1, 12, 1) or (1, 10, 7) <= version < (1, 11) else False


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


def generated(n_rows: int) -> Source:
    """Describe the rows of a generating kernel (no input file)."""
    if n_rows < 1:
        raise UsageError(f"a generating kernel needs at least 1 row (sample), got {n_rows}")
    return Source(n_rows=n_rows, row_shape=(), dtype="<f8")
