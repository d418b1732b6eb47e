"""Launch mistakes users actually make, caught before any work: no MPI plugin, thread storms.

Also what ``__main__`` records before numpy is imported: when the process started (its start-up
is timed) and whether it limited numpy's BLAS/OpenMP threads because ranks share the node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, MutableMapping

from hpcapp.cli import plural

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Ranks on this node, as launchers say it: MPICH/Hydra (and Intel MPI), Open MPI.
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")

# Set by mark_process_start() / limit_threads(), read when the run's report is written.
process_started: float | None = None  # time.time() at the process's start
thread_note: str | None = None  # e.g. "BLAS threads limited to 1 per rank (2 ranks on 2 cores)"


def mark_process_start() -> None:
    """Record when this process started (the kernel's clock; now, where there is no /proc)."""
    global process_started
    process_started = time.time() - (_process_age() or 0.0)


def _process_age() -> float | None:
    """Return the seconds since this process started, from Linux's /proc, or None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # Field 22 (counting from 1) is the start time in clock ticks after boot; the command
            # name (field 2) may hold spaces, so count from its closing parenthesis.
            start_ticks = int(stat.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def ranks_on_this_node(env: Mapping[str, str] | None = None) -> int | None:
    """Return how many ranks share this node, as the launcher told this process, if it did."""
    env = os.environ if env is None else env
    for name in _LOCAL_SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    # srun: SLURM_STEP_TASKS_PER_NODE is e.g. "4(x2),3"; SLURM_NODEID picks this node's entry.
    layout, node = env.get("SLURM_STEP_TASKS_PER_NODE", ""), env.get("SLURM_NODEID", "")
    if layout and node.isdigit():
        counts: list[int] = []
        for part in layout.split(","):
            count, _, repeat = part.partition("(x")
            if not count.isdigit():
                return None
            counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
        if int(node) < len(counts):
            return counts[int(node)]
    return None


def limit_threads(
    env: MutableMapping[str, str] | None = None, cores: int | None = None
) -> str | None:
    """Give each rank its share of the node's cores as BLAS/OpenMP threads, before numpy loads.

    Only when the user set none of the thread variables and several ranks share the node:
    numpy's BLAS would otherwise start one thread per core in every rank. Returns (and keeps
    in ``thread_note``) the sentence the run's report prints, or None when nothing was changed.
    """
    global thread_note
    env = os.environ if env is None else env
    cores = cores or os.cpu_count() or 1
    ranks = ranks_on_this_node(env)
    if ranks is None or ranks <= 1 or any(env.get(name) for name in _THREAD_VARIABLES):
        return None
    threads = max(1, cores // ranks)
    for name in _THREAD_VARIABLES:
        env[name] = str(threads)
    thread_note = (
        f"BLAS threads limited to {threads} per rank ({plural(ranks, 'rank')} on "
        f"{plural(cores, 'core')} of this node)"
    )
    return thread_note


def launcher_world_size(env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """Return ``(variable, ranks)`` as the MPI launcher told this process, if it did."""
    env = os.environ if env is None else env
    for name in _SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit():
            return name, int(value)
    return None


def world_problem(world_size: int, env: Mapping[str, str] | None = None) -> str | None:
    """Explain why this world looks mis-launched (e.g. ``srun`` without an MPI plugin)."""
    env = os.environ if env is None else env
    step_tasks = env.get("SLURM_STEP_NUM_TASKS", "")
    if step_tasks.isdigit() and int(step_tasks) > 1 and world_size == 1:
        return (
            f"srun started {step_tasks} tasks but MPI sees a world of 1 rank: each task would "
            "compute the whole job and overwrite the same output. srun needs an MPI plugin "
            "that matches your MPI: `srun --mpi=pmi2 ...` (check `srun --mpi=list`), or use "
            "`mpiexec -n N ...` inside the allocation"
        )
    told = launcher_world_size(env)
    if told is not None and told[1] != world_size:
        name, value = told
        return (
            f"the launcher says {name}={value} but MPI sees {plural(world_size, 'rank')}: mpi4py "
            "is probably using a different MPI library than the launcher. Launch with the "
            "mpiexec of the MPI that mpi4py uses (`python -m mpi4py --mpi-lib-version` "
            "names it)"
        )
    return None


def thread_warning(ranks_per_node: int, cores: int | None = None) -> str | None:
    """Warn when BLAS/OpenMP threads times ranks on a node exceed its cores."""
    cores = cores or os.cpu_count() or 1
    if ranks_per_node <= 1:
        return None
    for name in _THREAD_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            threads = int(value)
            break
    else:
        return (
            f"warning: {ranks_per_node} ranks share a node of {cores} cores and OMP_NUM_THREADS "
            "is not set: numpy's BLAS may start one thread per core in every rank. Set "
            "OMP_NUM_THREADS=1 (or SLURM_CPUS_PER_TASK) for MPI jobs"
        )
    if threads > 1 and threads * ranks_per_node > cores:
        return (
            f"warning: {ranks_per_node} ranks x {name}={threads} threads exceed the node's "
            f"{cores} cores; set {name}={max(1, cores // ranks_per_node)}"
        )
    return None
