"""A many-file input once inspected: its rows read across files, its chunks, its record.

:class:`FileSeries` reads rows of the concatenated dataset (or of a label dataset beside it)
file by file, one file open at a time; :func:`files_chunk_rows` caps how many files a default
chunk spans; :func:`identity` and :func:`write_file_table` record the ordered files in the job
identity (what ``--resume`` compares) and in the output. See :mod:`hpcapp.io.files` for how
the files are found and checked.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from hpcapp.io.source import Member, Source

FILES_PER_CHUNK = 32  # on average, at most, in a default chunk (see files_chunk_rows)


@dataclasses.dataclass(frozen=True)
class FileMember(Member):
    """One file of a many-file input, with how it encodes its CF times (its own way each)."""

    # (dataset path, hpcapp.io.times.TimeEncoding) of the record coordinate and the labels.
    times: tuple[tuple[str, Any], ...] = ()


def files_chunk_rows(source: Source) -> int:
    """Return the most rows a default chunk of a many-file input takes: ~FILES_PER_CHUNK files.

    Opening a file costs about as much as reading a megabyte, so a chunk of many tiny files is
    mostly opening them: capping the files per chunk keeps chunks many enough to share out.
    """
    mean_rows = source.n_rows / max(1, len(source.members))
    return max(1, math.ceil(mean_rows * FILES_PER_CHUNK))


def identity(source: Source) -> dict[str, Any]:
    """Return what of a many-file input a checkpoint must match: each file, its rows and stamp."""
    if not source.members:
        return {}
    listing = [[m.path, m.n_rows, m.file_id[2], m.file_id[3]] for m in source.members]
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return {"input_files": {"count": len(listing), "sha256": digest}}


def write_file_table(h5: Any, source: Source) -> None:
    """Record the files of a many-file input in ``/input_files``: path, rows, size, mtime."""
    if not source.members:
        return
    import h5py

    group = h5.create_group("input_files")
    n = len(source.members)
    group.attrs["pattern"] = source.spec
    group.attrs["description"] = "the input files, in the order their rows were concatenated"
    scale = group.create_dataset("file", data=np.arange(n, dtype=np.int64))
    scale.make_scale("file")
    columns = {
        "path": np.array([m.path for m in source.members], dtype=h5py.string_dtype()),
        "n_rows": np.array([m.n_rows for m in source.members], np.int64),
        "size": np.array([m.file_id[2] for m in source.members], np.int64),
        "mtime_ns": np.array([m.file_id[3] for m in source.members], np.int64),
    }
    for name, values in columns.items():
        column = group.create_dataset(name, data=values)
        column.dims[0].attach_scale(scale)
    group["size"].attrs["units"] = "bytes"
    group["mtime_ns"].attrs["long_name"] = "modification time, ns since 1970-01-01 UTC"


class FileSeries:
    """Rows of one dataset across many files, read with ``read_direct`` like an h5py Dataset.

    Opens one file at a time (the next chunk usually starts in the file the last one ended in),
    through h5py's low-level API: opening a small file that way costs half as much. A file that
    no longer has the rows it had at inspection is an error naming it.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.starts = [0]
        for member in source.members:
            self.starts.append(self.starts[-1] + member.n_rows)
        self._index: int | None = None
        self._file: Any = None
        self._datasets: dict[str, Any] = {}
        if source.plugins:
            from hpcapp.io.storage import import_hdf5plugin

            import_hdf5plugin()

    def __enter__(self) -> FileSeries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the open file, if any."""
        for dataset in self._datasets.values():
            dataset.close()
        if self._file is not None:
            self._file.close()
        self._index, self._file, self._datasets = None, None, {}

    def read_direct(self, dest: np.ndarray, selection: slice) -> None:
        """Read rows ``selection.start:selection.stop`` of the input dataset into ``dest``."""
        assert self.source.dataset is not None  # many files name their dataset
        self.read_rows(self.source.dataset, dest, selection.start, selection.stop)

    def spans(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """Yield (file index, first row, end row) of the files rows ``[start, stop)`` span."""
        index = bisect.bisect_right(self.starts, start) - 1
        while index < len(self.source.members) and self.starts[index] < stop:
            first, end = max(start, self.starts[index]), min(stop, self.starts[index + 1])
            if end > first:
                yield index, first, end
            index += 1

    def time_encoding(self, index: int, name: str) -> Any:
        """Return how file ``index`` encodes the times in ``name`` (a TimeEncoding), or None."""
        return dict(getattr(self.source.members[index], "times", ())).get(name)

    def read_rows(self, name: str, dest: np.ndarray, start: int, stop: int) -> None:
        """Read rows ``[start, stop)`` of dataset ``name`` (one value per record) into ``dest``."""
        import h5py

        index = bisect.bisect_right(self.starts, start) - 1
        position = start
        while position < stop:
            first, end = self.starts[index], self.starts[index + 1]
            if end > position:
                n = min(stop, end) - position
                dataset = self._dataset(index, name)
                target = dest[position - start : position - start + n]
                try:
                    space = dataset.get_space()
                    space.select_hyperslab(
                        (position - first, *[0] * (target.ndim - 1)), target.shape
                    )
                    dataset.read(h5py.h5s.create_simple(target.shape), space, target)
                except Exception as exc:
                    path = self.source.members[index].path
                    raise OSError(f"{path}: {_why(h5py.Dataset(dataset), exc)}") from exc
                position += n
            index += 1

    def _dataset(self, index: int, name: str) -> Any:
        import h5py

        member = self.source.members[index]
        if self._index != index:
            self.close()
            self._file, self._index = _open_file(member), index
        if name not in self._datasets:
            dataset = h5py.h5d.open(self._file, name.encode())
            shape = dataset.shape
            if shape[0] < member.n_rows:
                raise OSError(
                    f"{member.path}:{name} now has shape {shape}, not ({member.n_rows}, ...) as "
                    "when the job started: was the file replaced?"
                )
            if name == self.source.dataset and tuple(shape[1:]) != self.source.row_shape:
                raise OSError(f"{member.path}:{name} now has shape {shape}: was it replaced?")
            self._datasets[name] = dataset
        return self._datasets[name]


def _open_file(member: Member) -> Any:
    """Open one file read-only without locking (as the ranks read), SWMR if it was written so."""
    import h5py

    flags = h5py.h5f.ACC_RDONLY | (h5py.h5f.ACC_SWMR_READ if member.swmr else 0)
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if hasattr(access, "set_file_locking"):
        access.set_file_locking(False, True)
    try:
        return h5py.h5f.open(member.path.encode(), flags, access)
    except OSError as exc:
        if "locking flag" not in str(exc):  # open already in this process, with locking
            raise
        access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        return h5py.h5f.open(member.path.encode(), flags, access)


def _why(dataset: Any, exc: Exception) -> str:
    from hpcapp.io.storage import unavailable_filters

    try:
        missing = unavailable_filters(dataset)
    except Exception:  # the file is unreadable: the error says more
        missing = []
    return f"the dataset {missing[0]}" if missing else f"{type(exc).__name__}: {exc}"
