"""Dynamic scheduling: chunks handed out on demand, for work whose cost varies by chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hpcapp.partition import ChunkList


class DynamicShare:
    """Chunks handed out on demand: each rank takes the next block from a shared counter.

    The counter lives in an MPI window on rank 0 and is advanced with an atomic
    ``MPI_Fetch_and_op`` (``mpi4py.util.sync.Counter``), so no rank acts as a master. The
    counter numbers blocks, whose bounds are a pure function of the chunk count and the rank
    count (:func:`dynamic_blocks`): large first, shrinking towards the end, so that ranks take
    few blocks yet finish together.
    """

    def __init__(self, comm: Any, todo: ChunkList, should_stop: Callable[[], bool]) -> None:
        from mpi4py.util.sync import Counter

        self._todo = todo
        self._should_stop = should_stop
        self.starts = dynamic_blocks(len(todo), comm.Get_size())
        self.exhausted = False
        self._counter = Counter(typecode="q", comm=comm)  # collective

    def __iter__(self) -> Iterator[int]:
        while not self._should_stop():
            block = self._counter.next()
            if block + 1 >= len(self.starts):
                self.exhausted = True
                return
            for position in range(self.starts[block], self.starts[block + 1]):
                yield self._todo[position]

    def free(self) -> None:
        """Release the counter's window (collective)."""
        self._counter.free()


def dynamic_blocks(n_chunks: int, size: int) -> list[int]:
    """Return block boundaries ``[0, ..., n_chunks]`` for guided self-scheduling.

    Each block holds half of a rank's fair share of what is left, rounded down to a power of
    two: few grabs of the counter while much is left, single chunks at the end, so the last
    rank to finish waits at most about one chunk. Sizes never grow, so every block starts at a
    multiple of its size: its chunks are an aligned subtree and merge into one tree node.
    """
    starts = [0]
    position = 0
    while position < n_chunks:
        fair_half = max(1, (n_chunks - position) // (2 * size))
        position += 1 << (fair_half.bit_length() - 1)
        starts.append(min(position, n_chunks))
    return starts
