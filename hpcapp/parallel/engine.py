"""The SPMD driver: plan chunks, then read -> compute -> reduce on every rank.

Each rank walks its chunks (a pure function of rank and size, or blocks taken on demand with
``--schedule dynamic``), folds their partials into a
:class:`~hpcapp.parallel.reduce.FragmentTree`, and the trees meet on rank 0. Steps alternate
between local work and communication, and each line says which one it is.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from hpcapp.errors import HpcappError, InterruptError, KernelError, WriteError
from hpcapp.io import space
from hpcapp.io.checkpoint import write_part
from hpcapp.io.reader import ChunkReadError
from hpcapp.io.records import read_extended
from hpcapp.io.sources.base import Source
from hpcapp.kernels.api import InputInfo, Kernel, Partial, as_partial
from hpcapp.kernels.declare import DeclarationError, key_problem
from hpcapp.kernels.grouped import Labelled, consuming_finish
from hpcapp.kernels.grouped_merge import consuming_merge
from hpcapp.kernels.hookspec import Extended
from hpcapp.parallel.collective import gather_table, quiet_barrier, raise_shared
from hpcapp.parallel.interrupt import NoInterrupts
from hpcapp.parallel.progress import Progress
from hpcapp.parallel.reduce import Failure, FragmentTree, Node, tree_reduce
from hpcapp.parallel.rows import RowSink, check_first_rows
from hpcapp.parallel.schedule import DynamicShare
from hpcapp.parallel.stopping import StopNotice, Watchdog
from hpcapp.parallel.tags import Tag
from hpcapp.partition import ChunkList, Intervals, chunk_bounds, count_chunks, share

if TYPE_CHECKING:
    from mpi4py import MPI

# "startup": from the process's start to the first chunk (imports, MPI start, checks, the
# kernel's warm-up); last, so the older columns keep their places.
TIMING_COLUMNS = ("read", "compute", "reduce", "write", "rows", "startup")
# After a failure, how long the other ranks get to finish their current chunk before the
# failing rank aborts the job (a kernel may be stuck in an endless chunk).
ABORT_GRACE_SECONDS = float(os.environ.get("HPCAPP_ABORT_GRACE", "30"))


@dataclasses.dataclass
class EngineResult:
    """What the engine hands back: results and per-rank timing on rank 0, ``None`` elsewhere."""

    n_chunks: int
    results: Partial | None
    timing: np.ndarray | None  # (size, len(TIMING_COLUMNS)); "write" is filled in by the writer


@dataclasses.dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often each rank saves its completed tree nodes."""

    directory: str
    generation: int
    every_seconds: float  # 0: only when interrupted


class ChunkError(KernelError):
    """A kernel raised (or returned garbage) on one chunk; the message names rank and chunk."""


# Per-rank outcome of the chunk loop, reduced with MAX: the worst one wins.
OK, INCOMPLETE, FAILED = 0, 1, 2


def run_engine(
    comm: MPI.Comm,
    kernel: Kernel,
    params: Mapping[str, Any],
    source: Source,
    chunk_rows: int,
    distribute: str = "read",
    *,
    todo: Intervals | None = None,
    grouping: Any = None,
    preloaded: Mapping[Node, Partial] | None = None,
    checkpoint: CheckpointPlan | None = None,
    interrupts: Any = None,
    schedule: str = "static",
    rows_path: str | None = None,
    rows_limit: int | None = None,
    compression: str | None = None,
    progress_every: float | None = None,
    keep: Callable[[Partial], None] | None = None,
    process_started: float | None = None,
    records: Any = None,
) -> EngineResult:
    """Run ``kernel`` over every chunk of ``source`` on all ranks of ``comm``; collective.

    ``todo`` lists the chunk runs still to compute and ``preloaded`` this rank's share of the
    nodes a checkpoint saved (both default to a fresh start). A failure on any rank (a kernel
    raising, a read failing, partials that do not combine) is raised on every rank as the same
    :class:`KernelError`; a stop signal as :class:`InterruptError`, after every rank saved its
    nodes to ``checkpoint``. Both are marked ``collective``. ``schedule="dynamic"`` hands out
    aligned blocks of chunks on demand from rank 0's block server instead of a fixed share; the
    result is the same bits either way. A kernel with per-row outputs has them written by
    every rank to ``rows_path`` (a working HDF5 file; see :mod:`hpcapp.parallel.rows`); with
    ``rows_limit`` (bytes), they go through rank 0 (``rows_path`` is on its own disk) and a job
    whose rows would exceed it fails after its first chunk (hpcapp.run gathers them in memory).
    ``progress_every`` (seconds; None: silent) turns on rank 0's live progress display.
    ``grouping`` (an :class:`hpcapp.io.labels.Grouping`) hands the kernel each chunk with its
    records' group labels (a kernel wrapped by :func:`hpcapp.kernels.grouped.group_kernel`).
    ``keep`` is called on rank 0 with the combined partial before it is finished (to keep it in
    the checkpoint); it must not raise. ``process_started`` (``time.time()``, when the entry point
    recorded it) is where the start-up column counts from; else from the kernel's warm-up.
    ``records`` (an :class:`hpcapp.io.records.RecordNeeds`) reads each chunk with its records'
    dates and the records around it, for a kernel declared ``times``/``halo``.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    interrupts = interrupts or NoInterrupts()
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    todo = [(0, n_chunks)] if todo is None else todo
    notice = StopNotice(comm)

    def should_stop() -> bool:
        return interrupts.requested() or notice.requested()

    if schedule == "dynamic":
        mine: Any = DynamicShare(comm, ChunkList([range(a, b) for a, b in todo]), should_stop)
    else:
        mine = ChunkList(share(todo, size, rank))

    if distribute == "scatter":
        shares = [ChunkList(share(todo, size, r)) for r in range(size)]
        chunks = source.scattered(
            comm, shares, chunk_rows, should_stop, tag=Tag.SCATTER_CHUNK, packed=kernel.packed
        )
    elif records is not None:
        chunks = read_extended(source, mine, chunk_rows, should_stop, records, kernel.packed)  # type: ignore[arg-type]
    else:
        chunks = source.chunks(mine, chunk_rows, should_stop, grouping, packed=kernel.packed)

    sink = None
    if kernel.per_row:
        assert rows_path is not None, "a per-row kernel needs rows_path"
        gathered = rows_limit is not None
        # communicate
        sink = RowSink(comm, rows_path, source.n_rows, chunk_rows, compression, gathered)
        # Saved nodes must never run ahead of the rows written: save only on a stop.
        checkpoint = checkpoint and dataclasses.replace(checkpoint, every_seconds=0.0)

    failure: Failure | None = None
    watchdog: Watchdog | None = None
    startup = _warm_up(kernel, params, source, chunk_rows, process_started)
    if isinstance(startup, str):
        failure = (-1, rank, startup)  # before any chunk: reported first
        notice.notify_others()
        watchdog = Watchdog(comm, startup, ABORT_GRACE_SECONDS)
        startup = 0.0

    progress = None  # started after the warm-up: its rates are the chunks' own
    if progress_every is not None:
        total = sum(stop - start for start, stop in todo)
        progress = Progress(comm, total, source.row_bytes, progress_every)

    tree = FragmentTree(consuming_merge(kernel))  # grouped: merges in place
    for node, partial in (preloaded or {}).items():
        tree.add(node, partial)
    seconds = {"read": 0.0, "compute": 0.0}
    rows_done = chunks_done = 0
    save_failed = False
    clock = last_save = time.perf_counter()
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
            rows = {key: partial.pop(key) for key in kernel.per_row}
            tree.add((0, chunk_index), partial)
            if sink is not None and chunks_done == 0:  # sizes known only now
                check_first_rows(rows_path, rows_limit, compression, source.n_rows, rows)
            if sink is not None:
                sink.put(chunk_index, rows)  # write (the first one agrees on the layout)
            del rows  # written: not kept while the next chunk makes its own
            rows_done += stop_row - start
            chunks_done += 1
            if progress is not None:
                progress.update(chunks_done, rows_done)
        except HpcappError as exc:
            own = isinstance(exc, ChunkError | WriteError)  # they say where they happened
            message = str(exc) if own else f"on rank {rank}: {exc}"
            failure = (chunk_index, rank, message)
            notice.notify_others()
            watchdog = Watchdog(comm, message, ABORT_GRACE_SECONDS)
        if interrupts.requested():
            notice.notify_others()  # ranks that got no signal stop too
        now = time.perf_counter()
        if checkpoint and checkpoint.every_seconds and now - last_save > checkpoint.every_seconds:
            try:
                write_part(checkpoint.directory, checkpoint.generation, rank, tree.nodes)  # save
            except OSError as exc:
                # The previous save stays; the result does not depend on saves: go on.
                if rank == 0 and not save_failed:
                    print(
                        f"hpcapp: warning: could not save progress in {checkpoint.directory} "
                        f"({space.reason(exc)}); the job goes on",
                        file=sys.stderr,
                        flush=True,
                    )
                save_failed = True
            last_save = now = time.perf_counter()
        seconds["compute"] += now - clock
        clock = now

    if sink is not None:
        sink.finish()  # communicate: rows made durable (or drained by rank 0)
    if progress is not None:
        progress.close()  # communicate: rank 0 waits for every rank's last update
    if isinstance(mine, DynamicShare):
        incomplete = not mine.exhausted
        mine.free()  # communicate
    else:
        incomplete = chunks_done < len(mine)
    outcome = FAILED if failure else INCOMPLETE if incomplete else OK
    from mpi4py import MPI

    quiet_barrier(comm)  # the ranks done first wait for the last one
    outcome = comm.allreduce(outcome, op=MPI.MAX)  # communicate: every rank learns the outcome
    notice.close()  # communicate: no notice left in flight, whatever the outcome
    if outcome == FAILED:
        _raise_failure(comm, failure, watchdog, checkpoint)
    if outcome == INCOMPLETE:
        _save_and_stop(comm, tree, checkpoint, interrupts)
    results, failure = tree_reduce(comm, tree)  # communicate
    quiet_barrier(comm)  # the others wait while rank 0 combines
    failure = comm.bcast(failure, root=0)  # communicate: a combine may have failed on the way
    if failure is not None:
        raise_shared(KernelError(failure[2] + what_is_left(checkpoint)))
    reduce_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    if results is not None and keep is not None:
        keep(results)
    keep_seconds = time.perf_counter() - clock  # counted as writing: the writer adds its own
    if results is not None:  # dropped after: a grouped kernel may finish over it
        results = consuming_finish(kernel)(results, params)
    # This rank's row of the timing table, in TIMING_COLUMNS order.
    row = [seconds["read"], seconds["compute"], reduce_seconds, keep_seconds, rows_done, startup]
    timing = gather_table(comm, np.array(row))  # communicate
    return EngineResult(n_chunks=n_chunks, results=results, timing=timing)


def _warm_up(
    kernel: Kernel, params: Mapping[str, Any], source: Source, chunk_rows: int, since: float | None
) -> float | str:
    """Run the kernel's ``prepare`` hook; return the start-up seconds, or the failure message.

    Start-up counts ``since`` the process's start when ``python -m hpcapp`` recorded it
    (imports, MPI start, checks), else from here: the engine used as a library times the hook.
    """
    began = time.time()
    if kernel.prepare is not None and not kernel.generates:
        rows = min(chunk_rows, source.n_rows)
        unpack = source.linear_unpack if kernel.packed else None
        data = InputInfo(
            np.dtype(source.values_dtype), tuple(source.row_shape), chunk_rows=rows, unpack=unpack
        )
        try:
            kernel.prepare(dict(params), data)
        except Exception as exc:
            return f"kernel {kernel.name!r}: its warm-up (prepare) raised {exc!r}"
    now = time.time()
    return now - (since or began)


def _raise_failure(
    comm: MPI.Comm,
    failure: Failure | None,
    watchdog: Watchdog | None,
    checkpoint: CheckpointPlan | None,
) -> NoReturn:
    """Report one failure on every rank: the one at the lowest (chunk, rank), and what is left."""
    from mpi4py import MPI

    size = comm.Get_size()
    key = failure[0] * size + failure[1] if failure else np.iinfo(np.int64).max
    first = comm.allreduce(key, op=MPI.MIN)  # communicate
    message = comm.bcast(failure[2] if failure else None, root=first % size)  # communicate
    if watchdog is not None:
        watchdog.cancel()
    raise_shared(KernelError(message + what_is_left(checkpoint)))


def what_is_left(checkpoint: CheckpointPlan | None) -> str:
    """Say, after a failure, where the work done so far is kept and how to go on from there."""
    if checkpoint is None:
        return ""
    if not checkpoint.every_seconds:
        return (
            f"\nThe checkpoint {checkpoint.directory} holds no work saved by this run (it saves "
            "only when interrupted): after fixing the problem, run again (a plain run replaces "
            "a checkpoint that holds no finished work)."
        )
    return (
        f"\nThe checkpoint {checkpoint.directory} keeps the work saved before the failure "
        f"(saved every {checkpoint.every_seconds:g} s). After fixing the kernel, run again with "
        "--overwrite to start over: --resume refuses a checkpoint made by other code. If the "
        "kernel and the input are unchanged (the failure came from the environment: memory, "
        "disk, a file the kernel reads), run again with --resume to continue from it. A "
        "checkpoint saved before any chunk finished holds no work: a plain run replaces it."
    )


def _save_and_stop(
    comm: MPI.Comm, tree: FragmentTree, checkpoint: CheckpointPlan | None, interrupts: Any
) -> NoReturn:
    """Every rank saves its nodes, then all stop with the same InterruptError error."""
    from hpcapp.parallel.collective import on_all

    cause = interrupts.received or "another rank's signal"
    if checkpoint is None:
        raise_shared(InterruptError(f"interrupted ({cause}); no checkpoint was kept"))
    rank = comm.Get_rank()

    def save() -> None:
        try:
            write_part(checkpoint.directory, checkpoint.generation, rank, tree.nodes)
        except OSError as exc:
            raise InterruptError(
                f"interrupted ({cause}); progress could not be saved in {checkpoint.directory} "
                f"({space.reason(exc)} on rank {rank}); what it kept before is intact: run "
                "the same command with --resume to continue from there"
            ) from None

    on_all(comm, save)
    raise_shared(
        InterruptError(
            f"interrupted ({cause}); progress saved in {checkpoint.directory}. "
            "Run the same command with --resume (on any number of ranks) to continue"
        )
    )


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
    where = f"kernel {kernel.name!r} on rank {rank}, chunk {chunk_index} (rows {start}-{stop - 1})"
    try:
        partial = as_partial(kernel.apply(data, params, n_rows=stop - start), kernel.name)
    except DeclarationError as exc:  # a grouped kernel's declared keys: a sentence says it all
        raise ChunkError(f"{where}: {exc}") from exc
    except Exception as exc:
        detail = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc)))
        raise ChunkError(
            f"kernel {kernel.name!r} failed on rank {rank}, chunk {chunk_index} "
            f"(rows {start}-{stop - 1}):\n{detail.rstrip()}"
        ) from exc
    problem = key_problem(kernel, partial)  # every chunk: a few set look-ups
    if problem:
        raise ChunkError(f"{where}: {problem}")
    for key in kernel.per_row:
        value = partial[key]
        if value.ndim == 0 or len(value) != stop - start:
            raise ChunkError(
                f"{where}: per-row output {key!r} must have {stop - start} rows, got {value.shape}"
            )
    # Grouped: data and labels; extended: data, dates, halo.
    buffer = data.data if isinstance(data, Labelled | Extended) else data
    if isinstance(buffer, np.ndarray):
        # The read buffer is reused for the next chunk: keep no view of it.
        for key, value in partial.items():
            if np.may_share_memory(value, buffer):
                partial[key] = value.copy()
    return partial


def _user_frames(exc: BaseException) -> Any:
    """Skip hpcapp's own frames at the top of a kernel's traceback: users need theirs."""
    from hpcapp.kernels import api  # its frames wrap every kernel call

    frames, own = exc.__traceback__, (__file__, api.__file__)
    while frames is not None and frames.tb_next and frames.tb_frame.f_code.co_filename in own:
        frames = frames.tb_next
    return frames
