"""Dynamic scheduling gives the same bits as static, on any rank count, and resumes."""

import itertools

import h5py
import numpy as np
import pytest
from helpers import read_results, run_cli, sample_data, write_dataset

from hpcapp.schedule import dynamic_blocks

SKEWED_KERNEL = """
import time
import numpy as np

def skewed(chunk, unit=0.0):
    # Cost grows with the position in the data, like late detector runs that are denser.
    time.sleep(unit * (1 + 9 * float(chunk[0, 0])))
    return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}
"""


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


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


def test_dynamic_equals_static_on_every_rank_count(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", sample_data(2500, 3, "float32", nan=0.02))
    common = ["--chunk-rows", "23", "-p", "bins=10", "-p", "range=0,1"]
    static = tmp_path / "static.h5"
    assert run_cli(["run", "stats", spec, "-o", str(static), *common], 1).returncode == 0
    for n_ranks in (1, 2, 3, 4):
        out = tmp_path / f"dynamic{n_ranks}.h5"
        done = run_cli(
            ["run", "stats", spec, "-o", str(out), "--schedule", "dynamic", *common], n_ranks
        )
        assert done.returncode == 0, done.stderr
        assert result_bytes(out) == result_bytes(static), n_ranks
        with h5py.File(out) as h5:
            assert h5.attrs["schedule"] == "dynamic"


def test_skewed_kernel_dynamic_matches_static(tmp_path):
    data = np.linspace(0, 1, 4000).reshape(-1, 1) * np.ones((1, 2))
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "skewed.py"
    kernel_file.write_text(SKEWED_KERNEL)
    outputs = []
    for schedule in ("static", "dynamic"):
        out = tmp_path / f"{schedule}.h5"
        done = run_cli(
            [
                "run",
                f"{kernel_file}:skewed",
                spec,
                "-o",
                str(out),
                "--chunk-rows",
                "50",
                "--schedule",
                schedule,
                "-p",
                "unit=0.001",
            ],
            4,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(result_bytes(out))
    assert outputs[0] == outputs[1]
    with h5py.File(tmp_path / "dynamic.h5") as h5:
        # Chunks that take milliseconds each: blocks certainly went to more than one rank.
        assert (h5["timing"][:, 4] > 0).sum() > 1
    np.testing.assert_allclose(read_results(tmp_path / "dynamic.h5")["s"], data.sum(axis=0))


def test_dynamic_with_scatter_is_refused(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(10.0))
    done = run_cli(
        [
            "run",
            "stats",
            spec,
            "-o",
            str(tmp_path / "o.h5"),
            "--schedule",
            "dynamic",
            "--distribute",
            "scatter",
        ],
        1,
    )
    assert done.returncode == 2 and "--distribute scatter" in done.stderr


@pytest.mark.parametrize("n_ranks", [2, 3])
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


BUSY_RANK0_KERNEL = """
import os
import time
from pathlib import Path

import numpy as np

MARK = Path(__file__).with_name("rank0-awake")
STARTED = []


def busy_rank0(chunk):
    # Rank 0's first chunk takes 2 s; the others take 20 ms. Count the chunks that other ranks
    # finished while rank 0 was still inside that first chunk.
    rank0 = os.environ.get("PMI_RANK") == "0"
    if rank0 and not STARTED:
        STARTED.append(1)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # pure Python: holds the GIL, as many kernels do
            sum(range(1000))
        MARK.touch()
        return {"while_busy": np.int64(0)}
    time.sleep(0.02)
    return {"while_busy": np.int64(not rank0 and not MARK.exists())}
"""


@pytest.mark.parametrize("env", [{}, {"MPIR_CVAR_NOLOCAL": "1"}], ids=["shm", "network"])
def test_ranks_get_work_while_rank_0_is_inside_a_long_chunk(tmp_path, env):
    # Before the block server, an MPI_Fetch_and_op counter on rank 0 answered only when rank 0
    # entered MPI: the other ranks stalled after their first block (0 chunks seen here).
    spec = write_dataset(tmp_path / "in.h5", np.arange(120.0))
    kernel_file = tmp_path / "busy.py"
    kernel_file.write_text(BUSY_RANK0_KERNEL)
    args = ["run", f"{kernel_file}:busy_rank0", spec, "-o", str(tmp_path / "o.h5")]
    done = run_cli(
        [*args, "--chunk-rows", "1", "--schedule", "dynamic", "-q"], 3, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    while_busy = int(read_results(tmp_path / "o.h5")["while_busy"])
    assert while_busy >= 60, f"only {while_busy} of 119 chunks ran while rank 0 was busy"
