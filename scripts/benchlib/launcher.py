"""Find the MPI launcher and build an environment free of any enclosing MPI launch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hpcapp.parallel.launch import find_mpiexec  # noqa: F401 - the scripts find it here

REPO = Path(__file__).resolve().parent.parent.parent
# Variables an enclosing mpiexec or SLURM step sets: inherited, they make a child believe it is
# one rank of the parent's job.
LAUNCH_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "I_MPI_", "SLURM_")


def without_launch(environ: Mapping[str, str]) -> dict[str, str]:
    """Return ``environ`` without the variables of an enclosing MPI launch or SLURM step."""
    return {k: v for k, v in environ.items() if not k.startswith(LAUNCH_PREFIXES)}


def without_netcdf4_plugins(env: dict[str, str]) -> dict[str, str]:
    """Return ``env`` without the HDF5_PLUGIN_PATH that importing netCDF4 sets in this process.

    It points at netCDF4's own filter plugins, linked to its own HDF5: a child's h5py would load
    them for Blosc and the like and fail inside them ("error during user callback").
    """
    if Path(env.get("HDF5_PLUGIN_PATH", "")).parts[-2:] == ("netCDF4", "plugins"):
        env = {key: value for key, value in env.items() if key != "HDF5_PLUGIN_PATH"}
    return env


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a benchmark's processes: this checkout, one thread per rank."""
    env = without_netcdf4_plugins(without_launch(os.environ))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # Ranks x BLAS/OpenMP threads must not exceed the cores; the same for every contender.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra or {})
    return env
