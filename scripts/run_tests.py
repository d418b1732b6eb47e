#!/usr/bin/env python3
"""Run the whole test suite: lint, types, serial tests, MPI tests at 2-4 ranks, SLURM, benchmarks.

Order (steps side by side where they do not need each other): ruff; the two families of the
compiled loops at once, beside mypy; the prebuilt loops (they link the JIT's) beside the MPI
tests at 2 ranks; the serial tests as two interleaved halves at once (``--shard``,
tests/conftest.py) beside the tests of the prebuilt loops and the benchmarks' smoke tests; the
MPI tests at 3 ranks over MPICH's network path (``MPIR_CVAR_NOLOCAL=1``, as between the nodes of
a cluster) and at 4 ranks over shared memory. ``--all-ranks`` runs every rank count from 1 to 4
over shared memory and 2 and 3 over the network path (the serial tests already run every job in
a world of one rank, in-process and in ``mpiexec -n 1`` end-to-end runs). The SLURM tests (which
mostly wait for the local SLURM) run beside everything from the compiling on. They need root
(they start a local SLURM, installing it with apt-get): without root, and unless CI=true, they
are skipped with one line saying so; in CI a SLURM that cannot start fails them. CDO, NCO and
netcdf-bin are installed first with apt-get when missing (root).

Every step runs in a subprocess with a time limit, so a hung MPI test fails the run instead of
hanging it. Exit code 0 only if every step passed. Other arguments go to every pytest call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if not __package__:
    # Run as a file: Python put scripts/ first on the path; the launcher lookup is
    # scripts.benchlib's, shared with the benchmarks and the tests.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from scripts.benchlib.harness import PRECOMPILE
from scripts.benchlib.launcher import REPO, find_mpiexec
from scripts.local_slurm import skip_reason

RANK_COUNTS = (2, 4)
ALL_RANK_COUNTS = (1, 2, 3, 4)
# MPICH moves messages between ranks of one host through shared memory; with this setting it
# takes its network path instead, as between the nodes of a cluster.
NETWORK_PATH = {"MPIR_CVAR_NOLOCAL": "1"}
NETWORK_RANK_COUNTS = (3,)
ALL_NETWORK_RANK_COUNTS = (2, 3)
STEP_TIMEOUT = 900  # seconds a step; the whole suite takes ~4 minutes on 2 cores (2026-12-03)


def step_env(extra_env: dict[str, str] | None) -> dict[str, str]:
    """Return the environment of a step: this checkout of hpcapp, one BLAS thread."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(extra_env or {}))


def header(name: str, command: list[str], extra_env: dict[str, str] | None) -> str:
    """Return the line that opens a step's output."""
    shown = " ".join(f"{k}={v}" for k, v in (extra_env or {}).items())
    return f"\n=== {name}: {shown + ' ' if shown else ''}{' '.join(command)}"


def verdict(name: str, code: int | None, seconds: float) -> str:
    """Return the line that closes a step's output (``code`` None: it timed out)."""
    if code is None:
        return f"=== {name}: TIMED OUT after {STEP_TIMEOUT} s"
    return f"=== {name}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s"


def run(name: str, command: list[str], extra_env: dict[str, str] | None = None) -> bool:
    """Run one step, streaming its output; return True if it passed in time."""
    print(header(name, command, extra_env), flush=True)
    started = time.monotonic()
    try:
        code = subprocess.run(
            command, cwd=REPO, env=step_env(extra_env), timeout=STEP_TIMEOUT
        ).returncode
    except subprocess.TimeoutExpired:
        code = None
    print(verdict(name, code, time.monotonic() - started), flush=True)
    return code == 0


class Background:
    """A step running beside the others, its output kept in a file until it ends."""

    def __init__(self, name: str, command: list[str], extra_env: dict[str, str] | None) -> None:
        self.name = name
        self.text = header(name, command, extra_env) + "  (in the background)"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by finish)
        self.started = time.monotonic()
        self.ended: float | None = None
        self.process = subprocess.Popen(
            command, cwd=REPO, env=step_env(extra_env), stdout=self.log, stderr=subprocess.STDOUT
        )
        # Notes when the step itself ended, so its time is its own, not that of the steps it
        # ran beside.
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        print(f"=== {name}: started in the background", flush=True)

    def _watch(self) -> None:
        self.process.wait()
        self.ended = time.monotonic()

    def finish(self) -> bool:
        """Wait for the step (within its time limit), print its output; True if it passed."""
        left = STEP_TIMEOUT - (time.monotonic() - self.started)
        try:
            code: int | None = self.process.wait(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self.watcher.join()
        self.log.seek(0)
        print(self.text, flush=True)
        sys.stdout.write(self.log.read())
        self.log.close()
        print(verdict(self.name, code, (self.ended or time.monotonic()) - self.started), flush=True)
        return code == 0


def together(steps: list[tuple[str, list[str]]]) -> list[tuple[str, bool]]:
    """Run steps at once (each in the background) and wait for them all."""
    running = [Background(name, command, {}) for name, command in steps]
    return [(step.name, step.finish()) for step in running]


NC_TOOLS = {"cdo": "cdo", "ncdump": "netcdf-bin", "ncks": "nco"}  # program: Debian package


def ensure_nc_tools() -> bool:
    """Install CDO, NCO and ncdump with apt-get when missing (root); True unless that failed.

    tests/test_netcdf_tools.py reads outputs with them: without them it skips, or fails in CI.
    """
    missing = sorted({package for tool, package in NC_TOOLS.items() if not shutil.which(tool)})
    if not missing:
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"=== netCDF tools: {', '.join(missing)} missing and not installable here (needs "
            "root and apt-get): tests/test_netcdf_tools.py skips (fails with CI=true)"
        )
        return os.environ.get("CI", "").lower() != "true"
    print(f"=== netCDF tools: installing Debian's {', '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    for command in (["apt-get", "update", "-qq"], install):
        if subprocess.run(command, env=env).returncode != 0:
            print(f"=== netCDF tools: FAILED: {' '.join(command)}", flush=True)
            return False
    return True


def mpi_test_files() -> list[str]:
    """Return the test files that hold MPI tests: every rank of a step imports only these."""
    files = sorted((REPO / "tests").glob("test_*.py"))
    return [str(path.relative_to(REPO)) for path in files if "mark.mpi" in path.read_text()]


def main() -> int:
    """Run every step, even after a failure, and report them all."""
    everything = "--all-ranks" in sys.argv[1:]
    extra = [arg for arg in sys.argv[1:] if arg != "--all-ranks"]
    python = sys.executable
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider"]
    # stats' compiled loops for every dtype, and hpcapp's bytecode, once: on a cold numba cache
    # every test process (and every rank) would otherwise compile what it uses, again and again;
    # under PYTHONDONTWRITEBYTECODE=1 every rank would compile hpcapp's modules from source.
    # The two loop families share no cached function: two processes compile them at once.
    compile_loops = [python, *PRECOMPILE]
    lint = [
        ("lint", [python, "-m", "ruff", "check", "."]),
        ("format", [python, "-m", "ruff", "format", "--check", "."]),
    ]
    results = [("netCDF tools (CDO, NCO, ncdump)", ensure_nc_tools())]
    results += [(name, run(name, command)) for name, command in lint]
    # Types of hpcapp/ (its settings are pyproject.toml's [tool.mypy]), beside the compiling:
    # the lanes finish well before the histogram loop.
    results += together(
        [
            ("compiled loops: histogram", [*compile_loops, "histogram"]),
            ("compiled loops: lanes", [*compile_loops, "lanes"]),
            ("types", [python, "-m", "mypy"]),
        ]
    )
    # The SLURM tests mostly wait for the local SLURM: beside the others, once the loops are
    # compiled (a job started before would compile them again, on every rank). Without root
    # (and not in CI) they cannot start it: skipped, in one line here and in the summary.
    slurm_skipped = skip_reason()
    side: list[Background] = []
    if slurm_skipped:
        print(f"=== SLURM tests: skipped: {slurm_skipped}", flush=True)
    else:
        side.append(Background("SLURM tests", [*pytest, "-m", "slurm", *extra], {}))
    try:
        mpiexec = find_mpiexec()
    except FileNotFoundError as error:
        sys.exit(f"run_tests: {error}")
    ranks = ALL_RANK_COUNTS if everything else RANK_COUNTS
    network = ALL_NETWORK_RANK_COUNTS if everything else NETWORK_RANK_COUNTS
    mpi_runs = [(n, {}, "") for n in ranks]
    mpi_runs += [(n, NETWORK_PATH, ", network path") for n in network]
    mpi_runs.sort(key=lambda run: run[0])  # 2, 3, 4: the smallest failing world first
    mpi_steps = []
    for n_ranks, env, label in mpi_runs:
        # tests/conftest.py fails the step unless MPI's world has this many ranks.
        command = [*pytest, "-q", "--with-mpi", "-m", "mpi", *extra, *mpi_test_files()]
        mpi_steps.append(
            (
                f"MPI tests, {n_ranks} ranks{label}",
                [mpiexec, "-n", str(n_ranks), *command],
                {"HPCAPP_EXPECT_RANKS": str(n_ranks), **env},
            )
        )
    # The prebuilt loops (numba.pycc, 30-60 s on one core: after the JIT loops it links) before
    # the serial tests: their hundreds of launched jobs then start without importing numba
    # (~0.35 s less a rank). Beside the build: the first MPI step (jobs in its ranks' own
    # processes, which load the loops once).
    build = Background("compiled loops: prebuilt", [python, *PRECOMPILE, "prebuilt"], {})
    first, *mpi_steps = mpi_steps
    results.append((first[0], run(*first)))
    results.append((build.name, build.finish()))
    # The serial tests in two interleaved halves at once: one waits on launches and signals
    # while the other computes. Each half has a directory of its own for pytest's tmp_path.
    # Beside them, the tests of the prebuilt loops (marker `prebuilt`) and the benchmarks' smoke
    # tests (marker `bench`).
    side.append(
        Background(
            "prebuilt loops' tests, benchmark smoke tests",
            [*pytest, "-m", "prebuilt or bench", *extra],
            {},
        )
    )
    scratch = Path(tempfile.mkdtemp(prefix="hpcapp-tests-"))
    serial = [*pytest, "-m", "not mpi and not slurm and not bench and not prebuilt", *extra]
    halves = [[*serial, "--shard", f"{i}/2", "--basetemp", str(scratch / str(i))] for i in (0, 1)]
    other_half = Background("serial tests, part 2 of 2", halves[1], {})
    results.append(("serial tests, part 1 of 2", run("serial tests, part 1 of 2", halves[0])))
    results.append((other_half.name, other_half.finish()))
    shutil.rmtree(scratch, ignore_errors=True)
    results += [(name, run(name, command, env)) for name, command, env in mpi_steps]
    results += [(step.name, step.finish()) for step in side]
    print("\n=== summary")
    for name, passed in results:
        print(f"  {'ok    ' if passed else 'FAILED'} {name}")
    if slurm_skipped:
        print(f"  SKIPPED SLURM tests: {slurm_skipped}")
    return 0 if all(passed for _, passed in results) else 1


if __name__ == "__main__":
    sys.exit(main())
