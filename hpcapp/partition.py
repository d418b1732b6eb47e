"""Pure functions that cut rows into chunks and chunks into per-rank shares.

Nothing here communicates: any rank can compute any other rank's share. The chunk plan depends
only on the number of rows and ``chunk_rows``, never on the number of ranks, which is what keeps
results identical across rank counts. Arguments are turned into Python ints first: a numpy
int32 from an h5py shape or an MPI buffer would wrap around past 2**31 rows.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
Partial = dict[str, Any]  # key -> numpy array: what a kernel returns for a run of chunks
# A node of the fixed reduction tree (hpcapp.parallel.reduce): (level, index) covers chunks
# [index * 2**level, (index + 1) * 2**level).
Node = tuple[int, int]


def node_chunks(node: Node) -> range:
    """Return the chunk indices a tree node covers."""
    level, index = node
    return range(index << level, (index + 1) << level)


def block(n: int, size: int, rank: int) -> tuple[int, int]:
    """Return ``(count, start)`` of ``rank``'s share of ``n`` items split over ``size`` parts.

    The remainder goes to the first ranks, so counts differ by at most one and sum to ``n``;
    ranks beyond ``n`` get an empty share.
    """
    n, size, rank = operator.index(n), operator.index(size), operator.index(rank)
    if n < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"invalid block({n}, {size}, {rank})")
    base, extra = divmod(n, size)
    count = base + (1 if rank < extra else 0)
    start = rank * base + min(rank, extra)
    return count, start


def count_chunks(n_rows: int, chunk_rows: int) -> int:
    """Return the number of chunks of ``chunk_rows`` rows needed to cover ``n_rows`` rows."""
    n_rows, chunk_rows = operator.index(n_rows), operator.index(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return -(-n_rows // chunk_rows)


def chunk_bounds(chunk_index: int, n_rows: int, chunk_rows: int) -> tuple[int, int]:
    """Return the ``(start, stop)`` rows of chunk ``chunk_index``; the last chunk may be short."""
    chunk_index, n_rows = operator.index(chunk_index), operator.index(n_rows)
    chunk_rows = operator.index(chunk_rows)
    start = chunk_index * chunk_rows
    if not 0 <= start < n_rows:
        raise IndexError(f"chunk {chunk_index} is outside {n_rows} rows")
    return start, min(start + chunk_rows, n_rows)


def rank_chunks(n_chunks: int, size: int, rank: int) -> range:
    """Return the contiguous range of chunk indices that ``rank`` computes (static schedule)."""
    count, start = block(n_chunks, size, rank)
    return range(start, start + count)


def default_chunk_rows(
    row_bytes: int, storage_chunk_rows: int | None = None, target_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Choose rows per chunk so a chunk holds about ``target_bytes``.

    When the dataset is chunked on disk, round to a multiple of its storage chunk so no HDF5
    chunk is decompressed by two readers.
    """
    rows = max(1, operator.index(target_bytes) // max(1, operator.index(row_bytes)))
    if storage_chunk_rows:
        storage_chunk_rows = operator.index(storage_chunk_rows)
        rows = max(storage_chunk_rows, rows // storage_chunk_rows * storage_chunk_rows)
    return rows


# A climatology's chunks (cyclic labels): up to this many cycles of its groups, within this
# many stored bytes.
CYCLES = 4
CYCLIC_CHUNK_BYTES = 128 * 1024 * 1024


def cyclic_chunk_rows(
    chunk_rows: int, groups: int, row_bytes: int, storage_chunk_rows: int | None = None
) -> int:
    """Return rows per chunk for labels cycling through ``groups`` values (month, day of year).

    A chunk's grouped partial holds one partial per group the chunk meets. Chunks of a few
    records each make every record a group of its own, and laying out and merging those
    partials costs more than the reduction itself (a day-of-year climatology of 10 years took
    3-4x longer in 32-row chunks than in 732-row ones). Chunks of whole cycles hold each group
    several times: fewer, fuller partials that merge in place. Never fewer rows than
    ``chunk_rows``; when one cycle does not fit in ``CYCLIC_CHUNK_BYTES``, ``chunk_rows``.
    """
    for cycles in range(CYCLES, 0, -1):
        rows = cycles * groups
        if storage_chunk_rows:
            rows = -(-rows // storage_chunk_rows) * storage_chunk_rows
        if rows * row_bytes <= CYCLIC_CHUNK_BYTES:
            return max(chunk_rows, rows)
    return chunk_rows


Intervals = list[tuple[int, int]]  # sorted, disjoint [start, stop) runs of chunk indices


def subtract(n_chunks: int, done: Intervals) -> Intervals:
    """Return the runs of chunks in ``[0, n_chunks)`` not covered by ``done``."""
    remaining: Intervals = []
    position = 0
    for start, stop in sorted(done):
        if start > position:
            remaining.append((position, start))
        position = max(position, stop)
    if position < n_chunks:
        remaining.append((position, n_chunks))
    return remaining


def share(intervals: Intervals, size: int, rank: int) -> list[range]:
    """Return ``rank``'s contiguous block of the chunks listed in ``intervals``.

    The chunks are taken in order and split like :func:`block`, so each rank's share is a run
    of consecutive listed chunks (a few ranges when it spans a gap).
    """
    intervals = [(operator.index(start), operator.index(stop)) for start, stop in intervals]
    total = sum(stop - start for start, stop in intervals)
    count, first = block(total, size, rank)
    ranges: list[range] = []
    offset = 0
    for start, stop in intervals:
        length = stop - start
        lo, hi = max(first - offset, 0), min(first + count - offset, length)
        if lo < hi:
            ranges.append(range(start + lo, start + hi))
        offset += length
    return ranges


class ChunkList:
    """The chunk indices of a few ranges, indexable without listing them all."""

    def __init__(self, ranges: list[range]) -> None:
        self.ranges = ranges

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for chunk_range in self.ranges:
            yield from chunk_range

    def __getitem__(self, position: int) -> int:
        for chunk_range in self.ranges:
            if position < len(chunk_range):
                return chunk_range[position]
            position -= len(chunk_range)
        raise IndexError(position)


def batches(n_slabs: int, per_batch: int) -> list[tuple[int, int]]:
    """Return ``[first, end)`` runs of ``per_batch`` slabs covering ``n_slabs`` (the last short)."""
    n_slabs, per_batch = operator.index(n_slabs), operator.index(per_batch)
    if per_batch < 1:
        raise ValueError(f"per_batch must be >= 1, got {per_batch}")
    return [(a, min(a + per_batch, n_slabs)) for a in range(0, n_slabs, per_batch)]


def tiles(n_cells: int, size: int) -> list[tuple[int, int]]:
    """Return each rank's ``(count, start)`` of ``n_cells`` cells: a block of cells per rank."""
    return [block(n_cells, size, rank) for rank in range(operator.index(size))]
