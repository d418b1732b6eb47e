"""hpcapp.run on COMM_WORLD and on sub-communicators (run under mpiexec -n 1, 2, 3, 4)."""

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

import hpcapp
from hpcapp.errors import KernelError, UsageError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def data_file():
    """An input every rank sees (written by rank 0, removed by rank 0)."""
    comm = MPI.COMM_WORLD
    path = comm.bcast(tempfile.mkdtemp(prefix="hpcapp-lib-") if comm.rank == 0 else None)
    data = np.random.default_rng(11).normal(5.0, 2.0, size=(3001, 3))
    if comm.rank == 0:
        with h5py.File(Path(path) / "in.h5", "w") as h5:
            h5["x"] = data
    comm.Barrier()
    yield Path(path) / "in.h5", data
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path)


def column_sums(chunk, scale=1.0):
    """A plain function as a kernel: per-column sums times ``scale``, and a row count."""
    return {"s": chunk.sum(axis=0) * scale, "n": np.int64(len(chunk))}


def fails_on_big_rows(chunk):
    if chunk.max() > 9.0:
        raise ValueError("a value above 9")
    return {"n": np.int64(len(chunk))}


@pytest.mark.mpi(min_size=1)
def test_run_returns_results_on_rank_0_only_and_equal_to_numpy(data_file):
    path, data = data_file
    comm = MPI.COMM_WORLD
    results = hpcapp.run("stats", f"{path}:/x", chunk_rows=97)
    # Every collective first: a check failing on rank 0 alone must not leave the others waiting.
    everywhere = hpcapp.run("stats", f"{path}:/x", chunk_rows=97, root=None)
    alone = hpcapp.run("stats", f"{path}:/x", chunk_rows=97, comm=MPI.COMM_SELF)
    assert {k: v.tobytes() for k, v in everywhere.items()} == {
        k: v.tobytes() for k, v in alone.items()
    }
    if comm.rank == 0:
        np.testing.assert_allclose(results["mean"], data.mean(axis=0), rtol=1e-13)
        np.testing.assert_allclose(results["var"], data.var(axis=0), rtol=1e-11)
        np.testing.assert_array_equal(results["max"], data.max(axis=0))
    else:
        assert results is None


@pytest.mark.mpi(min_size=1)
def test_a_function_kernel_on_a_sub_communicator_and_an_h5py_dataset(data_file):
    path, data = data_file
    comm = MPI.COMM_WORLD
    half = comm.Split(comm.rank % 2, comm.rank)
    with h5py.File(path, "r") as h5:
        got = hpcapp.run(
            column_sums, h5["x"], comm=half, params={"scale": 2.0}, chunk_rows=50, root=None
        )
    half.Free()
    assert int(got["n"]) == len(data)
    np.testing.assert_allclose(got["s"], 2.0 * data.sum(axis=0), rtol=1e-12)


@pytest.mark.mpi(min_size=1)
def test_bad_input_and_failing_kernels_raise_on_every_rank(data_file):
    path, _ = data_file
    with pytest.raises(UsageError, match="no dataset"):
        hpcapp.run("stats", f"{path}:/nope")
    with pytest.raises(UsageError, match="no parameter 'bin'"):
        hpcapp.run("stats", f"{path}:/x", params={"bin": 3})
    with pytest.raises(KernelError, match="a value above 9"):
        hpcapp.run(fails_on_big_rows, f"{path}:/x", chunk_rows=100)
    # The world is still usable: every rank left through the same path.
    assert MPI.COMM_WORLD.allreduce(1) == MPI.COMM_WORLD.size


@pytest.mark.mpi(min_size=1)
def test_output_file_is_written_like_the_cli_writes_it(data_file):
    path, _ = data_file
    comm = MPI.COMM_WORLD
    out = path.parent / "out.h5"
    results = hpcapp.run("stats", f"{path}:/x", output=str(out), params={"range": [0, 10]})
    if comm.rank == 0:
        with h5py.File(out, "r") as h5:
            assert h5.attrs["n_ranks"] == comm.size
            for key, value in results.items():
                assert h5["result"][key][()].tobytes() == value.tobytes()


@pytest.mark.mpi(min_size=1)
def test_over_reduces_named_dimensions(data_file):
    path, data = data_file
    comm = MPI.COMM_WORLD
    every = hpcapp.run("stats", f"{path}:/x", over="dim_0,dim_1", dims="dim_0,dim_1", root=None)
    assert int(every["count"]) == data.size
    np.testing.assert_allclose(every["mean"], data.mean(), rtol=1e-13)
    assert comm.allreduce(1) == comm.size
