"""Waits polled with sleeps keep MPI's meaning (run under mpiexec -n 2 or 3)."""

import time

import numpy as np
import pytest
from mpi4py import MPI

from hpcapp.parallel.collective import on_root, quiet_barrier, quiet_probe

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(60)]


def test_quiet_barrier_waits_for_the_last_rank(shared_dir):
    comm = MPI.COMM_WORLD
    flag = shared_dir / "rank0-was-here"
    if comm.rank == 0:
        time.sleep(0.3)  # the others arrive first and must not leave before this
        flag.write_text("done")
    quiet_barrier(comm)
    assert flag.exists()
    comm.Barrier()


def test_quiet_probe_returns_once_the_message_is_there():
    comm = MPI.COMM_WORLD
    if comm.rank == 1:
        time.sleep(0.2)
        comm.Send(np.arange(4, dtype=np.int64), dest=0, tag=77)
    if comm.rank == 0:
        quiet_probe(comm, 1, 77)
        assert comm.Iprobe(source=1, tag=77)
        got = np.empty(4, np.int64)
        comm.Recv(got, source=1, tag=77)
        assert got.tolist() == [0, 1, 2, 3]
    comm.Barrier()


def test_on_root_gives_every_rank_the_value_after_rank_0_works():
    comm = MPI.COMM_WORLD

    def slow() -> str:
        time.sleep(0.2)
        return "written"

    assert on_root(comm, slow) == "written"


def test_a_waiting_rank_spends_little_cpu():
    """Rank 0 works 1 s; a rank waiting by spinning would spend about that much CPU."""
    comm = MPI.COMM_WORLD
    comm.Barrier()
    began = time.process_time()
    on_root(comm, lambda: time.sleep(1.0))
    spent = time.process_time() - began
    if comm.rank:
        assert spent < 0.1, f"rank {comm.rank} spent {spent:.2f} s of CPU waiting"
