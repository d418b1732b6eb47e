"""Launch mistakes users actually make, caught before any work: no MPI plugin, thread storms."""

from __future__ import annotations

import os
from collections.abc import Mapping

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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
            f"the launcher says {name}={value} but MPI sees {world_size} rank(s): mpi4py "
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
