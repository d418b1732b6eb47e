"""The real CLI under mpiexec, in a subprocess with a timeout: a hang fails the test, not CI."""

import time

import h5py
import numpy as np
import pytest
from conftest import REPO, read_results, run_cli, sample_data, write_dataset

from hpcapp.parallel.engine import TIMING_COLUMNS
from hpcapp.partition import rank_chunks

RANK_COUNTS = (1, 2, 3, 4, 7)


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


@pytest.mark.parametrize(
    "dtype,cols,nan",
    [
        ("float64", None, 0.03),
        ("float32", 3, 0.01),
        ("int32", 2, 0.0),
    ],
)
def test_stats_bitwise_identical_across_rank_counts(tmp_path, dtype, cols, nan):
    data = sample_data(3001, cols, dtype, nan=nan)
    spec = write_dataset(tmp_path / "in.h5", data)
    outputs = {}
    for n_ranks in RANK_COUNTS:
        out = tmp_path / f"out{n_ranks}.h5"
        done = run_cli(
            [
                "run",
                "stats",
                spec,
                "-o",
                str(out),
                "--chunk-rows",
                "61",
                "-p",
                "bins=12",
                "-p",
                "range=0,1",
            ],
            n_ranks,
        )
        assert done.returncode == 0, done.stderr
        outputs[n_ranks] = result_bytes(out)
    for n_ranks in RANK_COUNTS[1:]:
        assert outputs[n_ranks] == outputs[1], f"{n_ranks} ranks differ from 1 rank"
    got = read_results(tmp_path / "out3.h5")
    columns = data.reshape(len(data), -1).astype(np.float64)
    np.testing.assert_allclose(np.atleast_1d(got["mean"]), np.nanmean(columns, axis=0), rtol=1e-9)
    np.testing.assert_allclose(np.atleast_1d(got["var"]), np.nanvar(columns, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(np.atleast_1d(got["min"]), np.nanmin(columns, axis=0))
    np.testing.assert_array_equal(np.atleast_1d(got["max"]), np.nanmax(columns, axis=0))
    raw = data.reshape(len(data), -1)
    hist = [
        np.histogram(raw[:, c][~np.isnan(columns[:, c])], 12, (0, 1))[0]
        for c in range(raw.shape[1])
    ]
    np.testing.assert_array_equal(got["hist"].reshape(len(hist), -1), np.stack(hist))


def test_output_layout_and_provenance(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", sample_data(500, 2, "float64"))
    out = tmp_path / "out.h5"
    done = run_cli(["run", "stats", spec, "-o", str(out), "--chunk-rows", "100"], 3)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and done.stdout.count("wrote") == 1
    with h5py.File(out) as h5:
        attrs = dict(h5.attrs)
        for key in (
            "hpcapp_version",
            "kernel",
            "params",
            "input",
            "input_shape",
            "input_dtype",
            "chunk_rows",
            "n_chunks",
            "n_ranks",
            "mpi_library",
            "hosts",
            "started",
            "finished",
            "wall_seconds",
        ):
            assert key in attrs, key
        assert attrs["n_ranks"] == 3 and attrs["n_chunks"] == 5 and attrs["hosts"] == 1
        assert list(attrs["input_shape"]) == [500, 2] and attrs["chunk_rows"] == 100
        assert attrs["started"].endswith("Z") and attrs["wall_seconds"] > 0
        timing = h5["timing"]
        assert timing.shape == (3, len(TIMING_COLUMNS))
        assert [c for c in timing.attrs["columns"]] == [
            "read",
            "compute",
            "reduce",
            "write",
            "rows",
            "startup",
        ]
        assert timing[:, 4].sum() == 500
        assert (timing[:, 5] > 0).all()  # from the process's start: imports at least
    shown = run_cli(["show", str(out)])
    assert shown.returncode == 0 and "n_ranks" in shown.stdout and "mean" in shown.stdout


def test_montecarlo_identical_across_rank_counts(tmp_path):
    results = []
    for n_ranks in (1, 3, 4):
        out = tmp_path / f"mc{n_ranks}.h5"
        done = run_cli(
            [
                "run",
                "montecarlo",
                "-o",
                str(out),
                "-p",
                "samples=2000000",
                "-p",
                "seed=7",
                "--chunk-rows",
                "100000",
            ],
            n_ranks,
        )
        assert done.returncode == 0, done.stderr
        results.append(result_bytes(out))
    assert results[0] == results[1] == results[2]
    got = read_results(tmp_path / "mc1.h5")
    assert abs(got["estimate"] - np.pi) < 5 * got["stderr"]


@pytest.mark.parametrize("form", ["file", "module"])
def test_user_kernel(tmp_path, form):
    data = sample_data(800, 3, "float64", nan=0.05)
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel = (
        f"{REPO}/hpcapp/examples/exceedances.py:exceedances"
        if form == "file"
        else "hpcapp.examples.exceedances:exceedances"
    )
    out = tmp_path / "out.h5"
    done = run_cli(
        ["run", kernel, spec, "-o", str(out), "-p", "threshold=0.8", "--chunk-rows", "50"], 3
    )
    assert done.returncode == 0, done.stderr
    got = read_results(out)
    above = data > 0.8
    np.testing.assert_array_equal(got["n_above"], above.sum(axis=0))
    np.testing.assert_allclose(got["excess"], np.where(above, data - 0.8, 0).sum(axis=0))
    np.testing.assert_array_equal(got["peak"], np.nanmax(data, axis=0))


def test_scatter_distribution_and_more_ranks_than_chunks(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", sample_data(300, 2, "float64"))
    outputs = []
    for n_ranks, extra in ((1, []), (4, ["--distribute", "scatter"]), (7, [])):
        out = tmp_path / f"o{n_ranks}.h5"
        done = run_cli(
            ["run", "stats", spec, "-o", str(out), "--chunk-rows", "100", *extra], n_ranks
        )
        assert done.returncode == 0, done.stderr
        outputs.append(result_bytes(out))
    assert outputs[0] == outputs[1] == outputs[2]


def test_generate_identical_across_rank_counts(tmp_path):
    files = []
    for n_ranks in (1, 3):
        path = tmp_path / f"g{n_ranks}.h5"
        done = run_cli(
            [
                "generate",
                f"{path}:/data/x",
                "--rows",
                "150000",
                "--cols",
                "2",
                "--dist",
                "normal",
                "--seed",
                "5",
                "--nan-fraction",
                "0.01",
            ],
            n_ranks,
        )
        assert done.returncode == 0, done.stderr
        with h5py.File(path) as h5:
            files.append(h5["data/x"][()])
    assert files[0].shape == (150000, 2) and files[0].tobytes() == files[1].tobytes()
    assert abs(np.nanmean(files[0])) < 0.02 and 0.005 < np.isnan(files[0]).mean() < 0.015


def test_demo_runs_and_overwrites_only_its_own_result(tmp_path):
    started = time.monotonic()
    done = run_cli([], 2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert "wrote hpcapp-result.h5" in done.stdout
    with h5py.File(tmp_path / "hpcapp-result.h5") as h5:
        assert h5.attrs["hpcapp_demo"] and h5["result/count"][0] == 12_500_000
        assert abs(h5["result/std"][()] - 1).max() < 0.01
    assert [p.name for p in tmp_path.iterdir()] == ["hpcapp-result.h5"]  # scratch input removed
    again = run_cli(["demo"], 1, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (tmp_path / "hpcapp-result.h5").unlink()
    (tmp_path / "hpcapp-result.h5").write_text("precious")
    refused = run_cli([], 2, cwd=tmp_path)
    assert refused.returncode == 2 and "not written by the demo" in refused.stderr
    assert (tmp_path / "hpcapp-result.h5").read_text() == "precious"


FAILING_KERNEL = """
import time
import numpy as np

def fails_on(chunk, bad=3, stuck=-1):
    first = int(chunk[0]) // 100  # the chunk index, with 100-row chunks of arange data
    if first == bad:
        raise ValueError(f"bad value in chunk {first}")
    if first == stuck:
        time.sleep(1000)
    return {"s": np.asarray(chunk.sum())}
"""


def run_failing(tmp_path, n_ranks, *params, kernel_text=FAILING_KERNEL, env=None):
    """Run ``fails_on`` over 10 chunks of 100 rows (arange data); return the process."""
    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    kernel_file = tmp_path / "failing.py"
    kernel_file.write_text(kernel_text)
    args = ["run", f"{kernel_file}:fails_on", spec, "-o", str(tmp_path / "out.h5")]
    args += ["--chunk-rows", "100", *(f"-p{param}" for param in params)]
    return run_cli(args, n_ranks, timeout=60, env=env)


@pytest.mark.parametrize("n_ranks,bad", [(2, 3), (3, 9), (4, 3), (4, 9), (3, 0)])
def test_kernel_failure_ends_the_job_quickly_with_rank_and_chunk(tmp_path, n_ranks, bad):
    started = time.monotonic()
    done = run_failing(tmp_path, n_ranks, f"bad={bad}")
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.stderr
    owner = next(r for r in range(n_ranks) if bad in rank_chunks(10, n_ranks, r))
    assert f"failed on rank {owner}, chunk {bad} (rows {bad * 100}-{bad * 100 + 99})" in done.stderr
    assert f"ValueError: bad value in chunk {bad}" in done.stderr and "Traceback" in done.stderr
    assert 'failing.py", line' in done.stderr  # the kernel's own frame is shown
    assert done.stderr.count("hpcapp: error") == 1
    # Every receive is completed or withdrawn before MPI finalizes: UCX has nothing to warn of.
    assert "UCX" not in done.stdout + done.stderr  # UCX logs to stdout
    assert not (tmp_path / "out.h5").exists()


def test_several_ranks_failing_at_once_print_one_message(tmp_path):
    every_later_chunk = FAILING_KERNEL.replace("if first == bad:", "if first >= bad:")
    done = run_failing(tmp_path, 4, "bad=2", kernel_text=every_later_chunk)
    assert done.returncode == 1
    assert done.stderr.count("hpcapp: error") == 1 and "bad value in chunk" in done.stderr
    # Notices that arrived after a rank's last look are received before MPI finalizes.
    assert "UCX" not in done.stdout + done.stderr  # UCX logs to stdout


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_every_rank_failing_on_its_first_chunk_leaves_no_ucx_warning(tmp_path, n_ranks):
    done = run_failing(tmp_path, n_ranks, "bad=0", kernel_text=FAILING_KERNEL.replace("==", ">="))
    assert done.returncode == 1
    assert done.stderr.count("hpcapp: error") == 1 and "chunk 0" in done.stderr
    assert "UCX" not in done.stdout + done.stderr  # UCX logs to stdout


def test_a_rank_stuck_in_a_chunk_cannot_hang_a_failed_job(tmp_path):
    started = time.monotonic()
    done = run_failing(tmp_path, 2, "bad=5", "stuck=0", env={"HPCAPP_ABORT_GRACE": "2"})
    assert time.monotonic() - started < 20
    assert done.returncode == 1
    assert "bad value in chunk 5" in done.stderr and "aborting the job" in done.stderr


MALFORMED_KERNELS = """
import numpy as np

def returns_list(chunk):
    return [chunk.sum()]

def shape_changes(chunk):
    return {"s": np.zeros(1 + int(chunk[0] >= 500))}

def key_changes(chunk):
    return {"a" if chunk[0] < 500 else "b": np.float64(1)}

def strings(chunk):
    return {"s": np.array(["x"])}
"""


@pytest.mark.parametrize(
    "name,message",
    [
        ("returns_list", "must return a non-empty dict"),
        ("shape_changes", "cannot combine the partials of chunks"),
        ("key_changes", "cannot combine the partials of chunks"),
        ("strings", "only bool, integer and float arrays"),
    ],
)
def test_malformed_kernel_output_is_a_clear_error(tmp_path, name, message):
    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    kernel_file = tmp_path / "malformed.py"
    kernel_file.write_text(MALFORMED_KERNELS)
    done = run_cli(
        ["run", f"{kernel_file}:{name}", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "100"],
        3,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and done.stderr.count("hpcapp: error") == 1


def _bad_inputs(tmp):
    good = write_dataset(tmp / "good.h5", sample_data(10, 2, "float64"))
    write_dataset(tmp / "good.h5", np.array([b"a", b"b"]), name="strings")
    write_dataset(tmp / "good.h5", np.float64(1.0), name="scalar")  # N-D is fine
    write_dataset(tmp / "good.h5", np.zeros((0, 2)), name="empty")
    with h5py.File(tmp / "good.h5", "a") as h5:
        h5.create_group("group")
    (tmp / "text.h5").write_text("not hdf5")
    (tmp / "exists.h5").write_text("keep me")
    g = str(tmp / "good.h5")
    return [
        (["run", "stats", f"{tmp}/missing.h5:/x", "-o", f"{tmp}/o.h5"], "does not exist"),
        (["run", "stats", f"{tmp}:/x", "-o", f"{tmp}/o.h5"], "not a file"),
        (["run", "stats", f"{tmp}/text.h5:/x", "-o", f"{tmp}/o.h5"], "not an HDF5 file"),
        (["run", "stats", f"{g}:/nope", "-o", f"{tmp}/o.h5"], "no dataset '/nope'"),
        (["run", "stats", f"{g}:/group", "-o", f"{tmp}/o.h5"], "is a group"),
        (["run", "stats", f"{g}:/strings", "-o", f"{tmp}/o.h5"], "integer and float"),
        (["run", "stats", f"{g}:/scalar", "-o", f"{tmp}/o.h5"], "is a scalar"),
        (["run", "stats", f"{g}:/empty", "-o", f"{tmp}/o.h5"], "is empty"),
        (["run", "nosuch", good, "-o", f"{tmp}/o.h5"], "unknown kernel"),
        (["run", "stats", good, "-o", f"{tmp}/o.h5", "-p", "bns=3"], "did you mean 'bins'"),
        (["run", "stats", good, "-o", f"{tmp}/exists.h5"], "--overwrite"),
        (["run", "stats", good, "-o", f"{tmp}/nodir/o.h5"], "does not exist"),
        (["run", "stats", good, "-o", g, "--overwrite"], "is the input file"),
        (["run", "stats", good, "-o", f"{tmp}/o.h5", "--chunk-rows", "-5"], "--chunk-rows"),
        (["run", "montecarlo", good, "-o", f"{tmp}/o.h5"], "takes no INPUT"),
    ]


def test_bad_input_exits_2_with_one_message_and_destroys_nothing(tmp_path):
    for argv, message in _bad_inputs(tmp_path):
        done = run_cli(argv, 2)
        assert done.returncode == 2, (argv, done.stderr)
        assert message in done.stderr, (argv, done.stderr)
        assert done.stderr.count("hpcapp: error") == 1, (argv, done.stderr)
        assert "Traceback" not in done.stderr, (argv, done.stderr)
    assert (tmp_path / "exists.h5").read_text() == "keep me"
    assert not (tmp_path / "o.h5").exists()


def test_64_oversubscribed_ranks_give_the_same_bits(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", sample_data(20000, 2, "float64", nan=0.01))
    args = ["--chunk-rows", "150", "-p", "range=0,1", "-q"]
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    assert run_cli(["run", "stats", spec, "-o", str(one), *args], 1).returncode == 0
    done = run_cli(["run", "stats", spec, "-o", str(many), *args], 64, timeout=300)
    assert done.returncode == 0, done.stderr
    assert result_bytes(many) == result_bytes(one)
    with h5py.File(many) as h5:
        assert h5.attrs["n_ranks"] == 64 and h5["timing"].shape == (64, len(TIMING_COLUMNS))


def test_partials_that_do_not_combine_across_ranks(tmp_path):
    # 2 ranks: chunks 0-4 on rank 0 (shape 1), 5-9 on rank 1 (shape 2): they meet in the
    # reduction between ranks, not inside one rank.
    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    kernel_file = tmp_path / "malformed.py"
    kernel_file.write_text(MALFORMED_KERNELS)
    done = run_cli(
        [
            "run",
            f"{kernel_file}:shape_changes",
            spec,
            "-o",
            str(tmp_path / "o.h5"),
            "--chunk-rows",
            "100",
        ],
        2,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot combine the partials of chunks 4 and 5" in done.stderr
    assert done.stderr.count("hpcapp: error") == 1
