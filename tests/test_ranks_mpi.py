"""Any rank count gives one rank's bits and one rank's errors (run under mpiexec -n 1, 2, 3, 4).

Each test runs a job with ``hpcapp.run`` on COMM_WORLD and again on COMM_SELF (one rank) and
compares: the results bit for bit, or the error every rank raises. The CI runs this module at
1, 2, 3 and 4 ranks and over MPICH's network path, in one launch per rank count, instead of
launching the CLI once per rank count and job.
"""

import numpy as np
import pytest
from helpers import COMPILED_SHAPES, coordinate_bytes, result_bytes, sample_data, write_dataset
from mpi4py import MPI

import hpcapp
from hpcapp.errors import KernelError
from hpcapp.partition import rank_chunks

# At one rank COMM_WORLD is COMM_SELF: these tests run from 2 ranks up.
pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


def on_rank_0(comm, write):
    """Let rank 0 write an input every rank then reads; return what ``write`` returned.

    If ``write`` fails, every rank fails (instead of the others waiting for rank 0 forever).
    """
    value, failure = None, None
    if comm.rank == 0:
        try:
            value = write()
        except Exception as exc:
            failure = f"rank 0 could not write the input: {exc!r}"
    value, failure = comm.bcast((value, failure), root=0)
    if failure:
        pytest.fail(failure)
    return value


def world_and_self(kernel, spec, **options):
    """Run the job on COMM_WORLD and on COMM_SELF; return both results on every rank."""
    world = hpcapp.run(kernel, spec, root=None, **options)
    alone = hpcapp.run(kernel, spec, comm=MPI.COMM_SELF, **options)
    return world, alone


def assert_same_bits(world, alone):
    assert world.keys() == alone.keys()
    for key in alone:
        assert np.asarray(world[key]).dtype == np.asarray(alone[key]).dtype, key
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key


FAILING = """
import numpy as np

def fails_on(chunk, bad=3):
    first = int(chunk[0]) // 100  # the chunk index, with 100-row chunks of arange data
    if first == bad:
        raise ValueError(f"bad value in chunk {first}")
    return {"s": np.asarray(chunk.sum())}

def shape_changes(chunk):
    return {"s": np.zeros(1 + int(chunk[0] >= 500))}
"""


@pytest.fixture
def arange_job(shared_dir):
    """1000 rows of arange (10 chunks of 100) and a file of kernels; return (spec, kernels)."""

    def write():
        (shared_dir / "kernels.py").write_text(FAILING)
        return write_dataset(shared_dir / "in.h5", np.arange(1000, dtype=np.float64))

    return on_rank_0(MPI.COMM_WORLD, write), shared_dir / "kernels.py"


@pytest.mark.parametrize("bad", [0, 3, 9])
def test_a_failing_chunk_is_named_with_the_rank_that_ran_it(arange_job, bad):
    spec, kernels = arange_job
    comm = MPI.COMM_WORLD
    owner = next(r for r in range(comm.size) if bad in rank_chunks(10, comm.size, r))
    with pytest.raises(KernelError) as caught:
        hpcapp.run(f"{kernels}:fails_on", spec, chunk_rows=100, params={"bad": bad})
    message = str(caught.value)
    assert f"failed on rank {owner}, chunk {bad} (rows {bad * 100}-{bad * 100 + 99})" in message
    assert f"ValueError: bad value in chunk {bad}" in message and "Traceback" in message
    assert 'kernels.py", line' in message  # the kernel's own frame
    assert comm.allreduce(1) == comm.size  # every rank left through the same path


def test_partials_that_do_not_combine_are_named_inside_a_rank_or_between_ranks(arange_job):
    # Chunks 0-4 give shape (1,), 5-9 shape (2,): on 2 ranks chunks 4 and 5 meet only in the
    # reduction between the ranks, on 1 or 3 ranks inside one rank.
    spec, kernels = arange_job
    with pytest.raises(KernelError, match="cannot combine the partials of chunks 4 and 5"):
        hpcapp.run(f"{kernels}:shape_changes", spec, chunk_rows=100)


# ---------------------------------------------------------------- the compiled stats pass

COMPILED_CHUNK_ROWS = 70_000  # x 2 columns: each chunk takes stats' numba loop


def compiled_input(directory, dtype):
    """12 chunks of floats with NaN and a large offset in some rows (the shifted M2 agrees)."""
    rng = np.random.default_rng(20261125)
    data = rng.normal(0.5, 0.3, size=(12 * COMPILED_CHUNK_ROWS, 2)).astype(dtype)
    data[rng.random(data.shape) < 0.01] = np.nan
    data[::9973, 1] = 1e9
    return write_dataset(directory / f"compiled-{dtype}.h5", data)


@pytest.mark.parametrize("schedule", ["static", "dynamic"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_stats_on_any_rank_count_and_schedule(shared_dir, dtype, schedule):
    from hpcapp.kernels.stats import FUSED_MIN_VALUES

    assert COMPILED_CHUNK_ROWS * 2 >= FUSED_MIN_VALUES
    spec = on_rank_0(MPI.COMM_WORLD, lambda: compiled_input(shared_dir, dtype))
    options = {"chunk_rows": COMPILED_CHUNK_ROWS, "params": {"bins": 32, "range": [-0.5, 1.5]}}
    world = hpcapp.run("stats", spec, root=None, schedule=schedule, **options)
    alone = hpcapp.run("stats", spec, comm=MPI.COMM_SELF, **options)  # static, one rank
    assert_same_bits(world, alone)


@pytest.mark.parametrize(
    ("shape", "dtype", "chunk_rows", "histogram"),
    COMPILED_SHAPES,
)
def test_compiled_shapes_on_any_rank_count(shared_dir, shape, dtype, chunk_rows, histogram):
    # Their numbers against numpy: tests/test_stats_fused.py.
    from hpcapp.kernels.stats import FUSED_MIN_VALUES

    assert chunk_rows * int(np.prod(shape[1:])) >= FUSED_MIN_VALUES  # numba's loop

    def write():
        rng = np.random.default_rng(9)
        data = rng.normal(0.0, 1.5, size=shape).astype(dtype)
        data[rng.random(shape) < 0.01] = np.nan
        return write_dataset(shared_dir / "in.h5", data)

    spec = on_rank_0(MPI.COMM_WORLD, write)
    params = {"range": [-4, 4], "bins": 50} if histogram else {}
    over = "dim_0" if len(shape) > 2 else None
    world, alone = world_and_self("stats", spec, chunk_rows=chunk_rows, params=params, over=over)
    assert_same_bits(world, alone)


# ---------------------------------------------------------------- a failure stops every rank

STOP = {"marker": "", "bad": -1, "done": 0}


def waits_for_the_failure(chunk):
    """Fail on chunk ``bad``; every other chunk waits until that failure has happened."""
    import time
    from pathlib import Path

    index = int(chunk[0])  # one row per chunk of arange data: the chunk index
    if index == STOP["bad"]:
        Path(STOP["marker"]).touch()
        raise ValueError("this first chunk is bad")
    deadline = time.monotonic() + 30  # a hang guard only
    while not Path(STOP["marker"]).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    STOP["done"] += 1
    return {"y": np.asarray(chunk, np.float64) * 2, "n": np.int64(len(chunk))}


@hpcapp.kernel(per_row=("y",))
def per_row_waits_for_the_failure(chunk):
    return waits_for_the_failure(chunk)


@pytest.mark.parametrize("per_row", [False, True], ids=["reduced", "per-row"])
@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_a_failing_first_chunk_stops_every_rank_within_a_chunk_or_two(
    shared_dir, schedule, per_row
):
    # 400 chunks of 0.1 s: without the stop notice every rank would compute its whole share
    # (100-200 chunks). The failing chunk is the first of a rank: rank 0's (chunk 0), or the
    # first of rank 1 (static) or of the second rank to ask for a block (dynamic). The failing
    # rank never agrees on a layout of per-row outputs: the others must not wait for it.
    from hpcapp.parallel.schedule import dynamic_blocks

    comm = MPI.COMM_WORLD
    n_chunks = 400
    if not per_row:
        bad = 0
    elif schedule == "static":
        bad = rank_chunks(n_chunks, comm.size, 1)[0]
    else:
        bad = dynamic_blocks(n_chunks, comm.size)[1]
    spec = on_rank_0(
        comm, lambda: write_dataset(shared_dir / "in.h5", np.arange(n_chunks, dtype=np.float64))
    )
    STOP.update(marker=str(shared_dir / "failed"), bad=bad, done=0)
    kernel = per_row_waits_for_the_failure if per_row else waits_for_the_failure
    with pytest.raises(KernelError, match=f"(?s)chunk {bad} .*this first chunk is bad"):
        hpcapp.run(kernel, spec, chunk_rows=1, schedule=schedule, output=str(shared_dir / "o.h5"))
    done = comm.gather(STOP["done"], root=0)
    if comm.rank == 0:
        assert max(done) <= 10, f"chunks each rank computed after the failure: {done}"
    assert not (shared_dir / "o.h5").exists()


# ---------------------------------------------------------------- times of many files


def world_and_self_files(kernel, spec, directory, **options):
    """Write the job's output from COMM_WORLD and from COMM_SELF; return both files' bytes."""
    comm = MPI.COMM_WORLD
    world, alone = directory / "world.h5", directory / f"self-{comm.rank}.h5"
    hpcapp.run(kernel, spec, output=str(world), overwrite=True, **options)
    hpcapp.run(kernel, spec, comm=MPI.COMM_SELF, output=str(alone), overwrite=True, **options)
    comm.Barrier()
    # The results and the coordinates (a time axis decoded file by file).
    return (
        {**result_bytes(world), **coordinate_bytes(world)},
        {**result_bytes(alone), **coordinate_bytes(alone)},
    )


@pytest.mark.parametrize("kind", ["fill", "missing_value", "packed-fill"])
def test_a_masked_time_groups_alike_on_any_rank_count(shared_dir, kind):
    from ncdata import write_masked_time

    spec = on_rank_0(MPI.COMM_WORLD, lambda: write_masked_time(shared_dir / "in.nc", kind))
    world, alone = world_and_self_files(
        "stats", spec, shared_dir, over="time", chunk_rows=2, group_by="time.month"
    )
    assert world == alone


@pytest.mark.parametrize("inputs", ["masked-and-packed", "yearly", "stamped", "stamped+time"])
def test_time_axes_and_months_of_many_files_on_any_rank_count(shared_dir, inputs):
    # Each rank inspects some of the files and decodes their times: rank 0 lines them up.
    import ncdata

    def write():
        folder = shared_dir / "files"
        if inputs == "masked-and-packed":
            ncdata.write_masked_and_packed_files(folder)
        elif inputs == "yearly":
            ncdata.write_yearly_files(folder)
        else:
            ncdata.write_stamped_files(folder, with_time=inputs == "stamped+time")
        return f"{folder}/*.nc:/v"

    spec = on_rank_0(MPI.COMM_WORLD, write)
    if not inputs.startswith("stamped"):
        world, alone = world_and_self_files("stats", spec, shared_dir, over="lat")
        assert world == alone and "time" in world
    by = "stamp.month" if inputs.startswith("stamped") else "time.month"
    world, alone = world_and_self_files(
        "stats", spec, shared_dir, over="time", group_by=by, chunk_rows=3
    )
    assert world == alone


@pytest.mark.parametrize(
    ("calendars", "message"),
    [
        (("noleap", "360_day"), "(?s)calendar '360_day'.*one time axis"),
        (("standard", "martian"), "file 2 of 2 .*calendar 'martian'"),
    ],
)
def test_times_of_files_that_do_not_share_an_axis_are_refused_on_every_rank(
    shared_dir, calendars, message
):
    from ncdata import write_times

    from hpcapp.errors import UsageError

    def write():
        for index, calendar in enumerate(calendars):
            write_times(shared_dir / f"f{index}.nc", [2 * index, 2 * index + 1], [[1.0], [2]],
                        calendar=calendar)  # fmt: skip
        return f"{shared_dir}/f*.nc:/v"

    spec = on_rank_0(MPI.COMM_WORLD, write)
    with pytest.raises(UsageError, match=message):
        hpcapp.run("stats", spec, output=str(shared_dir / "o.h5"), over="lat")
    assert not (shared_dir / "o.h5").exists()


# ---------------------------------------------------------------- per-row outputs


@pytest.mark.parametrize(
    ("schedule", "compression"), [("static", None), ("dynamic", None), ("dynamic", "lzf")]
)
def test_rows_written_by_any_rank_count_are_one_ranks(shared_dir, schedule, compression):
    # Uncompressed rows are written by every rank at their offset; compressed ones by rank 0.
    # Against numpy: tests/test_map_outputs.py.
    from sample_kernels import MANY_KERNEL

    def write():
        (shared_dir / "many.py").write_text(MANY_KERNEL)
        return write_dataset(shared_dir / "in.h5", sample_data(2003, 3, "float64"))

    spec = on_rank_0(MPI.COMM_WORLD, write)
    world, alone = world_and_self_files(
        f"{shared_dir}/many.py:many", spec, shared_dir, chunk_rows=101, schedule=schedule,
        compression=compression,
    )  # fmt: skip
    assert world == alone
    assert not (shared_dir / "world.h5.checkpoint").exists()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_per_row_and_reduced_keys_together_on_any_rank_count(shared_dir, compression):
    spec = on_rank_0(
        MPI.COMM_WORLD,
        lambda: write_dataset(shared_dir / "in.h5", sample_data(3001, 3, "float64")),
    )
    world, alone = world_and_self_files(
        "hpcapp.examples.row_norms:row_norms", spec, shared_dir, chunk_rows=97,
        params={"scale": 2}, compression=compression,
    )  # fmt: skip
    assert world == alone


MIXED = """
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("y",))
def mixed(chunk, odd_row=-1):
    y = np.asarray(chunk, np.float64)
    return {"y": y.astype(np.float32) if y[0] == odd_row else y, "n": np.int64(len(y))}
"""


@pytest.mark.parametrize("odd_chunk", [5, 2])
def test_rows_of_another_dtype_in_one_chunk_are_named_on_any_rank_count(shared_dir, odd_chunk):
    # On 2 ranks chunk 5 is rank 1's first (its layout disagrees at the agreement), chunk 2 is
    # a later chunk of rank 0 (it disagrees with the agreed layout).
    def write():
        (shared_dir / "mixed.py").write_text(MIXED)
        return write_dataset(shared_dir / "in.h5", np.arange(100, dtype=np.float64))

    spec = on_rank_0(MPI.COMM_WORLD, write)
    message = f"(?s)per-row output 'y' of chunk {odd_chunk} has float32.*chunk 0 gave float64"
    with pytest.raises(KernelError, match=message):
        hpcapp.run(
            f"{shared_dir}/mixed.py:mixed", spec, output=str(shared_dir / "o.h5"),
            chunk_rows=10, params={"odd_row": 10 * odd_chunk},
        )  # fmt: skip
