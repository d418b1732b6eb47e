"""A series job resumes per batch of cells: stopped or failed, then resumed on any rank count."""

import signal
import time

import numpy as np
import pytest
from helpers import cli_here, read_results, result_bytes, root_attrs, run_cli, run_here, start_cli
from ncdata import write_netcdf

from hpcapp.io import series_checkpoint

# 12 slabs of lat; at 1 rank a batch is 1 slab, at 2 ranks 3, at 3 ranks 4 (slab_plan).
# The slow kernel's 1 s a batch leaves a test 3 s (three batches at 2 ranks) between the first
# kept batch and the last one to stop the job in, on a loaded machine too.
MEMORY = ["--memory-per-rank", "200.01MiB", "--chunk-rows", "4"]
NO_DELAY = {"HPCAPP_TEST_DELAY": "0"}
FAIL = {"HPCAPP_TEST_DELAY": "0", "HPCAPP_TEST_FAIL_ABOVE": "500"}  # at lat 7 (a hot cell)

SLOW_SERIES = '''
import os
import time
import numpy as np
import hpcapp


@hpcapp.kernel(series=True)
def slow(series, delay=1.0):
    """Sleeps, then each series' running maximum (per row) and its count of values (per cell)."""
    time.sleep(float(os.environ.get("HPCAPP_TEST_DELAY", delay)))
    above = os.environ.get("HPCAPP_TEST_FAIL_ABOVE")
    if above and series.size and np.nanmax(series) > float(above):
        raise ValueError("a value above the limit")
    return {"peak": np.fmax.accumulate(series, axis=0), "n": (~np.isnan(series)).sum(axis=0)}
'''


@pytest.fixture
def job(tmp_path):
    """A packed netCDF field with gaps (40, 12, 5), the slow kernel, and run's arguments."""
    rng = np.random.default_rng(8)
    stored = rng.integers(-3000, 3000, size=(40, 12, 5)).astype(np.int16)
    stored[rng.random(stored.shape) < 0.2] = -32767
    stored[5, 7, 2] = 32000  # 600 K: HPCAPP_TEST_FAIL_ABOVE=500 fails the batch holding lat 7
    attrs = {"scale_factor": 0.01, "add_offset": 280.0, "units": "K"}
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=attrs, fill_value=-32767)
    kernel = tmp_path / "slow.py"
    kernel.write_text(SLOW_SERIES)

    def args(out, *extra):
        return ["run", f"{kernel}:slow", spec, "-o", str(out), *MEMORY, *extra]

    args.kernel, args.spec = f"{kernel}:slow", spec
    return args


def reference(job, tmp_path, monkeypatch):
    """Write the job's result without interruption, in this process; return its path."""
    monkeypatch.setenv("HPCAPP_TEST_DELAY", "0")
    out = tmp_path / "reference.nc"
    run_here(job.kernel, job.spec, output=str(out), memory_per_rank="200.01MiB", chunk_rows=4)
    # Not for the runs started after it: they inherit this environment, and an interrupted run
    # needs its kernel's delay to be stopped before its last batch.
    monkeypatch.delenv("HPCAPP_TEST_DELAY")
    return out


@pytest.mark.parametrize(("first", "second"), [(1, 1), (2, 1), (2, 3)])
def test_interrupted_then_resumed_on_any_rank_count_is_bitwise_identical(
    tmp_path, job, monkeypatch, first, second
):
    want = reference(job, tmp_path, monkeypatch)
    out, folder = tmp_path / "out.nc", tmp_path / "out.nc.checkpoint"
    process = start_cli(job(out), first)
    deadline = time.monotonic() + 60  # a hang guard, not a measurement
    while not series_checkpoint.finished_batches(str(folder)):  # a batch is kept
        assert time.monotonic() < deadline and process.poll() is None, "no batch was kept"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr
    assert "are kept in" in stderr and "--resume (on any number of ranks)" in stderr, stderr
    assert not out.exists()
    kept = series_checkpoint.finished_batches(str(folder))
    resumed = run_cli(job(out, "--resume"), second, env=NO_DELAY)
    assert resumed.returncode == 0, resumed.stderr
    done = sum(b - a for a, b in map(series_checkpoint.run_of, kept))
    assert f"resuming from {folder}: {done} of 12 slabs along lat were done" in resumed.stdout
    assert 0 < done < 12
    assert result_bytes(out) == result_bytes(want)
    assert not folder.exists()
    attrs = root_attrs(out)
    assert attrs["resumed"] and attrs["n_ranks"] == second
    # Only the slabs left were read: 12 - done of 12 slabs, 40 records of 5 int16 cells.
    assert attrs["series_bytes_read"] == (12 - done) * 40 * 5 * 2
    assert attrs["series_input_bytes"] == 12 * 40 * 5 * 2


def test_interrupted_twice_on_other_rank_counts(tmp_path, job, monkeypatch):
    want = reference(job, tmp_path, monkeypatch)
    out, folder = tmp_path / "out.nc", tmp_path / "out.nc.checkpoint"
    before: list[str] = []
    # One rank first (12 batches of 1 slab), then two (batches of 3): each run has several
    # batches left after its first kept one, so a loaded machine cannot finish it first.
    for n_ranks, extra in ((1, ()), (2, ("--resume",))):
        process = start_cli(job(out, *extra), n_ranks)
        deadline = time.monotonic() + 60  # a hang guard, not a measurement
        while len(series_checkpoint.finished_batches(str(folder))) <= len(before):  # a new one
            assert time.monotonic() < deadline and process.poll() is None, "no batch was kept"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 75, stderr
        if before:
            assert f"and {len(before)} of an earlier one are kept" in stderr, stderr
        before = series_checkpoint.finished_batches(str(folder))
    resumed = run_cli(job(out, "--resume"), 3, env=NO_DELAY)
    assert resumed.returncode == 0, resumed.stderr
    assert result_bytes(out) == result_bytes(want)


def test_a_failed_job_resumes_from_its_kept_batches(tmp_path, job, monkeypatch):
    want = reference(job, tmp_path, monkeypatch)
    out, folder = tmp_path / "out.nc", tmp_path / "out.nc.checkpoint"
    failed = cli_here(job(out), env=FAIL)
    assert failed.returncode == 1 and "a value above the limit" in failed.stderr
    assert (
        f"The checkpoint {folder} keeps the batches finished before the failure (slabs 0-6)"
        in failed.stderr
    )
    assert "run again with --resume to continue from them" in failed.stderr
    kept = [series_checkpoint.run_of(p) for p in series_checkpoint.finished_batches(str(folder))]
    assert kept == [(n, n + 1) for n in range(7)]  # one slab per batch, up to lat 7
    plain = cli_here(job(out), env=NO_DELAY)  # neither --resume nor --overwrite
    assert plain.returncode == 2 and "add --resume to continue it" in plain.stderr
    other = cli_here(job(out, "--resume", "-p", "delay=0.1"), env=NO_DELAY)
    assert other.returncode == 2 and "was made for a different job" in other.stderr
    assert "params" in other.stderr and not out.exists()
    resumed = cli_here(job(out, "--resume"), env=NO_DELAY)
    assert resumed.returncode == 0, resumed.stderr
    assert "7 of 12 slabs along lat were done (0-6)" in resumed.stdout
    assert result_bytes(out) == result_bytes(want)
    assert root_attrs(out)["series_bytes_read"] == 5 * 40 * 5 * 2
    again = cli_here(job(out, "--resume"), env=NO_DELAY)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_overwrite_discards_the_kept_batches(tmp_path, job, monkeypatch):
    want = reference(job, tmp_path, monkeypatch)
    out, folder = tmp_path / "out.nc", tmp_path / "kept"
    failed = cli_here(job(out, "--checkpoint", str(folder)), env=FAIL)
    assert failed.returncode == 1 and series_checkpoint.finished_batches(str(folder))
    fresh = cli_here(job(out, "--checkpoint", str(folder), "--overwrite"), env=NO_DELAY)
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stdout and not folder.exists()
    assert result_bytes(out) == result_bytes(want)
    assert root_attrs(out)["series_bytes_read"] == 12 * 40 * 5 * 2


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("overlap", "overlaps the batch before it"),
        ("cells", "does not hold one value per cell"),
        ("beyond", "beyond the 12 of the input"),
    ],
)
def test_an_inconsistent_checkpoint_is_refused(tmp_path, job, damage, fragment):
    import h5py

    out, folder = tmp_path / "out.nc", tmp_path / "out.nc.checkpoint"
    assert cli_here(job(out), env=FAIL).returncode == 1
    first = series_checkpoint.batch_path(str(folder), 0, 1)
    if damage == "overlap":
        (folder / first.name).rename(series_checkpoint.batch_path(str(folder), 0, 2))
    elif damage == "cells":
        with h5py.File(first, "a") as h5:
            del h5["n"]
            h5["n"] = np.zeros(4)
    else:
        first.rename(series_checkpoint.batch_path(str(folder), 11, 13))
    done = cli_here(job(out, "--resume"), env=NO_DELAY)
    assert done.returncode == 2 and fragment in done.stderr, done.stderr
    assert "--overwrite instead of --resume" in done.stderr and not out.exists()


def test_the_kept_batches_hold_what_the_output_holds(tmp_path, job, monkeypatch):
    want = read_results(reference(job, tmp_path, monkeypatch))
    folder = tmp_path / "out.nc.checkpoint"
    assert cli_here(job(tmp_path / "out.nc"), env=FAIL).returncode == 1
    for (first, end), found in series_checkpoint.read_batches(
        series_checkpoint.finished_batches(str(folder))
    ):
        for key, value in found.items():
            whole = np.asarray(want[key], np.float64)[..., first:end, :]
            assert value.tobytes() == np.ascontiguousarray(whole).reshape(value.shape).tobytes()
