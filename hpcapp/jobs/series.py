"""Jobs of whole-series kernels (declared ``series=True``): what they refuse, their memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hpcapp.errors import UsageError
from hpcapp.io.memory import BASE_BYTES, parse_size
from hpcapp.io.sources.base import Source
from hpcapp.jobs.config import JobConfig
from hpcapp.kernels.api import Kernel
from hpcapp.parallel.engine import EngineResult
from hpcapp.parallel.select import run_whole
from hpcapp.parallel.transpose import DEFAULT_BUDGET, SeriesResult, run_series, size_text

if TYPE_CHECKING:
    from mpi4py import MPI


def refuse_series(config: JobConfig) -> None:
    """Refuse the options a series job does not take, in one line (before anything is done).

    ``--resume`` is taken (``hpcapp slurm`` scripts add it): a finished output is kept as it
    is, anything else starts from scratch, as there is no checkpoint to continue from.
    """
    refused = (
        ("--checkpoint", config.checkpoint),
        ("--group-by", config.group_by),
        ("--group-every", config.group_every),
        ("--distribute scatter", config.distribute == "scatter"),
        ("--schedule dynamic", config.schedule == "dynamic"),
    )
    for flag, given in refused:
        if given:
            raise UsageError(
                f"kernel {config.kernel!r} takes whole series (a transpose of the input): "
                f"{flag} does not apply to it; such a job keeps no checkpoint and restarts "
                "from scratch"
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


def series_engine(config: JobConfig) -> Callable[..., EngineResult]:
    """Return the engine of a series job, called as :func:`run_engine` is.

    What only record chunks have (checkpoint, per-row sink, schedule, progress) does not apply:
    :func:`refuse_series` refused the options that would ask for it.
    """
    budget = series_budget(config)

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
        return run_series(comm, kernel, params, source, chunk_rows, budget, interrupts)

    return run


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
