"""The SPMD driver: plan chunks, then read -> compute -> reduce on every rank.

Each rank walks its own chunks (a pure function of rank and size), folds their partials into a
:class:`~hpcapp.reduce.FragmentTree`, and the trees meet on rank 0. Steps alternate between
local work and communication, and each line says which one it is.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp import reader
from hpcapp.collective import gather_table
from hpcapp.errors import HpcappError, KernelError
from hpcapp.kernels.api import Kernel, Partial, as_partial
from hpcapp.partition import chunk_bounds, count_chunks, rank_chunks
from hpcapp.reader import ChunkReadError
from hpcapp.reduce import Failure, FragmentTree, tree_reduce
from hpcapp.source import Source
from hpcapp.stopping import StopNotice, Watchdog

TIMING_COLUMNS = ("read", "compute", "reduce", "write", "rows")
# After a failure, how long the other ranks get to finish their current chunk before the
# failing rank aborts the job (a kernel may be stuck in an endless chunk).
ABORT_GRACE_SECONDS = float(os.environ.get("HPCAPP_ABORT_GRACE", "30"))


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
    """Run ``kernel`` over every chunk of ``source`` on all ranks of ``comm``; collective.

    A failure on any rank (a kernel raising, a read failing, partials that do not combine) is
    raised on every rank as the same :class:`KernelError` (marked ``collective``), after the
    other ranks stopped at their next chunk boundary.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    mine = rank_chunks(n_chunks, size, rank)
    notice = StopNotice(comm)
    stop = notice.requested
    if source.path is None:
        chunks = reader.generate_chunks(mine, int(params.get("seed", 0)), stop)
    elif distribute == "scatter":
        chunks = reader.scatter_chunks(comm, source, n_chunks, chunk_rows, stop)
    else:
        chunks = reader.read_chunks(source, mine, chunk_rows, stop)

    tree = FragmentTree(kernel.merge)
    failure: Failure | None = None
    watchdog: Watchdog | None = None
    seconds = {"read": 0.0, "compute": 0.0}
    rows_done = 0
    clock = time.perf_counter()
    for chunk_index, data in chunks:  # read (or receive, or seed)
        now = time.perf_counter()
        seconds["read"] += now - clock
        clock = now
        if failure is not None or data is None:
            continue  # stopped: only drain what rank 0 still sends (scatter)
        start, stop_row = chunk_bounds(chunk_index, source.n_rows, chunk_rows)
        try:
            if isinstance(data, ChunkReadError):
                raise data
            partial = _compute(kernel, params, chunk_index, data, start, stop_row, rank)  # compute
            tree.add((0, chunk_index), partial)
            rows_done += stop_row - start
        except HpcappError as exc:
            message = str(exc) if isinstance(exc, ChunkError) else f"on rank {rank}: {exc}"
            failure = (chunk_index, rank, message)
            notice.notify_others()
            watchdog = Watchdog(comm, message, ABORT_GRACE_SECONDS)
        now = time.perf_counter()
        seconds["compute"] += now - clock
        clock = now

    results, failure = tree_reduce(comm, tree, failure)  # communicate
    failure = comm.bcast(failure, root=0)  # communicate: every rank learns the verdict
    if watchdog is not None:
        watchdog.cancel()
    if failure is not None:
        error = KernelError(failure[2])
        error.collective = True  # type: ignore[attr-defined]
        raise error
    notice.close()
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
        detail = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc)))
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


def _user_frames(exc: BaseException) -> Any:
    """Skip hpcapp's own frames at the top of a kernel's traceback: users need theirs."""
    frames = exc.__traceback__
    own = (__file__, kernel_api_file())
    while (
        frames is not None
        and frames.tb_next is not None
        and frames.tb_frame.f_code.co_filename in own
    ):
        frames = frames.tb_next
    return frames


def kernel_api_file() -> str:
    """Return the file of :mod:`hpcapp.kernels.api` (its frames wrap every kernel call)."""
    from hpcapp.kernels import api

    return api.__file__
