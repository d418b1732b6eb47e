"""hpcapp.run in a plain python process and under mpiexec gives the CLI's bytes."""

import subprocess
import sys

import numpy as np
from helpers import clean_env, cli_here, mpiexec, read_results, write_dataset

SCRIPT = """
import sys
import hpcapp
hpcapp.run("stats", sys.argv[1], output=sys.argv[2], chunk_rows=101,
           params={"bins": 16, "range": [-3, 3]})
"""


def test_run_from_python_gives_the_cli_bytes(tmp_path):
    data = np.random.default_rng(3).normal(size=(5000, 2))
    spec = write_dataset(tmp_path / "in.h5", data)
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    cli_out = tmp_path / "cli.h5"
    args = ["run", "stats", spec, "-o", str(cli_out), "--chunk-rows", "101"]
    done = cli_here([*args, "-p", "bins=16", "-p", "range=-3,3", "-q"])
    assert done.returncode == 0, done.stderr
    expected = {k: v.tobytes() for k, v in read_results(cli_out).items()}
    plain = tmp_path / "plain.h5"  # a plain python process: a world of one rank
    run = [sys.executable, str(script), spec, str(plain)]
    done = subprocess.run(run, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {k: v.tobytes() for k, v in read_results(plain).items()} == expected
    launched = tmp_path / "launched.h5"
    command = [mpiexec(), "-n", "2", *run[:-1], str(launched)]
    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {k: v.tobytes() for k, v in read_results(launched).items()} == expected


def test_import_hpcapp_stays_cheap():
    code = (
        "import sys, hpcapp\n"
        "heavy = [m for m in ('mpi4py', 'h5py', 'numba', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(hpcapp.run)\n"
        "assert 'mpi4py' not in sys.modules  # hpcapp.run imports MPI only when called\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
