"""Interrupt, checkpoint, resume (on another rank count), atomic output, launch mistakes."""

import os
import secrets
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import (
    clean_env,
    cli_command,
    cli_here,
    interrupt_when_running,
    result_bytes,
    root_attrs,
    run_cli,
    run_here,
    sample_data,
    start_cli,
    write_dataset,
)

from hpcapp.errors import KernelError
from hpcapp.io import checkpoint
from hpcapp.parallel.reduce import FragmentTree, find_overlap, tree_reduce

# What a resume that only has to finish the job sets: the slow kernel's chunks stop sleeping.
NO_DELAY = {"HPCAPP_TEST_DELAY": "0"}
# Interrupt moments are random but reproducible: the seed is in every test id and failure
# message; HPCAPP_RESUME_SEED=<seed> replays a failing run's moments.
SEED = int(os.environ.get("HPCAPP_RESUME_SEED") or secrets.randbelow(10**6))

SLOW_KERNEL = """
import os
import time
import numpy as np
import hpcapp

@hpcapp.kernel(combine={"s": "sum", "m": "max", "n": "sum"})
def slow(chunk, delay=0.04):
    # A run that only finishes (a resume) skips the sleeping: no parameter of the job changes.
    time.sleep(float(os.environ.get("HPCAPP_TEST_DELAY", delay)))
    return {"s": chunk.sum(axis=0), "m": np.fmax.reduce(chunk, axis=0), "n": np.int64(len(chunk))}
"""


@pytest.fixture
def job(tmp_path):
    """An input, a slow kernel, and the arguments of a run over them."""
    spec = write_dataset(tmp_path / "in.h5", sample_data(12000, 3, "float64", nan=0.01))
    kernel_file = tmp_path / "slow.py"
    kernel_file.write_text(SLOW_KERNEL)

    def args(out, *extra):
        return ["run", f"{kernel_file}:slow", spec, "-o", str(out), "--chunk-rows", "50", *extra]

    def reference(out):
        """Write the job's result without interruption, in this process."""
        run_here(f"{kernel_file}:slow", spec, output=str(out), chunk_rows=50, params={"delay": 0})

    args.reference = reference
    return args


@pytest.mark.parametrize(
    "first,second,delay,sig,schedule,seed",
    [
        pytest.param(
            *case, SEED + n, id=f"{case[0]}-{case[1]}-{case[3].name}-{case[4]}-seed={SEED}"
        )
        for n, case in enumerate(
            [
                (3, 2, 1.5, signal.SIGTERM, "static"),
                (2, 4, 2.0, signal.SIGUSR1, "static"),
                (4, 1, 1.2, signal.SIGINT, "static"),
                (3, 2, 1.5, signal.SIGTERM, "dynamic"),
            ]
        )
    ],
)
def test_interrupted_then_resumed_on_another_rank_count_is_bitwise_identical(
    tmp_path, job, first, second, delay, sig, schedule, seed
):
    reference = tmp_path / "reference.h5"
    job.reference(reference)
    out = tmp_path / "out.h5"
    process = start_cli(job(out, "--checkpoint-every", "0.2", "--schedule", schedule), first)
    moment = delay * np.random.default_rng(seed).uniform(0.2, 1.0)  # a moment of the run
    replay = f"interrupted {moment:.3f} s after the start (replay: HPCAPP_RESUME_SEED={SEED})"
    _, stderr = interrupt_when_running(process, tmp_path / "out.h5.checkpoint", moment, sig)
    assert process.returncode == 75, f"{replay}\n{stderr}"
    assert "--resume" in stderr and not out.exists(), replay
    assert (tmp_path / "out.h5.checkpoint" / "manifest.json").exists(), replay
    resumed = run_cli(job(out, "--resume", "--schedule", schedule), second, env=NO_DELAY)
    assert resumed.returncode == 0, f"{replay}\n{resumed.stderr}"
    assert "resuming from" in resumed.stdout, replay
    assert result_bytes(out) == result_bytes(reference), replay
    assert not (tmp_path / "out.h5.checkpoint").exists()
    attrs = root_attrs(out)
    assert attrs["resumed"] and attrs["n_ranks"] == second


def test_resume_twice_interrupted(tmp_path, job):
    reference = tmp_path / "reference.h5"
    job.reference(reference)
    out = tmp_path / "out.h5"
    checkpoint_dir = tmp_path / "out.h5.checkpoint"
    for n_ranks in (2, 3):
        manifest = checkpoint_dir / "manifest.json"
        before = manifest.stat().st_mtime_ns if manifest.exists() else None
        process = start_cli(job(out, "--resume", "--checkpoint-every", "0.2"), n_ranks)
        _, stderr = interrupt_when_running(process, checkpoint_dir, 0.7, before=before)
        assert process.returncode == 75, stderr
    final = run_cli(job(out, "--resume"), 4, env=NO_DELAY)
    assert final.returncode == 0, final.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_resume_refuses_a_checkpoint_of_another_job(tmp_path, job):
    out = tmp_path / "out.h5"
    process = start_cli(job(out), 2)
    interrupt_when_running(process, tmp_path / "out.h5.checkpoint", 0.5)
    assert process.returncode == 75
    other = cli_here(job(out, "--resume", "-p", "delay=0.01"))
    assert other.returncode == 2 and "different job" in other.stderr and "params" in other.stderr
    chunks = cli_here(job(out, "--resume", "--chunk-rows", "60"))
    assert chunks.returncode == 2 and "chunk_rows" in chunks.stderr
    fresh = cli_here(job(out))
    assert fresh.returncode == 2 and "add --resume" in fresh.stderr
    assert (tmp_path / "out.h5.checkpoint" / "manifest.json").exists()


def test_resuming_a_finished_job_does_nothing(tmp_path, job):
    out = tmp_path / "out.h5"
    job.reference(out)
    before = (out.stat().st_mtime_ns, out.read_bytes())
    again = cli_here(job(out, "-p", "delay=0", "--resume"))
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
    done = cli_here(
        ["run", "stats", spec, "-o", str(tmp_path / "o.h5")], env={"SLURM_STEP_NUM_TASKS": "4"}
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


def add(left, right):
    return {"s": left["s"] + right["s"]}


def one(value):
    return {"s": np.array([float(value)])}


@pytest.mark.parametrize(
    "held,new,twice",
    [((0, 5), (0, 5), "5"), ((3, 0), (0, 6), "6"), ((0, 9), (2, 2), "9"), ((1, 2), (2, 1), "4-5")],
)
def test_tree_refuses_a_node_covering_a_held_chunk(held, new, twice):
    tree = FragmentTree(add)
    tree.add(held, one(1))
    with pytest.raises(KernelError, match=f"chunks {twice} would be counted twice"):
        tree.add(new, one(2))
    assert list(tree.nodes) == [held]


def test_tree_accepts_disjoint_nodes_in_any_order():
    rng = np.random.default_rng(SEED)
    nodes = [(0, 0), (0, 1), (1, 1), (2, 1), (3, 1), (0, 16), (1, 9), (2, 5)]
    tree = FragmentTree(add)
    for position in rng.permutation(len(nodes)):
        tree.add(nodes[position], one(1))
    assert sorted(tree.nodes) == [(0, 16), (1, 9), (2, 5), (4, 0)], f"seed {SEED}"
    assert find_overlap(nodes) is None
    assert find_overlap([*nodes, (1, 2)]) == ((2, 1), (1, 2))


@pytest.mark.mpi(min_size=2)
def test_tree_reduce_refuses_a_chunk_held_by_two_ranks():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    tree = FragmentTree(add)
    tree.add((0, comm.Get_rank()), one(1))
    if comm.Get_rank() == 1:
        tree.add((0, 0), one(1))  # rank 0 holds chunk 0 too
    result, failure = tree_reduce(comm, tree)
    failure = comm.bcast(failure, root=0)
    assert result is None and failure is not None
    assert "chunks 0 would be counted twice" in failure[2]


def test_strays_of_other_generations_are_removed(tmp_path):
    directory = str(tmp_path / "c")
    checkpoint.write_manifest(directory, {"job": 1}, 3)
    for generation, rank in [(2, 0), (3, 0), (3, 1), (4, 0), (4, 2)]:
        checkpoint.write_part(directory, generation, rank, {(0, rank): one(rank)})
    (tmp_path / "c" / ".gen0004-rank000001.h5.tmp").write_bytes(b"half written")
    checkpoint.remove_strays(directory, keep=3)
    left = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert left == ["gen0003-rank000000.h5", "gen0003-rank000001.h5", "manifest.json"]
    checkpoint.remove_strays(directory, keep=None)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["manifest.json"]


FAILING_KERNEL = """
import os
import numpy as np

def total(chunk):
    first = int(chunk[0, 0])
    if str(first) == os.environ.get("FAIL_AT_ROW"):
        raise ValueError(f"failing at row {first}, as the test asked")
    return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}
"""


@pytest.fixture
def failing_job(tmp_path):
    """40 chunks of 20 rows whose column 0 is the row number, and a kernel told where to fail."""
    rng = np.random.default_rng(3)
    data = np.column_stack(
        [np.arange(800.0), rng.normal(size=800) * 10.0 ** rng.integers(-9, 9, 800)]
    )
    spec = write_dataset(tmp_path / "in.h5", data)
    kernel_file = tmp_path / "total.py"
    kernel_file.write_text(FAILING_KERNEL)

    def args(out, *extra):
        return ["run", f"{kernel_file}:total", spec, "-o", str(out), "--chunk-rows", "20", *extra]

    def reference(out):
        """Write the job's result without failing, in this process."""
        run_here(f"{kernel_file}:total", spec, output=str(out), chunk_rows=20)

    args.reference = reference
    return args


def test_a_resume_killed_before_its_commit_counts_every_chunk_once(tmp_path, failing_job):
    """The state a resume leaves when killed between writing generation g+1 and committing it."""
    reference = tmp_path / "reference.h5"
    failing_job.reference(reference)
    out = tmp_path / "out.h5"
    folder = tmp_path / "out.h5.checkpoint"
    fail = {"FAIL_AT_ROW": str(38 * 20)}  # chunk 38: rank 2 of 3 has saved chunks 27-37
    every = ["--checkpoint-every", "1e-6"]  # save after every chunk
    first = run_cli(failing_job(out, *every), 3, env=fail)
    assert first.returncode == 1 and "chunk 38" in first.stderr, first.stderr
    assert checkpoint.read_manifest(str(folder))["generation"] == 0
    parts = sorted(folder.glob("gen0000-rank*.h5"))
    assert parts[-1].name == "gen0000-rank000002.h5"
    # A 3-rank resume killed before its commit: rank r wrote part r again as generation 1.
    for part in parts:
        shutil.copy(part, folder / part.name.replace("gen0000", "gen0001"))
    # Resumed on 2 ranks, which fails again: it commits generation 1 from ranks 0 and 1 only.
    second = run_cli(failing_job(out, "--resume", *every), 2, env=fail)
    assert second.returncode == 1 and "chunk 38" in second.stderr, second.stderr
    assert checkpoint.read_manifest(str(folder))["generation"] == 1
    left = sorted(p.name for p in folder.glob("gen*"))
    last = run_cli(failing_job(out, "--resume"), 3)  # rank 2 loads what rank 2 left
    assert last.returncode == 0, last.stderr
    assert result_bytes(out) == result_bytes(reference)
    assert left == ["gen0001-rank000000.h5", "gen0001-rank000001.h5"]


def test_a_checkpoint_without_finished_work_is_replaced_by_a_plain_run(tmp_path, failing_job):
    reference = tmp_path / "reference.h5"
    failing_job.reference(reference)
    out = tmp_path / "out.h5"
    folder = tmp_path / "out.h5.checkpoint"
    failed = cli_here(failing_job(out), env={"FAIL_AT_ROW": "0"})  # the first chunk fails
    assert failed.returncode == 1 and "a plain run replaces it" in failed.stderr, failed.stderr
    assert (folder / "manifest.json").exists() and not list(folder.glob("gen*"))
    again = cli_here(failing_job(out))  # no --overwrite: nothing in the checkpoint to lose
    assert again.returncode == 0, again.stderr
    assert result_bytes(out) == result_bytes(reference)
    assert not folder.exists()


def test_a_checkpoint_with_finished_work_needs_resume_or_overwrite(tmp_path, failing_job):
    reference = tmp_path / "reference.h5"
    failing_job.reference(reference)
    out = tmp_path / "out.h5"
    every = ["--checkpoint-every", "1e-6"]  # save after every chunk
    failed = cli_here(failing_job(out, *every), env={"FAIL_AT_ROW": "200"})  # chunk 10
    assert failed.returncode == 1, failed.stderr
    (part,) = (tmp_path / "out.h5.checkpoint").glob("gen0000-rank*.h5")
    assert checkpoint.read_part(part)  # chunks 0-9 are kept
    plain = cli_here(failing_job(out))
    assert plain.returncode == 2 and not out.exists()
    assert "add --resume to continue it, or --overwrite to discard it" in plain.stderr
    resumed = cli_here(failing_job(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert result_bytes(out) == result_bytes(reference)


def test_a_failure_names_the_checkpoint_and_the_next_step(tmp_path, failing_job):
    out = tmp_path / "out.h5"
    done = cli_here(failing_job(out, "--checkpoint-every", "60"), env={"FAIL_AT_ROW": "100"})
    assert done.returncode == 1
    folder = tmp_path / "out.h5.checkpoint"
    assert (folder / "manifest.json").exists()
    assert f"The checkpoint {folder} keeps the work saved before the failure" in done.stderr
    assert "(saved every 60 s)" in done.stderr
    assert "After fixing the kernel, run again with --overwrite to start over" in done.stderr
    assert "--resume refuses a checkpoint made by other code" in done.stderr
    assert "run again with --resume to continue from it" in done.stderr


def test_stats_interrupted_on_2_ranks_resumed_on_3_is_bitwise_identical(tmp_path):
    # 2 columns x 65536 rows = 2**17 values per chunk: every chunk takes the compiled pass.
    rows = 65536
    data = sample_data(40 * rows, 2, "float64", seed=SEED, nan=0.001)
    spec = write_dataset(tmp_path / "in.h5", data)

    def args(out, *extra):
        return ["run", "stats", spec, "-o", str(out), "--chunk-rows", str(rows), *extra]

    reference = tmp_path / "reference.h5"
    run_here("stats", spec, output=str(reference), chunk_rows=rows, params={"range": [-1, 2]})
    out = tmp_path / "out.h5"
    folder = tmp_path / "out.h5.checkpoint"
    process = start_cli(args(out, "-p", "range=-1,2", "--checkpoint-every", "1e-6"), 2)
    deadline = time.monotonic() + 60
    while not list(folder.glob("gen0000-rank*.h5")):  # a rank has finished a chunk
        assert time.monotonic() < deadline and process.poll() is None, "no chunk was saved"
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, f"seed {SEED}: {stderr}"
    resumed = run_cli(args(out, "-p", "range=-1,2", "--resume"), 3)
    assert resumed.returncode == 0, resumed.stderr
    done = resumed.stdout.split("resuming from", 1)[1].split("\n", 1)[0]
    assert " 0 of 40 chunks" not in done and "40 of 40" not in done, done
    assert result_bytes(out) == result_bytes(reference), f"seed {SEED}"
