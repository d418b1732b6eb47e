"""Per-row ("map") outputs: input order, any rank count and schedule, bounded rank-0 memory."""

import time

import h5py
import numpy as np
import pytest
from helpers import read_results, run_cli, sample_data, write_dataset
from test_resume import interrupt_when_running, start_cli

KERNEL = "hpcapp.examples.row_norms:row_norms"

MEMORY_KERNEL = """
import resource
import numpy as np
import hpcapp

def report_rss(partial):
    # finalize runs on rank 0 once everything is written: its peak RSS bounds the whole run.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**partial, "rank0_maxrss_kib": np.int64(peak)}

@hpcapp.kernel(per_row=("wide",), finalize=report_rss)
def widen(chunk):
    wide = np.repeat(np.asarray(chunk, np.float64)[:, None], 16, axis=1)
    return {"wide": wide, "n": np.int64(len(chunk))}
"""


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


@pytest.mark.parametrize("cols", [None, 3])
def test_map_output_matches_numpy_on_any_rank_count_and_schedule(tmp_path, cols):
    data = sample_data(3001, cols, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    outputs = []
    for n_ranks, schedule in ((1, "static"), (2, "static"), (3, "dynamic"), (4, "static")):
        out = tmp_path / f"o{n_ranks}.h5"
        done = run_cli(
            [
                "run",
                KERNEL,
                spec,
                "-o",
                str(out),
                "--chunk-rows",
                "97",
                "-p",
                "scale=2",
                "--schedule",
                schedule,
                "--compression",
                "gzip",
            ],
            n_ranks,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(result_bytes(out))
    assert all(o == outputs[0] for o in outputs[1:])
    got = read_results(tmp_path / "o3.h5")
    columns = data.reshape(len(data), -1)
    np.testing.assert_allclose(got["norm"], np.linalg.norm(columns, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(got["scaled"], (columns * 2).astype(np.float32))
    np.testing.assert_allclose(got["total"], np.linalg.norm(columns, axis=1).sum(), rtol=1e-12)
    with h5py.File(tmp_path / "o3.h5") as h5:
        assert h5["result/norm"].compression == "gzip"
        assert h5["result/norm"].chunks == (97,)


def test_rank0_memory_does_not_grow_with_the_output(tmp_path):
    kernel_file = tmp_path / "widen.py"
    kernel_file.write_text(MEMORY_KERNEL)
    peaks = []
    for rows in (200_000, 1_600_000):  # per-row output: 25.6 MB, then 204.8 MB
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
    # 8x more output (+180 MB) may add at most a few chunks' worth (2.5 MB each) on rank 0.
    assert peaks[1] - peaks[0] < 40_000, peaks


def test_map_output_resumes_after_an_interrupt(tmp_path):
    data = sample_data(8000, 2, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "slow_norms.py"
    kernel_file.write_text(
        "import time\nfrom hpcapp.examples.row_norms import row_norms\nimport hpcapp\n\n"
        "@hpcapp.kernel(per_row=('norm', 'scaled'))\n"
        "def slow(chunk, delay=0.03):\n    time.sleep(delay)\n    return row_norms(chunk)\n"
    )
    args = ["run", f"{kernel_file}:slow", spec, "--chunk-rows", "40"]
    reference = tmp_path / "ref.h5"
    assert run_cli([*args, "-o", str(reference), "-p", "delay=0"], 1).returncode == 0
    out = tmp_path / "out.h5"
    process = start_cli([*args, "-o", str(out)], 3)
    _, stderr = interrupt_when_running(
        process, tmp_path / "out.h5.checkpoint", 0.8, ready="rows.h5"
    )
    assert process.returncode == 75, stderr
    resumed = run_cli([*args, "-o", str(out), "--resume"], 2)
    assert resumed.returncode == 0, resumed.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_wrong_row_count_is_a_clear_error(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(100.0))
    kernel_file = tmp_path / "bad.py"
    kernel_file.write_text(
        "import hpcapp\n\n@hpcapp.kernel(per_row=('x',))\ndef bad(chunk):\n"
        "    return {'x': chunk[:-1]}\n"
    )
    done = run_cli(
        ["run", f"{kernel_file}:bad", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "10"], 2
    )
    assert done.returncode == 1 and "must have 10 rows" in done.stderr


MANY_KERNEL = """
import time
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("double", "flag", "swapped", "small", "half"), combine="sum")
def many(chunk, delay=0.0):
    time.sleep(delay)
    x = np.asarray(chunk, np.float64)
    return {
        "double": x * 2,
        "flag": x[:, 0] > 0.5,
        "swapped": x.astype(">f8"),
        "small": np.rint(x * 50).astype(np.int8),
        "half": x[:, 1:].astype(np.float16),
        "n": np.int64(len(x)),
    }
"""


def many_job(tmp_path):
    """An input, a per-row kernel with odd dtypes and shapes, and the numpy reference."""
    data = sample_data(2003, 3, "float64")
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "many.py"
    kernel_file.write_text(MANY_KERNEL)
    namespace: dict = {}
    exec(MANY_KERNEL, namespace)
    return spec, f"{kernel_file}:many", namespace["many"](data)


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


@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_uncompressed_rows_written_by_every_rank_are_bitwise_numpy(tmp_path, schedule):
    spec, kernel, reference = many_job(tmp_path)
    for n_ranks in (1, 2, 3, 4):
        out = tmp_path / f"o{n_ranks}.h5"
        args = ["run", kernel, spec, "-o", str(out), "--chunk-rows", "101"]
        done = run_cli([*args, "--schedule", schedule, "-q"], n_ranks)
        assert done.returncode == 0, done.stderr
        assert_same_rows(out, reference)
        with h5py.File(out) as h5:
            # Contiguous storage is what lets each rank write its rows at a byte offset.
            assert all(h5[f"result/{key}"].chunks is None for key in reference if key != "n")
        assert not (tmp_path / f"o{n_ranks}.h5.checkpoint").exists()


@pytest.mark.parametrize("n_ranks,schedule", [(2, "static"), (3, "dynamic")])
def test_compressed_rows_through_rank_0_are_bitwise_numpy(tmp_path, n_ranks, schedule):
    spec, kernel, reference = many_job(tmp_path)
    out = tmp_path / "o.h5"
    args = ["run", kernel, spec, "-o", str(out), "--chunk-rows", "101", "--compression", "lzf"]
    done = run_cli([*args, "--schedule", schedule, "-q"], n_ranks)
    assert done.returncode == 0, done.stderr
    assert_same_rows(out, reference)
    with h5py.File(out) as h5:
        assert h5["result/double"].compression == "lzf"


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
    resumed = run_cli([*args, *again, "--resume"], second)
    assert resumed.returncode == 0, resumed.stderr
    assert "chunks were done" in resumed.stderr + resumed.stdout
    assert_same_rows(out, reference)


FAILING_FIRST_KERNEL = """
import time
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("y",))
def fails(chunk):
    if chunk[0] == {bad_row}:
        raise ValueError("this first chunk is bad")
    time.sleep(0.2)
    return {{"y": chunk * 2, "n": np.int64(len(chunk))}}
"""


# Chunk 100 is rank 1's first (static); chunk 8 starts block 1, the first block of the second
# rank that asks (dynamic).
@pytest.mark.parametrize("schedule,bad_row", [("static", 100), ("dynamic", 8)])
def test_a_failing_first_chunk_on_one_rank_ends_the_job_fast(tmp_path, schedule, bad_row):
    # 4 ranks, 400 chunks of 0.2 s: 20 s per rank if nobody stopped. The failing rank never
    # agrees on a layout after a chunk: the others must not wait for it.
    spec = write_dataset(tmp_path / "in.h5", np.arange(400, dtype=np.float64))
    kernel_file = tmp_path / "fails.py"
    kernel_file.write_text(FAILING_FIRST_KERNEL.format(bad_row=bad_row))
    args = ["run", f"{kernel_file}:fails", spec, "-o", str(tmp_path / "out.h5")]
    args += ["--chunk-rows", "1", "--schedule", schedule, "-q"]
    started = time.monotonic()
    done = run_cli(args, 4, timeout=60, env={"HPCAPP_ABORT_GRACE": "50"})
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"chunk {bad_row} " in done.stderr and "this first chunk is bad" in done.stderr
    assert elapsed < 10, f"the job took {elapsed:.1f} s to end after a first chunk failed"
    assert not (tmp_path / "out.h5").exists()


MIXED_KERNEL = """
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("y",))
def mixed(chunk):
    y = np.asarray(chunk, np.float64)
    return {{"y": y.astype(np.float32) if y[0] == {odd_row} else y, "n": np.int64(len(y))}}
"""


@pytest.mark.parametrize("odd_row,odd_chunk", [(50, 5), (20, 2)])
def test_rows_of_another_dtype_in_one_chunk_are_a_clear_error(tmp_path, odd_row, odd_chunk):
    # On 2 ranks chunk 5 is rank 1's first (its layout disagrees at the agreement), chunk 2 is
    # a later chunk of rank 0 (it disagrees with the agreed layout).
    spec = write_dataset(tmp_path / "in.h5", np.arange(100, dtype=np.float64))
    kernel_file = tmp_path / "mixed.py"
    kernel_file.write_text(MIXED_KERNEL.format(odd_row=odd_row))
    args = ["run", f"{kernel_file}:mixed", spec, "-o", str(tmp_path / "o.h5")]
    done = run_cli([*args, "--chunk-rows", "10", "-q"], 2)
    assert done.returncode == 1, done.stderr
    assert f"per-row output 'y' of chunk {odd_chunk} has float32" in done.stderr
    assert "chunk 0 gave float64" in done.stderr


@pytest.mark.mpi(min_size=1)
def test_row_sink_on_any_communicator_writes_every_rank_s_rows(tmp_path_factory):
    import tempfile

    from mpi4py import MPI

    from hpcapp.rows import DIRECT, RowSink

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
    from hpcapp.rows import RowSink

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
