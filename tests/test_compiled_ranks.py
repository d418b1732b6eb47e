"""The compiled stats path under the real CLI: same bits on any rank count, and fast failures.

The chunks here are large enough (>= FUSED_MIN_VALUES values) for ``stats`` to take its numba
loop, so these runs guard that path; tests/test_end_to_end.py covers the numpy path.
"""

import time

import numpy as np
import pytest
from conftest import read_results, run_cli, write_dataset

from hpcapp.kernels.stats import FUSED_MIN_VALUES

RANK_COUNTS = (1, 2, 3, 4, 7)
N_ROWS, N_COLS, CHUNK_ROWS = 1_400_000, 2, 70_000  # 2.8 M values in 20 chunks
NETWORK_PATH = {"MPIR_CVAR_NOLOCAL": "1"}  # MPICH's network path between ranks of one host


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


def compiled_input(tmp_path, dtype):
    """Write a float input whose chunks take the compiled path; return (spec, data)."""
    assert CHUNK_ROWS * N_COLS >= FUSED_MIN_VALUES
    rng = np.random.default_rng(20261125)
    data = rng.normal(0.5, 0.3, size=(N_ROWS, N_COLS)).astype(dtype)
    data[rng.random(data.shape) < 0.01] = np.nan
    data[::9973, 1] = 1e9  # a large offset in some rows: the shifted M2 must still agree
    return write_dataset(tmp_path / "in.h5", data), data


def run_stats(spec, out, n_ranks, schedule, env=None):
    args = ["run", "stats", spec, "-o", str(out), "--chunk-rows", str(CHUNK_ROWS), "-q"]
    args += ["-p", "bins=32", "-p", "range=-0.5,1.5", "--schedule", schedule]
    done = run_cli(args, n_ranks, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    return result_bytes(out)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_stats_identical_on_any_rank_count_and_schedule(tmp_path, dtype):
    spec, data = compiled_input(tmp_path, dtype)
    reference = run_stats(spec, tmp_path / "ref.h5", 1, "static")
    for schedule in ("static", "dynamic"):
        for n_ranks in RANK_COUNTS:
            if (n_ranks, schedule) == (1, "static"):
                continue
            got = run_stats(spec, tmp_path / f"{schedule}{n_ranks}.h5", n_ranks, schedule)
            assert got == reference, f"{n_ranks} ranks, {schedule} differ from 1 rank"
    got = read_results(tmp_path / "ref.h5")
    wide = data.astype(np.float64)
    np.testing.assert_array_equal(got["count"], np.sum(~np.isnan(wide), axis=0))
    np.testing.assert_allclose(got["mean"], np.nanmean(wide, axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["var"], np.nanvar(wide, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(got["min"], np.nanmin(data, axis=0))
    np.testing.assert_array_equal(got["max"], np.nanmax(data, axis=0))
    for col in range(N_COLS):
        column = data[:, col]
        expected = np.histogram(column[~np.isnan(column)], 32, (-0.5, 1.5))[0]
        np.testing.assert_array_equal(got["hist"][col], expected)


def test_compiled_stats_identical_over_the_network_path(tmp_path):
    spec, _ = compiled_input(tmp_path, "float64")
    reference = run_stats(spec, tmp_path / "ref.h5", 1, "static")
    for n_ranks, schedule in ((2, "dynamic"), (3, "static"), (3, "dynamic")):
        out = tmp_path / f"net{n_ranks}{schedule}.h5"
        assert run_stats(spec, out, n_ranks, schedule, env=NETWORK_PATH) == reference


SLOW_FAILING_KERNEL = """
import time
import numpy as np

def slow(chunk):
    if chunk[0] == 0:
        raise ValueError("chunk 0 is bad")
    time.sleep(0.2)
    return {"s": np.asarray(chunk.sum())}
"""


@pytest.mark.parametrize("env", [{}, NETWORK_PATH], ids=["shm", "network"])
@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_a_failure_on_chunk_0_stops_every_rank_at_once(tmp_path, schedule, env):
    # 400 chunks of 0.2 s on 4 ranks: 20 s of work per rank if the stop notice did nothing.
    spec = write_dataset(tmp_path / "in.h5", np.arange(400, dtype=np.float64))
    kernel_file = tmp_path / "slow.py"
    kernel_file.write_text(SLOW_FAILING_KERNEL)
    args = ["run", f"{kernel_file}:slow", spec, "-o", str(tmp_path / "out.h5")]
    args += ["--chunk-rows", "1", "--schedule", schedule, "-q"]
    started = time.monotonic()
    done = run_cli(args, 4, timeout=60, env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "failed on rank 0, chunk 0" in done.stderr and "chunk 0 is bad" in done.stderr
    assert elapsed < 10, f"the job took {elapsed:.1f} s to end after chunk 0 failed"
