"""The block server answers while rank 0 is busy (run under mpiexec, also over the network path)."""

import time

import numpy as np
import pytest
from mpi4py import MPI

from hpcapp.parallel.schedule import BlockServer, ask_for_block

pytestmark = pytest.mark.timeout(60)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("holds_gil", [False, True], ids=["sleeps", "spins"])
def test_every_rank_gets_distinct_blocks_while_rank_0_is_busy(shared_dir, holds_gil):
    # Rank 0 stays inside its "kernel" until every other rank has had all its answers: they
    # were answered while rank 0 was busy, not when it came out (nothing is timed but a guard).
    comm = MPI.COMM_WORLD.Dup()
    server = BlockServer(comm, 1 << 40) if comm.rank == 0 else None
    comm.Barrier()
    asks = 50
    mine = np.zeros(asks, np.int64)
    answered_while_busy = False
    if comm.rank == 0:
        finished = [shared_dir / f"done-{rank}" for rank in range(1, comm.size)]
        deadline = time.monotonic() + 30  # a hang guard: reaching it fails the test
        while time.monotonic() < deadline:
            if all(path.exists() for path in finished):
                answered_while_busy = True
                break
            if holds_gil:
                sum(range(100))  # a kernel in pure Python: holds the GIL
            else:
                time.sleep(0.01)  # a kernel in C that released the GIL
    else:
        for i in range(asks):
            mine[i] = ask_for_block(comm)
            time.sleep(0.005)
        (shared_dir / f"done-{comm.rank}").touch()
        comm.Send(np.full(1, -1, np.int64), dest=0, tag=7301)  # leave
    if server is not None:
        server.join()
    blocks = comm.gather(mine, root=0)
    comm.Free()
    if MPI.COMM_WORLD.rank == 0:
        taken = np.concatenate(blocks[1:])
        assert len(np.unique(taken)) == len(taken) == asks * (len(blocks) - 1)
        assert answered_while_busy, "the other ranks got their blocks only after rank 0's kernel"
