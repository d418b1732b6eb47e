"""Dynamic scheduling: chunks handed out on demand, for work whose cost varies by chunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hpcapp.partition import ChunkList


class DynamicShare:
    """Chunks handed out on demand: each rank takes the next aligned block from a counter.

    The counter lives in an MPI window on rank 0 and is advanced with an atomic
    ``MPI_Fetch_and_op`` (``mpi4py.util.sync.Counter``), so no rank acts as a master. Blocks are
    a power of two of chunks, about eight per rank, so most of a block's partials merge
    locally into one tree node.
    """

    def __init__(self, comm: Any, todo: ChunkList, should_stop: Callable[[], bool]) -> None:
        from mpi4py.util.sync import Counter

        self._todo = todo
        self._n_todo = len(todo)
        self._should_stop = should_stop
        self.block = dynamic_block(self._n_todo, comm.Get_size())
        self.exhausted = False
        self._counter = Counter(typecode="q", comm=comm)  # collective

    def __iter__(self) -> Iterator[int]:
        while not self._should_stop():
            first = self._counter.next() * self.block
            if first >= self._n_todo:
                self.exhausted = True
                return
            for position in range(first, min(first + self.block, self._n_todo)):
                yield self._todo[position]

    def free(self) -> None:
        """Release the counter's window (collective)."""
        self._counter.free()


def dynamic_block(n_chunks: int, size: int, blocks_per_rank: int = 8) -> int:
    """Return the chunks per dynamic block: a power of two giving ~``blocks_per_rank`` each."""
    target = max(1, n_chunks // (size * blocks_per_rank))
    return 1 << (target.bit_length() - 1)
