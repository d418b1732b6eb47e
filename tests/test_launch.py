"""Launching hpcapp: module files run directly, BLAS threads per rank, start-up timing."""

import os
import subprocess
import sys
import time

import pytest
from helpers import (
    CLI_TIMEOUT,
    REPO,
    clean_env,
    cli_command,
    cli_here,
    mpiexec,
    run_python,
    timing_of,
    write_dataset,
)

from hpcapp.parallel import launch
from hpcapp.text import plural

# ---------------------------------------------------------------------------------------------
# Launching: module files, threads


def test_a_module_file_run_directly_says_how_to_run_hpcapp(tmp_path):
    args = ["run", "stats", "d.h5:/x", "-o", str(tmp_path / "o.h5")]
    done = subprocess.run(
        [mpiexec(), "-n", "2", sys.executable, str(REPO / "hpcapp" / "cli" / "parser.py"), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("hpcapp: error") == 1, done.stderr  # rank 0 only
    assert "parser.py is a module of hpcapp, not a program" in done.stderr


@pytest.mark.parametrize(
    "env,cores,threads",
    [
        ({"MPI_LOCALNRANKS": "2"}, 2, "1"),
        ({"OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 16, "4"),
        ({"MPI_LOCALNRANKS": "8"}, 2, "1"),
        ({"SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_NODEID": "2"}, 8, "4"),
        ({"SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_NODEID": "1"}, 8, "2"),
        ({"MPI_LOCALNRANKS": "1"}, 2, None),  # alone on the node: BLAS may use every core
        ({}, 2, None),  # no launcher
        ({"MPI_LOCALNRANKS": "2", "OMP_NUM_THREADS": "2"}, 2, None),  # the user's choice
        ({"MPI_LOCALNRANKS": "2", "MKL_NUM_THREADS": "1"}, 2, None),
    ],
)
def test_threads_are_limited_only_when_ranks_share_a_node_and_the_user_said_nothing(
    env, cores, threads
):
    env = dict(env)
    before = dict(env)
    note = launch.limit_threads(env, cores)
    if threads is None:
        assert note is None and env == before
    else:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            assert env[name] == threads
        assert note.startswith(f"BLAS threads limited to {threads} per rank (")


def test_numpy_is_not_imported_before_the_threads_are_limited():
    code = (
        "import sys\n"
        "import hpcapp.__main__\n"
        "print(sorted(m for m in ('numpy', 'h5py', 'mpi4py', 'numba') if m in sys.modules))\n"
    )
    out = run_python(code)
    assert out.strip() == "[]"


def test_two_ranks_without_thread_variables_get_no_warning_and_one_note(tmp_path):
    import numpy as np

    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    env = clean_env()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    done = subprocess.run(
        cli_command(["run", "stats", spec, "-o", str(tmp_path / "o.h5")], 2),
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
    cores = os.cpu_count()
    threads = max(1, cores // 2)
    assert done.stdout.count("BLAS threads limited") == 1
    assert f"BLAS threads limited to {threads} per rank (2 ranks on {plural(cores, 'core')}" in (
        done.stdout
    )


# ---------------------------------------------------------------------------------------------
# Start-up is timed apart from compute

SLOW_PREPARE_KERNEL = """
from pathlib import Path
import numpy as np
from hpcapp import kernel

def warm(params, data):
    if params["fail"]:
        raise RuntimeError("no compiler here")
    Path(params["warmed"]).touch()  # the test's clock: 1000 s passed (importing, compiling)

@kernel(prepare=warm)
def total(chunk, fail=False, warmed=""):
    return {"s": np.asarray(chunk.sum())}
"""


class WarmUpClock:
    """The engine's clock: the real one, 1000 s later once the warm-up has said it finished."""

    def __init__(self, marker):
        self.marker = marker

    def _later(self):
        return 1000.0 if self.marker.exists() else 0.0

    def time(self):
        return time.time() + self._later()

    def perf_counter(self):
        return time.perf_counter() + self._later()

    def __getattr__(self, name):
        return getattr(time, name)


def test_a_kernels_warm_up_is_start_up_not_compute(tmp_path, monkeypatch):
    # Where the warm-up's 1000 s are counted: in start-up, not in compute. No test waits for
    # them: the engine's clock jumps when the warm-up ends.
    import numpy as np

    from hpcapp.parallel import engine
    from hpcapp.parallel.engine import TIMING_COLUMNS

    spec = write_dataset(tmp_path / "in.h5", np.arange(1000, dtype=np.float64))
    (tmp_path / "k.py").write_text(SLOW_PREPARE_KERNEL)
    marker = tmp_path / "warmed"
    monkeypatch.setattr(engine, "time", WarmUpClock(marker))
    out = tmp_path / "o.h5"
    args = ["run", f"{tmp_path / 'k.py'}:total", spec, "-o", str(out), f"-pwarmed={marker}"]
    done = cli_here(args)
    assert done.returncode == 0, done.stderr
    timing, columns = timing_of(out)
    assert columns == list(TIMING_COLUMNS)
    assert (timing[:, TIMING_COLUMNS.index("startup")] >= 1000).all()
    assert (timing[:, TIMING_COLUMNS.index("compute")] < 1000).all()
    assert "start-up: imports, MPI start, checks, kernel warm-up" in done.stdout
    failed = cli_here([*args, "--overwrite", "-pfail=true"])
    assert failed.returncode == 1
    assert "warm-up (prepare) raised RuntimeError('no compiler here')" in failed.stderr
    assert failed.stderr.count("hpcapp: error") == 1


@pytest.mark.prebuilt
@pytest.mark.parametrize("jit_only", [False, True])
@pytest.mark.parametrize(
    "shape,dtype,compiled",
    [((1 << 20,), "float64", True), ((100, 3), "float64", False), ((1 << 20,), "float16", False)],
)
def test_stats_warm_up_loads_the_compiled_loops_only_where_chunks_use_them(
    shape, dtype, compiled, jit_only, compiled_loops
):
    # The prebuilt loops (built by compiled_loops) load without numba; under HPCAPP_JIT_ONLY,
    # as where none was built, numba's JIT loads them.
    code = (
        "import os, sys, numpy as np\n"
        f"os.environ['HPCAPP_JIT_ONLY'] = '{'1' if jit_only else ''}'\n"
        "from hpcapp.kernels.registry import load_kernel\n"
        "kernel = load_kernel('stats')\n"
        "from hpcapp.kernels.hookspec import InputInfo\n"
        f"data = InputInfo(np.dtype('{dtype}'), {shape[1:]!r}, chunk_rows={shape[0]})\n"
        "kernel.prepare(kernel.check_params({}), data)\n"
        "prebuilt = any(name.startswith('_hpcapp_stats_loops_') for name in sys.modules)\n"
        "print(prebuilt, 'hpcapp.kernels._fused_lanes' in sys.modules, 'numba' in sys.modules)\n"
    )
    out = run_python(code, timeout=120)
    prebuilt, jit = compiled and not jit_only, compiled and jit_only
    assert out.split() == [str(prebuilt), str(jit), str(jit)]


def test_one_launcher_lookup_honours_mpiexec(monkeypatch, tmp_path):
    """hpcapp.testing and the scripts find the launcher alike: $MPIEXEC first."""
    import hpcapp.testing
    from hpcapp.parallel.launch import find_mpiexec
    from scripts.benchlib import launcher

    assert launcher.find_mpiexec is find_mpiexec is hpcapp.testing.find_mpiexec
    monkeypatch.setenv("MPIEXEC", str(tmp_path / "no-such-mpiexec"))
    with pytest.raises(FileNotFoundError, match="MPIEXEC="):
        find_mpiexec()
    fake = tmp_path / "my-mpiexec"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MPIEXEC", str(fake))
    assert find_mpiexec() == str(fake)
