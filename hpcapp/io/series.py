"""Rows of one dataset across many files, read file by file (the rows of a FilesSource).

:class:`FileSeries` reads rows of the concatenated dataset (or of a label dataset beside it)
file by file, one file open at a time. See :mod:`hpcapp.io.files` for how the files are found
and checked, and :mod:`hpcapp.io.sources.many` for the source they make.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.io.inflate import DirectReader, Fallback, direct_reader

if TYPE_CHECKING:
    from hpcapp.io.sources.many import FilesSource


@dataclasses.dataclass(frozen=True)
class Member:
    """One file of a many-file input: its rows of the dataset, and what it was when inspected."""

    path: str
    n_rows: int
    file_id: tuple[int, int, int, int]  # (device, inode, size, mtime_ns)
    swmr: bool = False
    # (dataset path, hpcapp.io.coding.times.TimeEncoding) of the record coordinate and the labels:
    # each file encodes its CF times its own way.
    times: tuple[tuple[str, Any], ...] = ()
    span: Any = None  # the dates of its record coordinate (hpcapp.io.coding.times.Span), if any
    # Its own CF coder (hpcapp.io.coding.variables.CFDecoding), where the files' packing or fill
    # values differ (ERA5 packs each file its own way); None where all decode alike.
    decoding: Any = None


class FileSeries:
    """Rows of one dataset across many files, read with ``read_direct`` like an h5py Dataset.

    Opens one file at a time (the next chunk usually starts in the file the last one ended in),
    through h5py's low-level API: opening a small file that way costs half as much. A file that
    no longer has the rows it had at inspection is an error naming it.
    """

    def __init__(self, source: FilesSource) -> None:
        self.source = source
        window = source.window
        # Row r of the source is row r + offset of the files' rows together (--sel, --isel).
        self.starts = [-window.start[0] if window is not None else 0]
        for member in source.members:
            self.starts.append(self.starts[-1] + member.n_rows)
        # Where the selected box starts along each other axis of the input dataset.
        self.box_start = tuple(window.start[1:]) if window is not None else ()
        self._index: int | None = None
        self._file: Any = None
        self._datasets: dict[str, Any] = {}
        self._readers: dict[tuple[int, str], DirectReader | None] = {}  # libdeflate, if it can
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
        self._index, self._file, self._datasets, self._readers = None, None, {}, {}

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows ``[start, stop)`` of the input dataset into ``out``."""
        self.read_rows(self.source.dataset, out, start, stop)

    def spans(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """Yield (file index, first row, end row) of the files rows ``[start, stop)`` span."""
        index = bisect.bisect_right(self.starts, start) - 1
        while index < len(self.source.members) and self.starts[index] < stop:
            first, end = max(start, self.starts[index]), min(stop, self.starts[index + 1])
            if end > first:
                yield index, first, end
            index += 1

    def time_encoding(self, part: int, name: str) -> Any:
        """Return how file ``part`` encodes the times in ``name`` (a TimeEncoding), or None."""
        return dict(self.source.members[part].times).get(name)

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
                corner = self.box_start if name == self.source.dataset else ()
                start_box = (position - first, *(corner or [0] * (target.ndim - 1)))
                try:
                    if self._direct(index, name, start_box, target):
                        position += n
                        index += 1
                        continue
                    space = dataset.get_space()
                    space.select_hyperslab(start_box, target.shape)
                    dataset.read(h5py.h5s.create_simple(target.shape), space, target)
                except Exception as exc:
                    path = self.source.members[index].path
                    raise OSError(f"{path}: {_why(h5py.Dataset(dataset), exc)}") from exc
                position += n
            index += 1

    def _direct(self, index: int, name: str, start: tuple[int, ...], target: np.ndarray) -> bool:
        """Read through libdeflate (hpcapp.io.inflate) if it can; return whether it did."""
        reader = self._readers.get((index, name))
        if reader is None:
            return False
        try:
            reader.read(self._datasets[name], start, target)
        except Fallback:
            return False  # this read goes through HDF5's filters
        return True

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
            if name == self.source.dataset and tuple(shape[1:]) != self.source.stored_shape[1:]:
                raise OSError(f"{member.path}:{name} now has shape {shape}: was it replaced?")
            self._datasets[name] = dataset
            if not member.swmr:
                self._readers[(index, name)] = direct_reader(dataset)
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
