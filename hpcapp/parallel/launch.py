"""Launch mistakes users actually make, caught before any work: no MPI plugin, thread storms.

Also what ``__main__`` records before numpy is imported (a :class:`Startup` it hands down): when
the process started (its start-up is timed) and whether it limited numpy's BLAS/OpenMP threads
because ranks share the node.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from hpcapp.text import plural

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Ranks on this node, as launchers say it: MPICH/Hydra (and Intel MPI), Open MPI.
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


@dataclasses.dataclass(frozen=True)
class Startup:
    """What the entry point learned before numpy loaded; passed down to the run's report.

    Without one (``hpcapp.run`` from a program) start-up is timed from the kernel's warm-up and
    no thread note is printed.
    """

    process_started: float | None = None  # time.time() at the process's start
    thread_note: str | None = None  # e.g. "BLAS threads limited to 1 per rank (2 ranks on ...)"


def process_start_time() -> float:
    """Return when this process started (the kernel's clock; now, where there is no /proc)."""
    return time.time() - (_process_age() or 0.0)


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
    numpy's BLAS would otherwise start one thread per core in every rank. Returns the
    sentence the run's report prints (:attr:`Startup.thread_note`), or None when nothing was
    changed.
    """
    env = os.environ if env is None else env
    cores = cores or os.cpu_count() or 1
    ranks = ranks_on_this_node(env)
    if ranks is None or ranks <= 1 or any(env.get(name) for name in _THREAD_VARIABLES):
        return None
    threads = max(1, cores // ranks)
    for name in _THREAD_VARIABLES:
        env[name] = str(threads)
    return (
        f"BLAS threads limited to {threads} per rank ({plural(ranks, 'rank')} on "
        f"{plural(cores, 'core')} of this node)"
    )


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


# Variables launchers set to the process's rank, read before MPI starts so only rank 0 prints.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launcher_rank() -> int:
    """Return this process's rank as told by the launcher's environment (0 when unknown)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _int_or_str(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def slurm_context() -> dict[str, int | str]:
    """Return provenance attributes (``slurm_*``) describing the SLURM job, or {} outside one."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return {}
    names = {
        "slurm_job_id": "SLURM_JOB_ID",
        "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
        "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
        "slurm_job_name": "SLURM_JOB_NAME",
        "slurm_cluster": "SLURM_CLUSTER_NAME",
        "slurm_partition": "SLURM_JOB_PARTITION",
        "slurm_nodelist": "SLURM_JOB_NODELIST",
        "slurm_cpus_per_task": "SLURM_CPUS_PER_TASK",
    }
    context: dict[str, int | str] = {
        attr: _int_or_str(env[var]) for attr, var in names.items() if env.get(var)
    }
    # Unset on a job's first run; SLURM sets it to 1, 2, ... when the job is requeued.
    context["slurm_restart_count"] = _int_or_str(env.get("SLURM_RESTART_COUNT", "0"))
    # Tasks per node, as SLURM writes it (e.g. "4" or "2(x3),1"): always a string. Inside a step
    # started by srun the step's tasks are the ranks. Under mpiexec the step's tasks are the
    # launcher's proxies (one per node), so only the job's request describes the ranks.
    step_tasks = env.get("SLURM_STEP_NUM_TASKS", "")
    told = launcher_world_size(env)
    if not step_tasks.isdigit() or told is None or int(step_tasks) == told[1]:
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    else:
        per_node = env.get("SLURM_NTASKS_PER_NODE")
    if per_node:
        context["slurm_tasks_per_node"] = per_node
    return context


def find_mpiexec() -> str:
    """Return the launcher: ``$MPIEXEC``, else ``mpiexec`` on PATH, else the one beside Python.

    The last is the ``mpich`` wheel's (``pip install -e .[mpich]``), found even when the venv is
    not activated. Raise ``FileNotFoundError`` when there is none.
    """
    chosen = os.environ.get("MPIEXEC")
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise FileNotFoundError(f"MPIEXEC={chosen}: no such program")
        return found
    found = shutil.which("mpiexec")
    if found:
        return found
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    raise FileNotFoundError(
        "no mpiexec: set MPIEXEC, load your MPI module, or install the `mpich` extra"
    )
