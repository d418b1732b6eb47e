"""N-D inputs: --over by name or axis, the three forms, bitwise equal at 1, 2 and 3 ranks."""

import h5py
import numpy as np
import pytest
from helpers import read_results, run_cli
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
def test_over_forms_on_netcdf_input_equal_numpy_and_bitwise_on_1_2_3_ranks(tmp_path, over):
    data = cube()
    spec = write_netcdf(tmp_path / "in.nc", data)
    outputs = []
    for ranks, schedule in ((1, "static"), (2, "static"), (3, "dynamic")):
        out = tmp_path / f"out{ranks}.nc"
        argv = ["run", "stats", spec, "-o", str(out), "--over", over, "--chunk-rows", "4"]
        argv += ["-p", f"bins={BINS}", "-p", "range=-1,2", "--schedule", schedule, "-q"]
        done = run_cli(argv, ranks)
        assert done.returncode == 0, done.stderr
        outputs.append(read_results(out))
    expected = reference(data, OVER_FORMS[over], BINS, RANGE)
    check_against(outputs[0], expected)
    assert outputs[0]["mean"].shape == expected["mean"].shape
    for other in outputs[1:]:
        assert other.keys() == outputs[0].keys()
        for key, value in outputs[0].items():
            assert np.array_equal(value, other[key], equal_nan=True), key
            assert value.dtype == other[key].dtype


USER_KERNELS = """
import numpy as np

def plain(chunk):
    return {"total": np.nansum(chunk, axis=0)}

def with_over(chunk, over=(0,)):
    assert isinstance(over, tuple)
    return {"total": np.nansum(chunk, axis=over), "axes": np.array(over)}
"""


def test_user_kernel_gets_over_only_if_it_asks(tmp_path):
    data = cube(nan=0.0)
    spec = write_netcdf(tmp_path / "in.nc", data)
    (tmp_path / "user.py").write_text(USER_KERNELS)
    plain = f"{tmp_path}/user.py:plain"
    done = run_cli(["run", plain, spec, "-o", f"{tmp_path}/a.nc", "--over", "lat", "-q"], 2)
    assert done.returncode == 2
    assert "give it a parameter `over`" in done.stderr and done.stderr.count("hpcapp:") == 1
    done = run_cli(["run", plain, spec, "-o", f"{tmp_path}/a.nc", "-q"], 2)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(
        read_results(tmp_path / "a.nc")["total"], np.nansum(data, 0), rtol=1e-5
    )
    with_over = f"{tmp_path}/user.py:with_over"
    argv = ["run", with_over, spec, "-o", f"{tmp_path}/b.nc", "--over", "time,lon", "-q"]
    argv += ["--chunk-rows", "12"]
    done = run_cli(argv, 2)
    assert done.returncode == 0, done.stderr
    results = read_results(tmp_path / "b.nc")
    assert list(results["axes"]) == [0, 4]  # (0, 2) summed over the tree's two chunks
    np.testing.assert_allclose(results["total"], np.nansum(data, (0, 2)), rtol=1e-5)
    done = run_cli(["run", "stats", spec, "-o", f"{tmp_path}/c.nc", "-p", "over=1"], 1)
    assert done.returncode == 2 and "--over" in done.stderr


def test_dims_names_a_plain_hdf5_input_and_may_not_contradict_the_file(tmp_path):
    data = cube(nan=0.0)
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["x"] = data
    out = tmp_path / "out.h5"
    spec = f"{tmp_path}/plain.h5:/x"
    argv = ["run", "stats", spec, "-o", str(out), "--dims", "t,y,x", "--over", "t,x", "-q"]
    done = run_cli(argv, 2)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as h5:
        assert [dim[0].name for dim in h5["result/mean"].dims] == ["/result/y"]
    done = run_cli(["run", "stats", spec, "-o", str(out), "--over", "dim_1", "--overwrite"], 1)
    assert done.returncode == 0, done.stderr
    expected = np.nanmean(data.astype(np.float64), axis=1)  # per (t, x): a per-row output
    np.testing.assert_allclose(read_results(out)["mean"], expected, rtol=1e-12)
    named = write_netcdf(tmp_path / "named.nc", data)
    done = run_cli(["run", "stats", named, "-o", f"{tmp_path}/o.nc", "--dims", "a,b,c"], 1)
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
    done = run_cli(argv, 1)
    assert done.returncode == 2
    # 1200 cells x (float64 moments, float32 extremes, 64 int64 bins, below/above counts).
    from hpcapp.kernels.nd import stats

    one = stats(np.zeros((1, 30, 40), np.float32), bins=64, range=[0, 1], over=(0,))
    mib = sum(np.asarray(value).nbytes for value in one.values()) / 2**20
    assert f"7 partials of {mib:.1f} MiB each (4 chunks)" in done.stderr, done.stderr
    assert "more than --memory-per-rank 200MiB" in done.stderr
    done = run_cli([*argv[:-1], "1GiB"], 1)
    assert done.returncode == 0, done.stderr


SLOW_OVER_KERNEL = """
import time
import numpy as np

def slow(chunk, over=(0,), delay=0.03):
    time.sleep(delay)
    return {"s": np.nansum(chunk.astype(np.float64), axis=over)}
"""


def test_interrupted_nd_job_resumes_bitwise_and_only_with_the_same_over(tmp_path):
    import signal

    from test_resume import interrupt_when_running, start_cli

    data = cube(shape=(120, 3, 4))
    spec = write_netcdf(tmp_path / "in.nc", data)
    (tmp_path / "slow.py").write_text(SLOW_OVER_KERNEL)

    def args(out, *extra):
        kernel = f"{tmp_path}/slow.py:slow"
        return ["run", kernel, spec, "-o", str(out), "--chunk-rows", "2", "-q", *extra]

    reference = tmp_path / "reference.nc"
    assert run_cli(args(reference, "--over", "time,lat", "-p", "delay=0"), 1).returncode == 0
    out = tmp_path / "out.nc"
    process = start_cli(args(out, "--over", "time,lat", "--checkpoint-every", "0.2"), 2)
    interrupt_when_running(process, tmp_path / "out.nc.checkpoint", 0.6, signal.SIGTERM)
    assert process.returncode == 75
    other = run_cli(args(out, "--over", "time", "--resume"), 2)
    assert other.returncode == 2 and "different job" in other.stderr
    done = run_cli(args(out, "--over", "time,lat", "--resume"), 3)
    assert done.returncode == 0 and "resuming" in done.stdout, done.stderr
    ours, theirs = read_results(out), read_results(reference)
    assert ours["s"].tobytes() == theirs["s"].tobytes()
    np.testing.assert_allclose(ours["s"], np.nansum(data.astype(np.float64), (0, 1)))
