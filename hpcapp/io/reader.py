"""Yield each rank's chunks of a stored source: read its own, or receive them from rank 0.

Bulk data moves only as raw buffers (a source's ``Rows.read`` into a reused array, or ``Send``
/ ``Recv`` of that array); memory per rank is one chunk, whatever the dataset size. Every
iterator checks ``should_stop`` between chunks so a failure elsewhere ends the reading early.
The functions take any :class:`~hpcapp.io.sources.stored.StoredSource`: its ``open()`` gives the
rows, its ``decoder`` their values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import HpcappError
from hpcapp.io.group_order import GroupOrder
from hpcapp.io.group_order import runs as group_runs
from hpcapp.io.sources.base import Chunk, ReadError, Rows, Runs, ShouldStop
from hpcapp.kernels.packed import Packed
from hpcapp.partition import ChunkList, chunk_bounds

if TYPE_CHECKING:
    from mpi4py import MPI

    from hpcapp.io.sources.stored import StoredSource


class ChunkReadError(HpcappError):
    """Reading one chunk failed; the message names the chunk and its rows."""

    def __init__(self, message: str, chunk_index: int) -> None:
        super().__init__(message)
        self.chunk_index = chunk_index


def _buffer(source: StoredSource, chunk_rows: int) -> np.ndarray:
    rows = min(chunk_rows, source.n_rows)
    return np.empty((rows, *source.row_shape), dtype=np.dtype(source.dtype))


def _read(
    rows: Rows,
    source: StoredSource,
    chunk_index: int,
    chunk_rows: int,
    buffer: np.ndarray,
    records: Runs | None = None,
) -> np.ndarray:
    """Read one chunk into the front of ``buffer`` and return that view.

    ``records``: the runs of records the chunk holds when they are not its rows (group order).
    """
    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
    view = buffer[: stop - start]
    try:
        at = 0
        for first, end in records or [(start, stop)]:
            rows.read(first, end, view[at : at + end - first])
            at += end - first
    except Exception as exc:
        why = str(exc) if isinstance(exc, ReadError) else f"{type(exc).__name__}: {exc}"
        raise ChunkReadError(
            f"reading chunk {chunk_index} ({_which(start, stop, records)}) of {source.spec} "
            f"failed: {why}",
            chunk_index,
        ) from exc
    return view


def _which(start: int, stop: int, records: Runs | None) -> str:
    """Return which records a chunk holds, for a message."""
    if records is None:
        return f"rows {start}-{stop - 1}"
    shown = ", ".join(f"{a}-{b - 1}" for a, b in records[:4])
    more = f" and {len(records) - 4} more runs" if len(records) > 4 else ""
    return f"rows {start}-{stop - 1} in group order: records {shown}{more}"


def _read_or_error(
    rows: Rows,
    source: StoredSource,
    chunk_index: int,
    chunk_rows: int,
    buffer: np.ndarray,
    records: Runs | None = None,
) -> np.ndarray | ChunkReadError:
    """Like :func:`_read`, but hand back the error: the engine reports it, rank 0 feeds on."""
    try:
        return _read(rows, source, chunk_index, chunk_rows, buffer, records)
    except ChunkReadError as exc:
        return exc


def read_chunks(
    source: StoredSource,
    chunk_indices: Iterable[int],
    chunk_rows: int,
    should_stop: ShouldStop,
    grouping: Any = None,
    packed: bool = False,
) -> Iterator[Chunk]:
    """Read each chunk straight from the file into one reused buffer (the default).

    With a ``grouping`` (:class:`hpcapp.io.labels.Grouping`) each item is the data with its
    records' group labels, read by this rank for its own chunks only; a grouping with an
    ``order`` (a climatology in group order, :mod:`hpcapp.io.group_order`) makes each chunk's
    rows those of that order: its records are read in runs, in record order. ``packed``: the
    kernel decodes linear unpacking itself (see ``StoredSource.decoder``).
    """
    buffer = _buffer(source, chunk_rows)
    decode = source.decoder(chunk_rows, packed)  # CF masking and unpacking, if any
    order: GroupOrder | None = getattr(grouping, "order", None)
    with source.open() as rows:
        for chunk_index in chunk_indices:
            if should_stop():
                return
            start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
            records = order.records(start, stop) if order is not None else None
            runs = group_runs(records) if records is not None else None
            read = _read_or_error(rows, source, chunk_index, chunk_rows, buffer, runs)
            item: Any = decode(read, runs or [(start, stop)])
            if order is not None and records is not None and isinstance(item, np.ndarray | Packed):
                from hpcapp.kernels.grouped import Labelled

                item = Labelled(item, order.labels(records))  # the labels were decoded once
            elif grouping is not None and isinstance(item, np.ndarray | Packed):  # not an error
                item = _labelled(rows, source, grouping, chunk_index, chunk_rows, item)
            yield chunk_index, item


def _labelled(
    rows: Rows, source: StoredSource, grouping: Any, chunk_index: int, chunk_rows: int, data: Any
) -> Any:
    """Return ``Labelled(data, labels)`` for one chunk, or the ChunkReadError of its labels."""
    from hpcapp.kernels.grouped import Labelled

    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
    try:
        return Labelled(data, grouping.labels(rows, start, stop))
    except Exception as exc:
        return ChunkReadError(
            f"reading the group labels ({grouping.option}) of chunk {chunk_index} (rows "
            f"{start}-{stop - 1}) of {source.spec} failed: {type(exc).__name__}: {exc}",
            chunk_index,
        )


def scatter_chunks(
    comm: MPI.Comm,
    source: StoredSource,
    shares: list[ChunkList],
    chunk_rows: int,
    should_stop: ShouldStop,
    *,
    tag: int,
    packed: bool = False,
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
    decode = source.decoder(chunk_rows, packed)  # each rank decodes its own chunks
    mine = shares[rank]
    if rank != 0:
        status = MPI.Status()
        for chunk_index in mine:
            start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
            view = buffer[: stop - start]
            comm.Recv(view.reshape(-1).view(np.uint8), source=0, tag=tag, status=status)
            empty = status.Get_count(MPI.BYTE) == 0
            yield chunk_index, (None if empty or should_stop() else decode(view, [(start, stop)]))
        return
    nothing = np.empty(0, np.uint8)
    with source.open() as rows:
        for round_index in range(max(len(share) for share in shares)):
            for dest in range(1, size):
                if round_index < len(shares[dest]):
                    message = nothing
                    if not should_stop():
                        chunk_index = shares[dest][round_index]
                        item = _read_or_error(rows, source, chunk_index, chunk_rows, buffer)
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
                    item = _read_or_error(rows, source, chunk_index, chunk_rows, buffer)
                    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
                    yield chunk_index, decode(item, [(start, stop)])
