"""The block server answers while rank 0 is busy (run under mpiexec, also over the network path)."""

import time

import numpy as np
import pytest
from mpi4py import MPI

from hpcapp.parallel.schedule import BlockServer, ask_for_block

pytestmark = pytest.mark.timeout(60)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("holds_gil", [False, True], ids=["sleeps", "spins"])
def test_every_rank_gets_distinct_blocks_while_rank_0_is_busy(holds_gil):
    comm = MPI.COMM_WORLD.Dup()
    server = BlockServer(comm, 1 << 40) if comm.rank == 0 else None
    comm.Barrier()
    asks = 50
    mine = np.zeros(asks, np.int64)
    waits = np.zeros(asks)
    if comm.rank == 0:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            if holds_gil:
                sum(range(100))  # a kernel in pure Python: holds the GIL
            else:
                time.sleep(0.01)  # a kernel in C that released the GIL
    else:
        for i in range(asks):
            started = time.monotonic()
            mine[i] = ask_for_block(comm)
            waits[i] = time.monotonic() - started
            time.sleep(0.005)
        comm.Send(np.full(1, -1, np.int64), dest=0, tag=7301)  # leave
    if server is not None:
        server.join()
    blocks = comm.gather(mine, root=0)
    waited = comm.gather(waits, root=0)
    comm.Free()
    if MPI.COMM_WORLD.rank == 0:
        taken = np.concatenate(blocks[1:])
        assert len(np.unique(taken)) == len(taken) == asks * (len(blocks) - 1)
        if not holds_gil:
            # Answered while rank 0 was inside its "kernel", not when it came out.
            assert np.median(np.concatenate(waited[1:])) < 0.05
