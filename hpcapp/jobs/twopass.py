"""Two passes in one job: a climatology by group first, for a kernel that subtracts it.

A kernel declaring ``climatology_param`` (``anomaly``: ``climatology``) takes ``FILE:/VAR``, per
group means written by ``stats --group-by``. Run with ``--group-by`` and without that parameter,
the job first runs the built-in ``stats`` over time, grouped as asked, on the same input and
ranks, writing ``OUT_STEM.climatology.nc`` beside the output (kept: it is a result too, and
``--resume`` finds it finished), then runs the kernel with the parameter naming ``<var>_mean``
of that file and without ``--group-by``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcapp.errors import UsageError
from hpcapp.io.names import split_spec
from hpcapp.io.results import prefix_of
from hpcapp.jobs.config import JobConfig
from hpcapp.kernels.api import Kernel

if TYPE_CHECKING:
    from mpi4py import MPI


def climatology_path(output: str) -> str:
    """Return where the first pass writes the climatology: beside the output."""
    path = Path(output)
    return str(path.with_name(f"{path.stem}.climatology.nc"))


def wants_climatology(config: JobConfig, kernel: Kernel) -> bool:
    """Return whether the job computes the kernel's climatology first (--group-by, not given)."""
    name = kernel.climatology_param
    return bool(name) and config.group_by is not None and name not in config.params


def first_pass(config: JobConfig) -> JobConfig:
    """Return the job of the first pass: the built-in stats, grouped, beside the output."""
    assert config.output is not None
    target = climatology_path(config.output)
    return dataclasses.replace(
        config, kernel="stats", output=target, params={}, over=None, checkpoint=None, weights=None
    )


def climatology_first(
    comm: MPI.Comm, config: JobConfig, kernel: Kernel, execute: Callable[..., Any]
) -> JobConfig:
    """Run the grouped stats pass (collective); return the kernel's job, the file named in it."""
    assert kernel.climatology_param is not None
    if config.output is None or config.input is None:
        raise UsageError(
            f"kernel {config.kernel!r} with {'--group-by'} computes its climatology first and "
            "writes it beside the output: give an output (or pass "
            f"-p {kernel.climatology_param}=FILE:/VAR)"
        )
    first = first_pass(config)
    target = first.output
    execute(comm, first, warn_threads=False)
    if not config.quiet and comm.Get_rank() == 0:
        print(f"hpcapp: climatology ({first.group_by}) written to {target}", flush=True)
    variable = f"{target}:/{prefix_of(split_spec(config.input)[1])}mean"
    params = {**config.params, kernel.climatology_param: variable}
    return dataclasses.replace(config, params=params, group_by=None)
