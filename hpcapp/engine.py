"""The SPMD driver: plan chunks, then read -> compute -> reduce on every rank.

Each rank walks its own chunks (a pure function of rank and size), folds their partials into a
:class:`~hpcapp.reduce.FragmentTree`, and the trees meet on rank 0. Steps alternate between
local work and communication, and each line says which one it is.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp import reader
from hpcapp.collective import gather_table
from hpcapp.errors import KernelError
from hpcapp.kernels.api import Kernel, Partial, as_partial
from hpcapp.partition import chunk_bounds, count_chunks, rank_chunks
from hpcapp.reduce import FragmentTree, tree_reduce
from hpcapp.source import Source

TIMING_COLUMNS = ("read", "compute", "reduce", "write", "rows")


@dataclasses.dataclass
class EngineResult:
    """What the engine hands back: results and per-rank timing on rank 0, ``None`` elsewhere."""

    n_chunks: int
    results: Partial | None
    timing: np.ndarray | None  # (size, len(TIMING_COLUMNS)); "write" is filled in by the writer


class ChunkError(KernelError):
    """A kernel raised (or returned garbage) on one chunk; the message names rank and chunk."""


def run_engine(
    comm: Any,
    kernel: Kernel,
    params: Mapping[str, Any],
    source: Source,
    chunk_rows: int,
    distribute: str = "read",
) -> EngineResult:
    """Run ``kernel`` over every chunk of ``source`` on all ranks of ``comm``; collective."""
    rank, size = comm.Get_rank(), comm.Get_size()
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    mine = rank_chunks(n_chunks, size, rank)
    if source.path is None:
        chunks = reader.generate_chunks(source, mine, chunk_rows, int(params.get("seed", 0)))
    elif distribute == "scatter":
        chunks = reader.scatter_chunks(comm, source, n_chunks, chunk_rows)
    else:
        chunks = reader.read_chunks(source, mine, chunk_rows)

    tree = FragmentTree(kernel.merge)
    seconds = {"read": 0.0, "compute": 0.0}
    rows_done = 0
    clock = time.perf_counter()
    for chunk_index, data in chunks:  # read (or receive, or seed)
        now = time.perf_counter()
        seconds["read"] += now - clock
        clock = now
        start, stop = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
        partial = _compute(kernel, params, chunk_index, data, start, stop, rank)  # compute
        tree.add((0, chunk_index), partial)
        rows_done += stop - start
        now = time.perf_counter()
        seconds["compute"] += now - clock
        clock = now

    results = tree_reduce(comm, tree)  # communicate
    reduce_seconds = time.perf_counter() - clock
    if results is not None:
        results = kernel.finish(results, params)
    local_timing = [seconds["read"], seconds["compute"], reduce_seconds, 0.0, rows_done]
    timing = gather_table(comm, np.array(local_timing))  # communicate
    return EngineResult(n_chunks=n_chunks, results=results, timing=timing)


def _compute(
    kernel: Kernel,
    params: Mapping[str, Any],
    chunk_index: int,
    data: Any,
    start: int,
    stop: int,
    rank: int,
) -> Partial:
    """Apply the kernel to one chunk, turning any failure into a message naming the chunk."""
    try:
        partial = as_partial(kernel.apply(data, params, n_rows=stop - start), kernel.name)
    except Exception as exc:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise ChunkError(
            f"kernel {kernel.name!r} failed on rank {rank}, chunk {chunk_index} "
            f"(rows {start}-{stop - 1}):\n{detail.rstrip()}"
        ) from exc
    if isinstance(data, np.ndarray):
        # The read buffer is reused for the next chunk: keep no view of it.
        for key, value in partial.items():
            if np.may_share_memory(value, data):
                partial[key] = value.copy()
    return partial
