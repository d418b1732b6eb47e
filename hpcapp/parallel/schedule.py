"""Dynamic scheduling: chunks handed out on demand, for work whose cost varies by chunk.

Blocks are numbered by a counter on rank 0. A rank asks for its next block with a message; a
thread on rank 0 answers while rank 0's own kernel runs. (An ``MPI_Fetch_and_op`` counter in
an RMA window, which this replaces, completes only when the target enters MPI: with MPICH a
rank asking for work waited for up to one of rank 0's chunks.) The thread sleeps between polls
of a nonblocking receive (often while requests come in, more slowly when none came for a while),
so it costs rank 0 a few percent of a core rather than the whole core that a blocking receive
spins on. A kernel that holds the GIL (pure Python) delays the answers by up to Python's
switch interval (5 ms); numpy and numba kernels release it. Block bounds are a pure function
of the chunk and rank counts, so the result is the same bits as a static run, and a resume
works as for static.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from hpcapp.parallel.tags import Tag
from hpcapp.partition import ChunkList

if TYPE_CHECKING:
    from mpi4py import MPI

# Seconds between the server's polls: a rank asking for work waits about half of this plus one
# message's latency; each poll costs rank 0 a few microseconds. Fast while requests come in
# (the small blocks at the end of a job), slower after IDLE_SECONDS without one.
POLL_SECONDS = 1e-4
IDLE_POLL_SECONDS = 5e-4
IDLE_SECONDS = 0.02
_LEAVE = -1  # what a rank that stops early sends instead of asking


class DynamicShare:
    """Chunks handed out on demand: each rank takes the next block from rank 0's counter.

    Blocks are large first and shrink towards the end (:func:`dynamic_blocks`), so ranks ask
    rarely yet finish together. Iterating yields this rank's chunks; :meth:`free` (collective)
    ends the server once every rank has been told there is no more work or has left.
    """

    def __init__(self, comm: MPI.Comm, todo: ChunkList, should_stop: Callable[[], bool]) -> None:
        self._todo = todo
        self._should_stop = should_stop
        self.starts = dynamic_blocks(len(todo), comm.Get_size())
        self.n_blocks = len(self.starts) - 1
        self.exhausted = False
        self._comm = comm.Dup()  # collective; its own tag space, whatever else is in flight
        self._rank = comm.Get_rank()
        self._server: BlockServer | None = None
        if self._rank == 0:
            self._server = BlockServer(self._comm, self.n_blocks)
        self._wait_seconds = 0.0  # time this rank spent asking for blocks

    @property
    def wait_seconds(self) -> float:
        """Return the seconds this rank spent waiting for blocks."""
        return self._wait_seconds

    def __iter__(self) -> Iterator[int]:
        while not self._should_stop():
            started = time.perf_counter()
            block = self._next_block()
            self._wait_seconds += time.perf_counter() - started
            if block >= self.n_blocks:
                self.exhausted = True
                return
            for position in range(self.starts[block], self.starts[block + 1]):
                yield self._todo[position]

    def _next_block(self) -> int:
        if self._server is not None:
            return self._server.take()
        return ask_for_block(self._comm)

    def free(self) -> None:
        """End the server and release the communicator (collective)."""
        if self._server is None:
            if not self.exhausted:
                self._comm.Send(np.full(1, _LEAVE, np.int64), dest=0, tag=Tag.BLOCK_ASK)
        else:
            self._server.join()
        self._comm.Free()


def ask_for_block(comm: MPI.Comm) -> int:
    """Ask rank 0's :class:`BlockServer` on ``comm`` for the next block number."""
    answer = np.zeros(1, np.int64)
    comm.Sendrecv(
        np.zeros(1, np.int64), dest=0, sendtag=Tag.BLOCK_ASK, recvbuf=answer, source=0,
        recvtag=Tag.BLOCK_ANSWER,
    )  # fmt: skip
    return int(answer[0])


class BlockServer:
    """Rank 0's counter of blocks, and the thread that answers the other ranks' requests."""

    def __init__(self, comm: MPI.Comm, n_blocks: int) -> None:
        self._comm = comm
        self._n_blocks = n_blocks
        self._next = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0  # the thread's own CPU time, for benchmarks
        if comm.Get_size() > 1:
            self._thread = threading.Thread(target=self._serve, name="hpcapp-blocks", daemon=True)
            self._thread.start()

    def take(self) -> int:
        """Return the next block number (``n_blocks`` or more: no work left)."""
        with self._lock:
            block = self._next
            self._next += 1
        return block

    def _serve(self) -> None:
        """Answer requests until every other rank got 'no more work' or left."""
        from mpi4py import MPI

        try:
            open_ranks = self._comm.Get_size() - 1
            request = np.zeros(1, np.int64)
            status = MPI.Status()
            last_request = time.perf_counter()
            while open_ranks:
                # Iprobe, then Recv from the rank found: a posted Irecv(ANY_SOURCE) polled with
                # Test from this thread was seen to miss requests for good over MPICH's network
                # path (MPIR_CVAR_NOLOCAL=1, 3+ ranks) while the main thread held the GIL.
                while not self._comm.Iprobe(
                    source=MPI.ANY_SOURCE, tag=Tag.BLOCK_ASK, status=status
                ):
                    idle = time.perf_counter() - last_request > IDLE_SECONDS
                    time.sleep(IDLE_POLL_SECONDS if idle else POLL_SECONDS)
                self._comm.Recv(
                    request, source=status.Get_source(), tag=Tag.BLOCK_ASK, status=status
                )
                last_request = time.perf_counter()
                if request[0] == _LEAVE:
                    open_ranks -= 1
                    continue
                block = self.take()
                answer = np.full(1, block, np.int64)
                self._comm.Send(answer, dest=status.Get_source(), tag=Tag.BLOCK_ANSWER)
                if block >= self._n_blocks:
                    open_ranks -= 1
        except BaseException as exc:  # reported by join(), on the main thread
            self.error = exc
        self.cpu_seconds = time.thread_time()

    def join(self) -> None:
        """Wait for the thread to finish; re-raise its error here."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error


def dynamic_blocks(n_chunks: int, size: int) -> list[int]:
    """Return block boundaries ``[0, ..., n_chunks]`` for guided self-scheduling.

    Each block holds an eighth of a rank's fair share of what is left, rounded down to a power
    of two: few requests while much is left, single chunks at the end, so the last rank to
    finish waits at most about one chunk, and a rank that drew one very slow chunk takes few
    others with it. Sizes never grow, so every block starts at a multiple of its
    size: its chunks are an aligned subtree and merge into one tree node.
    """
    starts = [0]
    position = 0
    while position < n_chunks:
        eighth = max(1, (n_chunks - position) // (8 * size))
        position += 1 << (eighth.bit_length() - 1)
        starts.append(min(position, n_chunks))
    return starts
