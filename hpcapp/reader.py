"""Yield each rank's chunks: read its own hyperslabs, receive them from rank 0, or generate them.

Bulk data moves only as raw buffers (h5py ``read_direct`` into a reused array, or ``Send`` /
``Recv`` of that array); memory per rank is one chunk, whatever the dataset size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from hpcapp.partition import chunk_bounds, rank_chunks
from hpcapp.source import Source

_TAG_CHUNK = 7201

Chunk = tuple[int, Any]  # (chunk_index, data array or numpy Generator)


def _buffer(source: Source, chunk_rows: int) -> np.ndarray:
    rows = min(chunk_rows, source.n_rows)
    return np.empty((rows, *source.row_shape), dtype=np.dtype(source.dtype))


def read_chunks(source: Source, chunk_indices: Iterable[int], chunk_rows: int) -> Iterator[Chunk]:
    """Read each chunk straight from the file into one reused buffer (the default)."""
    import h5py

    buffer = _buffer(source, chunk_rows)
    with h5py.File(source.path, "r") as h5:
        dataset = h5[source.dataset]
        for chunk_index in chunk_indices:
            start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
            view = buffer[: stop - start]
            dataset.read_direct(view, np.s_[start:stop])
            yield chunk_index, view


def scatter_chunks(comm: Any, source: Source, n_chunks: int, chunk_rows: int) -> Iterator[Chunk]:
    """Rank 0 reads every chunk and sends each to the rank that owns it (``--distribute scatter``).

    Work goes in rounds: in round k rank 0 sends every rank its k-th chunk, then computes its
    own, so rank 0 holds one chunk at a time and the other ranks compute while it reads.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    buffer = _buffer(source, chunk_rows)
    mine = rank_chunks(n_chunks, size, rank)
    if rank != 0:
        for chunk_index in mine:
            start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
            view = buffer[: stop - start]
            comm.Recv(view.reshape(-1).view(np.uint8), source=0, tag=_TAG_CHUNK)
            yield chunk_index, view
        return
    import h5py

    shares = [rank_chunks(n_chunks, size, r) for r in range(size)]
    with h5py.File(source.path, "r") as h5:
        dataset = h5[source.dataset]
        for round_index in range(max(len(share) for share in shares)):
            for dest in range(1, size):
                if round_index < len(shares[dest]):
                    chunk_index = shares[dest][round_index]
                    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
                    view = buffer[: stop - start]
                    dataset.read_direct(view, np.s_[start:stop])
                    comm.Send(view.reshape(-1).view(np.uint8), dest=dest, tag=_TAG_CHUNK)
            if round_index < len(mine):
                chunk_index = mine[round_index]
                start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
                view = buffer[: stop - start]
                dataset.read_direct(view, np.s_[start:stop])
                yield chunk_index, view


def generate_chunks(
    source: Source, chunk_indices: Iterable[int], chunk_rows: int, seed: int
) -> Iterator[Chunk]:
    """Give each chunk a generator seeded from (seed, chunk index): independent of rank count."""
    for chunk_index in chunk_indices:
        sequence = np.random.SeedSequence(seed, spawn_key=(chunk_index,))
        yield chunk_index, np.random.default_rng(sequence)


def chunk_rows_of(chunk_index: int, source: Source, chunk_rows: int) -> int:
    """Return the number of rows in one chunk."""
    start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
    return stop - start
