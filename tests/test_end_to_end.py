"""The real CLI under mpiexec, in a subprocess with a timeout: a hang fails the test, not CI.

What the command line does (exit codes, what rank 0 prints, aborts, many ranks) is tested here;
the numbers of a job are tested in this process (``run_here``), and that they do not depend on
the rank count by tests/test_ranks_mpi.py and tests/test_engine_mpi.py under mpiexec -n 1-4.
"""

import re

import h5py
import numpy as np
import pytest
from helpers import (
    REPO,
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

from hpcapp.jobs import app
from hpcapp.parallel.engine import TIMING_COLUMNS


@pytest.mark.parametrize(
    "dtype,cols,nan",
    [
        ("float64", None, 0.03),
        ("float32", 3, 0.01),
        ("int32", 2, 0.0),
    ],
)
def test_stats_matches_numpy(tmp_path, dtype, cols, nan):
    data = sample_data(3001, cols, dtype, nan=nan)
    spec = write_dataset(tmp_path / "in.h5", data)
    got = run_here("stats", spec, chunk_rows=61, params={"bins": 12, "range": [0, 1]})
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
    attrs = root_attrs(out)
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
    timing, columns = timing_of(out)
    assert timing.shape == (3, len(TIMING_COLUMNS))
    assert columns == ["read", "compute", "reduce", "write", "rows", "startup"]
    assert timing[:, 4].sum() == 500
    assert (timing[:, 5] > 0).all()  # from the process's start: imports at least
    shown = cli_here(["show", str(out)])
    assert shown.returncode == 0 and "3 ranks on 1 host" in shown.stdout
    assert re.search(r"\n  x_mean +\(dim_1 2\) float64  ", shown.stdout), shown.stdout


def test_montecarlo_estimates_pi(tmp_path):
    # The same bits on any rank count: tests/test_engine_mpi.py.
    params = {"samples": 2_000_000, "seed": 7}
    got = run_here("montecarlo", params=params, chunk_rows=100_000)
    assert abs(got["estimate"] - np.pi) < 5 * got["stderr"]
    assert got["samples"] == 2_000_000


@pytest.mark.parametrize("form", ["file", "module"])
def test_user_kernel(tmp_path, form):
    data = sample_data(800, 3, "float64", nan=0.05)
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel = (
        f"{REPO}/hpcapp/examples/exceedances.py:exceedances"
        if form == "file"
        else "hpcapp.examples.exceedances:exceedances"
    )
    got = run_here(kernel, spec, params={"threshold": 0.8}, chunk_rows=50)
    above = data > 0.8
    np.testing.assert_array_equal(got["n_above"], above.sum(axis=0))
    np.testing.assert_allclose(got["excess"], np.where(above, data - 0.8, 0).sum(axis=0))
    np.testing.assert_array_equal(got["peak"], np.nanmax(data, axis=0))


def test_scatter_distribution_and_more_ranks_than_chunks(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", sample_data(300, 2, "float64"))
    run_here("stats", spec, output=str(tmp_path / "ref.h5"), chunk_rows=100)
    for n_ranks, extra in ((4, ["--distribute", "scatter"]), (7, [])):
        out = tmp_path / f"o{n_ranks}.h5"
        done = run_cli(
            ["run", "stats", spec, "-o", str(out), "--chunk-rows", "100", *extra], n_ranks
        )
        assert done.returncode == 0, done.stderr
        assert result_bytes(out) == result_bytes(tmp_path / "ref.h5"), n_ranks


def test_generate_writes_the_distribution_asked_for(tmp_path):
    # The same bytes on any rank count: tests/test_engine_mpi.py.
    path = tmp_path / "g.h5"
    args = ["generate", f"{path}:/data/x", "--rows", "150000", "--cols", "2"]
    done = cli_here([*args, "--dist", "normal", "--seed", "5", "--nan-fraction", "0.01"])
    assert done.returncode == 0, done.stderr
    with h5py.File(path) as h5:
        values = h5["data/x"][()]
    assert values.shape == (150000, 2)
    assert abs(np.nanmean(values)) < 0.02 and 0.005 < np.isnan(values).mean() < 0.015


def test_demo_runs_and_overwrites_only_its_own_result(tmp_path, monkeypatch):
    done = run_cli([], 2, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote hpcapp-result.h5" in done.stdout
    results = read_results(tmp_path / "hpcapp-result.h5")
    assert root_attrs(tmp_path / "hpcapp-result.h5")["hpcapp_demo"]
    assert results["count"][0] == 12_500_000 and abs(results["std"] - 1).max() < 0.01
    assert [p.name for p in tmp_path.iterdir()] == ["hpcapp-result.h5"]  # scratch input removed
    monkeypatch.setattr(app, "DEMO_ROWS", 1000)  # what is overwritten, not how much: smaller
    again = cli_here(["demo"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_results(tmp_path / "hpcapp-result.h5")["count"][0] == 1000
    (tmp_path / "hpcapp-result.h5").unlink()
    (tmp_path / "hpcapp-result.h5").write_text("precious")
    refused = cli_here([], cwd=tmp_path)
    assert refused.returncode == 2 and "not written by the demo" in refused.stderr
    assert (tmp_path / "hpcapp-result.h5").read_text() == "precious"


FAILING_KERNEL = """
import time
import numpy as np

def fails_on(chunk, bad=3, stuck=-1, delay=0.0):
    first = int(chunk[0]) // 100  # the chunk index, with 100-row chunks of arange data
    if first == bad:
        time.sleep(delay)
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


# Which rank and chunk a failure names, at 1-4 ranks: tests/test_ranks_mpi.py.
def test_kernel_failure_exits_1_with_rank_chunk_and_the_kernels_traceback(tmp_path):
    done = run_failing(tmp_path, 4, "bad=9")
    assert done.returncode == 1, done.stderr
    assert "failed on rank 3, chunk 9 (rows 900-999)" in done.stderr
    assert "ValueError: bad value in chunk 9" in done.stderr and "Traceback" in done.stderr
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
    # One error, a chunk's: chunk 0's unless another rank's failure stopped rank 0 before it
    # began (a loaded machine), as the lowest failed (chunk, rank) is the one reported.
    assert done.stderr.count("hpcapp: error") == 1
    assert re.search(r"failed on rank \d+, chunk \d+", done.stderr), done.stderr
    assert "UCX" not in done.stdout + done.stderr  # UCX logs to stdout


def test_a_rank_stuck_in_a_chunk_cannot_hang_a_failed_job(tmp_path):
    # Rank 0 sleeps 1000 s in chunk 0: only the abort can end this job before run_cli's timeout.
    # The failure waits 2 s: rank 0 is in its chunk by then, not stopped before it began.
    done = run_failing(tmp_path, 2, "bad=5", "stuck=0", "delay=2", env={"HPCAPP_ABORT_GRACE": "2"})
    # MPI_Abort(1); Hydra ORs every process's status, and the SIGKILL of the rank it killed can
    # leak in (1 | 9), depending on the order it sees the exits (pmodels/mpich#5930).
    assert done.returncode in (1, 1 | 9)
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


# Partials that meet between ranks (and not inside one): tests/test_ranks_mpi.py.
@pytest.mark.parametrize(
    "name,message",
    [
        ("returns_list", "must return a non-empty dict"),
        ("shape_changes", "cannot combine the partials of chunks 4 and 5"),
        ("key_changes", "cannot combine the partials of chunks"),
        ("strings", "only bool, integer and float arrays"),
    ],
)
def test_malformed_kernel_output_is_a_clear_error(tmp_path, name, message):
    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    kernel_file = tmp_path / "malformed.py"
    kernel_file.write_text(MALFORMED_KERNELS)
    out = tmp_path / "o.h5"
    done = cli_here(["run", f"{kernel_file}:{name}", spec, "-o", str(out), "--chunk-rows", "100"])
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and done.stderr.count("hpcapp: error") == 1
    assert not out.exists()


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
    cases = _bad_inputs(tmp_path)
    # Under mpiexec, for a check of the input's file and one of the kernel's parameters: every
    # rank exits 2 and only rank 0 prints. The rest in this process, as one rank.
    for index, (argv, message) in enumerate(cases):
        done = run_cli(argv, 2) if index in (0, 9) else cli_here(argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert message in done.stderr, (argv, done.stderr)
        assert done.stderr.count("hpcapp: error") == 1, (argv, done.stderr)
        assert "Traceback" not in done.stderr, (argv, done.stderr)
    assert (tmp_path / "exists.h5").read_text() == "keep me"
    assert not (tmp_path / "o.h5").exists()


def test_16_oversubscribed_ranks_give_the_same_bits(tmp_path):
    # 16 ranks on the CI's 2 cores: a deep tree over ranks, 8-9 chunks each.
    spec = write_dataset(tmp_path / "in.h5", sample_data(20000, 2, "float64", nan=0.01))
    one = tmp_path / "one.h5"
    run_here("stats", spec, output=str(one), chunk_rows=150, params={"range": [0, 1]})
    many = tmp_path / "many.h5"
    args = ["--chunk-rows", "150", "-p", "range=0,1", "-q"]
    done = run_cli(["run", "stats", spec, "-o", str(many), *args], 16, timeout=300)
    assert done.returncode == 0, done.stderr
    assert result_bytes(many) == result_bytes(one)
    assert root_attrs(many)["n_ranks"] == 16
    assert timing_of(many)[0].shape == (16, len(TIMING_COLUMNS))
