"""Where chunks come from: an HDF5 dataset (checked once, on rank 0) or a seeded generator."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError


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
    # N-D inputs, filled in by hpcapp.io.dims.describe: one name per dimension, the input
    # dataset holding each dimension's coordinate values (or None), and the CF decoding
    # (an hpcapp.io.cf.CFDecoding, or None: the kernel sees the values as stored).
    dims: tuple[str, ...] = ()
    coords: tuple[str | None, ...] = ()
    cf: Any = None

    @property
    def spec(self) -> str:
        """Return ``FILE:DATASET`` as recorded in provenance, or ``none``."""
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


def inspect_input(spec: str) -> Source:
    """Open the input read-only and check it can be processed; raise UsageError if not."""
    import h5py
    import numpy as np

    path, dataset = split_spec(spec)
    file = Path(path)
    if not file.exists():
        raise UsageError(f"input file {path!r} does not exist")
    if not file.is_file():
        raise UsageError(f"input {path!r} is not a file (a directory?)")
    if not os.access(file, os.R_OK):
        raise UsageError(f"input file {path!r} is not readable (check its permissions)")
    if not h5py.is_hdf5(file):
        raise UsageError(f"input file {path!r} is not an HDF5 file")
    try:
        with h5py.File(file, "r", locking=False) as h5:
            obj = h5.get(dataset)
            if obj is None:
                raise UsageError(
                    f"{path!r} has no dataset {dataset!r} (datasets: {_list_datasets(h5)})"
                )
            if not isinstance(obj, h5py.Dataset):
                raise UsageError(
                    f"{path}:{dataset} is a group, not a dataset (datasets: {_list_datasets(h5)})"
                )
            shape, dtype, chunks = obj.shape, obj.dtype, obj.chunks
    except OSError as exc:
        raise UsageError(f"cannot read input file {path!r}: {exc}") from None
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise UsageError(
            f"{path}:{dataset} has dtype {dtype}: hpcapp processes integer and float datasets"
        )
    if len(shape) == 0:
        raise UsageError(
            f"{path}:{dataset} is a scalar: hpcapp takes datasets of 1 or more dimensions"
        )
    if 0 in shape:
        raise UsageError(f"{path}:{dataset} is empty (shape {shape}): nothing to compute")
    stat = file.stat()
    return Source(
        n_rows=int(shape[0]),
        row_shape=tuple(int(n) for n in shape[1:]),
        dtype=np.dtype(dtype).str,
        path=str(file),
        dataset=dataset,
        storage_chunk_rows=int(chunks[0]) if chunks else None,
        file_id=(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns),
    )


def _list_datasets(h5: object) -> str:
    import h5py

    names: list[str] = []
    h5.visititems(  # type: ignore[attr-defined]
        lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None
    )
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "none"


def generated(n_rows: int) -> Source:
    """Describe the rows of a generating kernel (no input file)."""
    if n_rows < 1:
        raise UsageError(f"a generating kernel needs at least 1 row (sample), got {n_rows}")
    return Source(n_rows=n_rows, row_shape=(), dtype="<f8")
