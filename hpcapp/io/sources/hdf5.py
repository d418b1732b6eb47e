"""One HDF5 (netCDF-4) dataset as a source: its rows, its dimensions, its CF coder.

:func:`hpcapp.io.sources.checks.inspect_input` makes an :class:`Hdf5Source` on rank 0 after
checking the file; every rank then opens it the same way (:func:`open_input`: SWMR if a writer
had it so, hdf5plugin if a filter needs it, no file locking).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.times import TimeEncoding
from hpcapp.io.coding.variables import decoding_of
from hpcapp.io.dims import parse_names, scale_name
from hpcapp.io.inflate import DirectReader, Fallback, direct_reader
from hpcapp.io.sources.base import ReadError, Rows
from hpcapp.io.sources.stored import StoredSource
from hpcapp.io.storage import import_hdf5plugin, unavailable_filters
from hpcapp.partition import default_chunk_rows


@dataclasses.dataclass(frozen=True)
class Hdf5Source(StoredSource):
    """A dataset of one HDF5 file, as inspected on rank 0 (small and picklable)."""

    path: str = ""
    dataset: str = ""
    file_id: tuple[int, int, int, int] | None = None  # (device, inode, size, mtime_ns)
    swmr: bool = False  # a writer had it open in SWMR mode: read in SWMR mode, n_rows rows only
    plugins: bool = False  # a filter comes from hdf5plugin: import it before reading

    @property
    def spec(self) -> str:
        """Return ``FILE:DATASET``."""
        return f"{self.path}:{self.dataset}"

    @property
    def input_paths(self) -> tuple[str, ...]:
        """Return the file the rows are read from."""
        return (self.path,)

    def default_chunk_rows(self) -> int:
        """Return ~a few MB of rows, a whole number of storage chunks where it has them."""
        return default_chunk_rows(self.row_bytes, self.storage_chunk_rows)

    def summary(self) -> str:
        """Return the selection, if any: the spec says the rest."""
        return self.selection_summary()

    def _identity(self) -> dict[str, Any]:
        assert self.file_id is not None  # inspected
        _, _, size, mtime_ns = self.file_id
        found = {
            "input": f"{os.path.abspath(self.path)}:{self.dataset}",
            "input_size": size,
            "input_mtime_ns": mtime_ns,
        }
        return {**found, **super()._identity()}

    def open(self) -> AbstractContextManager[Rows]:
        """Open the file on this rank (a failure is raised by each read)."""
        return Hdf5Rows(self)

    def describe(self, dims_option: str | None, raw: bool, mask_valid_range: bool) -> Hdf5Source:
        """Return this source with its dimension names, coordinates and CF decoding filled in.

        Names come from the dataset's dimension scales, else from ``--dims``, else ``dim_0,
        dim_1, ...``; a coordinate is a scale that is a numeric variable of the dimension's length.
        """
        ndim = 1 + len(self.row_shape)
        given = parse_names(dims_option, ndim)
        with open_input(self) as h5:  # as inspect_input opened it (SWMR, plugins, locking)
            dataset = h5[self.dataset]
            found = [scale_name(dataset.dims[i]) for i in range(ndim)]
            shape = dataset.shape
            coords: list[str | None] = []
            for i, (_, coord) in enumerate(found):
                ok = (
                    coord is not None
                    and h5[coord].shape == (shape[i],)
                    and h5[coord].dtype.kind in "iuf"
                )
                coords.append(coord if ok else None)
            attrs = dict(dataset.attrs)
            where = f"{self.path}:{self.dataset}"
            decoding = decoding_of(
                attrs, dataset.dtype, raw, where=where, mask_valid_range=mask_valid_range
            )
        names = []
        for i, (name, _) in enumerate(found):
            if name and given and given[i] != name:
                raise UsageError(
                    f"{self.spec} names its dimension {i} {name!r}, but --dims says "
                    f"{given[i]!r}: --dims is for inputs that do not name their dimensions"
                )
            names.append(name or (given[i] if given else f"dim_{i}"))
        if len(set(names)) < ndim:
            raise UsageError(f"{self.spec} has repeated dimension names {names}: pass --dims")
        return dataclasses.replace(self, dims=tuple(names), coords=tuple(coords), decoding=decoding)


class Hdf5Rows:
    """The dataset of an :class:`Hdf5Source` open on one rank (a context manager)."""

    def __init__(self, source: Hdf5Source) -> None:
        self.source = source
        self._file: Any = None
        self._dataset: Any = None
        self._direct: DirectReader | None = None  # libdeflate, if it can take the dataset
        try:
            self._file = open_input(source)
        except Exception as exc:  # each read reports it: rank 0 keeps feeding the others
            self._dataset = exc
            return
        self._dataset = _dataset(self._file, source)
        if not source.swmr and not isinstance(self._dataset, Exception):
            self._direct = direct_reader(self._dataset.id)

    def __enter__(self) -> Hdf5Rows:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _opened(self) -> Any:
        if isinstance(self._dataset, Exception):
            raise self._dataset
        return self._dataset

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows ``[start, stop)`` as stored into ``out``."""
        dataset = self._opened()
        window = self.source.window
        # A selection reads only its hyperslab: HDF5 reads the chunks it touches, no others.
        box = window.box(start, stop) if window is not None else (np.s_[start:stop],)
        if self._direct is not None:
            corner = tuple(part.start for part in box) + (0,) * (out.ndim - len(box))
            try:
                self._direct.read(dataset.id, corner, out)
                return
            except Fallback:
                pass  # this read goes through HDF5's filters
        try:
            dataset.read_direct(out, box)
        except Exception as exc:
            # A missing filter plugin, if that is it (another node's setup?).
            try:
                missing = unavailable_filters(dataset)
            except Exception:  # the file itself is unreadable: the original error says more
                missing = []
            if missing:
                raise ReadError(f"on this rank the dataset {missing[0]}") from exc
            raise

    def read_rows(self, name: str, dest: np.ndarray, start: int, stop: int) -> None:
        """Read records ``[start, stop)`` of the variable ``name`` in the same file."""
        self._opened()
        offset = self.source.window.start[0] if self.source.window is not None else 0
        self._file[name].read_direct(
            dest, np.s_[offset + start : offset + stop], np.s_[0 : stop - start]
        )

    def spans(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """Yield the one part (the file) rows ``[start, stop)`` lie in."""
        if stop > start:
            yield 0, start, stop

    def time_encoding(self, part: int, name: str) -> TimeEncoding | None:
        """Return None: one file's times decode as the grouping planned."""
        return None


def _dataset(h5: Any, source: Hdf5Source) -> Any:
    try:
        dataset = h5[source.dataset]
        shape = dataset.shape
    except Exception as exc:
        return exc
    # A SWMR writer may have appended rows since the inspection: the plan reads n_rows only.
    stored = source.stored_shape
    if shape is None or shape[0] < stored[0] or tuple(shape[1:]) != stored[1:]:
        return ValueError(
            f"the dataset now has shape {shape}, not ({stored[0]}, ...) as when the job "
            "started: was the file replaced?"
        )
    return dataset


def preload() -> None:
    """Import h5py while rank 0 inspects the input (else after the plan: ~30 ms of start-up)."""
    import h5py  # noqa: F401


def open_input(source: Hdf5Source) -> Any:
    """Open the (first) file of ``source`` read-only, the way inspection did."""
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
        return h5py.File(source.path, "r", locking=locking(), swmr=source.swmr)


def locking() -> str | bool:
    """Return HDF5's best-effort locking (no error where the file system has no locks).

    HDF5 before 1.10.7 and 1.12.1 does not have it: there, no lock, as the ranks read.
    """
    import h5py

    version = h5py.version.hdf5_version_tuple
    return "best-effort" if version >= (1, 12, 1) or (1, 10, 7) <= version < (1, 11) else False
