"""Dynamic scheduling gives the same bits as static, on any rank count, and resumes."""

import itertools

import numpy as np
import pytest
from helpers import (
    cli_here,
    read_results,
    result_bytes,
    root_attrs,
    run_cli,
    run_here,
    sample_data,
    timing_of,
    write_dataset,
)

from hpcapp.parallel.schedule import dynamic_blocks

SKEWED_KERNEL = """
import time
import numpy as np

def skewed(chunk, unit=0.0):
    # Cost grows with the position in the data, like late detector runs that are denser.
    time.sleep(unit * (1 + 9 * float(chunk[0, 0])))
    return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}
"""


def test_dynamic_blocks_shrink_are_aligned_and_cover_every_chunk():
    assert dynamic_blocks(1, 4) == [0, 1]
    assert dynamic_blocks(0, 4) == [0]
    for n_chunks in (7, 100, 4097, 10**6):
        for size in (1, 3, 64):
            starts = dynamic_blocks(n_chunks, size)
            sizes = [b - a for a, b in itertools.pairwise(starts)]
            assert starts[0] == 0 and starts[-1] == n_chunks and all(s > 0 for s in sizes)
            assert sizes[:-1] == sorted(sizes[:-1], reverse=True)  # guided: never grows
            for start, length in zip(starts, sizes[:-1], strict=False):
                assert length & (length - 1) == 0 and start % length == 0  # aligned subtree
            assert sizes[-2:] == [1, 1] or n_chunks < 2 * size or len(sizes) < 3
            assert len(sizes) <= 8 * size * (n_chunks.bit_length() + 1)
            # A rank that draws one very slow chunk takes few others with it.
            assert sizes[0] <= max(1, n_chunks // (8 * size))


@pytest.mark.mpi(min_size=2)
def test_dynamic_equals_static_on_every_rank_count(shared_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        write_dataset(shared_dir / "in.h5", sample_data(2500, 3, "float32", nan=0.02))
    comm.Barrier()
    spec = f"{shared_dir}/in.h5:/x"
    options = {"chunk_rows": 23, "params": {"bins": 10, "range": [0, 1]}}
    static = shared_dir / f"static-{comm.rank}.h5"
    run_here("stats", spec, output=str(static), **options)
    dynamic = shared_dir / "dynamic.h5"
    run_here("stats", spec, comm=comm, output=str(dynamic), schedule="dynamic", **options)
    comm.Barrier()
    assert result_bytes(dynamic) == result_bytes(static)
    assert root_attrs(dynamic)["schedule"] == "dynamic"


@pytest.mark.mpi(min_size=2)
def test_skewed_kernel_dynamic_matches_static(shared_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    data = np.linspace(0, 1, 4000).reshape(-1, 1) * np.ones((1, 2))
    if comm.rank == 0:
        write_dataset(shared_dir / "in.h5", data)
        (shared_dir / "skewed.py").write_text(SKEWED_KERNEL)
    comm.Barrier()
    spec, kernel = f"{shared_dir}/in.h5:/x", f"{shared_dir}/skewed.py:skewed"
    outputs = []
    for schedule in ("static", "dynamic"):
        out = shared_dir / f"{schedule}.h5"
        options = {"chunk_rows": 50, "params": {"unit": 0.001}, "schedule": schedule}
        run_here(kernel, spec, comm=comm, output=str(out), **options)
        outputs.append(result_bytes(out))
    assert outputs[0] == outputs[1]
    # Chunks that take milliseconds each: blocks certainly went to more than one rank.
    assert (timing_of(shared_dir / "dynamic.h5")[0][:, 4] > 0).sum() > 1
    np.testing.assert_allclose(read_results(shared_dir / "dynamic.h5")["s"], data.sum(axis=0))


def test_dynamic_with_scatter_is_refused(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(10.0))
    out = str(tmp_path / "o.h5")
    done = cli_here(
        ["run", "stats", spec, "-o", out, "--schedule", "dynamic", "--distribute", "scatter"]
    )
    assert done.returncode == 2 and "--distribute scatter" in done.stderr


# The failure on every rank count, both schedules: tests/test_ranks_mpi.py.
@pytest.mark.parametrize("n_ranks", [3])
def test_dynamic_failure_is_reported_once(tmp_path, n_ranks):
    spec = write_dataset(tmp_path / "in.h5", np.arange(1000.0))
    kernel_file = tmp_path / "bad.py"
    kernel_file.write_text("def bad(chunk):\n    raise RuntimeError('no')\n")
    done = run_cli(
        [
            "run",
            f"{kernel_file}:bad",
            spec,
            "-o",
            str(tmp_path / "o.h5"),
            "--chunk-rows",
            "10",
            "--schedule",
            "dynamic",
        ],
        n_ranks,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr.count("hpcapp: error") == 1
    assert "RuntimeError: no" in done.stderr


BUSY = {"rank": -1, "folder": None, "wanted": 0, "while_busy": -1}


def busy_rank0(chunk):
    """Rank 0's first chunk lasts until the other ranks have finished ``wanted`` chunks."""
    import os
    import time

    folder = BUSY["folder"]
    if BUSY["rank"] == 0 and BUSY["while_busy"] < 0:
        deadline = time.monotonic() + 30  # a hang guard: the test fails if it is reached
        # Pure Python: holds the GIL, as many kernels do; the block server must still answer.
        while len(os.listdir(folder)) < BUSY["wanted"] and time.monotonic() < deadline:
            sum(range(1000))
        BUSY["while_busy"] = len(os.listdir(folder))
    elif BUSY["rank"] != 0:
        (folder / f"chunk-{int(chunk[0])}").touch()
    return {"n": np.int64(len(chunk))}


@pytest.mark.mpi(min_size=2)
def test_ranks_get_work_while_rank_0_is_inside_a_long_chunk(shared_dir):
    # Before the block server, an MPI_Fetch_and_op counter on rank 0 answered only when rank 0
    # entered MPI: the other ranks stalled after their first block (4 chunks of 120 here), and
    # rank 0's chunk waited for 30 of them in vain. Over the network path too (the CI's step).
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    folder = shared_dir / "done"
    if comm.rank == 0:
        write_dataset(shared_dir / "in.h5", np.arange(120.0))
        folder.mkdir()
    comm.Barrier()
    BUSY.update(rank=comm.rank, folder=folder, wanted=30, while_busy=-1)
    spec = f"{shared_dir}/in.h5:/x"
    results = run_here(busy_rank0, spec, comm=comm, chunk_rows=1, schedule="dynamic", root=None)
    assert int(results["n"]) == 120
    if comm.rank == 0:
        assert BUSY["while_busy"] >= 30, f"only {BUSY['while_busy']} chunks while rank 0 was busy"
