"""SLURM: batch scripts, ``hpcapp slurm`` and provenance; then real jobs on a local SLURM.

The unmarked tests need no SLURM. The ``slurm`` tests submit the project's own scripts to a
private one-node SLURM that ``scripts/local_slurm.py`` starts for the session (installing
slurm-wlm and munge with apt-get if needed, so they need root). Without root (and without
CI=true) they are skipped, saying why; otherwise, if SLURM cannot start, they fail with the
reason: in CI a silently skipped SLURM test would hide a broken batch story.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    REPO,
    clean_env,
    cli_here,
    read_results,
    root_attrs,
    sample_data,
    write_dataset,
)

from hpcapp.__main__ import main
from hpcapp.cli import slurm
from hpcapp.cli import submit as slurm_submit
from hpcapp.errors import UsageError
from hpcapp.parallel import launch

JOB_SCRIPT = REPO / "slurm" / "job.sbatch"
SWEEP_SCRIPT = REPO / "slurm" / "sweep.sbatch"
HPCAPP = [sys.executable, "-m", "hpcapp"]
JOB_TIMEOUT = 120  # seconds for one job, requeue included; the longest takes about 20
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
# A kernel that sleeps per chunk, so a job is still running when the test signals it. It touches
# a file when it starts computing: signalling earlier would hit MPI start-up, not the engine.
SLOW_KERNEL = """\
import time
from pathlib import Path

import hpcapp


@hpcapp.kernel(combine={"s": "sum", "m": "max"})
def slow(chunk, delay=0.03):
    Path(__file__).with_name("computing").touch()
    time.sleep(delay)
    return {"s": chunk.sum(axis=0), "m": chunk.max(axis=0)}
"""


def result_bytes(path: Path) -> dict[str, bytes]:
    return {key: value.tobytes() for key, value in read_results(path).items()}


# ---------------------------------------------------------------------------------------------
# Without SLURM: rendering, validation, provenance


def test_committed_scripts_are_the_renderings():
    expected = slurm.example_scripts()
    for name, text in expected.items():
        committed = (REPO / "slurm" / name).read_text()
        assert committed == text, (
            f"slurm/{name} differs from what hpcapp/cli/slurm.py renders; regenerate with "
            "python -c \"import hpcapp.cli.slurm as s; s.write_examples('slurm')\""
        )
        assert os.access(REPO / "slurm" / name, os.X_OK)
    assert {p.name for p in (REPO / "slurm").glob("*.sbatch")} == set(expected)


def test_scripts_are_valid_bash():
    scripts = [*slurm.example_scripts().values()]
    options = slurm.BatchOptions(ntasks=3, chdir="/a dir/x", partition="p", account="a")
    scripts.append(slurm.render_command_script(options, ["run", "stats"], "/p y/python"))
    for text in scripts:
        done = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert max(len(line) for line in text.splitlines()) <= 100


def test_rendered_command_survives_the_shell(tmp_path):
    command = ["run", "k.py:f", "in put.h5:/x", "-o", "it's $HOME.h5", "-p", "range=0,1"]
    text = slurm.render_command_script(slurm.BatchOptions(ntasks=2), command, sys.executable)
    (line,) = [line for line in text.splitlines() if line.startswith("HPCAPP_ARGS=(")]
    shown = subprocess.run(
        ["bash", "-c", f'{line}\nprintf "%s\\n" "${{HPCAPP_ARGS[@]}}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.splitlines() == command
    assert f"PYTHON=${{HPCAPP_PYTHON:-{sys.executable}}}" in text


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("10", 600),
        ("1:30", 90),
        ("01:00:00", 3600),
        ("2-0", 2 * 86400),
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
        ("1-02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),
    ],
)
def test_time_limit_formats(text, seconds):
    assert slurm.time_limit_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "00:00:00", "1:2:3:4", "one hour", "-5", "1-"])
def test_bad_time_limits_are_refused(text):
    with pytest.raises(UsageError):
        slurm.time_limit_seconds(text)


def test_signal_comes_early_enough_even_for_short_jobs():
    assert slurm.signal_lead(3600) == slurm.SIGNAL_LEAD
    assert slurm.signal_lead(300) == 75
    assert 0 < slurm.signal_lead(60) < 60


def test_slurm_context_outside_slurm(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)
    assert launch.slurm_context() == {}


@pytest.mark.parametrize(
    "launcher_env,tasks_per_node",
    [
        (
            {"SLURM_STEP_NUM_TASKS": "6", "SLURM_STEP_TASKS_PER_NODE": "3(x2)", "PMI_SIZE": "6"},
            "3(x2)",
        ),
        # mpiexec's proxies are the step (one per node): the step layout is not the ranks'.
        ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "PMI_SIZE": "6"}, "3"),
    ],
)
def test_slurm_context_in_an_array_job(monkeypatch, launcher_env, tasks_per_node):
    for name in list(os.environ):
        if name.startswith(("SLURM_", "PMI_", "OMPI_", "PMIX_")):
            monkeypatch.delenv(name)
    env = {
        "SLURM_JOB_ID": "1234",
        "SLURM_ARRAY_JOB_ID": "1230",
        "SLURM_ARRAY_TASK_ID": "4",
        "SLURM_JOB_NAME": "sweep",
        "SLURM_JOB_PARTITION": "batch",
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_NTASKS_PER_NODE": "3",
        "SLURM_TASKS_PER_NODE": "1(x2)",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_RESTART_COUNT": "2",
        **launcher_env,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launch.slurm_context() == {
        "slurm_job_id": 1234,
        "slurm_array_job_id": 1230,
        "slurm_array_task_id": 4,
        "slurm_job_name": "sweep",
        "slurm_partition": "batch",
        "slurm_nodelist": "node[01-02]",
        "slurm_cpus_per_task": 2,
        "slurm_restart_count": 2,
        "slurm_tasks_per_node": tasks_per_node,
    }


def test_first_run_of_a_job_has_restart_count_zero(monkeypatch):
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert launch.slurm_context() == {"slurm_job_id": 7, "slurm_restart_count": 0}


@pytest.mark.parametrize(
    "argv,message",
    [
        ([], "give the hpcapp command after `--`"),
        (["--"], "give the hpcapp command after `--`"),
        (["--", "show", "out.h5"], "must be one of run, generate, demo"),
        (["--", "run", "stats", "d.h5:/x"], "output"),
        (["--", "run", "stats", "d.h5:/x", "-o", "o.h5", "--bogus"], "--bogus"),
        (["--nodes", "0", "--", "demo"], "--nodes must be at least 1"),
        (["--ntasks", "0", "--", "demo"], "--ntasks must be at least 1"),
        (["--nodes", "3", "--ntasks", "2", "--", "demo"], "less than --nodes"),
        (["--cpus-per-task", "0", "--ntasks", "1", "--", "demo"], "--cpus-per-task"),
        (["--time", "90 min", "--", "demo"], "--time"),
        (["--partition", 'a"b', "--", "demo"], "--partition"),
        (["--job-name", "", "--", "demo"], "--job-name"),
    ],
)
def test_hpcapp_slurm_refuses_bad_input(capsys, argv, message):
    assert main(["slurm", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("hpcapp: error:")


def test_hpcapp_slurm_prints_the_script(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["slurm", "--nodes", "2", "--ntasks-per-node", "4", "--cpus-per-task", "2"]
    argv += ["--time", "2:00:00", "--partition", "gpu", "--account", "proj1"]
    argv += ["--job-name", "pi", "--launcher", "mpiexec"]
    assert main([*argv, "--", "run", "montecarlo", "-o", "pi.h5", "-p", "samples=10"]) == 0
    text = capsys.readouterr().out
    for line in [
        "#SBATCH --job-name=pi",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=2:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj1",
        f"#SBATCH --chdir={tmp_path}",
        f"#SBATCH --signal=B:USR1@{slurm.SIGNAL_LEAD}",
        "#SBATCH --requeue",
        "LAUNCHER=${HPCAPP_LAUNCHER:-mpiexec}",
        "HPCAPP_ARGS=(run montecarlo -o pi.h5 -p samples=10)",
    ]:
        assert line in text.splitlines()
    assert "--ntasks=" not in text


def test_hpcapp_slurm_defaults_to_one_rank_per_node(capsys):
    assert main(["slurm", "--", "demo"]) == 0
    captured = capsys.readouterr()
    assert "#SBATCH --ntasks-per-node=1" in captured.out.splitlines()
    assert "one rank per node" in captured.err


def test_hpcapp_slurm_submit_needs_sbatch(capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["slurm", "--ntasks", "2", "--submit", "--", "demo"]) == 2
    assert "sbatch not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text,seconds,words",
    [
        ("10", 600, "10 min"),  # MM
        ("1:30", 90, "1 min 30 s"),  # MM:SS
        ("90:00", 5400, "1 h 30 min"),
        ("01:30:00", 5400, "1 h 30 min"),  # HH:MM:SS
        ("2-0", 2 * 86400, "2 d"),  # D-HH
        ("1-12", 86400 + 12 * 3600, "1 d 12 h"),
        ("1-02:03", 86400 + 2 * 3600 + 3 * 60, "1 d 2 h 3 min"),  # D-HH:MM
        ("1-02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4, "1 d 2 h 3 min 4 s"),  # D-HH:MM:SS
    ],
)
def test_time_limits_read_as_slurm_reads_them_and_shown_in_the_script(
    capsys, tmp_path, monkeypatch, text, seconds, words
):
    assert slurm.time_limit_seconds(text) == seconds
    assert slurm.describe_seconds(seconds) == words
    monkeypatch.chdir(tmp_path)
    assert main(["slurm", "--ntasks", "2", "--time", text, "--", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(f"#SBATCH --time={text}")
    assert lines[at - 1] == f"# time limit {text} = {words}"


@pytest.mark.parametrize("text", ["", "0", "00:00:00", "1:2:3:4", "one hour", "-5", "1-", "1h"])
def test_bad_time_limits_exit_2_naming_the_forms(capsys, text):
    assert main(["slurm", "--ntasks", "2", "--time", text, "--", "demo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpcapp: error: --time")
    assert "positive" in err or "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS" in err


def test_help_documents_the_time_forms(capsys):
    with pytest.raises(SystemExit):
        main(["slurm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS" in text
    assert "1:30 is 1 min 30 s" in text


def test_mm_ss_gets_a_note(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["slurm", "--ntasks", "2", "--time", "1:30", "--", "demo"]) == 0
    assert "--time 1:30 is MM:SS to SLURM: 1 min 30 s" in capsys.readouterr().err


@pytest.fixture
def sensors(tmp_path, monkeypatch):
    """A directory holding sensors.h5:/raw/temperature, as the working directory."""
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "sensors.h5", sample_data(100, 2, "float64"), "raw/temperature")
    return tmp_path


@pytest.mark.parametrize(
    "command,message",
    [
        (["sensors.h5:/raw/temperatur", "-o", "x.h5"], "has no dataset '/raw/temperatur'"),
        (["sensors.h5:/raw/temperature", "-o", "x.h5", "-p", "bin=32"], "did you mean 'bins'"),
        (["sensors.h5:/raw/temperature", "-o", "x.h5", "-p", "range=3,1"], "LO < HI"),
        (["missing.h5:/raw/temperature", "-o", "x.h5"], "does not exist"),
        (["notes.txt:/raw/temperature", "-o", "x.h5"], "not an HDF5 file"),
        (["sensors.h5:/raw/temperature", "-o", "nodir/x.h5"], "'nodir' does not exist"),
    ],
)
def test_hpcapp_slurm_checks_the_run_before_writing_a_script(capsys, sensors, command, message):
    (sensors / "notes.txt").write_text("not hdf5")
    script = sensors / "job.sh"
    argv = ["slurm", "--ntasks", "4", "--output-script", str(script), "--", "run", "stats"]
    assert main([*argv, *command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpcapp: error:") and message in err and "--no-check" in err
    assert not script.exists()
    # With --no-check the script is written: the input may exist only on the cluster.
    assert main([*argv[:1], "--no-check", *argv[1:], *command]) == 0
    assert script.exists()


def test_hpcapp_slurm_checks_the_kernel_imports(capsys, sensors):
    (sensors / "k.py").write_text("import no_such_module\n")
    argv = ["slurm", "--ntasks", "2", "--", "run", "k.py:f", "sensors.h5:/raw/temperature"]
    assert main([*argv, "-o", "x.h5"]) == 2
    assert "No module named 'no_such_module'" in capsys.readouterr().err
    assert main(["slurm", "--ntasks", "2", "--", "run", "stat", "sensors.h5:/x", "-o", "x.h5"]) == 2
    assert "did you mean 'stats'" in capsys.readouterr().err


def test_hpcapp_slurm_checks_as_the_resuming_job_will(capsys, sensors):
    """The script adds --resume: a checkpoint or result of this very job is fine, as in the job."""
    spec = "sensors.h5:/raw/temperature"
    job = ["run", "stats", spec, "-o", "x.h5", "--chunk-rows", "10"]
    finished = cli_here([*job, "-q"], cwd=sensors)
    assert finished.returncode == 0, finished.stderr
    # The output holds this job's result: the job would say "nothing to resume" and exit 0.
    assert main(["slurm", "--ntasks", "2", "--", *job]) == 0
    # A different job into the same output would be refused by the job: refused here.
    assert main(["slurm", "--ntasks", "2", "--", *job[:-1], "20"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_hpcapp_slurm_accepts_a_checkpoint_of_the_same_job(capsys, sensors):
    import json

    from hpcapp.cli.parser import parse
    from hpcapp.io import checkpoint
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code

    job = ["run", "stats", "sensors.h5:/raw/temperature", "-o", "x.h5"]
    config = parse(job).config
    plan = plan_job(config, *load_with_code("stats"))
    checkpoint.write_manifest(plan.checkpoint_dir, plan.identity, 0)
    # A node of finished work: a checkpoint without one would be replaced by a plain run.
    checkpoint.write_part(plan.checkpoint_dir, 0, 0, {(0, 0): {"count": np.zeros(2)}})
    # `run` without --resume refuses to start over a checkpoint ...
    plain = cli_here(job, cwd=sensors)
    assert plain.returncode == 2 and "--resume" in plain.stderr
    # ... but the batch job adds --resume, so the check passes, as the job will.
    assert main(["slurm", "--ntasks", "2", "--", *job]) == 0
    # A checkpoint of another job would make the job fail: refused here already.
    other = json.loads(json.dumps(plan.identity))
    other["chunk_rows"] = 1
    checkpoint.write_manifest(plan.checkpoint_dir, other, 0)
    assert main(["slurm", "--ntasks", "2", "--", *job]) == 2
    capsys.readouterr()


def _script_lines(capsys, argv):
    assert main(["slurm", *argv]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


def test_hpcapp_slurm_asks_the_memory_the_job_estimates(capsys, sensors):
    from hpcapp.cli.parser import parse
    from hpcapp.io.memory import estimate
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code

    job = ["run", "stats", "sensors.h5:/raw/temperature", "-o", "x.h5"]
    job += ["-p", "bins=4096", "-p", "range=0,1"]
    lines, _ = _script_lines(capsys, ["--ntasks", "2", "--cpus-per-task", "2", "--", *job])
    # The estimate, recomputed here from the memory model itself: 100 rows, one chunk.
    plan = plan_job(parse(job).config, *load_with_code("stats"))
    kernel, _ = load_with_code("stats")
    total = estimate(kernel, plan.source, plan.params, plan.chunk_rows, 1)["total"]
    per_cpu_mib = -(-total * 5 // 4 // 2 // (64 << 20)) * 64  # +25%, 2 cores, 64 MiB steps
    expected = f"{per_cpu_mib // 1024}G" if per_cpu_mib % 1024 == 0 else f"{per_cpu_mib}M"
    at = lines.index(f"#SBATCH --mem-per-cpu={expected}")
    comment = " ".join(lines[at - 3 : at])
    assert f"estimates {total / (1 << 20):,.0f} MiB per rank" in comment
    assert "25% headroom" in comment and "per core (2 cores per rank)" in comment
    # Without the check there is no estimate, and no memory line.
    lines, _ = _script_lines(capsys, ["--no-check", "--ntasks", "2", "--", *job])
    assert not [line for line in lines if "--mem" in line]


def test_memory_request_rounds_up_with_headroom():
    mib = 1 << 20
    assert slurm.memory_request(100 * mib, 1) == 128 * mib  # 125 MiB -> 2 steps of 64
    assert slurm.memory_request(12 << 30, 1) == 15 << 30
    assert slurm.memory_request(12 << 30, 4) == (15 << 30) // 4
    assert slurm.memory_lines(12 << 30, 1)[-1] == "#SBATCH --mem-per-cpu=15G"


@pytest.mark.parametrize(
    "tasks,warned,suggested",
    [
        (["--ntasks", "8"], True, "--chunk-rows 12 to the command (9 chunks)"),
        (["--nodes", "2", "--ntasks-per-node", "3"], True, "--chunk-rows 16 to the command"),
        (["--ntasks", "4"], False, None),
        (["--ntasks", "200"], True, "use at most 100 ranks (one per row)"),
    ],
)
def test_hpcapp_slurm_warns_when_ranks_exceed_chunks(capsys, sensors, tasks, warned, suggested):
    job = ["run", "stats", "sensors.h5:/raw/temperature", "-o", "x.h5", "--chunk-rows", "30"]
    lines, err = _script_lines(capsys, [*tasks, "--", *job])  # 100 rows: 4 chunks
    ranks = int(tasks[-1]) * (2 if "--nodes" in tasks else 1)
    line = f"hpcapp: warning: {ranks} ranks but 4 chunks of 30 rows: {ranks - 4} ranks"
    assert (line in err) == warned, err
    if suggested:
        assert suggested in err
    assert not [text for text in lines if "warning" in text]  # on stderr, not in the script


def test_hpcapp_slurm_warns_about_the_mpich_wheel(capsys):
    """This venv has the mpich wheel (the quick start's): its python loads the wheel's MPI."""
    lines, err = _script_lines(capsys, ["--ntasks", "2", "--", "demo"])
    assert f"hpcapp: warning: {sys.executable} loads the MPI of the `mpich` pip wheel" in err
    assert "Installing on a cluster" in err
    assert not [text for text in lines if "pip wheel" in text]


def test_wheel_warning_only_for_a_wheels_library(tmp_path):
    wheel = str(tmp_path / "venv" / "lib" / "libmpi.so.12")
    found = {"mpich": [wheel]}
    assert "`mpich` pip wheel (MPICH Version: 4.1)" in slurm_submit.wheel_mpi_warning(
        "py", "MPICH Version:   4.1\nMPICH Release", [wheel], found
    )
    system = ["/usr/lib/x86_64-linux-gnu/libmpi.so.40"]
    assert slurm_submit.wheel_mpi_warning("py", "Open MPI v4.1", system, found) is None


def test_mpi_warning_when_the_python_cannot_load_mpi(tmp_path):
    fake = tmp_path / "python"
    message = "ModuleNotFoundError: No module named 'mpi4py'"
    fake.write_text(f'#!/bin/sh\necho "{message}" >&2\nexit 1\n')
    fake.chmod(0o755)
    warning = slurm_submit.mpi_warning(str(fake))
    expected = "(ModuleNotFoundError: No module named 'mpi4py'): the job would fail"
    assert warning == f"{fake} cannot load mpi4py's MPI {expected}"


@pytest.mark.parametrize(
    "ci,euid,up,skipped",
    [
        ("", 1000, False, True),  # a user without root: skipped, saying why
        ("true", 1000, False, False),  # CI: a SLURM that cannot start is a failure
        ("", 0, False, False),  # root: started (installed if need be)
        ("", 1000, True, False),  # a cluster already up: used
    ],
)
def test_slurm_tests_are_skipped_only_without_root_outside_ci(monkeypatch, ci, euid, up, skipped):
    local_slurm = _load_local_slurm()
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(local_slurm.os, "geteuid", lambda: euid)
    monkeypatch.setattr(local_slurm, "running", lambda state_dir=None: up)
    reason = local_slurm.skip_reason()
    assert (reason is not None) == skipped
    if skipped:
        assert reason.startswith("not root:") and "apt-get" in reason and "\n" not in reason


# ---------------------------------------------------------------------------------------------
# With SLURM: real batch jobs


def _load_local_slurm():
    path = REPO / "scripts" / "local_slurm.py"
    spec = importlib.util.spec_from_file_location("local_slurm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def slurm_env():
    """Start the local SLURM (or reuse a running one) and return the clients' environment."""
    local_slurm = _load_local_slurm()
    reason = local_slurm.skip_reason()
    if reason is not None:  # never with CI=true: there a SLURM that cannot start is a failure
        pytest.skip(f"SLURM tests skipped: {reason}")
    already_running = local_slurm.running()
    try:
        variables = local_slurm.start()
    except Exception as exc:  # the reason goes into the failure, never into a skip
        pytest.fail(f"could not start the local SLURM: {exc}", pytrace=False)
    yield variables
    if not already_running:  # leave a cluster someone else started alone
        local_slurm.stop()


@pytest.fixture
def jobs(slurm_env, tmp_path):
    """Submit and watch jobs from tmp_path; cancel whatever is left when the test ends."""
    runner = Jobs(slurm_env, tmp_path)
    yield runner
    if runner.ids:
        subprocess.run(["scancel", *runner.ids], env=runner.env, capture_output=True, timeout=30)


class Jobs:
    """Run SLURM client commands for one test, with the repository's Python and hpcapp."""

    def __init__(self, slurm_env: dict[str, str], cwd: Path) -> None:
        self.cwd = cwd
        self.ids: list[str] = []
        # sbatch passes this environment on to the job: the venv's python (and its mpiexec)
        # and this checkout of hpcapp, whatever the job script's set-up section says.
        self.env = {**clean_env(), **slurm_env, "HPCAPP_PYTHON": sys.executable}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"

    def run(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 60):
        """Run a command in the test's directory and return it, output captured."""
        return subprocess.run(
            args,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sbatch(self, args: list[str], env: dict[str, str] | None = None):
        """Submit a job; return (job id, the sbatch process). ``wait`` polls for its end."""
        done = self.run(["sbatch", "--parsable", *args], env)
        job_id = done.stdout.strip().split(";")[0]
        assert job_id.isdigit(), f"sbatch failed: {done.stdout}{done.stderr}"
        self.ids.append(job_id)
        return job_id, done

    def state(self, job_id: str) -> list[dict[str, str]]:
        """Return the scontrol fields of the job (one dict per array task)."""
        done = self.run(["scontrol", "show", "job", "-o", job_id])
        assert done.returncode == 0, done.stderr
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in done.stdout.splitlines()]

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT) -> list[dict[str, str]]:
        """Poll until every task of the job has ended (faster than sbatch --wait's 2/10/42 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.state(job_id)
            if all(task["JobState"] in DONE_STATES for task in tasks):
                return tasks
            time.sleep(0.25)
        pytest.fail(f"job {job_id} not done after {timeout} s: {self.state(job_id)}")

    def log(self, name: str) -> str:
        """Return a job's output file from the test's directory."""
        path = self.cwd / name
        return path.read_text() if path.exists() else f"(no {name})"


def _hpcapp_stats_args(spec: str, out: str) -> list[str]:
    return [
        "run",
        "stats",
        spec,
        "-o",
        out,
        "--chunk-rows",
        "97",
        "-p",
        "bins=8",
        "-p",
        "range=0,1",
    ]


@pytest.mark.slurm
@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_job_script_gives_the_mpiexec_result(jobs, tmp_path, launcher):
    spec = write_dataset(tmp_path / "in.h5", sample_data(3000, 3, "float64", nan=0.01))
    reference = cli_here(_hpcapp_stats_args(spec, str(tmp_path / "reference.h5")))
    assert reference.returncode == 0, reference.stderr
    resources = ["--nodes=1", "--ntasks-per-node=2", "--time=00:05:00"]
    job_id, _ = jobs.sbatch(
        [*resources, str(JOB_SCRIPT), *_hpcapp_stats_args(spec, "out.h5")],
        env={"HPCAPP_LAUNCHER": launcher},
    )
    (task,) = jobs.wait(job_id)
    log = jobs.log(f"hpcapp-{job_id}.out")
    assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert f"2 ranks on {os.uname().nodename.split('.')[0]} via {launcher}" in log
    assert result_bytes(tmp_path / "out.h5") == result_bytes(tmp_path / "reference.h5")
    attrs = root_attrs(tmp_path / "out.h5")
    assert attrs["n_ranks"] == 2
    assert attrs["slurm_job_id"] == int(job_id)
    assert attrs["slurm_tasks_per_node"] == "2"
    assert attrs["slurm_restart_count"] == 0
    assert attrs["slurm_cluster"] == "hpcapp-test"


@pytest.mark.slurm
@pytest.mark.parametrize("launcher,scancel_mode", [("srun", "--batch"), ("mpiexec", "--full")])
def test_usr1_checkpoints_requeues_and_resumes_bitwise(jobs, tmp_path, launcher, scancel_mode):
    """What happens before a time limit: USR1, checkpoint, exit 75, requeue, --resume."""
    spec = write_dataset(tmp_path / "in.h5", sample_data(12000, 3, "float64", nan=0.01))
    (tmp_path / "slow.py").write_text(SLOW_KERNEL)
    args = ["run", f"{tmp_path}/slow.py:slow", spec, "--chunk-rows", "50", "-o"]
    reference = cli_here([*args, str(tmp_path / "reference.h5"), "-p", "delay=0"])
    assert reference.returncode == 0, reference.stderr
    (tmp_path / "computing").unlink()
    job_id, _ = jobs.sbatch(
        ["--nodes=1", "--ntasks-per-node=2", "--time=00:10:00", str(JOB_SCRIPT), *args, "out.h5"],
        env={"HPCAPP_LAUNCHER": launcher},
    )
    log_name = f"hpcapp-{job_id}.out"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (tmp_path / "computing").exists():
        assert time.monotonic() < deadline, jobs.log(log_name)
        assert jobs.state(job_id)[0]["JobState"] in ("PENDING", "RUNNING"), jobs.log(log_name)
        time.sleep(0.05)
    time.sleep(1.0)  # about a third of the chunks
    # What #SBATCH --signal=B:USR1@... does before the time limit (--full: to the ranks too).
    sent = jobs.run(["scancel", "--signal=USR1", scancel_mode, job_id])
    assert sent.returncode == 0, sent.stderr

    # Between the attempts (SLURM holds a requeued job back ~10 s here) the checkpoint waits.
    checkpoint = tmp_path / "out.h5.checkpoint"
    while (task := jobs.state(job_id)[0]).get("Restarts") != "1":
        assert time.monotonic() < deadline, f"not requeued:\n{jobs.log(log_name)}"
        assert task["JobState"] not in DONE_STATES, f"{task}\n{jobs.log(log_name)}"
        time.sleep(0.1)
    assert not (tmp_path / "out.h5").exists(), jobs.log(log_name)
    assert checkpoint.is_dir() and any(checkpoint.iterdir()), jobs.log(log_name)

    (task,) = jobs.wait(job_id)
    log = jobs.log(log_name)
    assert (task["JobState"], task["ExitCode"], task["Restarts"]) == ("COMPLETED", "0:0", "1"), log
    assert "checkpoint saved, job requeued" in log
    assert "attempt 2:" in log and "attempt 3:" not in log
    assert result_bytes(tmp_path / "out.h5") == result_bytes(tmp_path / "reference.h5")
    attrs = root_attrs(tmp_path / "out.h5")
    assert attrs["slurm_restart_count"] == 1
    assert attrs["slurm_job_id"] == int(job_id)


def _montecarlo(out: str, seed: int) -> list[str]:
    return ["run", "montecarlo", "-o", out, "-p", "samples=400000", "-p", f"seed={seed}"]


@pytest.mark.slurm
def test_sweep_script_runs_one_task_per_line(jobs, tmp_path):
    seeds = (1, 2, 3)
    lines = [" ".join(_montecarlo(f"pi-{seed}.h5", seed)) for seed in seeds]
    (tmp_path / "pi.tasks").write_text("\n".join(lines) + "\n")
    job_id, _ = jobs.sbatch(
        ["--array=1-3", "--ntasks=1", "--time=00:05:00", str(SWEEP_SCRIPT), "pi.tasks"]
    )
    tasks = jobs.wait(job_id)
    logs = "\n".join(jobs.log(f"hpcapp-sweep-{job_id}_{n}.out") for n in (1, 2, 3))
    assert [t["JobState"] for t in tasks] == ["COMPLETED"] * 3, logs
    for n, seed in enumerate(seeds, start=1):
        reference = tmp_path / f"reference-{seed}.h5"
        assert cli_here(_montecarlo(str(reference), seed)).returncode == 0
        assert result_bytes(tmp_path / f"pi-{seed}.h5") == result_bytes(reference)
        attrs = root_attrs(tmp_path / f"pi-{seed}.h5")
        assert attrs["slurm_array_job_id"] == int(job_id)
        assert attrs["slurm_array_task_id"] == n


@pytest.mark.slurm
def test_rendered_script_passes_test_only_and_runs(jobs, tmp_path):
    reference = cli_here([*_montecarlo(str(tmp_path / "reference.h5"), 5), "--chunk-rows", "99"])
    assert reference.returncode == 0, reference.stderr
    options = ["--ntasks", "2", "--time", "00:05:00", "--job-name", "rendered"]
    options += ["--launcher", "mpiexec", "--output-script", "job.sh"]
    rendered = jobs.run(
        [*HPCAPP, "slurm", *options, "--", *_montecarlo("out.h5", 5), "--chunk-rows", "99"],
        # The rendered script names the Python that ran `hpcapp slurm`: test that default.
        env={"HPCAPP_PYTHON": ""},
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "sbatch job.sh" in rendered.stdout
    tested = jobs.run(["sbatch", "--test-only", "job.sh"])
    assert tested.returncode == 0 and "to start at" in tested.stderr, tested.stderr
    job_id, _ = jobs.sbatch(["job.sh"], env={"HPCAPP_PYTHON": ""})
    (task,) = jobs.wait(job_id)
    log = jobs.log(f"rendered-{job_id}.out")
    assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert "via mpiexec" in log
    assert result_bytes(tmp_path / "out.h5") == result_bytes(tmp_path / "reference.h5")


@pytest.mark.slurm
def test_hpcapp_slurm_submit(jobs, tmp_path):
    reference = cli_here(_montecarlo(str(tmp_path / "reference.h5"), 6))
    assert reference.returncode == 0, reference.stderr
    options = ["--ntasks", "2", "--time", "5", "--job-name", "submitted", "--submit"]
    submitted = jobs.run([*HPCAPP, "slurm", *options, "--", *_montecarlo("out.h5", 6)])
    assert submitted.returncode == 0, submitted.stderr
    match = re.search(r"Submitted batch job (\d+)", submitted.stdout)
    assert match, submitted.stdout + submitted.stderr
    jobs.ids.append(match.group(1))
    (task,) = jobs.wait(match.group(1))
    log = jobs.log(f"submitted-{match.group(1)}.out")
    assert (task["JobState"], task["ExitCode"]) == ("COMPLETED", "0:0"), log
    assert "2 ranks" in log and "via srun" in log
    assert result_bytes(tmp_path / "out.h5") == result_bytes(tmp_path / "reference.h5")
    assert log.splitlines()[0].endswith(" --resume")  # added by the script to every run
