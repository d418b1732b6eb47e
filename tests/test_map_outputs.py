"""Per-row ("map") outputs: input order, bounded rank-0 memory, resumes on another rank count.

That every rank count and schedule writes the same rows: tests/test_ranks_mpi.py.
"""

import h5py
import numpy as np
import pytest
from helpers import (
    cli_here,
    interrupt_when_running,
    read_results,
    result_bytes,
    result_names,
    run_cli,
    run_here,
    sample_data,
    start_cli,
    without_quiet,
    write_dataset,
)
from sample_kernels import MANY_KERNEL, many_reference

KERNEL = "hpcapp.examples.row_norms:row_norms"

MEMORY_KERNEL = """
import resource
import numpy as np
import hpcapp

def report_rss(partial, params):
    # finalize runs on rank 0 once everything is written: its peak RSS bounds the whole run.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**partial, "rank0_maxrss_kib": np.int64(peak)}

@hpcapp.kernel(per_row=("wide",), finalize=report_rss)
def widen(chunk):
    wide = np.repeat(np.asarray(chunk, np.float64)[:, None], 16, axis=1)
    return {"wide": wide, "n": np.int64(len(chunk))}
"""


@pytest.mark.parametrize("cols", [None, 3])
def test_map_output_matches_numpy(tmp_path, cols):
    data = sample_data(3001, cols, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    out = tmp_path / "o.h5"
    run_here(KERNEL, spec, output=str(out), chunk_rows=97, params={"scale": 2}, compression="gzip")
    got = read_results(out)
    columns = data.reshape(len(data), -1)
    np.testing.assert_allclose(got["norm"], np.linalg.norm(columns, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(got["scaled"], (columns * 2).astype(np.float32))
    np.testing.assert_allclose(got["total"], np.linalg.norm(columns, axis=1).sum(), rtol=1e-12)
    with h5py.File(out) as h5:
        assert h5["x_norm"].compression == "gzip"
        assert h5["x_norm"].chunks == (97,)


def test_rank0_memory_does_not_grow_with_the_output(tmp_path):
    kernel_file = tmp_path / "widen.py"
    kernel_file.write_text(MEMORY_KERNEL)
    peaks = []
    for rows in (100_000, 800_000):  # per-row output: 12.8 MB, then 102.4 MB
        spec = write_dataset(tmp_path / f"in{rows}.h5", np.arange(rows, dtype=np.float64))
        out = tmp_path / f"o{rows}.h5"
        done = run_cli(
            ["run", f"{kernel_file}:widen", spec, "-o", str(out), "--chunk-rows", "20000"], 3
        )
        assert done.returncode == 0, done.stderr
        got = read_results(out)
        assert got["n"] == rows and got["wide"].shape == (rows, 16)
        np.testing.assert_array_equal(got["wide"][:, 5], np.arange(rows))
        peaks.append(int(got["rank0_maxrss_kib"]))
    # 8x more output (+90 MB) may add at most a few chunks' worth (2.5 MB each) on rank 0.
    assert peaks[1] - peaks[0] < 40_000, peaks


def test_map_output_resumes_after_an_interrupt(tmp_path):
    data = sample_data(8000, 2, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "slow_norms.py"
    kernel_file.write_text(
        "import os\nimport time\nfrom hpcapp.examples.row_norms import row_norms\nimport hpcapp\n\n"
        "@hpcapp.kernel(per_row=('norm', 'scaled'))\n"
        "def slow(chunk, delay=0.03):\n"
        "    time.sleep(float(os.environ.get('HPCAPP_TEST_DELAY', delay)))\n"
        "    return row_norms(chunk)\n"
    )
    args = ["run", f"{kernel_file}:slow", spec, "--chunk-rows", "40"]
    reference = tmp_path / "ref.h5"
    run_here(f"{kernel_file}:slow", spec, output=str(reference), chunk_rows=40, params={"delay": 0})
    out = tmp_path / "out.h5"
    process = start_cli([*args, "-o", str(out)], 3)
    _, stderr = interrupt_when_running(
        process, tmp_path / "out.h5.checkpoint", 0.8, ready="rows.h5"
    )
    assert process.returncode == 75, stderr
    resumed = run_cli([*args, "-o", str(out), "--resume"], 2, env={"HPCAPP_TEST_DELAY": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_wrong_row_count_is_a_clear_error(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(100.0))
    kernel_file = tmp_path / "bad.py"
    kernel_file.write_text(
        "import hpcapp\n\n@hpcapp.kernel(per_row=('x',))\ndef bad(chunk):\n"
        "    return {'x': chunk[:-1]}\n"
    )
    done = cli_here(
        ["run", f"{kernel_file}:bad", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "10"]
    )
    assert done.returncode == 1 and "must have 10 rows" in done.stderr


def many_job(tmp_path):
    """An input, a per-row kernel with odd dtypes and shapes, and the numpy reference."""
    data = sample_data(2003, 3, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "many.py"
    kernel_file.write_text(MANY_KERNEL)
    return spec, f"{kernel_file}:many", many_reference(data)


def assert_same_rows(path, reference):
    """Per-row outputs equal the kernel applied to the whole array, bit for bit, native order."""
    got = read_results(path)
    for key, want in reference.items():
        if key == "n":
            assert got[key] == want
            continue
        assert got[key].dtype == want.dtype.newbyteorder("="), key
        assert got[key].dtype.isnative, key
        assert got[key].tobytes() == want.astype(got[key].dtype).tobytes(), key


@pytest.mark.parametrize("compression", [None, "lzf"])
def test_rows_are_bitwise_numpy(tmp_path, compression):
    spec, kernel, reference = many_job(tmp_path)
    out = tmp_path / "o.h5"
    run_here(kernel, spec, output=str(out), chunk_rows=101, compression=compression)
    assert_same_rows(out, reference)
    names = result_names(out)
    with h5py.File(out) as h5:
        for key in reference:
            if key != "n":
                # Contiguous storage is what lets each rank write its rows at a byte offset.
                assert h5[names[key]].compression == compression, key
                assert (h5[names[key]].chunks is None) == (compression is None), key
    assert not (tmp_path / "o.h5.checkpoint").exists()


@pytest.mark.parametrize(
    "first,second,schedule,compression",
    [
        (2, 3, "dynamic", []),
        (3, 4, "static", ["--compression", "gzip"]),
        # Rows pwritten by the first run, then written through rank 0 into the same datasets.
        (4, 2, "static", []),
    ],
)
def test_rows_resume_on_another_rank_count(tmp_path, first, second, schedule, compression):
    spec, kernel, reference = many_job(tmp_path)
    out = tmp_path / "out.h5"
    args = ["run", kernel, spec, "-o", str(out), "--chunk-rows", "20", "--schedule", schedule]
    # 101 chunks of 0.05 s: over 1 s of work per rank at 4 ranks, so the signal 0.3 s after
    # the first rows lands mid-run (with 0.02 s chunks a 4-rank run could finish first).
    args += ["-p", "delay=0.05", "-q"]
    process = start_cli([*args, *compression], first)
    _, stderr = interrupt_when_running(
        process, tmp_path / "out.h5.checkpoint", 0.3, ready="rows.h5"
    )
    assert process.returncode == 75, stderr
    again = compression if first != 4 else ["--compression", "gzip"]
    resume = without_quiet([*args, *again, "--resume"])
    resumed = run_cli(resume, second, env={"HPCAPP_TEST_DELAY": "0"})
    assert resumed.returncode == 0, resumed.stderr
    assert "chunks were done" in resumed.stderr + resumed.stdout
    assert_same_rows(out, reference)


# A chunk whose rows have another dtype than chunk 0's, on 1-4 ranks: tests/test_ranks_mpi.py.


@pytest.mark.mpi(min_size=1)
def test_row_sink_on_any_communicator_writes_every_rank_s_rows(tmp_path_factory):
    import tempfile

    from mpi4py import MPI

    from hpcapp.parallel.rows import DIRECT, RowSink

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    directory = comm.bcast(tempfile.mkdtemp(prefix="hpcapp-rows-") if rank == 0 else None)
    path = f"{directory}/rows.h5"
    data = np.arange(2000, dtype=">i4").reshape(1000, 2)  # 3 chunks: a 4th rank has none
    sink = RowSink(comm, path, 1000, 400, None)
    for chunk_index in range(rank, 3, size):
        sink.put(chunk_index, {"v": data[chunk_index * 400 : (chunk_index + 1) * 400]})
    sink.finish()
    assert sink.mode == DIRECT
    comm.Barrier()
    if rank == 0:
        with h5py.File(path) as h5:
            got = h5["result/v"][()]
        assert got.dtype == np.dtype("<i4") and got.tobytes() == data.astype("<i4").tobytes()
        import shutil

        shutil.rmtree(directory)


@pytest.mark.mpi(min_size=1)
def test_row_sink_that_cannot_make_its_datasets_fails_every_rank_with_rows_and_hangs_none():
    import shutil
    import tempfile

    from mpi4py import MPI

    from hpcapp.errors import KernelError
    from hpcapp.parallel.rows import RowSink

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    directory = comm.bcast(tempfile.mkdtemp(prefix="hpcapp-rows-") if rank == 0 else None)
    path = f"{directory}/rows.h5"
    if rank == 0:  # a working file left by another job: same name, another dtype
        with h5py.File(path, "w") as h5:
            h5.create_dataset("result/v", shape=(1000, 2), dtype=np.int16)
    comm.Barrier()
    sink = RowSink(comm, path, 1000, 400, None)
    raised = []
    for chunk_index in range(rank, 3, size):
        try:
            sink.put(chunk_index, {"v": np.zeros((400 if chunk_index < 2 else 200, 2))})
        except KernelError as exc:
            raised.append(str(exc))
            break
    sink.finish()
    comm.Barrier()
    assert len(raised) == (1 if rank < 3 else 0)
    assert all("holds int16 rows of shape (2,), but chunk 0 gave float64" in m for m in raised)
    if rank == 0:
        shutil.rmtree(directory)
