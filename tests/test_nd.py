"""N-D inputs: --over by name or axis, the three forms against numpy (any rank count: MPI)."""

import h5py
import numpy as np
import pytest
from helpers import (
    cli_here,
    interrupt_when_running,
    read_results,
    run_cli,
    run_here,
    start_cli,
    without_quiet,
)
from ncdata import DIMS, check_against, reference, write_netcdf

from hpcapp.errors import UsageError
from hpcapp.io.dims import parse_over
from hpcapp.kernels import nd
from hpcapp.kernels.registry import load_kernel

BINS, RANGE = 5, (-1.0, 2.0)


def cube(shape=(23, 4, 5), seed=3, nan=0.1):
    rng = np.random.default_rng(seed)
    data = rng.normal(0.5, 0.6, size=shape).astype(np.float32)
    data[rng.random(shape) < nan] = np.nan
    data[0, 0, 0] = np.nan
    data[:, 1, 2] = np.nan  # a cell with no values at all
    return data


def run_serially(data, over, chunk_rows):
    """Apply the kernel chunk by chunk and fold left, as one rank would."""
    kern = nd.bind_over(load_kernel("stats"), {"bins": BINS, "range": RANGE, "over": over})
    params = {"bins": BINS, "range": RANGE, "over": over}
    partials = [
        kern.apply(data[start : start + chunk_rows], params)
        for start in range(0, len(data), chunk_rows)
    ]
    if kern.per_row:
        return {key: np.concatenate([p[key] for p in partials]) for key in kern.per_row}
    merged = partials[0]
    for partial in partials[1:]:
        merged = kern.merge(merged, partial)
    return kern.finish(merged, params)


@pytest.mark.parametrize("over", [(0,), (1, 2), (0, 1, 2), (0, 1), (0, 2), (1,), (2,)])
def test_kernel_over_any_axes_matches_numpy(over):
    data = cube()
    results = run_serially(data, over, chunk_rows=6)
    check_against(results, reference(data, over, BINS, RANGE))


def test_default_over_of_2d_and_1d_is_the_column_kernel_bit_for_bit():
    from hpcapp.kernels import stats

    table = np.ascontiguousarray(cube((40, 7, 3))[..., 0])
    for data in (np.ascontiguousarray(table[:, 0]), table):
        ours = run_serially(data, (0,), 9)
        theirs = stats.stats(data[:9], bins=BINS, range=RANGE)
        for start in range(9, len(data), 9):
            theirs = stats.merge_stats(theirs, stats.stats(data[start : start + 9], BINS, RANGE))
        theirs = stats.finalize_stats(theirs, BINS, RANGE)
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
            assert ours[key].dtype == theirs[key].dtype and ours[key].shape == theirs[key].shape


def test_parse_over_names_numbers_and_mistakes():
    assert parse_over("time", DIMS) == (0,)
    assert parse_over("lon,lat", DIMS) == (1, 2)
    assert parse_over("0, 2", DIMS) == (0, 2)
    assert parse_over("-1", DIMS) == (2,)
    for text, message in (("height", "not a dimension"), ("lat,1", "twice"), ("3", "0-2")):
        with pytest.raises(UsageError, match=message):
            parse_over(text, DIMS)


OVER_FORMS = {
    "time": (0,),
    "lat,lon": (1, 2),
    "time,lat,lon": (0, 1, 2),
    "time,lon": (0, 2),
}


@pytest.mark.parametrize("over", list(OVER_FORMS))
def test_over_forms_on_netcdf_input_equal_numpy(tmp_path, over):
    data = cube()
    spec = write_netcdf(tmp_path / "in.nc", data)
    params = {"bins": BINS, "range": [-1, 2]}
    out = tmp_path / "out.nc"
    run_here("stats", spec, output=str(out), over=over, chunk_rows=4, params=params)
    got = read_results(out)  # per-record results are in the file only
    expected = reference(data, OVER_FORMS[over], BINS, RANGE)
    check_against(got, expected)
    assert got["mean"].shape == expected["mean"].shape


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("over", list(OVER_FORMS))
def test_over_forms_are_bitwise_one_ranks_on_any_rank_count(shared_dir, over):
    from helpers import result_bytes
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    spec = f"{shared_dir}/in.nc:/tas"
    if comm.rank == 0:
        write_netcdf(shared_dir / "in.nc", cube())
    comm.Barrier()
    options = {"over": over, "chunk_rows": 4, "params": {"bins": BINS, "range": [-1, 2]}}
    alone = shared_dir / f"self-{comm.rank}.nc"
    run_here("stats", spec, output=str(alone), **options)
    run_here("stats", spec, comm=comm, output=str(shared_dir / "world.nc"), **options,
             schedule="dynamic")  # fmt: skip
    comm.Barrier()
    assert result_bytes(shared_dir / "world.nc") == result_bytes(alone)


USER_KERNELS = """
import numpy as np
import hpcapp

def plain(chunk):
    return {"total": np.nansum(chunk, axis=0)}

@hpcapp.kernel(over=True)
def with_over(chunk, over):
    assert isinstance(over, tuple)
    return {"total": np.nansum(chunk, axis=over), "axes": np.array(over)}

def named_over(chunk, over=(0,)):  # a parameter named over, undeclared: refused, not filled
    return {"total": np.nansum(chunk, axis=over)}
"""


def test_user_kernel_gets_over_only_if_it_declares_it(tmp_path):
    data = cube(nan=0.0)
    spec = write_netcdf(tmp_path / "in.nc", data)
    (tmp_path / "user.py").write_text(USER_KERNELS)
    plain = f"{tmp_path}/user.py:plain"
    done = cli_here(["run", plain, spec, "-o", f"{tmp_path}/a.nc", "--over", "lat", "-q"])
    assert done.returncode == 2
    assert "declare it with @hpcapp.kernel(over=True)" in done.stderr
    assert done.stderr.count("hpcapp:") == 1
    done = cli_here(["run", plain, spec, "-o", f"{tmp_path}/a.nc", "-q"])
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(
        read_results(tmp_path / "a.nc")["total"], np.nansum(data, 0), rtol=1e-5
    )
    with_over = f"{tmp_path}/user.py:with_over"
    argv = ["run", with_over, spec, "-o", f"{tmp_path}/b.nc", "--over", "time,lon", "-q"]
    argv += ["--chunk-rows", "12"]
    done = cli_here(argv)
    assert done.returncode == 0, done.stderr
    results = read_results(tmp_path / "b.nc")
    assert list(results["axes"]) == [0, 4]  # (0, 2) summed over the tree's two chunks
    np.testing.assert_allclose(results["total"], np.nansum(data, (0, 2)), rtol=1e-5)
    done = cli_here(["run", "stats", spec, "-o", f"{tmp_path}/c.nc", "-p", "over=1"])
    assert done.returncode == 2 and "--over" in done.stderr
    named = f"{tmp_path}/user.py:named_over"
    for extra in ([], ["--over", "lat"]):
        done = cli_here(["run", named, spec, "-o", f"{tmp_path}/d.nc", "-q", *extra])
        assert done.returncode == 2 and not (tmp_path / "d.nc").exists()
        assert done.stderr == (
            f"hpcapp: error: kernel '{named}': a parameter named `over` is given the axes to "
            "reduce (--over) only when the kernel declares over=True: add it to "
            "@hpcapp.kernel(...)\n"
        )


def test_dims_names_a_plain_hdf5_input_and_may_not_contradict_the_file(tmp_path):
    data = cube(nan=0.0)
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["x"] = data
    out = tmp_path / "out.h5"
    spec = f"{tmp_path}/plain.h5:/x"
    argv = ["run", "stats", spec, "-o", str(out), "--dims", "t,y,x", "--over", "t,x", "-q"]
    done = cli_here(argv)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as h5:
        assert [dim[0].name for dim in h5["x_mean"].dims] == ["/y"]
    done = cli_here(["run", "stats", spec, "-o", str(out), "--over", "dim_1", "--overwrite"])
    assert done.returncode == 0, done.stderr
    expected = np.nanmean(data.astype(np.float64), axis=1)  # per (t, x): a per-row output
    np.testing.assert_allclose(read_results(out)["mean"], expected, rtol=1e-12)
    named = write_netcdf(tmp_path / "named.nc", data)
    done = cli_here(["run", "stats", named, "-o", f"{tmp_path}/o.nc", "--dims", "a,b,c"])
    assert done.returncode == 2 and "names its dimension 0 'time'" in done.stderr


def test_memory_per_rank_refuses_with_the_numbers(tmp_path):
    from hpcapp.io.memory import parse_size

    assert parse_size("4GiB") == 4 << 30 and parse_size("512M") == 512 << 20
    assert parse_size("1.5 kb") == 1536 and parse_size("100") == 100
    with pytest.raises(UsageError, match="size like"):
        parse_size("lots")
    spec = write_netcdf(tmp_path / "in.nc", cube(shape=(8, 30, 40)))
    argv = ["run", "stats", spec, "-o", f"{tmp_path}/o.nc", "--chunk-rows", "2", "-q"]
    argv += ["-p", "bins=64", "-p", "range=0,1", "--memory-per-rank", "200MiB"]
    done = cli_here(argv)
    assert done.returncode == 2
    # 1200 cells x (float64 moments, float32 extremes, 64 int64 bins, below/above counts).
    from hpcapp.kernels.nd import stats

    one = stats(np.zeros((1, 30, 40), np.float32), bins=64, range=[0, 1], over=(0,))
    mib = sum(np.asarray(value).nbytes for value in one.values()) / 2**20
    assert f"7 partials of {mib:.1f} MiB each (4 chunks)" in done.stderr, done.stderr
    assert "more than --memory-per-rank 200MiB" in done.stderr
    done = cli_here([*argv[:-1], "1GiB"])
    assert done.returncode == 0, done.stderr


SLOW_OVER_KERNEL = """
import os
import time
import numpy as np
import hpcapp

@hpcapp.kernel(over=True)
def slow(chunk, over, delay=0.03):
    # A run that only finishes (a resume) skips the sleeping: no parameter of the job changes.
    time.sleep(float(os.environ.get("HPCAPP_TEST_DELAY", delay)))
    return {"s": np.nansum(chunk.astype(np.float64), axis=over)}
"""


def test_interrupted_nd_job_resumes_bitwise_and_only_with_the_same_over(tmp_path):
    import signal

    data = cube(shape=(120, 3, 4))
    spec = write_netcdf(tmp_path / "in.nc", data)
    (tmp_path / "slow.py").write_text(SLOW_OVER_KERNEL)

    def args(out, *extra):
        kernel = f"{tmp_path}/slow.py:slow"
        return ["run", kernel, spec, "-o", str(out), "--chunk-rows", "2", "-q", *extra]

    reference = tmp_path / "reference.nc"
    options = {"over": "time,lat", "chunk_rows": 2, "params": {"delay": 0}}
    run_here(f"{tmp_path}/slow.py:slow", spec, output=str(reference), **options)
    out = tmp_path / "out.nc"
    process = start_cli(args(out, "--over", "time,lat", "--checkpoint-every", "0.2"), 2)
    interrupt_when_running(process, tmp_path / "out.nc.checkpoint", 0.6, signal.SIGTERM)
    assert process.returncode == 75
    other = cli_here(args(out, "--over", "time", "--resume"))
    assert other.returncode == 2 and "different job" in other.stderr
    resume = without_quiet(args(out, "--over", "time,lat", "--resume"))
    done = run_cli(resume, 3, env={"HPCAPP_TEST_DELAY": "0"})
    assert done.returncode == 0 and "resuming" in done.stdout, done.stderr
    ours, theirs = read_results(out), read_results(reference)
    assert ours["s"].tobytes() == theirs["s"].tobytes()
    np.testing.assert_allclose(ours["s"], np.nansum(data.astype(np.float64), (0, 1)))
