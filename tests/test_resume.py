"""Interrupt, checkpoint, resume (on another rank count), atomic output, launch mistakes."""

import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import clean_env, cli_command, read_results, run_cli, sample_data, write_dataset

SLOW_KERNEL = """
import time
import numpy as np

def slow(chunk, delay=0.04):
    time.sleep(delay)
    return {"s": chunk.sum(axis=0), "m": np.fmax.reduce(chunk, axis=0), "n": np.int64(len(chunk))}
slow.combine = {"s": "sum", "m": "max", "n": "sum"}
"""


@pytest.fixture
def job(tmp_path):
    """An input, a slow kernel, and the arguments of a run over them."""
    spec = write_dataset(tmp_path / "in.h5", sample_data(12000, 3, "float64", nan=0.01))
    kernel_file = tmp_path / "slow.py"
    kernel_file.write_text(SLOW_KERNEL)

    def args(out, *extra):
        return ["run", f"{kernel_file}:slow", spec, "-o", str(out), "--chunk-rows", "50", *extra]

    return args


def result_bytes(path):
    return {key: value.tobytes() for key, value in read_results(path).items()}


def start_cli(args, n_ranks):
    return subprocess.Popen(
        cli_command(args, n_ranks),
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def interrupt_when_running(process, checkpoint_dir, delay, sig=signal.SIGTERM):
    """Wait until the job has started computing, then ``delay`` seconds, then send ``sig``."""
    deadline = time.monotonic() + 60
    while not (checkpoint_dir / "manifest.json").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.communicate()
            pytest.fail("the job did not start")
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(sig)
    return process.communicate(timeout=60)


@pytest.mark.parametrize(
    "first,second,delay,sig,schedule",
    [
        (3, 2, 1.5, signal.SIGTERM, "static"),
        (2, 4, 2.0, signal.SIGUSR1, "static"),
        (4, 1, 1.2, signal.SIGINT, "static"),
        (3, 2, 1.5, signal.SIGTERM, "dynamic"),
    ],
)
def test_interrupted_then_resumed_on_another_rank_count_is_bitwise_identical(
    tmp_path, job, first, second, delay, sig, schedule
):
    reference = tmp_path / "reference.h5"
    assert run_cli(job(reference, "-p", "delay=0"), 1).returncode == 0
    out = tmp_path / "out.h5"
    process = start_cli(job(out, "--checkpoint-every", "0.2", "--schedule", schedule), first)
    moment = delay * np.random.default_rng().uniform(0.2, 1.0)  # a random moment of the run
    _, stderr = interrupt_when_running(process, tmp_path / "out.h5.checkpoint", moment, sig)
    assert process.returncode == 75, stderr
    assert "--resume" in stderr and not out.exists()
    assert (tmp_path / "out.h5.checkpoint" / "manifest.json").exists()
    resumed = run_cli(job(out, "--resume", "--schedule", schedule), second)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert result_bytes(out) == result_bytes(reference)
    assert not (tmp_path / "out.h5.checkpoint").exists()
    with h5py.File(out) as h5:
        assert h5.attrs["resumed"] and h5.attrs["n_ranks"] == second


def test_resume_twice_interrupted(tmp_path, job):
    reference = tmp_path / "reference.h5"
    assert run_cli(job(reference, "-p", "delay=0"), 2).returncode == 0
    out = tmp_path / "out.h5"
    for n_ranks in (2, 3):
        process = start_cli(job(out, "--resume", "--checkpoint-every", "0.2"), n_ranks)
        interrupt_when_running(process, tmp_path / "out.h5.checkpoint", 0.7)
        assert process.returncode == 75
    final = run_cli(job(out, "--resume"), 4)
    assert final.returncode == 0, final.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_resume_refuses_a_checkpoint_of_another_job(tmp_path, job):
    out = tmp_path / "out.h5"
    process = start_cli(job(out), 2)
    interrupt_when_running(process, tmp_path / "out.h5.checkpoint", 0.5)
    assert process.returncode == 75
    other = run_cli(job(out, "--resume", "-p", "delay=0.01"), 2)
    assert other.returncode == 2 and "different job" in other.stderr and "params" in other.stderr
    chunks = run_cli(job(out, "--resume", "--chunk-rows", "60"), 2)
    assert chunks.returncode == 2 and "chunk_rows" in chunks.stderr
    fresh = run_cli(job(out), 2)
    assert fresh.returncode == 2 and "add --resume" in fresh.stderr
    assert (tmp_path / "out.h5.checkpoint" / "manifest.json").exists()


def test_resuming_a_finished_job_does_nothing(tmp_path, job):
    out = tmp_path / "out.h5"
    assert run_cli(job(out, "-p", "delay=0"), 2).returncode == 0
    before = (out.stat().st_mtime_ns, out.read_bytes())
    again = run_cli(job(out, "-p", "delay=0", "--resume"), 3)
    assert again.returncode == 0 and "nothing to resume" in again.stdout
    assert (out.stat().st_mtime_ns, out.read_bytes()) == before


BIG_RESULT_KERNEL = """
import numpy as np

def big(chunk):
    return {"big": np.full(40_000_000, float(chunk.sum()))}
"""


def test_killed_while_writing_leaves_the_previous_output(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(10, dtype=np.float64))
    kernel_file = tmp_path / "big.py"
    kernel_file.write_text(BIG_RESULT_KERNEL)
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous result")
    args = ["run", f"{kernel_file}:big", spec, "-o", str(out), "--overwrite"]
    process = subprocess.Popen(
        cli_command(args, 2),
        env=clean_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".out.h5.tmp") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and process.poll() is None, "no temporary file seen"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert out.read_bytes() == b"previous result"


def test_srun_without_mpi_plugin_is_refused(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(10.0))
    done = run_cli(
        ["run", "stats", spec, "-o", str(tmp_path / "o.h5")], 1, env={"SLURM_STEP_NUM_TASKS": "4"}
    )
    assert done.returncode == 2 and "--mpi=pmi2" in done.stderr
    assert not (tmp_path / "o.h5").exists()


def test_thread_oversubscription_warning(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(10.0))
    # Unset thread variables are set by hpcapp itself (tests/test_cli.py); too many set by the
    # user are warned about, once.
    env = {k: v for k, v in clean_env().items() if not k.endswith("_NUM_THREADS")}
    env["OMP_NUM_THREADS"] = str(2 * (os.cpu_count() or 1))
    command = cli_command(["run", "stats", spec, "-o", str(tmp_path / "a.h5")], 2)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.count("threads exceed the node's") == 1
    quiet = run_cli(["run", "stats", spec, "-o", str(tmp_path / "b.h5")], 2)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
