"""Per-row outputs ("map" kernels): every rank writes its own rows, in input order.

A kernel may return, besides its reduced keys, arrays with one row per input row (declared with
``hpcapp.kernel(per_row=(...))``). They go to ``/result/<name>`` of a working HDF5 file that
becomes the output at the end. Their dtype and row shape are known only once a kernel has
produced a chunk, so the ranks agree on them once, in :meth:`RowSink.agree`: every rank joins
exactly once, after its first chunk or, if it has none (no chunks, stopped or failed before
one), when its chunk loop ends. Nobody waits on a rank that will not come, and the first chunk
of the job fixes the layout (a chunk that differs is a :class:`KernelError` naming it).

Uncompressed outputs are written by every rank itself: rank 0 creates the datasets with their
storage allocated (contiguous, as ``hpcapp generate`` does), and each rank ``pwrite``s its rows
at their byte offsets, so HDF5 is never opened for writing by two processes and the output
bandwidth is every rank's, not one process's; each chunk's rows start going to disk as soon as
they are written (:func:`_write_back`). Compressed outputs (and datasets an earlier run left
chunked) go through rank 0, which writes them with h5py as they arrive: others send them
as raw buffers with at most ``IN_FLIGHT`` unacknowledged synchronous sends each, so memory
stays bounded on every rank whatever the output size.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import KernelError, WriteError
from hpcapp.io import space
from hpcapp.parallel.collective import on_root
from hpcapp.parallel.reduce import Partial, pack, unpack
from hpcapp.parallel.tags import Tag

if TYPE_CHECKING:
    from mpi4py import MPI

IN_FLIGHT = 2
_DONE = -1

# How the ranks write, decided once by rank 0: every rank pwrites its rows, or they go through
# rank 0; NONE when no rank produced a chunk, FAILED when the datasets could not be made.
DIRECT, THROUGH_ROOT, NONE, FAILED = "direct", "root", "none", "failed"

Layout = dict[str, tuple[str, tuple[int, ...]]]  # key -> (native dtype string, row shape)


def native(value: np.ndarray) -> np.ndarray:
    """Return ``value`` C-contiguous in native byte order (what the file stores)."""
    dtype = value.dtype
    if dtype.byteorder not in "=|":
        dtype = dtype.newbyteorder("=")
    return np.ascontiguousarray(value, dtype=dtype)


def layout_of(arrays: Partial) -> Layout:
    """Return the dtype and row shape of each per-row array of one chunk."""
    return {
        key: (native(value[:0]).dtype.str, tuple(value.shape[1:])) for key, value in arrays.items()
    }


def gathered_problem(n_rows: int, row_bytes: int, limit: int) -> str | None:
    """Say why per-row outputs of ``n_rows * row_bytes`` cannot be gathered in memory, or None."""
    needed = n_rows * row_bytes
    if needed <= limit:
        return None
    return (
        f"the per-row outputs would take {needed / 2**20:,.1f} MiB in memory, more than the "
        f"{limit / 2**20:,.0f} MiB hpcapp.run returns without an output: give an output"
    )


def check_first_rows(
    path: str | None, limit: int | None, compression: str | None, n_rows: int, rows: Partial
) -> None:
    """Raise WriteError if the per-row outputs (known from a first chunk) cannot fit.

    With ``limit`` they must fit in that many bytes of memory; else on the disk of ``path``
    (compressed: their size is not known).
    """
    row_bytes = sum(value.nbytes // max(len(value), 1) for value in rows.values())
    problem = None
    if limit is not None:
        problem = gathered_problem(n_rows, row_bytes, limit)
    elif path is not None and not compression:
        problem = space.rows_check(os.path.dirname(path), n_rows, rows)
    if problem is not None:
        raise WriteError(problem)


def _describe(entry: tuple[str, tuple[int, ...]]) -> str:
    return f"{np.dtype(entry[0])} rows of shape {entry[1]}"


def _write_back(fd: int, offset: int, length: int) -> None:
    """Start writing rows just written to disk now, and let their pages go once written.

    Linux starts their writeback at once (POSIX_FADV_DONTNEED): the ``fsync`` of :meth:`finish`
    then has little left to wait for, and a rank holding few dirty pages is not slowed down by
    the kernel's limits on them (measured: 4 chunks of 237 MB written in 1-2.6 s instead of 5 s
    on a busy machine, and their fsync 0.01 s instead of 0.5 s). Advice only: ignored where
    there is none.
    """
    if hasattr(os, "posix_fadvise") and length:
        with contextlib.suppress(OSError):  # the rows are written; fsync makes them durable
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class RowWriter:
    """Rank 0, for outputs that go through it: writes rows into the working file's datasets."""

    def __init__(self, path: str) -> None:
        import h5py

        self._file = h5py.File(path, "a")
        self._group = self._file["result"]

    def write(self, start: int, arrays: Partial) -> None:
        """Write the rows of one chunk, which begins at input row ``start``."""
        for key, value in arrays.items():
            self._group[key][start : start + len(value)] = value

    def close(self) -> None:
        """Flush and close the working file (rank 0 reopens it to add the results)."""
        self._file.close()


def create_datasets(
    path: str,
    n_rows: int,
    chunk_rows: int,
    compression: str | None,
    layout: Layout,
    origin: int,
    through_root: bool = False,
) -> tuple[str, dict[str, tuple[int, int]]]:
    """Rank 0: make (or, on resume, find) the datasets; return the mode and byte offsets.

    Uncompressed datasets are contiguous with their space allocated now, so every rank can
    write its rows at ``offset + row * row_bytes``; the offsets map key -> (offset, row_bytes).
    ``origin`` is the chunk whose layout this is, for messages. ``through_root``: rows go
    through rank 0 whatever the datasets (the file is on rank 0's own disk).
    """
    import h5py

    offsets: dict[str, tuple[int, int]] = {}
    direct = compression is None and not through_root
    with h5py.File(path, "a") as h5:
        group = h5.require_group("result")
        for key, (dtype_str, row_shape) in layout.items():
            dtype = np.dtype(dtype_str)
            dataset = group.get(key)
            if dataset is None and compression is None:
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                dataset = group.create_dataset(
                    key, shape=(n_rows, *row_shape), dtype=dtype, dcpl=dcpl
                )
            elif dataset is None:
                dataset = group.create_dataset(
                    key,
                    shape=(n_rows, *row_shape),
                    dtype=dtype,
                    chunks=(min(chunk_rows, n_rows), *row_shape),
                    compression=compression,
                )
            elif dataset.dtype != dtype or dataset.shape != (n_rows, *row_shape):
                raise KernelError(
                    f"per-row output {key!r}: the checkpoint's working file holds "
                    f"{_describe((dataset.dtype.str, dataset.shape[1:]))}, but chunk {origin} "
                    f"gave {_describe((dtype_str, row_shape))}: run with --overwrite to start over"
                )
            row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
            offset = dataset.id.get_offset()
            contiguous = dataset.chunks is None and not dataset.compression
            same_size = dataset.id.get_type().get_size() == dtype.itemsize
            if contiguous and same_size and (offset is not None or row_bytes == 0):
                offsets[key] = (int(offset or 0), row_bytes)
            else:
                direct = False  # chunked by an earlier compressed run, or an unusual type
    return (DIRECT, offsets) if direct else (THROUGH_ROOT, {})


class RowSink:
    """Where a rank puts each chunk's per-row arrays; collective to build and to finish.

    Build it on every rank (rank 0 creates the working file); call :meth:`put` for each chunk
    and :meth:`finish` after the chunk loop on every rank. ``through_root``: every rank sends
    its rows to rank 0, the only one that opens ``path`` (a file on rank 0's own disk).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        path: str,
        n_rows: int,
        chunk_rows: int,
        compression: str | None,
        through_root: bool = False,
    ) -> None:
        def create_file() -> None:
            import h5py

            with h5py.File(path, "a") as h5:  # a resumed job finds its file and datasets
                h5.require_group("result")

        on_root(comm, create_file)  # communicate
        self._comm = comm
        self._is_root = comm.Get_rank() == 0
        self._path = path
        self._n_rows = n_rows
        self._chunk_rows = chunk_rows
        self._compression = compression
        self._through_root = through_root
        self._agreed = False
        self._layout: Layout = {}
        self._origin = -1  # the chunk that fixed the layout
        self._mode = NONE
        self._error = ""
        self._offsets: dict[str, tuple[int, int]] = {}
        self._fd: int | None = None
        self._writer: RowWriter | None = None
        self._pending: deque[tuple[MPI.Request, np.ndarray]] = deque()
        self._done = 0  # rank 0: DONE markers received so far

    @property
    def mode(self) -> str:
        """Return how rows are written (``direct`` or ``root``), once the ranks agreed."""
        return self._mode

    def agree(self, proposal: tuple[int, Layout] | None) -> None:
        """Agree on the datasets and how to write them (collective; once per rank).

        ``proposal`` is (chunk index, layout) of this rank's first chunk, or None when it has
        none. The layout of the lowest chunk wins; rank 0 makes the datasets and tells every
        rank where they are. A failure here never raises: it is raised by :meth:`put`, on the
        ranks that have rows to write.
        """
        self._agreed = True
        proposals = [p for p in self._comm.allgather(proposal) if p is not None]  # communicate
        if not proposals:
            return  # no rank has a chunk: nothing to write
        self._origin, self._layout = min(proposals, key=lambda p: p[0])
        plan: tuple[str, Any] = (NONE, None)
        if self._is_root:
            try:
                plan = create_datasets(
                    self._path,
                    self._n_rows,
                    self._chunk_rows,
                    self._compression,
                    self._layout,
                    self._origin,
                    self._through_root,
                )
            except KernelError as exc:
                plan = (FAILED, str(exc))
            except Exception as exc:
                plan = (FAILED, f"creating the per-row outputs in {self._path} failed: {exc}")
        self._mode, detail = self._comm.bcast(plan, root=0)  # communicate
        if self._mode == FAILED:
            self._error = detail
            return
        try:  # a rank that cannot open the file fails at its next put; the protocol goes on
            if self._mode == DIRECT:
                self._offsets = detail
                self._fd = os.open(self._path, os.O_WRONLY)
            elif self._is_root:
                self._writer = RowWriter(self._path)
        except Exception as exc:
            self._error = f"opening the per-row outputs in {self._path} failed: {exc}"

    def put(self, chunk_index: int, arrays: Partial) -> None:
        """Write (or send to rank 0) the rows of one chunk; KernelError if they do not fit."""
        if not self._agreed:
            self.agree((chunk_index, layout_of(arrays)))
        if self._error:
            raise KernelError(self._error)
        arrays = self._checked(chunk_index, arrays)
        start = chunk_index * self._chunk_rows
        if self._mode == DIRECT:
            self._write_direct(start, arrays)
        elif self._writer is not None:
            self._writer.write(start, arrays)
            self.poll()
        else:
            self._send(chunk_index, start, arrays)

    def _checked(self, chunk_index: int, arrays: Partial) -> Partial:
        """Return the arrays in native byte order; raise KernelError if the layout differs."""
        for key, entry in layout_of(arrays).items():
            if entry != self._layout[key]:
                raise KernelError(
                    f"per-row output {key!r} of chunk {chunk_index} has {_describe(entry)}, "
                    f"but chunk {self._origin} gave {_describe(self._layout[key])}: every "
                    "chunk must give the same dtype and row shape"
                )
        return {key: native(value) for key, value in arrays.items()}

    def _write_direct(self, start: int, arrays: Partial) -> None:
        assert self._fd is not None
        for key, value in arrays.items():
            offset, row_bytes = self._offsets[key]
            view = value.reshape(-1).view(np.uint8)
            position = offset + start * row_bytes
            try:
                while view.size:
                    written = os.pwrite(self._fd, view, position)
                    view, position = view[written:], position + written
                _write_back(self._fd, offset + start * row_bytes, value.nbytes)
            except OSError as exc:
                raise KernelError(
                    f"writing per-row output {key!r} (rows {start}-{start + len(value) - 1}) "
                    f"to {self._path} failed: {exc}"
                ) from exc

    def _send(self, chunk_index: int, start: int, arrays: Partial) -> None:
        while len(self._pending) >= IN_FLIGHT:
            request, _ = self._pending.popleft()
            request.Wait()
        meta, payload = pack({(0, chunk_index): arrays})
        self._comm.send((start, meta, payload.size), dest=0, tag=Tag.ROWS_META)
        # Synchronous: completes only once rank 0 receives, which bounds what is in flight.
        request = self._comm.Issend(payload, dest=0, tag=Tag.ROWS_DATA)
        self._pending.append((request, payload))

    def poll(self) -> None:
        """Rank 0, rows through rank 0: write every message already waiting, without blocking."""
        from mpi4py import MPI

        status = MPI.Status()
        while self._comm.Iprobe(source=MPI.ANY_SOURCE, tag=Tag.ROWS_META, status=status):
            self._done += self._receive(status.Get_source())

    def _receive(self, source: int) -> int:
        start, meta, n_bytes = self._comm.recv(source=source, tag=Tag.ROWS_META)
        if start == _DONE:
            return 1
        payload = np.empty(n_bytes, np.uint8)
        self._comm.Recv(payload, source=source, tag=Tag.ROWS_DATA)
        for arrays in unpack(meta, payload).values():
            if self._writer is not None:  # else rank 0 failed to open the file: the job fails
                self._writer.write(start, arrays)
        return 0

    def finish(self) -> None:
        """After the chunk loop (collective): make this rank's rows durable, or hand them over.

        A rank that never put a chunk joins the agreement here. Direct writers fsync their rows
        before anything (a checkpoint part) can claim the chunks; through rank 0, senders flush
        and say DONE, and rank 0 drains until every rank did.
        """
        if not self._agreed:
            self.agree(None)
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._mode != THROUGH_ROOT:
            return
        if not self._is_root:
            for request, _ in self._pending:
                request.Wait()
            self._pending.clear()
            self._comm.send((_DONE, [], 0), dest=0, tag=Tag.ROWS_META)
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self._done < self._comm.Get_size() - 1:
            self._comm.Probe(source=MPI.ANY_SOURCE, tag=Tag.ROWS_META, status=status)
            self._done += self._receive(status.Get_source())
        if self._writer is not None:
            self._writer.close()
