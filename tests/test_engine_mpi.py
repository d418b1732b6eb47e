"""The engine on COMM_WORLD and on sub-communicators (run under mpiexec -n 1, 2, 3, 4)."""

import time

import h5py
import numpy as np
import pytest
from helpers import sample_data
from mpi4py import MPI

from hpcapp.io.sources.checks import inspect_input
from hpcapp.jobs.generate import GenerateConfig, run_generate
from hpcapp.kernels.registry import load_kernel
from hpcapp.parallel.engine import TIMING_COLUMNS, run_engine

pytestmark = pytest.mark.timeout(120)


def make_input(comm, directory, data, name="x"):
    path = directory / f"{name}.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as h5:
            h5.create_dataset(name, data=data)
    comm.Barrier()
    return inspect_input(f"{path}:/{name}")


def run_stats(comm, source, chunk_rows, distribute="read"):
    kernel = load_kernel("stats")
    params = kernel.check_params({"bins": 10, "range": [0.0, 1.0]})
    return run_engine(comm, kernel, params, source, chunk_rows, distribute)


def as_bytes(results):
    return {key: value.tobytes() for key, value in results.items()}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("dtype,cols", [("float64", None), ("float32", 3), ("int32", 2)])
def test_world_matches_numpy_and_a_single_rank(shared_dir, dtype, cols):
    comm = MPI.COMM_WORLD
    data = sample_data(2003, cols, dtype, nan=0.02 if dtype != "int32" else 0.0)
    source = make_input(comm, shared_dir, data)
    world = run_stats(comm, source, chunk_rows=37)
    alone = run_stats(MPI.COMM_SELF, source, chunk_rows=37)
    if comm.rank == 0:
        columns = data.reshape(len(data), -1).astype(np.float64)
        np.testing.assert_allclose(
            np.atleast_1d(world.results["mean"]), np.nanmean(columns, axis=0), rtol=1e-6
        )
        np.testing.assert_array_equal(
            np.atleast_1d(world.results["count"]), (~np.isnan(columns)).sum(axis=0)
        )
        assert as_bytes(world.results) == as_bytes(alone.results)
        assert world.timing.shape == (comm.size, len(TIMING_COLUMNS))
        assert world.timing[:, 4].sum() == len(data)
    else:
        assert world.results is None and world.timing is None


@pytest.mark.mpi(min_size=2)
def test_sub_communicators_each_get_the_same_answer(shared_dir):
    comm = MPI.COMM_WORLD
    data = sample_data(1500, 2, "float64", nan=0.05)
    source = make_input(comm, shared_dir, data)
    sub = comm.Split(color=comm.rank % 2, key=comm.rank)
    try:
        part = run_stats(sub, source, chunk_rows=23)
    finally:
        sub.Free()
    alone = run_stats(MPI.COMM_SELF, source, chunk_rows=23)
    leaders = comm.allreduce(1 if part.results is not None else 0)  # before any check can fail
    if part.results is not None:
        assert as_bytes(part.results) == as_bytes(alone.results)
    assert leaders == 2


@pytest.mark.mpi(min_size=1)
def test_scatter_equals_read_and_more_ranks_than_chunks(shared_dir):
    comm = MPI.COMM_WORLD
    data = sample_data(301, 4, "float64")
    source = make_input(comm, shared_dir, data)
    read = run_stats(comm, source, chunk_rows=19)
    scatter = run_stats(comm, source, chunk_rows=19, distribute="scatter")
    few = run_stats(comm, source, chunk_rows=200)  # 2 chunks: ranks >= 2 stay idle
    alone = run_stats(MPI.COMM_SELF, source, chunk_rows=200)
    if comm.rank == 0:
        assert as_bytes(read.results) == as_bytes(scatter.results)
        assert as_bytes(few.results) == as_bytes(alone.results)
        assert few.n_chunks == 2


@pytest.mark.mpi(min_size=1)
def test_generate_is_independent_of_rank_count(shared_dir):
    comm = MPI.COMM_WORLD
    config = dict(rows=70_000, cols=3, dtype="float32", dist="normal", seed=9, nan_fraction=0.1)
    run_generate(comm, GenerateConfig(target=f"{shared_dir}/world.h5:/g", **config))
    if comm.rank == 0:
        run_generate(MPI.COMM_SELF, GenerateConfig(target=f"{shared_dir}/self.h5:/g", **config))
        with h5py.File(shared_dir / "world.h5") as a, h5py.File(shared_dir / "self.h5") as b:
            assert a["g"].shape == (70_000, 3) and a["g"].dtype == np.float32
            assert a["g"][()].tobytes() == b["g"][()].tobytes()
            assert 0.05 < np.isnan(a["g"][()]).mean() < 0.15
    # No collective after a check on rank 0 alone: a failing rank 0 must not leave the others
    # waiting in it (shared_dir's teardown waits for every rank).


@pytest.mark.mpi(min_size=1)
def test_montecarlo_is_independent_of_rank_count():
    comm = MPI.COMM_WORLD
    from hpcapp.io.sources.generated import generated

    kernel = load_kernel("montecarlo")
    params = kernel.check_params({"samples": 300_001, "seed": 3})
    world = run_engine(comm, kernel, params, generated(300_001, seed=3), 10_000)
    alone = run_engine(MPI.COMM_SELF, kernel, params, generated(300_001, seed=3), 10_000)
    if comm.rank == 0:
        assert as_bytes(world.results) == as_bytes(alone.results)
        assert abs(world.results["estimate"] - np.pi) < 5 * world.results["stderr"]


@pytest.mark.mpi(min_size=1)
def test_start_up_counts_from_the_process_start_the_entry_point_recorded():
    from hpcapp.io.sources.generated import generated

    comm = MPI.COMM_WORLD
    kernel = load_kernel("montecarlo")
    params = kernel.check_params({"samples": 1000, "seed": 3})
    an_hour_ago = time.time() - 3600
    told = run_engine(comm, kernel, params, generated(1000), 100, process_started=an_hour_ago)
    untold = run_engine(comm, kernel, params, generated(1000), 100)  # from the warm-up
    if comm.rank == 0:
        startup = TIMING_COLUMNS.index("startup")
        assert (told.timing[:, startup] >= 3600).all()
        assert (untold.timing[:, startup] < 3600).all()
        assert as_bytes(told.results) == as_bytes(untold.results)
