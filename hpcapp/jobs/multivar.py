"""Several variables in one job (``FILE:/tas,/pr``): one pass per variable, one output.

Rank 0 first inspects every variable and refuses, before any work, variables that do not share
dims (and records file by file) and options a pass cannot take. Then the same ranks run one
pass per variable (the job of that variable alone, written nowhere); rank 0 keeps each pass's
results (statistics: small) and writes them all to the one output, atomically, each variable
laid out as its own job would lay it out. Each pass reads its own variable's bytes once; what
the passes repeat is the start-up (planning, each file opened once per chunk per variable).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import UsageError, WriteError
from hpcapp.io import space
from hpcapp.io.output import make_layout
from hpcapp.io.results import read_results
from hpcapp.io.variables import SEPARATOR, JointLayout, refuse_unlike, variable_name
from hpcapp.io.writer import OutputError, check_output, write_output
from hpcapp.jobs.config import JobConfig
from hpcapp.jobs.plan import bind_data, plan_job
from hpcapp.jobs.provenance import holds_result, load_with_code
from hpcapp.kernels.api import Kernel
from hpcapp.parallel.collective import count_hosts, duplicate, on_all, on_root
from hpcapp.parallel.engine import TIMING_COLUMNS

if TYPE_CHECKING:
    from mpi4py import MPI

# Options a job over several variables refuses (each pass would need its own of them).
_REFUSED = (
    ("checkpoint", "--checkpoint"),
    ("regions", "--regions"),
    ("group_by", "--group-by"),
    ("group_every", "--group-every"),
    ("resample", "--resample"),
)


def refuse_options(config: JobConfig, kernel: Kernel) -> None:
    """Refuse what a job over several variables does not do, with one line."""
    for field, option in _REFUSED:
        if getattr(config, field, None):
            raise UsageError(f"several variables ({config.input}): {option} takes one variable")
    histogram = sorted(set(config.params) & {"bins", "range"})
    if histogram:
        raise UsageError(
            f"several variables ({config.input}): -p {histogram[0]} (histograms) takes one "
            "variable: drop it"
        )
    if kernel.series:
        raise UsageError(
            f"several variables ({config.input}): kernel {config.kernel!r} takes one variable"
        )


def check_variables(
    config: JobConfig, loaded: tuple[Kernel, dict[str, Any]], specs: list[str]
) -> tuple[Any, dict[str, Any], bool]:
    """Rank 0: refuse variables unlike each other, per-row results, and a bad output.

    Returns the first variable's plan, the identity of the whole job (each variable's, the
    code once) and whether ``--resume`` finds it finished in the output already.
    """
    kernel, code = loaded
    refuse_options(config, kernel)
    if len({variable_name(spec) for spec in specs}) < len(specs):
        raise UsageError(f"input {config.input!r} names a variable twice: name each once")
    plans = [plan_job(_pass_config(config, spec), kernel, code) for spec in specs]
    refuse_unlike([plan.source for plan in plans], specs)
    first = plans[0]
    if bind_data(kernel, first.params, first.weights, first.zones).per_row:
        raise UsageError(
            f"several variables ({config.input}): kernel {config.kernel!r} has per-row results "
            "here (one per record): run one variable per job"
        )
    identity = {
        "variables": [{k: v for k, v in p.identity.items() if k != "code"} for p in plans],
        "code": first.identity["code"],
    }
    if config.output is None:
        return first, identity, False
    # No checkpoint: like a series job, --resume finds the job done or runs it from the start.
    if config.resume and holds_result(config.output, identity):
        return first, identity, True
    for input_path in first.source.input_paths or (None,):
        check_output(config.output, config.overwrite, input_path)
    return first, identity, False


def _pass_config(config: JobConfig, spec: str) -> JobConfig:
    """Return the job of one variable's pass: no output, so nothing written or resumed."""
    return dataclasses.replace(config, input=spec, output=None, resume=False)


def run_passes(
    comm: MPI.Comm,
    config: JobConfig,
    specs: list[str],
    execute: Callable[..., Any],
    loaded: tuple[Kernel, dict[str, Any]],
    warn_threads: bool,
    startup: Any,
) -> tuple[Any, JointLayout | None]:
    """Run one pass per variable; return the joint outcome and the output's layout.

    On rank 0 the outcome holds every pass's results keyed ``VARIABLE/KEY`` (``tas/mean``),
    chunks and timing (summed); the other ranks get the first pass's outcome and no layout.
    """
    kernel = loaded[0]
    outcomes = []
    for index, spec in enumerate(specs):
        one = _pass_config(config, spec)
        leading = index == 0  # the start-up and the thread warning are the first pass's
        outcome = execute(
            comm,
            one,
            kernel_and_code=loaded,
            warn_threads=warn_threads and leading,
            startup=startup if leading else None,
        )
        outcomes.append((variable_name(spec), outcome))
    first = outcomes[0][1]
    if comm.Get_rank() != 0:
        return first, None
    results: dict[str, Any] = {}
    layouts = []
    for name, outcome in outcomes:
        plan = outcome.plan
        results.update({f"{name}{SEPARATOR}{k}": v for k, v in outcome.results.items()})
        described = bind_data(kernel, plan.params, plan.weights, plan.zones)
        layouts.append((name, make_layout(plan.source, plan.params, described, None, plan.zones)))
    engine = dataclasses.replace(
        first.engine,
        results=results,
        timing=np.sum([outcome.engine.timing for _, outcome in outcomes], axis=0),
        n_chunks=sum(outcome.engine.n_chunks for _, outcome in outcomes),
    )
    return dataclasses.replace(first, results=results, engine=engine), JointLayout(tuple(layouts))


def execute_several(
    comm: MPI.Comm,
    config: JobConfig,
    specs: list[str],
    app: tuple[Callable[..., Any], Callable[..., dict[str, Any]], type],
    extra_attrs: dict[str, Any] | None,
    kernel_and_code: tuple[Kernel, dict[str, Any]] | None,
    warn_threads: bool,
    startup: Any,
    opener: Callable[[str], Any] | None,
) -> Any:
    """:func:`hpcapp.jobs.app.execute` of several variables: the passes, then one output.

    ``app`` is (``execute``, the provenance of an output, ``Outcome``) of :mod:`hpcapp.jobs.app`.
    """
    execute, provenance, outcome_type = app
    with duplicate(comm) as comm, ExitStack() as cleanup:
        started = on_root(comm, time.time)
        loaded = kernel_and_code or on_all(comm, lambda: load_with_code(config.kernel))
        plan, identity, finished = on_root(comm, lambda: check_variables(config, loaded, specs))
        if finished:
            output = config.output
            assert output is not None
            results = on_root(comm, lambda: read_results(output))
            labelled = on_root(comm, lambda: opener(output)) if opener else None
            return outcome_type(plan, results, None, started, True, labelled)
        outcome, layout = run_passes(comm, config, specs, execute, loaded, warn_threads, startup)
        target = config.output
        if target is None and opener is not None:  # as_xarray=True: a scratch file to open
            scratch = on_root(comm, lambda: tempfile.mkdtemp(prefix="hpcapp-run-"))
            if comm.Get_rank() == 0:
                cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
            target = os.path.join(scratch, "result.nc")
        if target:
            hosts, _ = count_hosts(comm)
            attrs = provenance(
                comm, config, outcome.plan, outcome.engine, hosts, outcome.started, extra_attrs
            )
            on_root(comm, lambda: write_several(target, outcome, attrs, layout, specs, identity))
        labelled = on_root(comm, lambda: opener(target)) if opener and target else None
    return dataclasses.replace(outcome, labelled=labelled)


def write_several(
    target: str,
    outcome: Any,
    attrs: dict[str, Any],
    layout: Any,
    specs: list[str],
    identity: dict[str, Any],
) -> None:
    """Rank 0: write every variable's results to ``target`` atomically (as one job does)."""
    engine = outcome.engine
    attrs = {
        **attrs,
        "input": str(attrs["input"]).rpartition(":")[0]
        + ":"
        + ",".join(spec.rpartition(":")[2] for spec in specs),
        "variables": ",".join(variable_name(spec) for spec in specs),
        "job_identity": json.dumps(identity, sort_keys=True),
    }
    column = TIMING_COLUMNS.index("write")
    try:
        seconds = write_output(
            target, engine.results, attrs, engine.timing, TIMING_COLUMNS, column,
            outcome.started, layout=layout,
        )  # fmt: skip
    except OutputError as exc:
        raise WriteError(
            f"{space.reason(exc.cause)} writing {target} (needs ~{space.megabytes(exc.needed)}): "
            f"{space.fix_for(exc.cause, space.existing(os.path.dirname(os.path.abspath(target))))}"
            " and run again"
        ) from None
    engine.timing[0, column] += seconds  # for the report


def several_summary(report: str, source: Any, spec: str) -> str:
    """Return the run's report with its first line naming every variable (rows: each one's)."""
    first, _, rest = report.partition("\n")
    first = re.sub(r" \([0-9,]+ computed in this run\)", "", first.replace(source.spec, spec, 1))
    return f"{first}\n{rest}"
