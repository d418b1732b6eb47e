"""Cell tiles by an all-to-all transpose: ranks read record chunks, then each holds whole series.

The kept cells are cut into batches of slabs along the second dimension (one batch when the
field fits in ``budget`` bytes per rank); a batch's cells are cut into one tile per rank. For
each batch every rank reads its own record chunks of that batch's hyperslab only (the usual
chunk plan, decoded as any kernel sees it), the ranks exchange them with one ``Alltoallv`` of
float64 buffers (of the stored integers for a kernel taking packed tiles: :func:`takes_packed`),
and each rank runs the series kernel on ``(records, its cells)``; rank 0
gathers the results (``Gatherv``). Each cell's result depends on its series alone, so the bits
are the same for any rank count and batch size. Every step that can fail on one rank is
agreed on (:func:`~hpcapp.parallel.collective.on_all`) before the next collective.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import HpcappError, KernelError, UsageError
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.io.sources.selected import cells_slab
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.packed import Packed
from hpcapp.parallel.batches import BatchKeeper, join, plan_runs, stop_between_batches
from hpcapp.parallel.collective import gather_table, on_all
from hpcapp.parallel.engine import EngineResult
from hpcapp.partition import block, chunk_bounds, count_chunks, rank_chunks, tiles

if TYPE_CHECKING:
    from mpi4py import MPI

# Without --memory-per-rank: the bytes of series a rank may hold at once.
DEFAULT_BUDGET = 1 << 30
MAX_COUNT = 2**31 - 1  # MPI counts and displacements are C ints
# A rank holds its read block, the received series, and the kernel's sorted copy and temporaries.
COPIES = 4
# A kernel taking packed tiles (quantile) holds the read block and the received series of stored
# integers, and works on a small block of cells at a time: one more copy covers it.
PACKED_COPIES = 3


@dataclasses.dataclass
class SeriesResult(EngineResult):
    """The engine's result, with what the transpose did: its batches and the bytes it read."""

    batches: int = 1
    bytes_read: int = 0  # the hyperslabs requested from storage, over every rank and batch
    input_bytes: int = 0  # the input as stored (the selected box)


def slab_plan(source: Source, chunk_rows: int, size: int, budget: int, packed: bool = False) -> int:
    """Return how many slabs of the second dimension a batch takes (UsageError if none fits).

    ``packed``: the series travel as stored integers (``exchanged_dtype``), not float64.
    """
    shape = (source.n_rows, *source.row_shape)
    n_slabs = shape[1] if len(shape) > 1 else 1
    slab = math.prod(shape[2:])  # cells per slab
    per_rank = -(-source.n_rows // size)
    chunk = min(chunk_rows, source.n_rows) * (np.dtype(source.dtype).itemsize + 8 + 2)
    per_value = PACKED_COPIES * exchanged_dtype(source, packed).itemsize if packed else COPIES * 8
    slab_bytes = slab * (per_value * per_rank + chunk)
    fits = min(n_slabs, budget // max(slab_bytes, 1), MAX_COUNT // max(source.n_rows * slab, 1))
    if fits < 1:
        raise UsageError(
            f"{source.spec}: the series of one slab of {slab:,} cells need about "
            f"{size_text(slab_bytes)} per rank, more than --memory-per-rank leaves "
            f"({size_text(budget)} beyond the base): give more memory, more ranks, or a "
            "smaller --chunk-rows"
        )
    return int(fits)


def takes_packed(kernel: Kernel, source: Source) -> bool:
    """Return whether the tiles go to ``kernel`` as stored integers with their unpacking.

    A kernel declared ``packed`` (quantile) takes them so when the source's CF coding is a
    linear unpack (:class:`~hpcapp.kernels.packed.LinearUnpack`) of 8- or 16-bit integers: the
    exchange then moves the stored integers (int16: a quarter of float64's bytes), and the
    kernel decodes what it needs.
    """
    unpack = source.linear_unpack
    return kernel.packed and unpack is not None and np.dtype(unpack.stored).itemsize <= 2


def exchanged_dtype(source: Source, packed: bool) -> np.dtype:
    """Return the dtype the series are exchanged in: the stored integers, or float64."""
    return np.dtype(source.linear_unpack.stored) if packed else np.dtype(np.float64)


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:,.1f} KiB"


def run_series(
    comm: MPI.Comm,
    kernel: Kernel,
    params: Mapping[str, Any],
    source: Source,
    chunk_rows: int,
    budget: int = DEFAULT_BUDGET,
    interrupts: Any = None,
    keeper: BatchKeeper | None = None,
) -> SeriesResult:
    """Run a series kernel on every cell's whole series; results on rank 0; collective.

    With ``keeper`` (a job with a checkpoint) the slabs it kept before are not read again, each
    finished batch is kept, and a signal stops the job between batches with what is kept.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    shape = (source.n_rows, *source.row_shape)
    inner = math.prod(shape[2:])  # cells per slab of the second dimension
    packed = takes_packed(kernel, source)
    per_batch = on_all(comm, lambda: slab_plan(source, chunk_rows, size, budget, packed))
    runs = plan_runs(shape[1] if len(shape) > 1 else 1, per_batch, keeper)
    if keeper is not None:
        keeper.start(comm)
    rows = [
        records_of(rank_chunks(n_chunks, size, r), source.n_rows, chunk_rows) for r in range(size)
    ]
    seconds = {"read": 0.0, "compute": 0.0, "reduce": 0.0}
    parts: list[tuple[tuple[int, int], dict[str, np.ndarray]]] = []  # rank 0: cells last
    itemsize = np.dtype(source.dtype).itemsize
    for done, (first, end) in enumerate(runs, 1):
        part = cells_slab(source, first, end)
        direct = reads_tiles(source, size, end - first)
        if direct:  # whole slabs a rank: none is read by two ranks
            layout = [(n * inner, start * inner) for n, start in tiles(end - first, size)]
            clock = time.perf_counter()
            reader = partial(read_tile, source, first, inner, layout[rank], chunk_rows, packed)
            series = on_all(comm, reader)  # read
            seconds["read"] += time.perf_counter() - clock
        else:
            layout = tiles((end - first) * inner, size)
            series = _exchanged(comm, part, layout, rows, chunk_rows, packed, seconds)
        clock = time.perf_counter()
        tile = Packed(series, source.linear_unpack) if packed else series
        found = on_all(comm, partial(_compute, kernel, params, tile, rank))  # compute
        del series, tile
        seconds["compute"] += time.perf_counter() - clock
        clock = time.perf_counter()
        gathered = gather_cells(comm, found, layout)  # communicate
        if gathered is not None:
            parts.append(((first, end), gathered))
            if keeper is not None and done < len(runs):  # the last batch goes to the output
                keeper.save((first, end), gathered)
        seconds["reduce"] += time.perf_counter() - clock
        if done < len(runs):
            stop_between_batches(comm, interrupts, keeper, done, len(runs))  # communicate
    finished = None
    if rank == 0:
        joined = join(parts, keeper)
        finished = {key: v.reshape(*v.shape[:-1], *shape[1:]) for key, v in joined.items()}
    row = [seconds["read"], seconds["compute"], seconds["reduce"], 0.0, rows[rank], 0.0]
    timing = gather_table(comm, np.array(row, np.float64))  # communicate
    stored = source.n_rows * math.prod(source.row_shape) * itemsize
    read = source.n_rows * inner * sum(end - first for first, end in runs) * itemsize
    return SeriesResult(n_chunks, finished, timing, len(runs), read, stored)


def _exchanged(
    comm: MPI.Comm,
    part: Source,
    layout: list[tuple[int, int]],
    rows: list[int],
    chunk_rows: int,
    packed: bool,
    seconds: dict[str, float],
) -> np.ndarray:
    """Read this rank's record chunks of a batch and exchange them, in pieces; return its series."""
    rank, size = comm.Get_rank(), comm.Get_size()
    n_chunks = count_chunks(part.n_rows, chunk_rows)
    dtype = exchanged_dtype(part, packed)
    n_pieces = pieces_of(rows, sum(n for n, _ in layout) * dtype.itemsize, n_chunks, size)
    series = np.empty((part.n_rows, layout[rank][0]), dtype)
    # One rank reads straight into its series: nothing to exchange.
    buffer = series.reshape(-1) if size == 1 else None
    for piece in range(n_pieces):
        clock = time.perf_counter()
        chunks = [piece_chunks(n_chunks, size, r, n_pieces, piece) for r in range(size)]
        sent = [records_of(c, part.n_rows, chunk_rows) for c in chunks]
        reader = partial(read_block, part, chunks[rank], chunk_rows, sent[rank], layout, packed)
        send = on_all(comm, partial(reader, buffer))  # read
        seconds["read"] += time.perf_counter() - clock
        clock = time.perf_counter()
        at = [chunk_bounds(c[0], part.n_rows, chunk_rows)[0] if c else 0 for c in chunks]
        exchange(comm, send, sent, layout, series, at)  # communicate
        buffer = send if n_pieces > 1 else None  # the next piece's (never larger)
        del send
        seconds["reduce"] += time.perf_counter() - clock
    return series


def reads_tiles(source: Source, size: int, n_slabs: int) -> bool:
    """Return whether each rank reads its own slabs of every record instead of the exchange.

    For a contiguous HDF5 dataset a rank's slabs of every record are one strided hyperslab:
    measured on 10 years of 180 x 360 int16 at 2 ranks, reading half the slabs took
    0.05-0.06 s a rank, where reading record chunks and exchanging them took 0.2-0.3 s. Stored
    in chunks of a few records and every cell (as netCDF writes time series), each rank would
    read and inflate every chunk: the exchange is kept. Only with a slab for every rank.
    """
    return (
        size > 1
        and n_slabs >= size
        and isinstance(source, Hdf5Source)
        and bool(source.row_shape)
        and source.storage_chunk_rows is None
    )


def read_tile(
    source: Source,
    first: int,
    inner: int,
    cells: tuple[int, int],
    chunk_rows: int,
    packed: bool,
) -> np.ndarray:
    """Read every record of this rank's ``cells`` (whole slabs) of the batch at slab ``first``."""
    n, start = cells
    series = np.empty((source.n_rows, n), exchanged_dtype(source, packed))
    if n:
        slab = first + start // inner
        sub = cells_slab(source, slab, slab + n // inner)
        everything = range(count_chunks(source.n_rows, chunk_rows))
        read_block(sub, everything, chunk_rows, source.n_rows, [(n, 0)], packed, series.reshape(-1))
    return series


# Bytes a rank sends per exchange at most: its records are read and sent in pieces of about
# this size (the received series are whole), so the send buffer is one piece's, reused.
PIECE_BYTES = 64 << 20


def pieces_of(rows: list[int], row_bytes: int, n_chunks: int, size: int) -> int:
    """Return how many exchanges a batch takes: the same on every rank (from every rank's rows)."""
    if size == 1:
        return 1
    most = max(rows, default=0) * row_bytes
    per_rank = -(-n_chunks // size)  # a piece holds one chunk at least
    return max(1, min(per_rank, -(-most // PIECE_BYTES)))


def piece_chunks(n_chunks: int, size: int, rank: int, n_pieces: int, piece: int) -> range:
    """Return the chunks of ``rank`` that piece ``piece`` of ``n_pieces`` reads (pure)."""
    mine = rank_chunks(n_chunks, size, rank)
    count, start = block(len(mine), n_pieces, piece)
    return mine[start : start + count]


def records_of(chunks: range, n_rows: int, chunk_rows: int) -> int:
    """Return the records of a run of chunks."""
    if not chunks:
        return 0
    first, _ = chunk_bounds(chunks[0], n_rows, chunk_rows)
    _, end = chunk_bounds(chunks[-1], n_rows, chunk_rows)
    return end - first


def read_block(
    part: Source,
    mine: range,
    chunk_rows: int,
    n_rows: int,
    layout: list[tuple[int, int]],
    packed: bool = False,
    buffer: np.ndarray | None = None,
) -> np.ndarray:
    """Read this rank's record chunks of one batch, decoded, as the float64 send buffer.

    The buffer holds one block per destination rank, in rank order: (records, its cells) in C
    order, filled chunk by chunk, so the values are never copied again before they are sent.
    ``packed``: the stored integers instead (see :func:`takes_packed`), not decoded.
    ``buffer``: an earlier piece's, at least as large, written over instead of a new one.
    """
    dtype = exchanged_dtype(part, packed)
    n_values = n_rows * sum(n for n, _ in layout)
    if buffer is not None and buffer.dtype == dtype and buffer.size >= n_values:
        send = buffer[:n_values]
    else:
        send = np.empty(n_values, dtype)
    blocks = np.split(send, np.cumsum([n_rows * n for n, _ in layout])[:-1])
    tiles = [block.reshape(n_rows, n) for block, (n, _) in zip(blocks, layout, strict=True)]
    if not mine:
        return send
    offset, _ = chunk_bounds(mine[0], part.n_rows, chunk_rows)
    for index, data in part.chunks(mine, chunk_rows, lambda: False, packed=packed):
        if isinstance(data, HpcappError):  # a ChunkReadError: it names the chunk
            raise data
        if isinstance(data, Packed):
            data = data.stored
        start, stop = chunk_bounds(index, part.n_rows, chunk_rows)
        values = np.reshape(data, (stop - start, -1))
        for tile, (n, first) in zip(tiles, layout, strict=True):
            tile[start - offset : stop - offset] = values[:, first : first + n]
    return send


def exchange(
    comm: MPI.Comm,
    send: np.ndarray,
    rows: list[int],
    layout: list[tuple[int, int]],
    series: np.ndarray,
    at: list[int],
) -> None:
    """Send each rank its tile of this rank's records; receive this rank's cells into ``series``.

    ``send`` is :func:`read_block`'s buffer, ``rows[r]`` the records rank ``r`` sends now,
    starting at record ``at[r]``, ``layout[r]`` the (count, start) of its cells; ``series`` is
    (every record, this rank's cells), each sender's records landing at their own rows. One
    ``Alltoallv`` of buffers of ``send``'s dtype, no pickling.
    """
    from mpi4py.util.dtlib import from_numpy_dtype

    rank = comm.Get_rank()
    mine = layout[rank][0]
    if comm.Get_size() == 1:  # its only block: read into place already, or copied there
        target = series[at[0] : at[0] + rows[0]]
        if not np.may_share_memory(target, send):
            target[...] = send.reshape(rows[0], mine)
        return
    send_counts = [rows[rank] * n for n, _ in layout]
    receive_counts = [r * mine for r in rows]
    kind = from_numpy_dtype(send.dtype)
    comm.Alltoallv(
        [send, (send_counts, _displacements(send_counts)), kind],
        [series.reshape(-1), (receive_counts, [a * mine for a in at]), kind],
    )


def gather_cells(
    comm: MPI.Comm, found: dict[str, np.ndarray], layout: list[tuple[int, int]]
) -> dict[str, np.ndarray] | None:
    """Gather every rank's per-cell results on rank 0, cells in order; None elsewhere."""
    from mpi4py import MPI

    rank = comm.Get_rank()
    out: dict[str, np.ndarray] = {}
    for key in sorted(found):
        value = np.ascontiguousarray(found[key], np.float64)
        lead = value.shape[:-1]
        counts = [math.prod(lead) * n for n, _ in layout]
        received = np.empty(sum(counts), np.float64) if rank == 0 else None
        target = [received, (counts, _displacements(counts)), MPI.DOUBLE] if rank == 0 else None
        comm.Gatherv(value.ravel(), target, root=0)
        if received is not None:
            pieces = np.split(received, np.cumsum(counts)[:-1])
            out[key] = np.concatenate(
                [p.reshape(*lead, n) for p, (n, _) in zip(pieces, layout, strict=True)], axis=-1
            )
    return out if rank == 0 else None


def _displacements(counts: list[int]) -> list[int]:
    return [0, *np.cumsum(counts)[:-1].tolist()]


def _compute(
    kernel: Kernel, params: Mapping[str, Any], series: np.ndarray | Packed, rank: int
) -> dict[str, np.ndarray]:
    """Run the series kernel on this rank's tile; refuse results that are not one per cell."""
    try:
        found = kernel.apply(series, params)
    except Exception as exc:
        raise KernelError(f"kernel {kernel.name!r} failed on rank {rank}: {exc!r}") from exc
    n_cells = series.shape[1]
    out = {key: np.asarray(value) for key, value in found.items()}
    for key, value in out.items():
        if value.ndim == 0 or value.shape[-1] != n_cells:
            raise KernelError(
                f"kernel {kernel.name!r}: result {key!r} must end with one value per cell "
                f"({n_cells}), got shape {value.shape}"
            )
    return out
