"""Agreement between ranks: shared verdicts, shared errors, and small job-wide facts.

Every helper here is collective: all ranks of ``comm`` must call it, in the same order. An error
found on any rank is raised on every rank (marked ``collective``), so all ranks leave through
the same path with the same exit code instead of some of them waiting forever.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import numpy as np

from hpcapp.errors import HpcappError

if TYPE_CHECKING:
    from mpi4py import MPI

T = TypeVar("T")

# A blocking MPI wait spins a core (MPICH, Open MPI): on a node shared with other ranks (or other
# jobs) that takes the CPU from rank 0 combining or writing. Waits that may last are polled
# instead, sleeping between polls, longer and longer up to a couple of milliseconds.
FIRST_PAUSE, LONGEST_PAUSE = 2e-5, 2e-3


def _as_error(exc: BaseException) -> HpcappError:
    """Wrap an unexpected exception so it can be shared, keeping its traceback as text."""
    if isinstance(exc, HpcappError):
        return exc
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return HpcappError(f"{type(exc).__name__}: {exc}\n{text}")


def raise_shared(error: HpcappError) -> NoReturn:
    """Raise an error that every rank raises at this same point (marked ``collective``)."""
    error.collective = True  # type: ignore[attr-defined]
    raise error


def quiet_barrier(comm: MPI.Comm) -> None:
    """Wait until every rank of ``comm`` gets here, sleeping instead of spinning a core."""
    if comm.Get_size() > 1:
        _poll(comm.Ibarrier().Test)


def quiet_probe(comm: MPI.Comm, source: int, tag: int) -> None:
    """Wait until a message from ``source`` with ``tag`` arrives, sleeping between polls."""
    _poll(lambda: comm.Iprobe(source=source, tag=tag))


def _poll(done: Callable[[], bool]) -> None:
    pause = FIRST_PAUSE
    while not done():
        time.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE)


def on_root(comm: MPI.Comm, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only and give every rank its value, or raise its error on all."""
    outcome: tuple[bool, Any] = (True, None)
    if comm.Get_rank() == 0:
        try:
            outcome = (True, action())
        except Exception as exc:
            outcome = (False, _as_error(exc))
    quiet_barrier(comm)  # the others wait while rank 0 works (writes the output...)
    ok, value = comm.bcast(outcome, root=0)
    if not ok:
        raise_shared(value)
    return value


def on_all(comm: MPI.Comm, action: Callable[[], T]) -> T:
    """Run ``action`` on every rank; if any rank fails, raise the lowest failing rank's error."""
    error: HpcappError | None = None
    value: Any = None
    try:
        value = action()
    except Exception as exc:
        error = _as_error(exc)
    from mpi4py import MPI

    size = comm.Get_size()
    first_failed = comm.allreduce(comm.Get_rank() if error is not None else size, op=MPI.MIN)
    if first_failed < size:
        raise_shared(comm.bcast(error, root=first_failed))
    return value


@contextlib.contextmanager
def duplicate(comm: MPI.Comm) -> Iterator[MPI.Comm]:
    """A private copy of ``comm`` for the block, freed on leaving it (collective both ways).

    Messages on the copy never match messages on ``comm``, whatever their tags and sources: a
    caller's own traffic stays theirs. Every rank leaves the block the same way (hpcapp's
    errors are raised on all ranks alike), so every rank frees the copy.
    """
    private = comm.Dup()
    try:
        yield private
    finally:
        private.Free()


def count_hosts(comm: MPI.Comm) -> tuple[int, int]:
    """Return the number of distinct hosts the ranks run on, and the most ranks on one host."""
    from mpi4py import MPI

    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        leader = 1 if node_comm.Get_rank() == 0 else 0
        local = node_comm.Get_size()
    finally:
        node_comm.Free()
    counts = np.array([leader, local], np.int64)
    hosts = np.empty(1, np.int64)
    most = np.empty(1, np.int64)
    comm.Allreduce(counts[:1], hosts, op=MPI.SUM)
    comm.Allreduce(counts[1:], most, op=MPI.MAX)
    return int(hosts[0]), int(most[0])


def gather_table(comm: MPI.Comm, local_row: np.ndarray) -> np.ndarray | None:
    """Gather one float64 row per rank into a (size, n) table on rank 0 (buffers, no pickle)."""
    row = np.ascontiguousarray(local_row, dtype=np.float64)
    table = np.empty((comm.Get_size(), row.size), np.float64) if comm.Get_rank() == 0 else None
    quiet_barrier(comm)  # the others wait while rank 0 finishes the results
    comm.Gather(row, table, root=0)
    return table
