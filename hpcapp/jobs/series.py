"""Jobs of whole-series kernels (declared ``series=True``): refusals, memory, checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hpcapp.errors import KernelError, UsageError
from hpcapp.io import checkpoint, series_checkpoint
from hpcapp.io.memory import BASE_BYTES, parse_size
from hpcapp.io.sources.base import Source
from hpcapp.io.writer import check_output
from hpcapp.jobs.config import JobConfig
from hpcapp.jobs.provenance import check_identity, holds_result
from hpcapp.kernels.api import Kernel
from hpcapp.parallel.batches import BatchKeeper
from hpcapp.parallel.collective import raise_shared
from hpcapp.parallel.engine import EngineResult
from hpcapp.parallel.select import run_whole
from hpcapp.parallel.transpose import DEFAULT_BUDGET, SeriesResult, run_series, size_text

if TYPE_CHECKING:
    from mpi4py import MPI


def refuse_series(config: JobConfig) -> None:
    """Refuse the options a series job does not take, in one line (before anything is done).

    ``--resume`` and ``--checkpoint DIR`` are taken: the checkpoint keeps each finished batch
    of cells (:func:`plan_series_checkpoint`); ``--checkpoint-every`` does not apply to it.
    """
    refused = (
        ("--group-by", config.group_by),
        ("--group-every", config.group_every),
        ("--distribute scatter", config.distribute == "scatter"),
        ("--schedule dynamic", config.schedule == "dynamic"),
    )
    for flag, given in refused:
        if given:
            raise UsageError(
                f"kernel {config.kernel!r} takes whole series (a transpose of the input): "
                f"{flag} does not apply to it"
            )


def series_budget(config: JobConfig) -> int:
    """Return the bytes of series a rank may hold: ``--memory-per-rank`` beyond the base."""
    if not config.memory_per_rank:
        return DEFAULT_BUDGET
    left = parse_size(config.memory_per_rank) - BASE_BYTES
    if left <= 0:
        raise UsageError(
            f"--memory-per-rank {config.memory_per_rank} leaves nothing for the series beyond "
            f"the base of {BASE_BYTES / 2**20:,.0f} MiB a rank needs"
        )
    return left


def plan_series_checkpoint(
    config: JobConfig, source: Source, identity: dict[str, Any], directory: str
) -> tuple[bool, tuple[str, ...] | None]:
    """Check a series job's output and checkpoint (rank 0): (finished already, batches kept).

    The batches kept are None when the job starts afresh. As for record chunks: ``--resume``
    keeps a finished output and continues a checkpoint of this same job (else refused, naming
    what differs); without it a checkpoint holding finished batches is refused unless
    ``--overwrite``, and one holding none is replaced.
    """
    assert config.output is not None  # only a job with an output has a checkpoint
    if config.resume and holds_result(config.output, identity):
        checkpoint.remove_finished(directory, identity)
        return True, None
    manifest = checkpoint.read_manifest(directory)
    kept = series_checkpoint.finished_batches(directory) if manifest is not None else []
    if manifest is not None and not config.resume:
        if kept and not config.overwrite:
            raise UsageError(
                f"a checkpoint of an unfinished run is in {directory} ({len(kept)} batch(es) "
                "of cells): add --resume to continue it, or --overwrite to discard it and start "
                "over"
            )
        checkpoint.remove(directory)
        manifest = None
    for input_path in source.input_paths or (None,):
        check_output(config.output, config.overwrite, input_path)
    if manifest is None:
        return False, None
    check_identity(directory, manifest["job"], identity)
    shape = (source.n_rows, *source.row_shape)
    n_slabs = shape[1] if len(shape) > 1 else 1
    series_checkpoint.check_batches(directory, kept, n_slabs, math.prod(shape[2:]))
    return False, tuple(kept)


def series_engine(config: JobConfig, plan: Any = None) -> Callable[..., EngineResult]:
    """Return the engine of a series job, called as :func:`run_engine` is.

    What only record chunks have (per-row sink, schedule, progress) does not apply:
    :func:`refuse_series` refused the options that would ask for it. ``plan`` (a
    :class:`~hpcapp.jobs.plan.Plan`) gives the checkpoint: where finished batches are kept, and
    those kept before (a resume).
    """
    budget = series_budget(config)
    keeper = None
    if plan is not None and plan.checkpoint_dir:
        keeper = BatchKeeper(plan.checkpoint_dir, plan.identity, plan.resume_parts)

    def run(
        comm: MPI.Comm,
        kernel: Kernel,
        params: Mapping[str, Any],
        source: Source,
        chunk_rows: int,
        distribute: str = "read",
        *,
        interrupts: Any = None,
        **chunk_options: Any,
    ) -> EngineResult:
        if len(params.get("over", ())) == 1 + len(source.row_shape) > 1:  # every dimension
            return run_whole(comm, kernel, params, source, chunk_rows, budget)
        resumed = plan is not None and plan.resume_generation is not None
        if keeper is not None and resumed and not config.quiet and comm.Get_rank() == 0:
            print(resume_line(keeper, source), flush=True)
        try:
            return run_series(comm, kernel, params, source, chunk_rows, budget, interrupts, keeper)
        except KernelError as exc:  # every rank: say what the checkpoint keeps, and what next
            if keeper is None or not series_checkpoint.finished_batches(keeper.directory):
                raise
            raise_shared(KernelError(f"{exc}{what_is_kept(keeper.directory)}"))

    return run


def what_is_kept(directory: str) -> str:
    """Say, after a failure, which batches the checkpoint keeps and how to go on from them."""
    kept = [series_checkpoint.run_of(p) for p in series_checkpoint.finished_batches(directory)]
    return (
        f"\nThe checkpoint {directory} keeps the batches finished before the failure (slabs "
        f"{series_checkpoint.slabs_text(kept)}). After fixing the kernel, run again with "
        "--overwrite to start over: --resume refuses a checkpoint made by other code. If the "
        "kernel and the input are unchanged (the failure came from the environment: memory, "
        "disk, a file the kernel reads), run again with --resume to continue from them."
    )


def resume_line(keeper: BatchKeeper, source: Source) -> str:
    """Say what a resumed series job found kept, and what is left to read."""
    done = keeper.done()
    n_slabs = source.row_shape[0] if source.row_shape else 1
    slabs = sum(end - first for first, end in done)
    where = f" ({series_checkpoint.slabs_text(done)})" if done else ""
    along = f"slabs along {source.dims[1]}" if len(source.dims) > 1 else "slabs of cells"
    return (
        f"hpcapp: resuming from {keeper.directory}: {slabs} of {n_slabs} {along} were "
        f"done{where}; only the others are read"
    )


def series_notes(result: EngineResult) -> dict[str, Any]:
    """Return the output attributes saying how a series job read its input (else nothing)."""
    if not isinstance(result, SeriesResult):
        return {}
    return {
        "series_batches": result.batches,
        "series_bytes_read": result.bytes_read,
        "series_input_bytes": result.input_bytes,
    }


def series_line(result: EngineResult) -> str:
    """Return the report's line on a series job's reads ("" for any other job)."""
    notes = series_notes(result)
    if not notes:
        return ""
    read, stored = notes["series_bytes_read"], notes["series_input_bytes"]
    return (
        f"\n  series by transpose: {notes['series_batches']:,} batch(es) of cells, "
        f"{size_text(read)} read of {size_text(stored)} input"
    )
