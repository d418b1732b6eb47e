#!/usr/bin/env python3
"""Run the whole test suite: lint, types, serial tests, SLURM tests, MPI tests at 1-4 ranks.

The MPI tests run under mpiexec -n 1, 2, 3, 4, then again at 2 and 3 ranks over MPICH's
network path (``MPIR_CVAR_NOLOCAL=1``).

Every step runs in a subprocess with a time limit, so a hung MPI test fails the run instead of
hanging it. Exit code 0 only if every step passed. Extra arguments go to every pytest call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RANK_COUNTS = (1, 2, 3, 4)
# MPICH moves messages between ranks of one host through shared memory; with this setting it
# takes its network path instead, as between the nodes of a cluster.
NETWORK_PATH = {"MPIR_CVAR_NOLOCAL": "1"}
NETWORK_RANK_COUNTS = (2, 3)
STEP_TIMEOUT = 900  # seconds; the whole suite takes a few minutes on 2 cores


def find_mpiexec() -> str:
    """Prefer the mpiexec installed beside this Python (the mpich wheel), else PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit("run_tests: no mpiexec: install the `mpich` extra or load your MPI module")
    return found


def run(name: str, command: list[str], extra_env: dict[str, str] | None = None) -> bool:
    """Run one step, streaming its output; return True if it passed in time."""
    shown = " ".join(f"{k}={v}" for k, v in (extra_env or {}).items())
    print(f"\n=== {name}: {shown + ' ' if shown else ''}{' '.join(command)}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(extra_env or {}))
    started = time.monotonic()
    try:
        code = subprocess.run(command, cwd=REPO, env=env, timeout=STEP_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        print(f"=== {name}: TIMED OUT after {STEP_TIMEOUT} s", flush=True)
        return False
    print(
        f"=== {name}: {'passed' if code == 0 else f'FAILED (exit {code})'} "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return code == 0


def main() -> int:
    """Run every step, even after a failure, and report them all."""
    extra = sys.argv[1:]
    python = sys.executable
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider"]
    steps = [
        # hpcapp's bytecode once: under PYTHONDONTWRITEBYTECODE=1 every test's subprocess (and
        # every rank) would otherwise compile hpcapp's modules from source again.
        ("bytecode", [python, "-m", "compileall", "-q", "hpcapp"], {}),
        ("lint", [python, "-m", "ruff", "check", "."], {}),
        ("format", [python, "-m", "ruff", "format", "--check", "."], {}),
        # Types of hpcapp/ (its settings are pyproject.toml's [tool.mypy]).
        ("types", [python, "-m", "mypy"], {}),
        ("serial tests", [*pytest, "-m", "not mpi and not slurm", *extra], {}),
        # Starts a private one-node SLURM (installing slurm-wlm and munge if missing: root).
        ("SLURM tests", [*pytest, "-m", "slurm", *extra], {}),
    ]
    mpiexec = find_mpiexec()
    mpi_runs = [(n, {}, "") for n in RANK_COUNTS]
    mpi_runs += [(n, NETWORK_PATH, ", network path") for n in NETWORK_RANK_COUNTS]
    for n_ranks, env, label in mpi_runs:
        # tests/conftest.py fails the step unless MPI's world has this many ranks.
        steps.append(
            (
                f"MPI tests, {n_ranks} ranks{label}",
                [mpiexec, "-n", str(n_ranks), *pytest, "-q", "--with-mpi", "-m", "mpi", *extra],
                {"HPCAPP_EXPECT_RANKS": str(n_ranks), **env},
            )
        )
    results = [(name, run(name, command, env)) for name, command, env in steps]
    print("\n=== summary")
    for name, passed in results:
        print(f"  {'ok    ' if passed else 'FAILED'} {name}")
    return 0 if all(passed for _, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
