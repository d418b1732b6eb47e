"""Shared test helpers: run the real CLI under mpiexec, make small HDF5 inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# An end-to-end run that takes longer than this has hung: fail the test instead of CI.
CLI_TIMEOUT = 120


@pytest.fixture(scope="session", autouse=True)
def world_matches_launcher(request):
    """Fail the MPI test step unless MPI's world has as many ranks as the launcher started.

    When mpiexec and mpi4py's libmpi disagree, ``mpiexec -n 4`` starts four one-rank worlds:
    the tests for one rank pass, the others skip, and the step would look green.
    """
    if not request.config.getoption("--with-mpi", default=False):
        return
    from mpi4py import MPI

    from hpcapp.parallel.launch import launcher_world_size

    size = MPI.COMM_WORLD.Get_size()
    expected = os.environ.get("HPCAPP_EXPECT_RANKS", "")
    told = launcher_world_size()
    slurm_tasks = os.environ.get("SLURM_NTASKS", "")
    claims = []
    if expected.isdigit():
        claims.append(("HPCAPP_EXPECT_RANKS", int(expected)))
    if told is not None:
        claims.append(told)
    if slurm_tasks.isdigit() and "SLURM_STEP_NUM_TASKS" in os.environ:
        claims.append(("SLURM_NTASKS", int(slurm_tasks)))
    if not claims:
        pytest.fail("--with-mpi but no launcher variable (PMI_SIZE, OMPI_COMM_WORLD_SIZE, ...)")
    for name, value in claims:
        if value != size:
            pytest.fail(
                f"{name}={value} but MPI.COMM_WORLD has {size} rank(s): mpiexec and mpi4py "
                "use different MPI libraries, so no multi-rank test would run"
            )


def mpiexec() -> str:
    """Return the mpiexec beside this Python (the mpich wheel's), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the mpich extra or load an MPI module")
    return found


def clean_env() -> dict[str, str]:
    """Return an environment without the variables of an enclosing MPI launch."""
    prefixes = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "I_MPI_", "SLURM_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HPCAPP_PROGRESS"] = "lines"  # the same progress output however the tests are run
    return env


def cli_command(args: list[str], n_ranks: int) -> list[str]:
    """Return the command line ``mpiexec -n N python -m hpcapp ARGS``."""
    return [mpiexec(), "-n", str(n_ranks), sys.executable, "-m", "hpcapp", *args]


def run_cli(
    args: list[str],
    n_ranks: int = 1,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``mpiexec -n N python -m hpcapp ARGS`` and return it (output captured as text)."""
    return subprocess.run(
        cli_command(args, n_ranks),
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, timeout: float = 60) -> str:
    """Run ``python -c code`` in the tests' clean environment; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=True,
    )
    return done.stdout


def write_dataset(path: Path, data: np.ndarray, name: str = "x", **kwargs: object) -> str:
    """Write ``data`` to ``path`` and return the ``FILE:/DATASET`` spec."""
    with h5py.File(path, "a") as h5:
        h5.create_dataset(name, data=data, **kwargs)
    return f"{path}:/{name}"


def read_results(path: Path) -> dict[str, np.ndarray]:
    """Read every ``/result`` dataset of an output file."""
    with h5py.File(path, "r") as h5:
        return {key: dataset[()] for key, dataset in h5["result"].items()}


def result_variables(path: Path) -> set[str]:
    """Return the names of the ``/result`` variables, leaving out dimension scales."""
    with h5py.File(path, "r") as h5:
        return {
            key
            for key, dataset in h5["result"].items()
            if dataset.attrs.get("CLASS") != b"DIMENSION_SCALE"
        }


def sample_data(rows: int, cols: int | None, dtype: str, seed: int = 1, nan: float = 0.0):
    """Return deterministic test data of the given shape and dtype, with optional NaNs."""
    rng = np.random.default_rng(seed)
    shape = (rows,) if cols is None else (rows, cols)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 200, size=shape).astype(dtype)
    data = rng.normal(0.5, 0.3, size=shape).astype(dtype)
    if nan:
        data[rng.random(shape) < nan] = np.nan
    return data


# Property-based tests (hypothesis): few examples by default so CI stays fast; run many more with
# `pytest --hypothesis-profile=long`.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("long", max_examples=1000, deadline=None)
settings.load_profile("ci")
