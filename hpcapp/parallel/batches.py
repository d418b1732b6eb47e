"""A series job's batches kept as they finish, and its stop between batches (resume per batch).

:class:`BatchKeeper` is what the transpose (:func:`hpcapp.parallel.transpose.run_series`) is
given when the job has a checkpoint: the batches an earlier run kept (their slabs are not read
again), and where to keep the new ones. Rank 0 writes each batch once it is gathered
(:func:`hpcapp.io.series_checkpoint.write_batch`); a failure to write (a full disk) is
remembered, not raised: the job still has every result in memory and goes on, and a stop says
what was kept.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import InterruptError
from hpcapp.io import series_checkpoint, space
from hpcapp.parallel.collective import on_root, raise_shared
from hpcapp.partition import batches, subtract

if TYPE_CHECKING:
    from mpi4py import MPI

Run = tuple[int, int]


@dataclasses.dataclass
class BatchKeeper:
    """Where a series job keeps its finished batches, and those kept before (every rank)."""

    directory: str
    identity: dict[str, Any]
    kept: tuple[str, ...] = ()  # batch files of an earlier run of this job, in slab order
    failure: str = ""  # rank 0: why a batch could not be kept (the first time)

    def done(self) -> list[Run]:
        """Return the slabs kept before."""
        return [series_checkpoint.run_of(path) for path in self.kept]

    def start(self, comm: MPI.Comm) -> None:
        """Write the manifest (rank 0; an error there is every rank's)."""
        on_root(comm, lambda: series_checkpoint.start(self.directory, self.identity))

    def save(self, run: Run, results: dict[str, np.ndarray]) -> None:
        """Keep one gathered batch (rank 0); never raises."""
        if self.failure:
            return  # the disk was full a moment ago: not every batch is worth a try
        try:
            series_checkpoint.write_batch(self.directory, *run, results)
        except Exception as exc:
            why = space.reason(exc) if isinstance(exc, OSError) else repr(exc)
            self.failure = f"batch {run[0]}-{run[1] - 1} could not be kept ({why})"


def plan_runs(n_slabs: int, per_batch: int, keeper: BatchKeeper | None) -> list[Run]:
    """Return the batches left to do: the slabs no kept batch holds, ``per_batch`` at a time."""
    done = keeper.done() if keeper is not None else []
    left = subtract(n_slabs, done)
    return [(a + f, a + e) for a, b in left for f, e in batches(b - a, per_batch)]


def join(
    pieces: list[tuple[Run, dict[str, np.ndarray]]], keeper: BatchKeeper | None
) -> dict[str, np.ndarray]:
    """Return every batch's results (rank 0), the kept ones read back, in slab order."""
    if keeper is not None and keeper.kept:
        pieces = pieces + series_checkpoint.read_batches(list(keeper.kept))
    ordered = [results for _, results in sorted(pieces, key=lambda piece: piece[0])]
    if not ordered:
        return {}
    return {key: np.concatenate([r[key] for r in ordered], axis=-1) for key in ordered[0]}


def stop_between_batches(
    comm: MPI.Comm, interrupts: Any, keeper: BatchKeeper | None, done: int, total: int
) -> None:
    """Stop every rank between batches when any was signalled, saying what was kept."""
    from mpi4py import MPI

    asked = interrupts is not None and interrupts.requested()
    if not comm.allreduce(asked, op=MPI.LOR):  # communicate
        return
    cause = getattr(interrupts, "received", None) or "another rank's signal"
    if keeper is None:
        raise_shared(
            InterruptError(f"interrupted ({cause}); a series job without an output keeps nothing")
        )
    failure = comm.bcast(keeper.failure, root=0)  # communicate
    earlier = len(keeper.kept)
    kept = f"{done} of {total} batch(es) of this run" + (f" and {earlier} of an earlier one"
                                                         if earlier else "")  # fmt: skip
    if failure:
        kept = f"{kept} were done, but {failure}: what is kept in {keeper.directory} is intact"
    else:
        kept = f"{kept} are kept in {keeper.directory}"
    raise_shared(
        InterruptError(
            f"interrupted ({cause}); {kept}. Run the same command with --resume (on any number "
            "of ranks) to continue from there"
        )
    )
