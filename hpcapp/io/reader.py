"""Yield each rank's chunks: read its own hyperslabs, receive them from rank 0, or generate them.

Bulk data moves only as raw buffers (h5py ``read_direct`` into a reused array, or ``Send`` /
``Recv`` of that array); memory per rank is one chunk, whatever the dataset size. Every
iterator checks ``should_stop`` between chunks so a failure elsewhere ends the reading early.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import HpcappError
from hpcapp.io.cf import make_decoder
from hpcapp.io.source import Source, open_input
from hpcapp.io.storage import unavailable_filters
from hpcapp.partition import ChunkList, chunk_bounds

if TYPE_CHECKING:
    from mpi4py import MPI

# (chunk_index, item): the item is the data array, a numpy Generator, a ChunkReadError (the
# read failed: reported, not raised, so rank 0 keeps feeding the others), or None (stopped).
Chunk = tuple[int, Any]
ShouldStop = Callable[[], bool]


class ChunkReadError(HpcappError):
    """Reading one chunk failed; the message names the chunk and its rows."""

    def __init__(self, message: str, chunk_index: int) -> None:
        super().__init__(message)
        self.chunk_index = chunk_index


def _buffer(source: Source, chunk_rows: int) -> np.ndarray:
    rows = min(chunk_rows, source.n_rows)
    return np.empty((rows, *source.row_shape), dtype=np.dtype(source.dtype))


def _read(
    dataset: Any, source: Source, chunk_index: int, chunk_rows: int, buffer: np.ndarray
) -> np.ndarray:
    """Read one chunk into the front of ``buffer`` and return that view."""
    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
    view = buffer[: stop - start]
    try:
        if isinstance(dataset, Exception):
            raise dataset
        dataset.read_direct(view, np.s_[start:stop])
    except Exception as exc:
        raise ChunkReadError(
            f"reading chunk {chunk_index} (rows {start}-{stop - 1}) of {source.spec} failed: "
            f"{_why(dataset, exc)}",
            chunk_index,
        ) from exc
    return view


def _why(dataset: Any, exc: Exception) -> str:
    """Say why a read failed: a missing filter plugin if that is it (another node's setup?)."""
    if not isinstance(dataset, Exception):
        try:
            missing = unavailable_filters(dataset)
        except Exception:  # the file itself is unreadable: the original error says more
            missing = []
        if missing:
            return f"on this rank the dataset {missing[0]}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _input_dataset(source: Source) -> Iterator[Any]:
    """Open the input dataset; yield it, or the exception that each chunk read will report."""
    if source.members:  # many files as one dataset: opened one at a time as rows need them
        from hpcapp.io.series import FileSeries

        with FileSeries(source) as series:
            yield series
        return
    try:
        h5 = open_input(source)
    except Exception as exc:
        yield exc
        return
    with h5:
        yield _dataset(h5, source)


def _dataset(h5: Any, source: Source) -> Any:
    try:
        dataset = h5[source.dataset]
        shape = dataset.shape
    except Exception as exc:
        return exc
    # A SWMR writer may have appended rows since the inspection: the plan reads n_rows only.
    if shape is None or shape[0] < source.n_rows or tuple(shape[1:]) != source.row_shape:
        return ValueError(
            f"the dataset now has shape {shape}, not ({source.n_rows}, ...) as when the job "
            "started: was the file replaced?"
        )
    return dataset


def _read_or_error(
    dataset: Any, source: Source, chunk_index: int, chunk_rows: int, buffer: np.ndarray
) -> np.ndarray | ChunkReadError:
    """Like :func:`_read`, but hand back the error: the engine reports it, rank 0 feeds on."""
    try:
        return _read(dataset, source, chunk_index, chunk_rows, buffer)
    except ChunkReadError as exc:
        return exc


def read_chunks(
    source: Source,
    chunk_indices: Iterable[int],
    chunk_rows: int,
    should_stop: ShouldStop,
    grouping: Any = None,
) -> Iterator[Chunk]:
    """Read each chunk straight from the file into one reused buffer (the default).

    With a ``grouping`` (:class:`hpcapp.io.labels.Grouping`) each item is the data with its
    records' group labels, read by this rank for its own chunks only.
    """
    buffer = _buffer(source, chunk_rows)
    decode = make_decoder(source, chunk_rows)  # CF masking and unpacking, if any
    with _input_dataset(source) as dataset:
        for chunk_index in chunk_indices:
            if should_stop():
                return
            item = decode(_read_or_error(dataset, source, chunk_index, chunk_rows, buffer))
            if grouping is not None and isinstance(item, np.ndarray):
                item = _labelled(dataset, source, grouping, chunk_index, chunk_rows, item)
            yield chunk_index, item


def _labelled(
    dataset: Any, source: Source, grouping: Any, chunk_index: int, chunk_rows: int, data: Any
) -> Any:
    """Return ``Labelled(data, labels)`` for one chunk, or the ChunkReadError of its labels."""
    from hpcapp.io.labels import labels_for_rows
    from hpcapp.kernels.grouped import Labelled

    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
    try:
        return Labelled(data, labels_for_rows(grouping, source, dataset, start, stop))
    except Exception as exc:
        return ChunkReadError(
            f"reading the group labels ({grouping.option}) of chunk {chunk_index} (rows "
            f"{start}-{stop - 1}) of {source.spec} failed: {type(exc).__name__}: {exc}",
            chunk_index,
        )


def scatter_chunks(
    comm: MPI.Comm,
    source: Source,
    shares: list[ChunkList],
    chunk_rows: int,
    should_stop: ShouldStop,
    *,
    tag: int,
) -> Iterator[Chunk]:
    """Rank 0 reads every chunk and sends each to the rank that owns it (``--distribute scatter``).

    Work goes in rounds: in round k rank 0 sends every rank its k-th chunk, then computes its
    own, so rank 0 holds one chunk at a time and the other ranks compute while it reads. Every
    planned message is sent and received even after a stop (then empty), so none is left
    waiting; a receiver that has stopped yields ``None`` for the rest of its chunks. The chunks
    travel with ``tag`` (the runtime's :class:`~hpcapp.parallel.tags.Tag`: I/O sits below it).
    """
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    buffer = _buffer(source, chunk_rows)
    decode = make_decoder(source, chunk_rows)  # each rank decodes its own chunks
    mine = shares[rank]
    if rank != 0:
        status = MPI.Status()
        for chunk_index in mine:
            start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
            view = buffer[: stop - start]
            comm.Recv(view.reshape(-1).view(np.uint8), source=0, tag=tag, status=status)
            empty = status.Get_count(MPI.BYTE) == 0
            yield chunk_index, (None if empty or should_stop() else decode(view))
        return
    nothing = np.empty(0, np.uint8)
    with _input_dataset(source) as dataset:
        for round_index in range(max(len(share) for share in shares)):
            for dest in range(1, size):
                if round_index < len(shares[dest]):
                    message = nothing
                    if not should_stop():
                        chunk_index = shares[dest][round_index]
                        item = _read_or_error(dataset, source, chunk_index, chunk_rows, buffer)
                        if isinstance(item, ChunkReadError):
                            yield chunk_index, item  # reported as this chunk's failure
                        else:
                            message = item.reshape(-1).view(np.uint8)
                    comm.Send(message, dest=dest, tag=tag)
            if round_index < len(mine):
                chunk_index = mine[round_index]
                if should_stop():
                    yield chunk_index, None
                else:
                    item = _read_or_error(dataset, source, chunk_index, chunk_rows, buffer)
                    yield chunk_index, decode(item)


def generate_chunks(
    chunk_indices: Iterable[int], seed: int, should_stop: ShouldStop
) -> Iterator[Chunk]:
    """Give each chunk a generator seeded from (seed, chunk index): independent of rank count."""
    for chunk_index in chunk_indices:
        if should_stop():
            return
        sequence = np.random.SeedSequence(seed, spawn_key=(chunk_index,))
        yield chunk_index, np.random.default_rng(sequence)
