"""A stop notice: one rank tells all others to stop taking chunks, without a collective.

Each rank posts one receive for the notice when the job starts and tests it between chunks. A
rank whose kernel failed sends the notice to every other rank, so the whole job winds down
within about one chunk's time instead of computing on for hours, and all ranks still meet in
the reduction, where the error travels to rank 0. Nobody ever waits for a notice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpcapp.parallel.tags import Tag

if TYPE_CHECKING:
    from mpi4py import MPI


class StopNotice:
    """Per-job notice that some rank asked the others to stop."""

    def __init__(self, comm: MPI.Comm) -> None:
        # A private communicator: the notice can never match another message.
        self._comm = comm.Dup()
        self._flag = np.zeros(1, np.int64)
        self._stopped = False
        self._sent = False

    def requested(self) -> bool:
        """Return True once any rank (this one included) has asked to stop."""
        from mpi4py import MPI

        # A probe, not a posted Irecv(ANY_SOURCE): over MPICH's network path (3+ ranks) such a
        # receive was seen to miss its message for good. The notice is received in close().
        if not self._stopped and self._comm.Iprobe(source=MPI.ANY_SOURCE, tag=Tag.STOP):
            self._stopped = True
        return self._stopped

    def notify_others(self) -> None:
        """Ask every other rank to stop after its current chunk (at most once per rank)."""
        if self._sent:
            return
        self._sent = self._stopped = True
        rank = self._comm.Get_rank()
        message = np.array([rank], np.int64)
        requests = [
            self._comm.Isend(message, dest=other, tag=Tag.STOP)
            for other in range(self._comm.Get_size())
            if other != rank
        ]
        for request in requests:
            # Notices are tiny (eager) messages: this completes without the receivers' help.
            request.Wait()

    def close(self) -> None:
        """Collective: receive every notice that was sent, then free the communicator.

        Call it on every rank once the chunk loop is over, whatever the outcome: no notice may
        still be in flight when the communicator is freed (else UCX warns at exit that a
        request "was not returned to mpool"). Every rank learns which ranks sent notices and
        receives one from each, by its source.
        """
        senders = self._comm.allgather(self._sent)  # communicate
        rank = self._comm.Get_rank()
        for source, sent in enumerate(senders):
            if sent and source != rank:
                self._comm.Recv(self._flag, source=source, tag=Tag.STOP)
        self._comm.Free()


class Watchdog:
    """Abort the whole job if a failed job has not wound down within ``grace`` seconds.

    After a failure every rank should reach the reduction at its next chunk boundary; a kernel
    stuck in an endless chunk would keep the job (and its allocation) alive forever. The failing
    rank arms this timer; if the collective verdict is not reached in time it prints the
    failure itself and aborts every rank.
    """

    def __init__(self, comm: MPI.Comm, message: str, grace: float) -> None:
        import threading

        self._comm = comm
        self._message = message
        self._timer = threading.Timer(grace, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        import sys
        import time

        sys.stderr.write(f"hpcapp: error: {self._message}\n")
        sys.stderr.write("hpcapp: other ranks did not stop in time; aborting the job\n")
        sys.stderr.flush()
        time.sleep(0.5)  # let the launcher forward the message before it kills everyone
        self._comm.Abort(1)

    def cancel(self) -> None:
        """The job wound down in time: disarm."""
        self._timer.cancel()
