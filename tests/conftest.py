"""Fixtures of the whole suite; the helpers the tests import are in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from scripts.benchlib.harness import PRECOMPILE
from scripts.benchlib.launcher import clean_env


def pytest_addoption(parser):
    """``--shard I/N``: run the I-th of N interleaved parts of the tests (I from 0)."""
    parser.addoption(
        "--shard",
        default=None,
        help="I/N: run tests I, I+N, I+2N, ... of the collected ones, so that N processes "
        "share the suite (scripts/run_tests.py runs the serial tests as two such parts)",
    )


@pytest.hookimpl(trylast=True)  # after -m has deselected what this run does not run
def pytest_collection_modifyitems(config, items):
    """Keep this shard's tests: every N-th one, so that slow tests spread over the shards."""
    shard = config.getoption("--shard")
    if not shard:
        return
    index, count = (int(part) for part in shard.split("/"))
    if not 0 <= index < count:
        raise pytest.UsageError(f"--shard {shard}: I must be in 0..N-1")
    kept = items[index::count]
    config.hook.pytest_deselected(
        items=[item for n, item in enumerate(items) if n % count != index]
    )
    items[:] = kept


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


@pytest.fixture
def shared_dir():
    """A directory every rank of COMM_WORLD sees (made by rank 0, removed by rank 0)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = comm.bcast(tempfile.mkdtemp(prefix="hpcapp-mpi-") if comm.rank == 0 else None)
    yield Path(path)
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path)


@pytest.fixture(scope="session")
def compiled_loops():
    """Build stats' compiled loops and hpcapp's bytecode once, with no time limit.

    Every benchmark builds them before it times anything, but on a cold numba cache that alone
    could outlast a smoke test's time limit.
    """
    subprocess.run([sys.executable, *PRECOMPILE], env=clean_env(), check=True)


# Property-based tests (hypothesis): few examples by default so CI stays fast; run many more with
# `pytest --hypothesis-profile=long`.
settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("long", max_examples=1000, deadline=None)
settings.load_profile("ci")
