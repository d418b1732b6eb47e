"""hpcapp.run on COMM_WORLD and on sub-communicators (run under mpiexec -n 1, 2, 3, 4)."""

import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import read_results, root_attrs
from mpi4py import MPI

import hpcapp
from hpcapp.errors import KernelError, UsageError
from hpcapp.parallel.tags import all_tags

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
        assert root_attrs(out)["n_ranks"] == comm.size
        written = read_results(out)
        assert written.keys() == results.keys()
        for key, value in results.items():
            assert written[key].tobytes() == value.tobytes()


@pytest.mark.mpi(min_size=1)
def test_over_reduces_named_dimensions(data_file):
    path, data = data_file
    comm = MPI.COMM_WORLD
    every = hpcapp.run("stats", f"{path}:/x", over="dim_0,dim_1", dims="dim_0,dim_1", root=None)
    assert int(every["count"]) == data.size
    np.testing.assert_allclose(every["mean"], data.mean(), rtol=1e-13)
    assert comm.allreduce(1) == comm.size


@hpcapp.kernel(per_row=("twice",), combine="sum")
def doubled_rows(chunk):
    """A per-row kernel: every row twice over, and column sums."""
    return {"twice": 2.0 * chunk, "total": chunk.sum(axis=0)}


@pytest.mark.mpi(min_size=2)
def test_per_row_results_without_an_output_are_gathered_on_root(data_file):
    path, data = data_file
    comm = MPI.COMM_WORLD
    spec = f"{path}:/x"
    rows = hpcapp.run(doubled_rows, spec, chunk_rows=97, schedule="dynamic", root=None)
    assert rows["twice"].tobytes() == (2.0 * data).tobytes()
    np.testing.assert_allclose(rows["total"], data.sum(axis=0))
    series = hpcapp.run("stats", spec, over=["dim_1"], dims=("dim_0", "dim_1"), chunk_rows=97)
    if comm.rank == 0:
        np.testing.assert_allclose(series["mean"], data.mean(axis=1), rtol=1e-13)
        assert int(series["count"].sum()) == data.size
    else:
        assert series is None


@pytest.mark.mpi(min_size=2)
def test_rows_through_root_are_opened_by_rank_0_only():
    from hpcapp.parallel.rows import THROUGH_ROOT, RowSink

    comm = MPI.COMM_WORLD
    directory = tempfile.mkdtemp(prefix="hpcapp-rows-") if comm.rank == 0 else "/nonexistent"
    data = np.arange(2000, dtype=">i4").reshape(1000, 2)
    sink = RowSink(comm, f"{directory}/rows.h5", 1000, 300, None, through_root=True)
    for chunk_index in range(comm.rank, 4, comm.size):
        sink.put(chunk_index, {"v": data[chunk_index * 300 : (chunk_index + 1) * 300]})
    sink.finish()
    assert sink.mode == THROUGH_ROOT
    if comm.rank == 0:
        with h5py.File(f"{directory}/rows.h5") as h5:
            assert h5["result/v"][()].tobytes() == data.astype("<i4").tobytes()
        shutil.rmtree(directory)


def two_jobs(spec, directory, name):
    """Run the jobs that send every kind of message hpcapp sends on the job's communicator.

    Per-row outputs through rank 0 (compressed), blocks on demand, chunks scattered by rank 0,
    the tree reduction, and results sent to the last rank. Returns their results and the rows.
    """
    last = MPI.COMM_WORLD.size - 1
    out = str(directory / f"{name}.h5")
    rows = hpcapp.run(
        doubled_rows, spec, output=out, chunk_rows=100, compression="gzip", schedule="dynamic",
        root=last,
    )  # fmt: skip
    scattered = hpcapp.run(column_sums, spec, chunk_rows=100, distribute="scatter", root=last)
    return rows, scattered, out


@pytest.mark.mpi(min_size=2)
# Were hpcapp to take the caller's messages, its own protocol could hang: end the process then.
@pytest.mark.timeout(100, method="thread")
def test_the_callers_pending_messages_with_hpcapps_tags_stay_the_callers(data_file):
    """hpcapp.run communicates on a duplicate: what the caller left on comm is untouched."""
    path, data = data_file
    comm = MPI.COMM_WORLD
    # Every rank leaves every rank (itself too) one message on each tag hpcapp uses, and waits
    # until they are all at their destination: pending there before hpcapp.run starts.
    tags = all_tags().values()
    sends = [
        comm.isend(("caller", comm.rank, tag), dest=other, tag=tag)
        for other in range(comm.size)
        for tag in tags
    ]
    expected = {(source, tag) for source in range(comm.size) for tag in tags}
    while not all(comm.Iprobe(source=source, tag=tag) for source, tag in expected):
        pass
    with_pending = two_jobs(f"{path}:/x", path.parent, "pending")
    lost = []  # every rank checks all, then all agree: a failure fails every rank, none hangs
    for source, tag in sorted(expected):
        if comm.Iprobe(source=source, tag=tag):
            try:
                got = comm.recv(source=source, tag=tag)
            except Exception as exc:  # hpcapp's raw bytes in its place
                got = exc
            if got == ("caller", source, tag):
                continue
        lost.append((source, tag))
    MPI.Request.waitall(sends)
    comm.Barrier()
    if comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG):
        lost.append("a message hpcapp left on the caller's communicator")
    lost = comm.allgather(lost)
    assert lost == [[]] * comm.size, f"the caller's messages (source, tag) were consumed: {lost}"
    clean = two_jobs(f"{path}:/x", path.parent, "clean")
    if comm.rank == comm.size - 1:
        for got, expected_results in zip(with_pending[:2], clean[:2], strict=True):
            assert as_bytes(got) == as_bytes(expected_results)
        np.testing.assert_allclose(with_pending[1]["s"], data.sum(axis=0), rtol=1e-12)
    else:
        assert with_pending[:2] == clean[:2] == (None, None)
    if comm.rank == 0:
        a, b = read_results(with_pending[2])["twice"], read_results(clean[2])["twice"]
        assert a.tobytes() == b.tobytes()
        np.testing.assert_array_equal(a, 2.0 * data)
    comm.Barrier()


def as_bytes(results):
    return {key: np.asarray(value).tobytes() for key, value in results.items()}
